"""Events the core emits about a job, and the sink interface that Slack and the console implement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from migration_core.models import Decision, JobState, ProgressSample, VerificationSummary

if TYPE_CHECKING:  # the drain types import the planner; the events only carry them
    from migration_core.drains import DrainStatus, MoveStatus


class NoticeKind(StrEnum):
    """Important moments that deserve their own message (a thread reply in Slack)."""

    INFO = "info"
    STALLED = "stalled"
    POSTCOPY = "postcopy"
    CONTROL = "control"
    QUEUED = "queued"
    FAILURE = "failure"


@dataclass(frozen=True)
class StateChanged:
    """The job moved from `old` to `new` (persisted before this is emitted)."""

    job_id: int
    old: JobState | None
    new: JobState
    actor: str | None
    detail: str
    at: datetime
    approvers: tuple[str, ...] = ()  # everyone whose approval binds the job's plan now ("approved by a and b")


@dataclass(frozen=True)
class ProgressUpdated:
    """A new progress reading for a running job."""

    sample: ProgressSample


@dataclass(frozen=True)
class DecisionMade:
    """The convergence controller acted (anything but CONTINUE)."""

    job_id: int
    decision: Decision
    at: datetime


@dataclass(frozen=True)
class Notice:
    """A human-readable notice: a stall, a post-copy switch, an operator control, a failure."""

    job_id: int
    kind: NoticeKind
    text: str
    at: datetime


@dataclass(frozen=True)
class SummaryReady:
    """The final verification summary of a job."""

    summary: VerificationSummary


@dataclass(frozen=True)
class DrainChanged:
    """A drain changed state (requested, approved, running, cancelling, finished) or gained an approval."""

    status: DrainStatus
    actor: str | None
    detail: str
    at: datetime


@dataclass(frozen=True)
class DrainRollup:
    """The drain's periodic roll-up while it runs (N of M done, each running VM, the ETA): edit in place."""

    status: DrainStatus
    at: datetime


@dataclass(frozen=True)
class DrainMoveEnded:
    """One move of a drain ended (succeeded, parked with the reason, cancelled): a line in the thread."""

    status: DrainStatus
    move: MoveStatus
    at: datetime


DrainEvent = DrainChanged | DrainRollup | DrainMoveEnded
JobEvent = (
    StateChanged | ProgressUpdated | DecisionMade | Notice | SummaryReady | DrainChanged | DrainRollup | DrainMoveEnded
)


class EventSink(Protocol):
    """Receives job events. Implementations must not raise; they must not block the event loop for long."""

    async def emit(self, event: JobEvent) -> None: ...


class FanoutSink:
    """Sends every event to several sinks; one failing sink never stops the others."""

    def __init__(self, *sinks: EventSink) -> None:
        self._sinks = list(sinks)

    def add(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    async def emit(self, event: JobEvent) -> None:
        import logging

        for sink in list(self._sinks):
            try:
                await sink.emit(event)
            except Exception:  # a broken front end must not break a migration
                logging.getLogger(__name__).exception("event sink %r failed on %r", sink, type(event).__name__)


class RecordingSink:
    """Keeps every event in order (tests and the console's `wait` use it)."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    async def emit(self, event: JobEvent) -> None:
        self.events.append(event)
