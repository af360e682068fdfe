"""The store's plumbing: engine and life cycle, transactions on worker threads, retries, row loading."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

from sqlalchemy import Table, Update, func, inspect, update
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlmodel import Session, SQLModel, col, select

from migration_core.errors import MigrateBotError, StoreError, UnknownJobError
from migration_core.models import Approval, Job
from migration_core.store import audit
from migration_core.store.engine import WRITE_OPTION, is_transient, make_engine, normalise_url, to_store_error
from migration_core.store.schema import (
    ADDED_COLUMNS,
    GUARD_DDL,
    ApprovalRow,
    JobRow,
    approval_from_row,
    job_from_row,
    row_id,
    to_utc,
)
from migration_core.store.types import NO_RETRY, RetryPolicy, mask_secrets, mask_url, retry_async

T = TypeVar("T")
log = logging.getLogger("migration_core.store")

_SCHEMA_LOCK_KEY = 0x6D62_0001  # PostgreSQL advisory lock: one replica creates the schema at a time


def utc_now() -> datetime:
    return datetime.now(UTC)


def unknown_job(job_id: int) -> UnknownJobError:
    return UnknownJobError(f"there is no job #{job_id}", "check the number with `history`")


def table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


class StoreBase:
    """Engine, life cycle and the helpers every group of store operations uses."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime] = utc_now,
        retry: RetryPolicy | None = None,
        connect_timeout_s: int = 5,
    ) -> None:
        audit.install()  # every event record written through the store joins the hash chain
        self._url = normalise_url(url)
        self.url_masked = mask_url(self._url)
        self._clock = clock
        self._retry = retry if retry is not None else RetryPolicy()
        self._closed = False
        try:
            self._engine, self._serial = make_engine(self._url, connect_timeout_s)
        except (ArgumentError, NoSuchModuleError, ValueError) as err:
            raise StoreError(
                f"cannot use the database URL {self.url_masked}: {mask_secrets(str(err), self._url)}",
                "use sqlite:///path/to/file.db or postgresql+psycopg://user:password@host/dbname",
            ) from None
        self.backend: str = self._engine.dialect.name  # "sqlite" | "postgresql"
        self._is_pg = self.backend == "postgresql"
        self._write_engine = self._engine.execution_options(**{WRITE_OPTION: True})

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> Self:
        """Connect and create the schema if it is missing (idempotent; safe with two replicas starting)."""
        store = cls(url, **kwargs)
        try:
            await store.start()
        except BaseException:
            await store.close()
            raise
        return store

    async def start(self) -> None:
        """Create the tables, indexes and the event log's append-only trigger where they are missing."""

        def create(_attempt: int) -> None:
            with self._write_engine.begin() as conn:
                if self._is_pg:
                    conn.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK_KEY)))
                SQLModel.metadata.create_all(conn)
                present = {t: {c["name"] for c in inspect(conn).get_columns(t)} for t, _, _ in ADDED_COLUMNS}
                for table, column, sql_type in ADDED_COLUMNS:
                    if column not in present[table]:  # a database made by an older version
                        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
                for ddl in GUARD_DDL[self.backend]:
                    conn.exec_driver_sql(ddl)

        await self._run("create the schema", create)

    async def ping(self) -> None:
        """One round trip, no retries (for /healthz). Raises StoreError when the database does not answer."""
        await self._run(
            "answer a ping", lambda _a: self._read(lambda s: s.exec(select(func.count())).one()), retry=False
        )

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(self._engine.dispose)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # ---- helpers for the operation groups ----------------------------------------------------------------

    def _now(self) -> datetime:
        return to_utc(self._clock())

    @contextmanager
    def _tx(self, write: bool) -> Iterator[Session]:
        """One transaction: commits on success, rolls back on any exception."""
        lock = self._serial
        if lock is not None:
            lock.acquire()
        try:
            with (
                Session(self._write_engine if write else self._engine, expire_on_commit=False) as s,
                s.begin(),
            ):
                yield s
        finally:
            if lock is not None:
                lock.release()

    def _read(self, fn: Callable[[Session], T]) -> T:
        with self._tx(write=False) as s:
            return fn(s)

    async def _run(self, what: str, fn: Callable[[int], T], *, retry: bool = True) -> T:
        """Run `fn(attempt)` on a worker thread, retrying transient failures; failures -> MigrateBotError."""
        if self._closed:
            raise StoreError(f"the job store for {self.url_masked} is closed", "this is a bug: report it")

        async def attempt(n: int) -> T:
            return await asyncio.to_thread(fn, n)

        def on_retry(err: BaseException, delay_s: float, n: int) -> None:
            log.warning("%s; retrying in %.1f s (retry %d)", self._error(err, what).message, delay_s, n)

        try:
            return await retry_async(
                attempt,
                policy=self._retry if retry else NO_RETRY,
                is_transient=lambda e: is_transient(e, self._is_pg),
                on_retry=on_retry,
            )
        except MigrateBotError:
            raise
        except (SQLAlchemyError, OSError) as err:
            # `from None`: the chained driver exception could carry the connection string.
            raise self._error(err, what) from None

    def _error(self, err: BaseException, what: str) -> StoreError:
        return to_store_error(
            err,
            masked_url=self.url_masked,
            url=self._url,
            what=what,
            is_pg=self._is_pg,
            budget_s=self._retry.budget_s,
        )

    async def _all(self, what: str, stmt: Any) -> list[Job]:
        return await self._run(what, lambda _a: self._read(lambda s: self._jobs(s, s.exec(stmt).all())))

    async def _newest(self, what: str, stmt: Any) -> Job | None:
        found = await self._all(what, stmt.order_by(col(JobRow.created_at).desc(), col(JobRow.id).desc()).limit(1))
        return found[0] if found else None

    def _require_job(self, s: Session, job_id: int) -> JobRow:
        row = s.get(JobRow, job_id, populate_existing=True)
        if row is None:
            raise unknown_job(job_id)
        return row

    def _load_job(self, s: Session, job_id: int) -> Job:
        return self._jobs(s, [self._require_job(s, job_id)])[0]

    def _jobs(self, s: Session, rows: Sequence[JobRow]) -> list[Job]:
        """Rows -> domain jobs, with all their approvals fetched in one query."""
        ids = [row_id(r) for r in rows]
        by_job: dict[int, list[Approval]] = {i: [] for i in ids}
        if ids:
            stmt = select(ApprovalRow).where(col(ApprovalRow.job_id).in_(ids)).order_by(col(ApprovalRow.id))
            for a in s.exec(stmt).all():
                by_job[a.job_id].append(approval_from_row(a))
        return [job_from_row(r, by_job[row_id(r)]) for r in rows]

    async def _update_one(self, what: str, statement_at: Callable[[datetime], Update]) -> bool:
        """Run the UPDATE built for the current time in one write transaction: True when it changed exactly one
        row (a lease taken or renewed), False when its condition matched none (someone else holds it)."""

        def write(_attempt: int) -> bool:
            with self._tx(write=True) as s:
                return bool(s.exec(statement_at(self._now())).rowcount == 1)

        return await self._run(what, write)

    def _update(self, s: Session, job_id: int, **values: Any) -> None:
        result = s.exec(update(JobRow).where(col(JobRow.id) == job_id).values(**values))
        if result.rowcount != 1:
            raise unknown_job(job_id)
