"""The core's service API as front ends (Slack handlers, the terminal console, the CLI) see it.

Front ends depend on this Protocol only; `migration_core.service.MigrationService` implements it. Every method
raises only `MigrateBotError` subclasses for expected failures (bad input, not allowed, wrong state); their
`str()` is the text to show the user. Job events (state changes, progress, decisions, notices, the summary) go to
the `EventSink` given to the service at construction, not through return values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Protocol

from migration_core.dispatch.policy import ApproverCheck as ApproverCheck  # front ends name these here
from migration_core.dispatch.policy import Approvers as Approvers
from migration_core.dispatch.policy import GroupCheck as GroupCheck
from migration_core.dispatch.queue import QueuePosition as QueuePosition
from migration_core.drains import CancelReport, Drain, DrainStatus
from migration_core.models import Job, MigrationOptions, MigrationRequest, Plan
from migration_core.planning.drain import DrainPlan, DrainRequest, PlacedPlan
from migration_core.store import HostLimit


@dataclass(frozen=True)
class HostStatus:
    """One inventory host, whether its libvirt answers right now, and its migration slots: how many are held in
    each direction, and the hosts file's limits."""

    name: str
    uri: str
    reachable: bool
    detail: str
    running_vms: int | None = None
    inbound_active: int = 0
    outbound_active: int = 0
    limit: HostLimit = field(default_factory=lambda: HostLimit(0, 0))  # the hosts file's max_inbound/max_outbound

    def to_json(self) -> dict[str, object]:
        """The flat record `migrate-bot hosts --json` prints (the limits as `max_inbound`, `max_outbound`)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "limit"}
        return {**data, "max_inbound": self.limit.max_inbound, "max_outbound": self.limit.max_outbound}


@dataclass(frozen=True)
class FreezeStatus:
    """One occurrence of a change freeze (policy file): in force now, or the next one of its window."""

    name: str
    start: datetime
    end: datetime
    in_force: bool
    rule: str = ""  # "weekly Mon-Fri 08:00-18:00 Europe/Berlin" for a recurring window, "" for an absolute one
    timezone: str = "UTC"


class MigrationServiceAPI(Protocol):
    """request -> preflight -> approval -> queue -> run -> verify, plus operator controls."""

    async def plan(self, request: MigrationRequest) -> Plan:
        """Preflight + prediction only; changes nothing. Raises PreflightError when hosts cannot be reached."""
        ...

    async def plan_drain(self, request: DrainRequest) -> DrainPlan:
        """The dry run of `drain <host>`: every VM placed, ordered and timed; changes nothing."""
        ...

    async def plan_any(self, vm: str, options: MigrationOptions) -> PlacedPlan:
        """`<vm> to any`: the single move's plan to the host placement chooses, with the reason."""
        ...

    # ----- drains (issue 11) -----

    async def request_drain(self, request: DrainRequest, requester: str, *, chat_channel: str | None = None) -> Drain:
        """Plan the drain and leave it awaiting approval (RequestError: unknown host, nothing can move, another
        drain of the host unfinished; PolicyError: not allowed, freeze, ticket, rate)."""
        ...

    async def plan_return(self, host: str) -> DrainPlan:
        """The dry run of `return <host>` (RequestError when there is no completed drain of it)."""
        ...

    async def request_return(
        self, host: str, requester: str, reason: str | None = None, *, chat_channel: str | None = None
    ) -> Drain: ...

    async def approve_drain(self, drain_id: int, actor: str) -> Drain:
        """One approval covers every move; the drain starts when enough are in."""
        ...

    async def deny_drain(self, drain_id: int, actor: str, reason: str | None = None) -> Drain: ...

    async def cancel_drain(self, drain_id: int, actor: str) -> CancelReport:
        """Moves not started never start, pre-copy moves are aborted, post-copy moves finish; the report says
        which is which."""
        ...

    async def get_drain(self, drain_id: int) -> Drain:
        """Raises UnknownDrainError."""
        ...

    async def drain_status(self, drain_id: int) -> DrainStatus: ...

    async def active_drains(self) -> list[DrainStatus]:
        """Drains awaiting approval or running, newest first."""
        ...

    async def recent_drains(self, limit: int = 20) -> list[Drain]: ...

    async def host_marks(self) -> dict[str, str]:
        """Hosts being drained or drained (not returned yet) -> why; placement never uses them."""
        ...

    async def set_drain_refs(
        self, drain_id: int, *, channel: str | None = None, thread: str | None = None, progress: str | None = None
    ) -> Drain:
        """Remember where the drain's card / thread / roll-up message live; None keeps what is stored."""
        ...

    async def wait_drain(self, drain_id: int, timeout_s: float | None = None) -> DrainStatus:
        """Block until the drain is finished (or the timeout passes) and return its status."""
        ...

    async def submit(
        self,
        request: MigrationRequest,
        requester: str,
        *,
        chat_channel: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Create a job, run preflight, and leave it awaiting approval (or failed when the plan has a fail).

        The same `idempotency_key` twice returns the first job (Slack retries, double submits).
        Raises PolicyError (requester not allowed, rate limit, VM already has an active job).
        """
        ...

    async def approve(self, job_id: int, actor: str) -> Job:
        """Record an approval. Self-approval, non-approvers, expired or already-decided jobs raise.
        When enough approvals are in, the job is re-checked against its plan hash and queued/started."""
        ...

    async def deny(self, job_id: int, actor: str, reason: str | None = None) -> Job: ...

    async def cancel(self, job_id: int, actor: str) -> Job:
        """Withdraw a job that has not started (awaiting approval / approved / queued)."""
        ...

    async def abort(self, job_id: int, actor: str) -> Job:
        """Abort a running migration (refused in post-copy: it would lose the VM)."""
        ...

    async def switch_postcopy(self, job_id: int, actor: str) -> Job: ...

    async def set_max_downtime(self, job_id: int, downtime_ms: int, actor: str) -> Job: ...

    async def set_bandwidth(self, job_id: int, bandwidth_mib_s: int, actor: str) -> Job: ...

    async def get_job(self, job_id: int) -> Job:
        """Raises UnknownJobError."""
        ...

    async def latest_job_for_vm(self, vm: str) -> Job | None: ...

    async def history(self, subject: str | None = None, limit: int = 20) -> list[Job]:
        """Newest first; `subject` is a VM or a host name (None = all)."""
        ...

    async def active_jobs(self) -> list[Job]:
        """Jobs not yet in a terminal state, newest first."""
        ...

    async def queue(self) -> list[QueuePosition]: ...

    async def hosts(self) -> list[HostStatus]: ...

    async def freezes(self) -> list[FreezeStatus]:
        """The change freezes in force now and the next ones (empty without a policy file)."""
        ...

    async def set_chat_refs(
        self, job_id: int, *, channel: str | None = None, thread: str | None = None, progress: str | None = None
    ) -> Job:
        """Remember where the job's card / thread / progress message live (for edits after a restart); None keeps
        what is stored."""
        ...

    async def wait(self, job_id: int, timeout_s: float | None = None) -> Job:
        """Block until the job reaches a terminal state (or the timeout passes) and return it."""
        ...
