"""A drain's record and its live status: the approved plan, who approved it, its state, and each move's job.

Pure domain objects (frozen dataclasses, enums), like models.py. A drain (`/migrate drain hostA`) or a return
(`/migrate return hostA`) is one approval for many moves; each move runs as an ordinary job (same executor,
controller, verification and audit trail) whose idempotency key names the drain and the VM (`move_key`), so a
restarted bot finds the jobs it already created and never creates one twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from migration_core.models import NO_CHAT, Approval, ApprovalRequirement, ChatRefs, Job, JobState
from migration_core.planning.drain import DrainPlan, PlannedMove


class DrainKind(StrEnum):
    DRAIN = "drain"
    RETURN = "return"


class DrainState(StrEnum):
    """awaiting_approval -> running -> done | partially_done; cancelling -> cancelled; denied, expired, failed."""

    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    CANCELLING = "cancelling"
    DONE = "done"
    PARTIALLY_DONE = "partially_done"
    CANCELLED = "cancelled"
    DENIED = "denied"
    EXPIRED = "expired"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in FINISHED_DRAIN_STATES


FINISHED_DRAIN_STATES = frozenset(
    {
        DrainState.DONE,
        DrainState.PARTIALLY_DONE,
        DrainState.CANCELLED,
        DrainState.DENIED,
        DrainState.EXPIRED,
        DrainState.FAILED,
    }
)
# The drain owns its host's placement mark while in these states (no VM is sent to a draining host).
WORKING_DRAIN_STATES = frozenset({DrainState.RUNNING, DrainState.CANCELLING})
# A drain that emptied its host (wholly or partly): the host stays marked "drained" until a return.
COMPLETED_DRAIN_STATES = frozenset({DrainState.DONE, DrainState.PARTIALLY_DONE})

DRAIN_ALLOWED: dict[DrainState, frozenset[DrainState]] = {
    DrainState.AWAITING_APPROVAL: frozenset(
        {DrainState.RUNNING, DrainState.DENIED, DrainState.EXPIRED, DrainState.CANCELLED, DrainState.FAILED}
    ),
    DrainState.RUNNING: frozenset(
        {DrainState.CANCELLING, DrainState.DONE, DrainState.PARTIALLY_DONE, DrainState.FAILED}
    ),
    DrainState.CANCELLING: frozenset({DrainState.CANCELLED, DrainState.DONE, DrainState.PARTIALLY_DONE}),
}


def move_key(drain_id: int, vm: str) -> str:
    """The idempotency key of a drain's move: one job per (drain, VM), also across restarts and replicas."""
    return f"drain:{drain_id}:{vm}"


def drain_ref(drain_id: int) -> str:
    """How people name a drain: `D7` (jobs are plain numbers)."""
    return f"D{drain_id}"


@dataclass(frozen=True)
class Drain:
    """One drain or return request: its plan (bound by hash), approvals, state, and chat references."""

    id: int
    kind: DrainKind
    host: str
    state: DrainState
    requester: str
    plan: DrainPlan
    requirement: ApprovalRequirement
    created_at: datetime
    updated_at: datetime
    reason: str | None = None
    approvals: tuple[Approval, ...] = ()
    returns_drain: int | None = None  # a return: the drain whose moves it brings back
    skipped: Mapping[str, str] = field(default_factory=dict)  # vm -> why its move got no job
    detail: str = ""  # the last state change's explanation ("cancelled by alice", "2 VMs parked")
    chat: ChatRefs = NO_CHAT
    owner: str | None = None

    @property
    def ref(self) -> str:
        return drain_ref(self.id)

    @property
    def approvers(self) -> tuple[str, ...]:
        return tuple(a.actor for a in self.approvals if a.approved and a.plan_hash == self.plan.hash)

    @property
    def deniers(self) -> tuple[str, ...]:
        return tuple(a.actor for a in self.approvals if not a.approved)

    @property
    def title(self) -> str:
        verb = "Drain of" if self.kind is DrainKind.DRAIN else "Return to"
        return f"{verb} {self.host} ({self.ref})"


class MoveOutcome(StrEnum):
    """Where one move of a drain is, as the roll-up shows it."""

    PENDING = "pending"  # its wave has not started
    WAITING = "waiting"  # a job exists and waits (approval after a changed re-check, queue, slot)
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARKED = "parked"  # it could not move (did not converge, failed): it stays on its host, the drain goes on
    CANCELLED = "cancelled"  # the drain was cancelled before it started, or it was aborted in pre-copy
    SKIPPED = "skipped"  # a restart or a cancel found no job for it and the drain ended


