"""Store operations on jobs: create, read, compare-and-set transitions, plans, chat references, history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, union, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from migration_core.errors import ActiveJobExists, DuplicateRequestError, IllegalTransition, MigrateBotError
from migration_core.models import NO_CHAT, ChatRefs, Job, JobState, Plan
from migration_core.store.base import StoreBase, table
from migration_core.store.schema import (
    EventRow,
    JobRow,
    chat_changes,
    chat_columns,
    event_row,
    job_values,
    plan_values,
    row_id,
    to_utc,
)
from migration_core.store.states import ACTIVE_STATES, check_transition
from migration_core.store.types import EventKind

ACTIVE = tuple(s.value for s in ACTIVE_STATES)


class JobOps(StoreBase):
    """Jobs and their state machine."""

    async def create_job(
        self,
        *,
        vm: str,
        destination: str,
        requester: str,
        source: str = "",
        reason: str | None = None,
        plan: Plan | None = None,
        chat: ChatRefs = NO_CHAT,
        idempotency_key: str | None = None,
        drain_id: int | None = None,
    ) -> Job:
        """A new job in `requested`, with its first event. `source` may stay empty until preflight finds it.

        Raises DuplicateRequestError when `idempotency_key` was used before, ActiveJobExists when the VM
        already has an unfinished job (a unique index enforces one per VM, so also across replicas).
        """
        where = plan_values(plan) if plan else {"source": source, "destination": destination}

        def create(attempt: int) -> Job:
            now = self._now()
            try:
                with self._tx(write=True) as s:
                    row = JobRow(
                        vm=vm,
                        requester=requester,
                        reason=reason,
                        state=JobState.REQUESTED.value,
                        created_at=now,
                        updated_at=now,
                        **chat_columns(chat),
                        idempotency_key=idempotency_key,
                        drain_id=drain_id,
                        **where,
                    )
                    s.add(row)
                    s.flush()
                    detail = f"{vm} to {destination}"
                    s.add(event_row(row_id(row), EventKind.STATE, now, requester, detail, new_state=JobState.REQUESTED))
                    return self._load_job(s, row_id(row))
            except IntegrityError:
                conflict = self._conflict(vm, idempotency_key)
                if isinstance(conflict, DuplicateRequestError) and attempt > 0:
                    # Our first try committed but the answer was lost with the connection: that job is ours.
                    mine = conflict.job_id
                    return self._read(lambda s: self._load_job(s, mine))
                if conflict is not None:
                    raise conflict from None
                raise

        return await self._run("create a job", create)

    async def get_job(self, job_id: int) -> Job:
        """The job with its approvals; UnknownJobError when there is none."""
        return await self._run("read a job", lambda _a: self._read(lambda s: self._load_job(s, job_id)))

    async def find_by_idempotency_key(self, key: str) -> Job | None:
        return await self._newest("read a job", select(JobRow).where(col(JobRow.idempotency_key) == key))

    async def latest_job_for_vm(self, vm: str) -> Job | None:
        return await self._newest("read a job", select(JobRow).where(col(JobRow.vm) == vm))

    async def active_job_for_vm(self, vm: str) -> Job | None:
        """The VM's unfinished job, if any (there is at most one)."""
        return await self._newest(
            "read a job", select(JobRow).where(col(JobRow.vm) == vm, col(JobRow.state).in_(ACTIVE))
        )

    async def transition(
        self,
        job_id: int,
        expected_old: JobState,
        new: JobState,
        *,
        actor: str | None = None,
        detail: str = "",
        data: Mapping[str, Any] | None = None,
        error: str | None = None,
        plan: Plan | None = None,
        source: str | None = None,
    ) -> Job:
        """Move the job `expected_old -> new` and log it, in one transaction (compare-and-set).

        Raises IllegalTransition when the state machine forbids the move, or when the job is no longer in
        `expected_old` (another writer won; the message names the real state); UnknownJobError. `error`,
        `plan` (also sets source, destination and plan hash) and `source` are written with the state.
        """
        check_transition(expected_old, new, job_id)
        values: dict[str, Any] = {"state": new.value}
        if error is not None:
            values["error"] = error
        if source is not None:
            values["source"] = source
        if plan is not None:
            values.update(plan_values(plan))
        if new.terminal:
            values["lease_until"] = None  # a finished job holds no lease (the owner stays, for the record)
        event_data = dict(data or {})
        if plan is not None:
            event_data.setdefault("plan_hash", plan.hash)

        def move(attempt: int) -> Job:
            now = self._now()
            with self._tx(write=True) as s:
                result = s.exec(
                    update(JobRow)
                    .where(col(JobRow.id) == job_id, col(JobRow.state) == expected_old.value)
                    .values(updated_at=now, **values)
                )
                if result.rowcount != 1:
                    return self._lost_race(s, job_id, expected_old, new, actor, retried=attempt > 0)
                s.add(
                    event_row(
                        job_id, EventKind.STATE, now, actor, detail, event_data, old_state=expected_old, new_state=new
                    )
                )
                return self._load_job(s, job_id)

        return await self._run("change a job's state", move)

    async def set_plan(self, job_id: int, plan: Plan, *, actor: str | None = None) -> Job:
        """Store (or replace) the job's plan, its hash, source and destination; logs a `plan` event."""

        def write(_attempt: int) -> Job:
            now = self._now()
            with self._tx(write=True) as s:
                self._update(s, job_id, updated_at=now, **plan_values(plan))
                detail = f"plan {plan.hash}: {plan.source} -> {plan.destination}"
                data = {"plan_hash": plan.hash, "executable": plan.executable}
                s.add(event_row(job_id, EventKind.PLAN, now, actor, detail, data))
                return self._load_job(s, job_id)

        return await self._run("store a plan", write)

    async def update_job_chat(self, job_id: int, refs: ChatRefs) -> Job:
        """Remember where the job's card, thread and progress message live; a None field keeps what is stored."""
        values = chat_changes(refs)

        def write(_attempt: int) -> Job:
            with self._tx(write=True) as s:
                self._update(s, job_id, updated_at=self._now(), **values)
                return self._load_job(s, job_id)

        return await self._run("store chat references", write)

    async def history(self, subject: str | None = None, limit: int = 20) -> list[Job]:
        """Newest first; `subject` matches the VM, the source or the destination host (None = all jobs).

        One indexed top-N per column, merged, so it stays fast at 100,000+ jobs (bench/bench_store.py).
        `limit` is clamped to 1..1000.
        """
        limit = max(1, min(limit, 1000))
        newest = (col(JobRow.created_at).desc(), col(JobRow.id).desc())
        if subject is None:
            return await self._all("read the history", select(JobRow).order_by(*newest).limit(limit))
        tops = [
            select(col(JobRow.id), col(JobRow.created_at)).where(column == subject).order_by(*newest).limit(limit)
            for column in (col(JobRow.vm), col(JobRow.source), col(JobRow.destination))
        ]
        merged = union(*(select(top.subquery()) for top in tops)).subquery()
        ids = select(merged.c.id).order_by(merged.c.created_at.desc(), merged.c.id.desc()).limit(limit)
        stmt = select(JobRow).where(col(JobRow.id).in_(ids.scalar_subquery())).order_by(*newest)
        return await self._all("read the history", stmt)

    async def active_jobs(self) -> list[Job]:
        """Jobs not in a terminal state, newest first."""
        stmt = select(JobRow).where(col(JobRow.state).in_(ACTIVE))
        return await self._all("read active jobs", stmt.order_by(col(JobRow.created_at).desc(), col(JobRow.id).desc()))

    async def jobs_since(self, since: datetime | None = None) -> list[Job]:
        """Every job created at or after `since` (None: every job), oldest first: what an audit export reads."""
        stmt = select(JobRow)
        if since is not None:
            stmt = stmt.where(col(JobRow.created_at) >= to_utc(since))
        return await self._all("read jobs for an export", stmt.order_by(col(JobRow.created_at), col(JobRow.id)))

    async def jobs_in_states(self, states: Sequence[JobState] | frozenset[JobState]) -> list[Job]:
        """Jobs in any of `states`, oldest first (queue order)."""
        stmt = select(JobRow).where(col(JobRow.state).in_([s.value for s in states]))
        return await self._all("read jobs", stmt.order_by(col(JobRow.created_at), col(JobRow.id)))

    async def import_jobs(self, jobs: Sequence[Job], *, chunk: int = 5000) -> int:
        """Bulk-load jobs as they are (state, times, plan, approvals; new ids; no events, lease or key).

        For moving a SQLite store to PostgreSQL and for the benchmarks. Returns how many were loaded.
        """
        jobs_t, approvals_t = table("jobs"), table("approvals")
        loaded = 0  # chunks commit one by one: a retry after an outage resumes after the last committed one

        def load(_attempt: int) -> int:
            nonlocal loaded
            while loaded < len(jobs):
                part = jobs[loaded : loaded + chunk]
                with self._tx(write=True) as s:
                    conn = s.connection()
                    stmt = insert(jobs_t).returning(jobs_t.c.id, sort_by_parameter_order=True)
                    new_ids = conn.execute(stmt, [job_values(j) for j in part]).scalars().all()
                    approvals = [
                        {
                            "job_id": new_id,
                            "actor": a.actor,
                            "approved": a.approved,
                            "plan_hash": a.plan_hash,
                            "at": to_utc(a.at),
                        }
                        for new_id, job in zip(new_ids, part, strict=True)
                        for a in job.approvals
                    ]
                    if approvals:
                        conn.execute(insert(approvals_t), approvals)
                loaded += len(part)
            return loaded

        return await self._run("import jobs", load)

    def _lost_race(
        self, s: Session, job_id: int, old: JobState, new: JobState, actor: str | None, *, retried: bool
    ) -> Job:
        row = self._require_job(s, job_id)
        if retried and row.state == new.value:
            last = s.exec(
                select(EventRow)
                .where(col(EventRow.job_id) == job_id, col(EventRow.kind) == EventKind.STATE.value)
                .order_by(col(EventRow.id).desc())
                .limit(1)
            ).first()
            if last and last.old_state == old.value and last.new_state == new.value and last.actor == actor:
                # Our first try committed, then the connection died before we heard back: it is done.
                return self._jobs(s, [row])[0]
        raise IllegalTransition(
            f"job #{job_id} is {row.state}, not {old.value}: it changed before this {old.value} -> {new.value}",
            "someone or something else acted on it first; look at the job again before retrying",
        )

    def _conflict(self, vm: str, key: str | None) -> MigrateBotError | None:
        """Which unique rule a failed insert broke, as the error to show (None: something else)."""
        with self._tx(write=False) as s:
            if key is not None:
                dup = s.exec(select(JobRow).where(col(JobRow.idempotency_key) == key)).first()
                if dup is not None:
                    return DuplicateRequestError(row_id(dup))
            busy = s.exec(select(JobRow).where(col(JobRow.vm) == vm, col(JobRow.state).in_(ACTIVE))).first()
            if busy is not None:
                return ActiveJobExists(vm, row_id(busy), JobState(busy.state))
        return None
