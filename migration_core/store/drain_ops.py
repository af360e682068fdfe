"""Store operations on drains: create, read, compare-and-set state changes, approvals, chat refs, the lease."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from migration_core.drains import DRAIN_ALLOWED, Drain, DrainKind, DrainState, drain_ref
from migration_core.errors import DrainStateError, StoreError, UnknownDrainError
from migration_core.models import NO_CHAT, Approval, ApprovalRequirement, ChatRefs, Job
from migration_core.planning.drain import DrainPlan
from migration_core.store.base import StoreBase
from migration_core.store.schema import (
    DrainRow,
    JobRow,
    chat_changes,
    chat_columns,
    chat_refs,
    decoding_plan,
    event_row,
    to_utc,
)
from migration_core.store.types import EventKind


def _approvals_json(approvals: Iterable[Approval]) -> str:
    return json.dumps(
        [
            {"actor": a.actor, "approved": a.approved, "plan_hash": a.plan_hash, "at": a.at.isoformat(),
             "groups": list(a.groups)}
            for a in approvals
        ]
    )  # fmt: skip


def drain_from_row(row: DrainRow) -> Drain:
    if row.id is None:
        raise StoreError("a drain row has no id", "this is a bug in the store: report it")
    with decoding_plan(f"drain {drain_ref(row.id)}"):
        plan = DrainPlan.from_record(json.loads(row.plan))
        requirement = ApprovalRequirement.from_json(json.loads(row.requirement))
        approvals = tuple(
            Approval(row.id, a["actor"], bool(a["approved"]), a["plan_hash"], datetime.fromisoformat(a["at"]),
                     tuple(a.get("groups", ())))
            for a in json.loads(row.approvals or "[]")
        )  # fmt: skip
    return Drain(
        id=row.id,
        kind=DrainKind(row.kind),
        host=row.host,
        state=DrainState(row.state),
        requester=row.requester,
        plan=plan,
        requirement=requirement,
        created_at=to_utc(row.created_at),
        updated_at=to_utc(row.updated_at),
        reason=row.reason,
        approvals=approvals,
        returns_drain=row.returns_drain,
        skipped=json.loads(row.skipped or "{}"),
        detail=row.detail,
        chat=chat_refs(row),
        owner=row.owner,
    )


class DrainOps(StoreBase):
    """Drains: one row each, their changes logged in the event log as `drain` events (job_id NULL)."""

    def _drain_event(
        self, s: Session, drain_id: int, actor: str | None, detail: str, data: dict[str, Any], at: datetime
    ) -> None:
        text = f"{drain_ref(drain_id)}: {detail}"
        s.add(event_row(None, EventKind.DRAIN, at, actor, text, {"drain": drain_id, **data}))

    def _require_drain(self, s: Session, drain_id: int) -> DrainRow:
        row = s.get(DrainRow, drain_id, populate_existing=True)
        if row is None:
            raise UnknownDrainError(
                f"there is no drain {drain_ref(drain_id)}", "list drains with `/migrate status` or `/migrate history`"
            )
        return row

    async def create_drain(
        self,
        *,
        kind: DrainKind,
        plan: DrainPlan,
        requester: str,
        requirement: ApprovalRequirement,
        reason: str | None = None,
        returns_drain: int | None = None,
        chat: ChatRefs = NO_CHAT,
    ) -> Drain:
        """A new drain awaiting approval, with its first event."""

        def create(_attempt: int) -> Drain:
            now = self._now()
            with self._tx(write=True) as s:
                row = DrainRow(
                    kind=kind.value,
                    host=plan.host,
                    state=DrainState.AWAITING_APPROVAL.value,
                    requester=requester,
                    reason=reason,
                    plan=json.dumps(plan.to_record()),
                    plan_hash=plan.hash,
                    requirement=json.dumps(requirement.to_json()),
                    returns_drain=returns_drain,
                    detail=f"{len(plan.moves)} move(s) planned, {len(plan.left_behind)} left behind",
                    created_at=now,
                    updated_at=now,
                    **chat_columns(chat),
                )
                s.add(row)
                s.flush()
                assert row.id is not None
                data = {"state": row.state, "kind": kind.value, "host": plan.host, "plan_hash": plan.hash}
                self._drain_event(s, row.id, requester, f"{kind.value} of {plan.host} requested", data, now)
                return drain_from_row(row)

        return await self._run("create a drain", create)

    async def get_drain(self, drain_id: int) -> Drain:
        return await self._run(
            "read a drain", lambda _a: self._read(lambda s: drain_from_row(self._require_drain(s, drain_id)))
        )

    async def drains(
        self,
        *,
        states: Iterable[DrainState] | None = None,
        host: str | None = None,
        kind: DrainKind | None = None,
        limit: int = 50,
    ) -> list[Drain]:
        """Drains, newest first, optionally only in `states`, of `host`, of `kind`."""
        stmt = select(DrainRow)
        if states is not None:
            stmt = stmt.where(col(DrainRow.state).in_([st.value for st in states]))
        if host is not None:
            stmt = stmt.where(col(DrainRow.host) == host)
        if kind is not None:
            stmt = stmt.where(col(DrainRow.kind) == kind.value)
        stmt = stmt.order_by(col(DrainRow.created_at).desc(), col(DrainRow.id).desc()).limit(limit)
        return await self._run(
            "read drains", lambda _a: self._read(lambda s: [drain_from_row(r) for r in s.exec(stmt).all()])
        )

    async def move_drain(
        self,
        drain_id: int,
        expected: DrainState,
        new: DrainState,
        *,
        actor: str | None,
        detail: str,
    ) -> Drain:
        """`expected -> new` as compare-and-set, logged. DrainStateError when another writer won."""
        if new not in DRAIN_ALLOWED.get(expected, frozenset()):
            raise DrainStateError(
                f"{drain_ref(drain_id)} cannot go from {expected.value} to {new.value}",
                "this is a bug: report it with the drain's `status`",
            )

        def move(_attempt: int) -> Drain:
            now = self._now()
            with self._tx(write=True) as s:
                values: dict[str, Any] = {"state": new.value, "updated_at": now, "detail": detail}
                if new.finished:
                    values["lease_until"] = None
                result = s.exec(
                    update(DrainRow)
                    .where(col(DrainRow.id) == drain_id, col(DrainRow.state) == expected.value)
                    .values(**values)
                )
                row = self._require_drain(s, drain_id)
                if result.rowcount != 1:
                    raise DrainStateError(
                        f"{drain_ref(drain_id)} is {row.state.replace('_', ' ')} now, not {expected.value}",
                        "look at its status: somebody else acted on it first",
                    )
                data = {"old_state": expected.value, "state": new.value}
                self._drain_event(s, drain_id, actor, detail, data, now)
                return drain_from_row(row)

        return await self._run("change a drain's state", move)

    async def add_drain_approval(self, drain_id: int, approval: Approval) -> Drain:
        """Append an approval or denial (bound to the plan hash) to the drain, with a `drain` event."""

        def write(_attempt: int) -> Drain:
            now = self._now()
            with self._tx(write=True) as s:
                row = self._require_drain(s, drain_id)
                current = drain_from_row(row)
                row.approvals = _approvals_json((*current.approvals, approval))
                row.updated_at = now
                s.add(row)
                verb = "approved" if approval.approved else "denied"
                data = {"approved": approval.approved, "plan_hash": approval.plan_hash, "groups": list(approval.groups)}
                self._drain_event(s, drain_id, approval.actor, f"{verb} by {approval.actor}", data, now)
                s.flush()
                return drain_from_row(row)

        return await self._run("record a drain approval", write)

    async def jobs_of_drain(self, drain_id: int) -> list[Job]:
        """The jobs a drain created (its moves that started), oldest first."""
        stmt = select(JobRow).where(col(JobRow.drain_id) == drain_id).order_by(col(JobRow.id))
        return await self._all("read a drain's jobs", stmt)

    async def skip_drain_move(self, drain_id: int, vm: str, why: str) -> Drain:
        """Record that a move got no job (the VM is busy with another job, or gone): the drain goes on."""

        def write(_attempt: int) -> Drain:
            now = self._now()
            with self._tx(write=True) as s:
                row = self._require_drain(s, drain_id)
                skipped = json.loads(row.skipped or "{}")
                if vm not in skipped:
                    skipped[vm] = why
                    row.skipped = json.dumps(skipped)
                    row.updated_at = now
                    s.add(row)
                    self._drain_event(s, drain_id, None, f"{vm} not moved: {why}", {"vm": vm, "skipped": why}, now)
                    s.flush()
                return drain_from_row(row)

        return await self._run("update a drain", write)

    async def update_drain_chat(self, drain_id: int, refs: ChatRefs) -> Drain:
        """Remember where the drain's card, thread and roll-up message are; a None field keeps what is stored."""
        values = chat_changes(refs)

        def write(_attempt: int) -> Drain:
            with self._tx(write=True) as s:
                if values:
                    s.exec(update(DrainRow).where(col(DrainRow.id) == drain_id).values(**values))
                return drain_from_row(self._require_drain(s, drain_id))

        return await self._run("update a drain", write)

    async def claim_drain(self, drain_id: int, replica: str, lease_s: float) -> bool:
        """Take (or renew) the right to conduct the drain: only one replica runs a drain's waves at a time."""

        return await self._update_one(
            "claim a drain",
            lambda now: update(DrainRow)
            .where(
                col(DrainRow.id) == drain_id,
                or_(
                    col(DrainRow.owner).is_(None),
                    col(DrainRow.owner) == replica,
                    col(DrainRow.lease_until).is_(None),
                    col(DrainRow.lease_until) < now,
                ),
            )
            .values(owner=replica, lease_until=now + timedelta(seconds=lease_s)),
        )
