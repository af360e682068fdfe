"""The tamper-evident event log: every event record carries a hash chained to the previous record's (issue 15).

    hash(n) = sha256(prev_hash(n) + canonical(job_id, at, kind, actor, old_state, new_state, detail, data))
    prev_hash(n) = hash(n-1), or GENESIS for the first chained record

The chain is written by a `before_flush` hook on every store session (`install`), so every writer of events
(state moves, approvals, refusals, notices, leases) is covered without knowing about it. On PostgreSQL an
advisory lock serialises appends to the chain, so two replicas never link two records to the same predecessor;
on SQLite the write transaction (BEGIN IMMEDIATE) already does. Records written before the chain existed (an
older database) have no hash; `verify_chain` reports how many and starts with the first chained record.

`verify_chain` is pure: given the records in id order it names the first one that was changed (its content no
longer matches its hash) or whose predecessor was removed (its link does not match the previous hash). A chain
cannot show that its LAST records were removed: `audit verify` prints the head hash so it can be kept elsewhere
and compared later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy import inspect as sa_inspect
from sqlmodel import Session, col

from migration_core.store.schema import EventRow, to_utc

GENESIS = "0" * 64
_CHAIN_LOCK_KEY = 0x6D62_0003  # PostgreSQL advisory lock: one appender to the chain at a time


@dataclass(frozen=True)
class ChainedRecord:
    """An event record as the chain sees it (the store's row, read back verbatim)."""

    id: int
    job_id: int | None
    at: datetime
    kind: str
    actor: str | None
    old_state: str | None
    new_state: str | None
    detail: str
    data: str | None
    prev_hash: str | None
    hash: str | None


def record_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """The hash of one record given its predecessor's hash (hex sha256)."""
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + "\n" + body).encode()).hexdigest()


def _fields(
    job_id: int | None,
    at: datetime,
    kind: str,
    actor: str | None,
    old_state: str | None,
    new_state: str | None,
    detail: str,
    data: str | None,
) -> dict[str, Any]:
    # Microseconds as stored by both databases; UTC so the same instant always hashes the same.
    stamp = to_utc(at).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "job_id": job_id,
        "at": stamp,
        "kind": kind,
        "actor": actor,
        "old_state": old_state,
        "new_state": new_state,
        "detail": detail,
        "data": data,
    }


def fields_of(r: ChainedRecord | EventRow) -> dict[str, Any]:
    return _fields(r.job_id, r.at, r.kind, r.actor, r.old_state, r.new_state, r.detail or "", r.data)


@dataclass(frozen=True)
class ChainReport:
    """What `verify_chain` found. `broken_at` is the first bad record's id (None: intact)."""

    checked: int
    unchained: int  # records older than the chain (no hash), not covered
    first_id: int | None
    last_id: int | None
    head_hash: str | None
    broken_at: int | None = None
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify_chain(records: Sequence[ChainedRecord]) -> ChainReport:
    """Recompute the chain over `records` (ordered by id); stop at the first record that does not fit."""
    unchained = 0
    prev: ChainedRecord | None = None
    checked = 0
    first_id: int | None = None
    for r in records:
        if r.hash is None and prev is None:
            unchained += 1  # written before the chain existed (a database from an older version)
            continue
        if first_id is None:
            first_id = r.id
        expected_prev = prev.hash if prev is not None else GENESIS
        if r.hash is None or r.prev_hash is None:
            problem = f"record #{r.id} has no hash: it was written around the bot, or its hash was erased"
            return _broken(records, checked, unchained, first_id, prev, r.id, problem)
        if r.prev_hash != expected_prev:
            before = f"#{prev.id}" if prev is not None else "the start of the chain"
            return _broken(
                records, checked, unchained, first_id, prev, r.id,
                f"record #{r.id} does not link to {before}: a record between them was removed "
                f"(or #{r.id}'s link was changed)",
            )  # fmt: skip
        if record_hash(r.prev_hash, fields_of(r)) != r.hash:
            return _broken(
                records, checked, unchained, first_id, prev, r.id,
                f"record #{r.id} was changed: its content ({r.kind}, {r.detail[:80]!r}) no longer matches its hash",
            )  # fmt: skip
        checked += 1
        prev = r
    return ChainReport(checked, unchained, first_id, prev.id if prev else None, prev.hash if prev else None)


def _broken(
    records: Sequence[ChainedRecord],
    checked: int,
    unchained: int,
    first_id: int | None,
    prev: ChainedRecord | None,
    bad_id: int,
    problem: str,
) -> ChainReport:
    return ChainReport(
        checked, unchained, first_id, records[-1].id if records else None, prev.hash if prev else None, bad_id, problem
    )


def _chain_new_events(session: Session, _flush_context: object, _instances: object) -> None:
    """before_flush: give every new event record its place in the chain, in the order they were added."""
    new = [o for o in session.new if isinstance(o, EventRow) and o.hash is None]
    if not new:
        return
    new.sort(key=lambda o: sa_inspect(o).insert_order)
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_CHAIN_LOCK_KEY)))  # held until commit
    stmt = select(col(EventRow.hash)).where(col(EventRow.hash).is_not(None)).order_by(col(EventRow.id).desc()).limit(1)
    prev = conn.execute(stmt).scalar() or GENESIS
    for row in new:
        row.prev_hash = prev
        row.hash = record_hash(prev, fields_of(row))
        prev = row.hash


_installed = False


def install() -> None:
    """Hook the chain into every store session (idempotent)."""
    global _installed
    if not _installed:
        event.listen(Session, "before_flush", _chain_new_events)
        _installed = True


def chained_from_row(row: EventRow) -> ChainedRecord:
    assert row.id is not None
    return ChainedRecord(
        row.id, row.job_id, row.at, row.kind, row.actor, row.old_state, row.new_state, row.detail or "",
        row.data, row.prev_hash, row.hash,
    )  # fmt: skip


__all__ = ["GENESIS", "ChainReport", "ChainedRecord", "install", "record_hash", "verify_chain"]
