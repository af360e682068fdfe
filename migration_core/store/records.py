"""Store operations on what happens to a job: approvals, the append-only event log, progress samples."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlmodel import Session, col, select

from migration_core.models import Approval, ProgressSample
from migration_core.store.audit import ChainReport, chained_from_row, verify_chain
from migration_core.store.base import StoreBase, unknown_job
from migration_core.store.schema import (
    ApprovalRow,
    EventRow,
    JobRow,
    ProgressRow,
    approval_from_row,
    event_from_row,
    event_row,
    progress_from_row,
    progress_to_row,
)
from migration_core.store.types import EventKind, EventRecord


class RecordOps(StoreBase):
    """Approvals, events and progress."""

    async def add_approval(
        self, job_id: int, actor: str, approved: bool, plan_hash: str, groups: Sequence[str] = ()
    ) -> Approval:
        """Record an approval (or denial) bound to `plan_hash`, with an `approval` event (no policy here).
        `groups`: the requirement's groups the actor belongs to (what they count for)."""

        def write(_attempt: int) -> Approval:
            now = self._now()
            data: dict[str, Any] = {"approved": approved, "plan_hash": plan_hash}
            if groups:
                data["groups"] = list(groups)
            with self._tx(write=True) as s:
                self._require_job(s, job_id)
                row = ApprovalRow(
                    job_id=job_id,
                    actor=actor,
                    approved=approved,
                    plan_hash=plan_hash,
                    at=now,
                    groups=json.dumps(list(groups)) if groups else None,
                )
                s.add(row)
                verb = "approved" if approved else "denied"
                s.add(event_row(job_id, EventKind.APPROVAL, now, actor, f"{verb} by {actor} (plan {plan_hash})", data))
                s.flush()
                return approval_from_row(row)

        return await self._run("record an approval", write)

    async def record_event(
        self,
        job_id: int | None,
        kind: EventKind,
        actor: str | None,
        detail: str = "",
        data: Mapping[str, Any] | None = None,
    ) -> EventRecord:
        """Append one event: a click, control action, refused attempt, decision, notice...

        `job_id=None` is for attempts on jobs that do not exist (a forged or stale button): put what was
        asked for in `data`. UnknownJobError when `job_id` is given but no such job exists.
        """

        def write(_attempt: int) -> EventRecord:
            with self._tx(write=True) as s:
                if job_id is not None:
                    self._require_job(s, job_id)
                row = event_row(job_id, kind, self._now(), actor, detail, data)
                s.add(row)
                s.flush()
                return event_from_row(row)

        return await self._run("record an event", write)

    async def record_notice_if_new(self, job_id: int, text: str, *, prefix: str) -> bool:
        """Append a notice unless the job's latest notice starting with `prefix` already says `text`; True when
        it was appended. Replicas that see the same change (a queue place) announce it once, not once each:
        the check and the append are one transaction under the job's row lock (SQLite: BEGIN IMMEDIATE)."""

        def write(_attempt: int) -> bool:
            with self._tx(write=True) as s:
                lock = select(JobRow.id).where(col(JobRow.id) == job_id)
                if s.exec(lock.with_for_update() if self._is_pg else lock).first() is None:
                    raise unknown_job(job_id)
                last = s.exec(
                    select(EventRow.detail)
                    .where(
                        col(EventRow.job_id) == job_id,
                        col(EventRow.kind) == EventKind.NOTICE.value,
                        col(EventRow.detail).startswith(prefix, autoescape=True),
                    )
                    .order_by(col(EventRow.id).desc())
                    .limit(1)
                ).first()
                if last == text:
                    return False
                s.add(event_row(job_id, EventKind.NOTICE, self._now(), detail=text))
                return True

        return await self._run("record a notice", write)

    async def events(self, job_id: int | None, kinds: Sequence[EventKind] | None = None) -> list[EventRecord]:
        """The job's event log in the order it was written (`None`: the events tied to no job)."""
        match = col(EventRow.job_id).is_(None) if job_id is None else col(EventRow.job_id) == job_id
        stmt = select(EventRow).where(match)
        if kinds:
            stmt = stmt.where(col(EventRow.kind).in_([k.value for k in kinds]))
        ordered = stmt.order_by(col(EventRow.id))

        def read(s: Session) -> list[EventRecord]:
            return [event_from_row(r) for r in s.exec(ordered).all()]

        return await self._run("read events", lambda _a: self._read(read))

    async def verify_audit(self) -> ChainReport:
        """Recompute the event log's hash chain (`migrate-bot audit verify`); see store/audit.py."""
        stmt = select(EventRow).order_by(col(EventRow.id))

        def read(s: Session) -> ChainReport:
            return verify_chain([chained_from_row(r) for r in s.exec(stmt).all()])

        return await self._run("verify the audit chain", lambda _a: self._read(read))

    async def add_progress(self, sample: ProgressSample) -> None:
        """Keep one progress reading (UnknownJobError when the job does not exist)."""

        def write(_attempt: int) -> None:
            with self._tx(write=True) as s:
                self._require_job(s, sample.job_id)
                s.add(progress_to_row(sample))

        await self._run("record progress", write)

    async def progress(self, job_id: int, limit: int | None = None) -> list[ProgressSample]:
        """The job's progress samples, oldest first; with `limit`, only the latest `limit` of them."""
        stmt = select(ProgressRow).where(col(ProgressRow.job_id) == job_id).order_by(col(ProgressRow.id).desc())
        if limit is not None:
            stmt = stmt.limit(limit)

        def read(s: Session) -> list[ProgressSample]:
            return [progress_from_row(r) for r in reversed(s.exec(stmt).all())]

        return await self._run("read progress", lambda _a: self._read(read))