@dataclass(frozen=True)
class MoveStatus:
    """One planned move and its job, if its wave has started."""

    planned: PlannedMove
    job: Job | None
    outcome: MoveOutcome
    total_s: float | None = None
    downtime_ms: float | None = None
    why: str = ""  # parked / cancelled: the reason and the next step
    phase: str | None = None  # running: pre-copy / post-copy ...
    remaining_bytes: int | None = None
    eta_s: float | None = None

    @property
    def vm(self) -> str:
        return self.planned.vm

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "job_id": self.job.id if self.job else None,
            "vm": self.vm,
            "destination": self.planned.destination,
            "wave": self.planned.wave,
            "order": self.planned.order,
            "state": self.job.state.value if self.job else MoveOutcome.PENDING.value,
            "outcome": self.outcome.value,
            "predicted_total_s": self.planned.predicted_total_s,
            "predicted_downtime_ms": self.planned.predicted_downtime_ms,
        }
        if self.outcome is MoveOutcome.SUCCEEDED:
            data["total_s"] = self.total_s
            data["downtime_ms"] = self.downtime_ms
        if self.why:
            data["why"] = self.why
        if self.outcome is MoveOutcome.RUNNING:
            data["phase"] = self.phase
            data["remaining_bytes"] = self.remaining_bytes
            data["eta_s"] = self.eta_s
        return data


@dataclass(frozen=True)
class DrainStatus:
    """A drain with every move's status: what the roll-up, `status D7` and `status D7 --json` show."""

    drain: Drain
    moves: tuple[MoveStatus, ...]
    eta_s: float | None  # remaining, None once finished
    elapsed_s: float

    def count(self, *outcomes: MoveOutcome) -> int:
        return sum(1 for m in self.moves if m.outcome in outcomes)

    @property
    def finished_moves(self) -> int:
        return self.count(MoveOutcome.SUCCEEDED, MoveOutcome.PARKED, MoveOutcome.CANCELLED, MoveOutcome.SKIPPED)

    @property
    def all_succeeded(self) -> bool:
        return self.drain.state is DrainState.DONE and all(m.outcome is MoveOutcome.SUCCEEDED for m in self.moves)

    def to_json(self) -> dict[str, Any]:
        """The `migrate-bot status D7 --json` contract for a drain (keys relied on by other tools)."""
        d = self.drain
        return {
            "kind": "drain",
            "drain_kind": d.kind.value,
            "id": d.ref,
            "host": d.host,
            "state": d.state.value,
            "requester": d.requester,
            "approvers": list(d.approvers),
            "reason": d.reason,
            "returns_drain": drain_ref(d.returns_drain) if d.returns_drain else None,
            "detail": d.detail,
            "plan_hash": d.plan.hash,
            "planned_eta_s": d.plan.eta_s,
            "eta_s": self.eta_s,
            "elapsed_s": round(self.elapsed_s, 1),
            "done": self.count(MoveOutcome.SUCCEEDED),
            "total": len(self.moves),
            "moves": [m.to_json() for m in self.moves],
            "left_behind": [lb.to_json() for lb in d.plan.left_behind],
            "created_at": d.created_at.isoformat(),
            "updated_at": d.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class CancelReport:
    """What `/migrate cancel D7` did to each move, for the thread (said within seconds, not at the end)."""

    drain: Drain
    never_started: tuple[str, ...] = ()
    aborted: tuple[str, ...] = ()
    finishing: tuple[str, ...] = ()  # in post-copy or verifying: they cannot be aborted and will finish
    already_ended: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        if self.drain.state is DrainState.CANCELLED and not (self.aborted or self.finishing):
            return f"{self.drain.ref} cancelled: nothing had started, nothing moved."
        parts = [f"{self.drain.ref} is being cancelled."]
        if self.never_started:
            parts.append(f"Not started, will not start: {', '.join(self.never_started)}.")
        if self.aborted:
            parts.append(f"Aborted in pre-copy (they stay on their host): {', '.join(self.aborted)}.")
        if self.finishing:
            parts.append(f"In post-copy, cannot be aborted, will finish: {', '.join(self.finishing)}.")
        if self.already_ended:
            parts.append(f"Already ended: {', '.join(self.already_ended)}.")
        return " ".join(parts)


PARKED_STATES = frozenset({JobState.FAILED, JobState.ABORTED, JobState.EXPIRED, JobState.DENIED})
