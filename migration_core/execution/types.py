"""What the executor hands back and the hooks it calls; no I/O here (executor.py runs, verify.py judges)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from migration_core.hypervisor.types import DomainInfo, JobStats
from migration_core.models import Decision, JobState, ProgressSample

# Persists one progress sample (the lead's service writes it to the store). Must not raise.
ProgressRecorder = Callable[[ProgressSample], Awaitable[None]]

# The injected wall clock (UTC datetimes for events and samples); monotonic time comes from the loop.
WallClock = Callable[[], datetime]


@dataclass(frozen=True)
class ControlRecord:
    """One operator control or controller action that was applied (or refused) during the run."""

    at: datetime
    actor: str
    action: str
    detail: str
    applied: bool


@dataclass(frozen=True)
class ExecutionResult:
    """How the libvirt side of a run ended, before verification.

    `outcome` is SUCCEEDED, FAILED or ABORTED. `error`/`hint` carry the translated libvirt error. `completed`
    holds the final job statistics (JOB_COMPLETED event or the completed stats), None when unreadable.
    `source`/`destination` are the VM's true state on each host right after the call returned (None when
    that host did not answer). `reattached` is True when this result came from `Executor.reattach`.
    """

    job_id: int
    outcome: JobState
    source_uri: str
    destination_uri: str
    started_at: datetime
    ended_at: datetime
    wall_s: float
    error: str | None = None
    hint: str | None = None
    completed: JobStats | None = None
    postcopy: bool = False
    aborted_by: str | None = None
    decisions: tuple[Decision, ...] = ()
    controls: tuple[ControlRecord, ...] = ()
    last_sample: ProgressSample | None = None
    source: DomainInfo | None = None
    destination: DomainInfo | None = None
    reattached: bool = False
