"""Runs an approved plan through libvirt: start, watch, steer, control, and report how it really ended.

`Executor.run(job_id, plan)`: pre-create copy-storage images (executor_prep), set the first max downtime,
start the migration (P2P `migrateToURI3` on its own thread: it survives the bot's death), poll job stats
every `poll_interval_s`, turn them into progress samples (progress.ProgressTracker: monotonic %, a stall
signal) and into convergence decisions (convergence.ConvergenceController: downtime ramp, post-copy switch,
abort), apply them, and map libvirt's answer to SUCCEEDED / FAILED / ABORTED with the completed-job stats
and the VM's true state on both hosts. `reattach` does the same for a migration started by an earlier bot
process (restart recovery). Operator controls (`abort`, `switch_postcopy`, `set_max_downtime`,
`set_bandwidth`) are checked against the run's state and reported as Notices with the actor.

Events: ProgressUpdated for every sample, DecisionMade + Notice for every controller action, Notice for
stalls, controls and failures. State changes and the summary are the service's (it owns the job record).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from migration_core.convergence import ControllerState, ConvergenceController
from migration_core.errors import HypervisorError, MigrateBotError, RequestError, StateError
from migration_core.events import (
    DecisionMade,
    EventSink,
    JobEvent,
    Notice,
    NoticeKind,
    ProgressUpdated,
    SummaryReady,
)
from migration_core.executor_outcome import true_outcome
from migration_core.executor_prep import Route, prepare_storage, route
from migration_core.executor_types import ControlRecord, ExecutionResult, ProgressRecorder, WallClock
from migration_core.hypervisor import Hypervisor
from migration_core.hypervisor_types import DomainInfo, DomainNotFound, JobAborted, JobStats
from migration_core.inventory import Inventory
from migration_core.models import (
    ControlAction,
    Decision,
    JobState,
    Plan,
    ProgressSample,
    VerificationSummary,
)
from migration_core.progress import JobType, ProgressTracker, observation_from, parse_job_stats
from migration_core.verify import verify

log = logging.getLogger(__name__)
MIB = 1024 * 1024


def _stall_text(sample: ProgressSample) -> str:
    left, speed = sample.data_remaining_bytes / MIB, sample.throughput_mib_s
    return (
        f"no progress for {sample.stalled_for_s:.0f} s: {left:.0f} MiB still to send at {speed:.1f} MiB/s "
        "(the guest dirties memory about as fast as it is sent)"
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Run:
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
    stalled_notified: bool = False
    decisions: list[Decision] = field(default_factory=list)
    controls: list[ControlRecord] = field(default_factory=list)


class Executor:
    """Runs plans on the hosts of one inventory; one instance serves many concurrent jobs."""

    def __init__(
        self,
        hypervisor: Hypervisor,
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
        self._runs: dict[int, _Run] = {}

    # ----- running ---------------------------------------------------------------------------------------

    def running(self, job_id: int) -> bool:
        """Whether this executor is watching a migration for that job right now."""
        run = self._runs.get(job_id)
        return run is not None and run.active

    async def run(self, job_id: int, plan: Plan) -> ExecutionResult:
        """Execute the plan to the end. Expected failures come back as the result, never as an exception
        (only a plan that cannot run at all raises: StateError, or InventoryError for an unknown host)."""
        if not plan.executable:
            names = ", ".join(c.name for c in plan.failures)
            raise StateError(f"job {job_id}'s plan has failing checks ({names})", "fix them and re-plan")
        return await self._execute(job_id, plan)

    async def recover_postcopy(self, job_id: int, plan: Plan, actor: str) -> ExecutionResult:
        """Resume a broken post-copy migration (link cut, daemon restart) with VIR_MIGRATE_POSTCOPY_RESUME.

        Run it once the link is back. The VM must be in post-copy failed on the source; the same flags and
        params are replayed with POSTCOPY_RESUME added (libvirt 8.5+), then watched to the end like `run`.
        """
        r = route(plan, self.inventory, self.hypervisor)
        src = await self.hypervisor.domain(r.source.uri, r.vm)
        if not src.postcopy_failed:
            raise StateError(
                f"{plan.request.vm} on {r.source.name} is {src.describe()}, not in a failed post-copy",
                "post-copy recovery only applies to a post-copy migration that broke",
            )
        await self._emit(
            Notice(
                job_id,
                NoticeKind.POSTCOPY,
                f"{actor}: resuming the broken post-copy migration (POSTCOPY_RESUME)",
                self.clock(),
            )
        )
        return await self._execute(job_id, plan, resume=True)

    async def _execute(self, job_id: int, plan: Plan, *, resume: bool = False) -> ExecutionResult:
        if job_id in self._runs:
            raise StateError(f"job {job_id} is already running", "watch its thread, or abort it first")
        r = route(plan, self.inventory, self.hypervisor)
        if resume:
            r = replace(r, flags=(*r.flags, "VIR_MIGRATE_POSTCOPY_RESUME"))
        run = self._new_run(job_id, plan, r)
        run.postcopy = resume
        self._runs[job_id] = run
        error: MigrateBotError | None = None
        try:
            await self._same_vm(plan, r)
            self.hypervisor.forget_completed(plan.vm_uuid)
            if not resume:
                for disk in await prepare_storage(self.hypervisor, r):
                    if disk.action == "created":
                        text = f"pre-created {disk.path} on {r.destination.name} for the copy of {disk.target}"
                        await self._notice(run, NoticeKind.INFO, text)
            if run.controller is not None and not resume:
                await self.hypervisor.set_max_downtime(r.source.uri, r.vm, run.controller.initial_downtime_ms)
            task = asyncio.ensure_future(
                self.hypervisor.migrate(
                    r.source.uri,
                    r.vm,
                    flags=r.flags,
                    params=r.params,
                    peer_uri=r.destination.peer_uri,
                    destination_uri=r.destination.uri,
                    destination=r.destination.name,
                )
            )
            await self._watch(run, task)
            await task
        except MigrateBotError as err:
            error = err
        finally:
            run.active = False
            self._runs.pop(job_id, None)
        return await self._finish(run, error)

    async def reattach(self, job_id: int, plan: Plan) -> ExecutionResult:
        """Restart recovery: watch a migration an earlier process started, or find out how it ended.

        The source's job type tells whether it still runs (then it is watched and steered to the end, like
        `run`); when it is over, Nova's heuristic decides: job none and the VM still active on the source ->
        failed; gone from the source and running on the destination -> succeeded (executor_outcome).
        """
        r = route(plan, self.inventory, self.hypervisor)
        run = self._new_run(job_id, plan, r)
        src = await self._state(r.source.uri, r.vm)
        run.postcopy = src is not None and (src.in_postcopy or src.postcopy_failed)
        self._runs[job_id] = run
        try:
            await self._watch(run, None)
        finally:
            run.active = False
            self._runs.pop(job_id, None)
        return await self._finish(run, None, reattached=True)

    async def _same_vm(self, plan: Plan, r: Route) -> None:
        """The plan names the VM; its UUID proves the source still has the VM that was approved."""
        info = await self.hypervisor.domain(r.source.uri, r.vm)
        if plan.vm_uuid and info.present and info.uuid.lower() != plan.vm_uuid.lower():
            raise StateError(
                f"{r.vm} on {r.source.name} has UUID {info.uuid}, not {plan.vm_uuid} as when it was planned",
                "the VM was replaced since the approval: plan and approve the migration again",
            )

    def _new_run(self, job_id: int, plan: Plan, r: Route) -> _Run:
        controller = None
        if r.live:
            controller = ConvergenceController(plan.policy, memory_bytes=plan.vm_memory_bytes)
        stall_after = min(15.0, plan.policy.stall_timeout_s)
        return _Run(
            job_id=job_id,
            plan=plan,
            route=r,
            controller=controller,
            state=controller.initial_state() if controller else None,
            tracker=ProgressTracker(job_id, stall_after_s=stall_after),
            started_at=self.clock(),
        )

    async def _watch(self, run: _Run, task: asyncio.Future[None] | None) -> None:
        """Poll until the migration call returns (`task`) or, when reattached, until the job is gone."""
        idle_polls = 0
        downtime_set = False
        while True:
            if task is not None:
                await asyncio.wait({task}, timeout=self.poll_interval_s)
                if task.done():
                    return
            else:
                await asyncio.sleep(self.poll_interval_s)
            stats = await self._poll(run)
            if stats is None or not stats.active:
                idle_polls += 1
                if task is None and idle_polls >= 2:
                    return  # reattached: no job on the source any more
                continue
            idle_polls = 0
            if not downtime_set and run.state is not None:
                # libvirt may reset migration parameters when the job starts: set the ramp's value again.
                downtime_set = await self._apply_quietly(
                    run,
                    self.hypervisor.set_max_downtime(run.route.source.uri, run.route.vm, run.state.downtime_ms),
                )
            await self._step(run, stats)

    async def _poll(self, run: _Run) -> JobStats | None:
        try:
            return await self.hypervisor.job_stats(run.route.source.uri, run.route.vm)
        except DomainNotFound:
            return None  # undefined on the source: the migration has just finished
        except HypervisorError as err:
            # e.g. "not running" for the instant between the end of the job and the undefine: not news.
            log.debug("job %s: reading job stats failed: %s", run.job_id, err)
            return None

    async def _step(self, run: _Run, stats: JobStats) -> None:
        try:
            reading = parse_job_stats({"type": int(stats.job_type), **stats.values})
        except HypervisorError as err:  # nonsense numbers: skip this sample, keep watching
            log.warning("job %s: %s", run.job_id, err)
            return
        if reading is None:
            return
        now = self.clock()
        sample = run.tracker.update(reading, now, postcopy_active=run.postcopy)
        if sample is None:
            return
        await self._progress(sample)
        if sample.stalled and not run.stalled_notified:
            run.stalled_notified = True
            await self._notice(
                run,
                NoticeKind.STALLED,
                _stall_text(sample),
            )
        elif not sample.stalled:
            run.stalled_notified = False
        if run.controller is None or run.state is None:
            return
        obs = observation_from(reading, sample.phase, now.timestamp())
        new_state, decision = run.controller.decide(run.state, obs)
        if decision.action is ControlAction.CONTINUE:
            run.state = new_state
            return
        if await self._apply(run, decision):
            run.state = new_state
            run.decisions.append(decision)
            await self._emit(DecisionMade(run.job_id, decision, self.clock()))
            kind = {
                ControlAction.SWITCH_POSTCOPY: NoticeKind.POSTCOPY,
                ControlAction.ABORT: NoticeKind.FAILURE,
            }
            await self._notice(run, kind.get(decision.action, NoticeKind.INFO), decision.reason)

    async def _apply(self, run: _Run, decision: Decision) -> bool:
        """Carry out a controller decision; a failure (e.g. the job just ended) is reported, not raised."""
        hv, uri, vm = self.hypervisor, run.route.source.uri, run.route.vm
        if decision.action is ControlAction.RAISE_DOWNTIME and decision.downtime_ms is not None:
            return await self._apply_quietly(run, hv.set_max_downtime(uri, vm, decision.downtime_ms))
        if decision.action is ControlAction.SWITCH_POSTCOPY:
            ok = await self._apply_quietly(run, hv.start_postcopy(uri, vm))
            run.postcopy = run.postcopy or ok
            return ok
        if decision.action is ControlAction.ABORT and not run.postcopy:
            run.aborted_by = run.aborted_by or "convergence controller"
            return await self._apply_quietly(run, hv.abort_job(uri, vm))
        return False

    async def _apply_quietly(self, run: _Run, call: Awaitable[None]) -> bool:
        try:
            await call
        except HypervisorError as err:
            await self._notice(run, NoticeKind.INFO, f"could not apply the controller's decision: {err}")
            return False
        return True

    # ----- the end ---------------------------------------------------------------------------------------

    async def _finish(self, run: _Run, error: MigrateBotError | None, *, reattached: bool = False) -> ExecutionResult:
        r, hv = run.route, self.hypervisor
        completed = await hv.completed_job_stats(
            run.plan.vm_uuid or r.vm,
            source_uri=r.source.uri,
            destination_uri=r.destination.uri,
            wait_s=1.0 if error is None else 0.2,
        )
        src, dst = await self._state(r.source.uri, r.vm), await self._state(r.destination.uri, r.vm)
        if reattached:
            outcome, message = true_outcome(run.plan, src, dst, completed)
            hint = None
        elif error is None:
            outcome, message, hint = JobState.SUCCEEDED, None, None
        elif isinstance(error, JobAborted) or run.aborted_by:
            run.aborted_by = run.aborted_by or "someone outside migrate-bot (virsh domjobabort?)"
            why = next((d.reason for d in reversed(run.decisions) if d.action is ControlAction.ABORT), None)
            outcome = JobState.ABORTED
            message = f"aborted by {run.aborted_by}" + (f": {why}" if why else "") + f" (libvirt: {error.message})"
            hint = f"in pre-copy an abort leaves {run.plan.request.vm} running on {r.source.name}"
        else:
            outcome, message, hint = JobState.FAILED, error.message, error.hint
            if completed is not None and completed.errmsg and completed.errmsg not in message:
                message = f"{message}; QEMU/libvirt said: {completed.errmsg}"
        if outcome is JobState.SUCCEEDED:
            final = None
            if completed is not None:
                try:
                    final = parse_job_stats(dict(completed.values), default_type=JobType.COMPLETED)
                except HypervisorError:
                    final = None
            await self._progress(run.tracker.finish(self.clock(), final))
        elif message:
            await self._notice(run, NoticeKind.FAILURE, message + (f" ({hint})" if hint else ""))
        ended = self.clock()
        return ExecutionResult(
            job_id=run.job_id,
            outcome=outcome,
            source_uri=r.source.uri,
            destination_uri=r.destination.uri,
            started_at=run.started_at,
            ended_at=ended,
            wall_s=(ended - run.started_at).total_seconds(),
            error=message,
            hint=hint,
            completed=completed,
            postcopy=run.postcopy,
            aborted_by=run.aborted_by,
            decisions=tuple(run.decisions),
            controls=tuple(run.controls),
            last_sample=run.tracker.last,
            source=src,
            destination=dst,
            reattached=reattached,
        )

    async def summarize(self, plan: Plan, result: ExecutionResult) -> VerificationSummary:
        """Verify the outcome on both hosts (verify.verify) and emit the SummaryReady event."""
        summary = await verify(plan, self.hypervisor, result)
        await self._emit(SummaryReady(summary))
        return summary

    async def _state(self, uri: str, vm: str) -> DomainInfo | None:
        try:
            return await self.hypervisor.domain(uri, vm)
        except HypervisorError as err:
            log.warning("reading %s on %s failed: %s", vm, uri, err)
            return None

    # ----- operator controls -----------------------------------------------------------------------------

    def _active(self, job_id: int, what: str) -> _Run:
        run = self._runs.get(job_id)
        if run is None or not run.active:
            raise StateError(
                f"job {job_id} has no migration running here, so it cannot {what}",
                "it may have finished already: see its summary",
            )
        return run

    async def abort(self, job_id: int, actor: str) -> None:
        """Cancel a pre-copy migration; the VM keeps running on the source. Refused in post-copy."""
        run = self._active(job_id, "be aborted")
        if run.postcopy:
            await self._control(run, actor, "abort", "refused: the migration is in post-copy", applied=False)
            raise StateError(
                f"job {job_id} is in post-copy: the VM already runs on {run.route.destination.name} and part "
                f"of its memory is still on {run.route.source.name}; aborting now would lose the VM",
                "let it finish; if the link broke, recover with post-copy resume",
            )
        run.aborted_by = actor
        await self.hypervisor.abort_job(run.route.source.uri, run.route.vm)
        await self._control(run, actor, "abort", "abort requested; the VM stays on the source")

    async def switch_postcopy(self, job_id: int, actor: str) -> None:
        """Switch to post-copy now (only when the plan enabled it with VIR_MIGRATE_POSTCOPY)."""
        run = self._active(job_id, "switch to post-copy")
        if "POSTCOPY" not in run.route.flag_set:
            raise StateError(
                f"job {job_id} was not started with post-copy enabled, so it cannot switch",
                "abort it and migrate again with --postcopy",
            )
        if run.postcopy:
            raise StateError(f"job {job_id} is already in post-copy", "nothing to do: it will finish on its own")
        await self.hypervisor.start_postcopy(run.route.source.uri, run.route.vm)
        run.postcopy = True
        if run.controller is not None and run.state is not None:
            run.state = run.controller.note_postcopy_requested(run.state, self.clock().timestamp())
        await self._control(
            run,
            actor,
            "switch_postcopy",
            "switched to post-copy: the VM now runs on the destination; it can no longer be aborted",
            kind=NoticeKind.POSTCOPY,
        )

    async def set_max_downtime(self, job_id: int, downtime_ms: int, actor: str) -> None:
        """Set the max downtime (ms) of a pre-copy migration; the controller's ramp continues from it."""
        if downtime_ms <= 0:
            raise RequestError(f"max downtime must be positive, not {downtime_ms} ms", "e.g. 300ms or 1s")
        run = self._active(job_id, "change its max downtime")
        if run.postcopy:
            raise StateError(f"job {job_id} is in post-copy: the max downtime no longer applies", "")
        await self.hypervisor.set_max_downtime(run.route.source.uri, run.route.vm, downtime_ms)
        if run.controller is not None and run.state is not None:
            run.state = run.controller.note_downtime(run.state, downtime_ms)
        await self._control(run, actor, "set_max_downtime", f"max downtime set to {downtime_ms} ms")

    async def set_bandwidth(self, job_id: int, bandwidth_mib_s: int, actor: str) -> None:
        """Cap the migration bandwidth (MiB/s); in post-copy the post-copy cap is set."""
        if bandwidth_mib_s <= 0:
            raise RequestError(f"bandwidth must be positive, not {bandwidth_mib_s} MiB/s", "e.g. 100M or 1G")
        run = self._active(job_id, "change its bandwidth")
        await self.hypervisor.set_max_speed(run.route.source.uri, run.route.vm, bandwidth_mib_s, postcopy=run.postcopy)
        phase = "post-copy" if run.postcopy else "pre-copy"
        await self._control(run, actor, "set_bandwidth", f"{phase} bandwidth capped at {bandwidth_mib_s} MiB/s")

    async def _control(
        self,
        run: _Run,
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

    async def _notice(self, run: _Run, kind: NoticeKind, text: str) -> None:
        await self._emit(Notice(run.job_id, kind, text, self.clock()))

    async def _emit(self, event: JobEvent) -> None:
        try:
            await self.sink.emit(event)
        except Exception:  # sinks must not raise; if one does, the migration goes on
            log.exception("event sink failed on %s", type(event).__name__)
