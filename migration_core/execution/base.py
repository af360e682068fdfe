"""The executor's shared state and event plumbing (the run record, notices, progress, controls' records).

executor.py (running and watching) and executor_controls.py (operator controls) both build on `ExecutorBase`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from migration_core.errors import HypervisorError, StateError
from migration_core.events import EventSink, JobEvent, Notice, NoticeKind, ProgressUpdated
from migration_core.execution.convergence import ControllerState, ConvergenceController
from migration_core.execution.prep import Route
from migration_core.execution.progress import ProgressTracker
from migration_core.execution.types import ControlRecord, ProgressRecorder, WallClock
from migration_core.hypervisor.port import HypervisorPort
from migration_core.hypervisor.types import DomainInfo, DomainState
from migration_core.inventory.hosts import Inventory
from migration_core.models import Decision, Plan, ProgressSample

log = logging.getLogger("migration_core.execution.executor")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunState:
    """The mutable state of one running job (only the executor touches it, on the event loop)."""

    job_id: int
    plan: Plan
    route: Route
    controller: ConvergenceController | None
    state: ControllerState | None
    tracker: ProgressTracker
    started_at: datetime
    postcopy: bool = False
    aborted_by: str | None = None
    active: bool = True
    call_started: bool = False  # the migrate call went to libvirt (before that, an abort just stops the start)
    abort_pending: bool = False  # an abort came before libvirt showed the job: sent at the first active reading
    stalled_notified: bool = False
    decisions: list[Decision] = field(default_factory=list)
    controls: list[ControlRecord] = field(default_factory=list)


class ExecutorBase:
    """Fields and helpers shared by the executor's parts."""

    def __init__(
        self,
        hypervisor: HypervisorPort,
        inventory: Inventory,
        sink: EventSink,
        clock: WallClock | None = None,
        *,
        record_progress: ProgressRecorder | None = None,
        poll_interval_s: float = 0.5,
    ) -> None:
        self.hypervisor = hypervisor
        self.inventory = inventory
        self.sink = sink
        self.clock: WallClock = clock or _utcnow
        self.record_progress = record_progress
        self.poll_interval_s = poll_interval_s
        self._runs: dict[int, RunState] = {}

    def running(self, job_id: int) -> bool:
        """Whether this executor is watching a migration for that job right now."""
        run = self._runs.get(job_id)
        return run is not None and run.active

    def _active(self, job_id: int, what: str) -> RunState:
        run = self._runs.get(job_id)
        if run is None or not run.active:
            raise StateError(
                f"job {job_id} has no migration running here, so it cannot {what}",
                "it may have finished already: see its summary",
            )
        return run

    async def _state(self, uri: str, vm: str) -> DomainInfo | None:
        try:
            return await self.hypervisor.domain(uri, vm)
        except HypervisorError as err:
            log.warning("reading %s on %s failed: %s", vm, uri, err)
            return None

    async def _both_states(
        self, r: Route, wait_s: float = 30.0, *, failed: bool = False
    ) -> tuple[DomainInfo | None, DomainInfo | None]:
        """The VM on the source and on the destination. A host that does not answer (its libvirtd restarting,
        a blip) is asked again every second for up to `wait_s`: an outcome judged on a gap would be a guess
        ("cannot tell how it ended") where waiting a few seconds gives the truth. None: still no answer.

        When the migration `failed` and the source shows the VM running (not paused), the answer is already
        known: a destination QEMU only runs the guest after the source has paused it for good, so a silent
        destination (its daemon killed, say) is not waited for.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        src, dst = await self._state(r.source.uri, r.vm), await self._state(r.destination.uri, r.vm)

        def settled_on_source() -> bool:
            return failed and src is not None and src.state is DomainState.RUNNING and not src.postcopy_failed

        while (src is None or dst is None) and loop.time() < deadline and not (dst is None and settled_on_source()):
            await asyncio.sleep(1.0)
            src = src or await self._state(r.source.uri, r.vm)
            dst = dst or await self._state(r.destination.uri, r.vm)
        return src, dst

    async def _control(
        self,
        run: RunState,
        actor: str,
        action: str,
        detail: str,
        *,
        applied: bool = True,
        kind: NoticeKind = NoticeKind.CONTROL,
    ) -> None:
        run.controls.append(ControlRecord(self.clock(), actor, action, detail, applied))
        await self._notice(run, kind, f"{actor}: {detail}")

    # ----- events ----------------------------------------------------------------------------------------

    async def _progress(self, sample: ProgressSample) -> None:
        await self._emit(ProgressUpdated(sample))
        if self.record_progress is not None:
            try:
                await self.record_progress(sample)
            except Exception:  # persisting progress must never break the migration
                log.exception("recording progress of job %s failed", sample.job_id)

    async def _notice(self, run: RunState, kind: NoticeKind, text: str) -> None:
        await self._emit(Notice(run.job_id, kind, text, self.clock()))

    async def _emit(self, event: JobEvent) -> None:
        try:
            await self.sink.emit(event)
        except Exception:  # sinks must not raise; if one does, the migration goes on
            log.exception("event sink failed on %s", type(event).__name__)
