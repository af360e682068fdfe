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
from dataclasses import replace

from migration_core.errors import (
    DomainNotFound,
    HostUnreachable,
    HypervisorError,
    JobAborted,
    MigrateBotError,
    StateError,
)
from migration_core.events import (
    DecisionMade,
    Notice,
    NoticeKind,
    SummaryReady,
)
from migration_core.execution.base import RunState
from migration_core.execution.cleanup import remove_source_copies
from migration_core.execution.controls import ControlsMixin
from migration_core.execution.convergence import ConvergenceController, Observation
from migration_core.execution.outcome import true_outcome
from migration_core.execution.prep import Route, prepare_storage, route
from migration_core.execution.progress import ProgressTracker, announced_eta
from migration_core.execution.start_evidence import StartEvidence, start_evidence
from migration_core.execution.types import ExecutionResult
from migration_core.execution.verify import verify
from migration_core.hypervisor.jobstats import parse_job_stats, reading_from_job_stats
from migration_core.hypervisor.types import JobStats, JobType
from migration_core.models import (
    CheckStatus,
    ControlAction,
    Decision,
    JobState,
    Plan,
    ProgressSample,
    VerificationSummary,
)
from migration_core.units import MIB

log = logging.getLogger(__name__)


def _stall_text(sample: ProgressSample) -> str:
    left, speed = sample.data_remaining_bytes / MIB, sample.throughput_mib_s
    return (
        f"no progress for {sample.stalled_for_s:.0f} s: {left:.0f} MiB still to send at {speed:.1f} MiB/s "
        "(the guest dirties memory about as fast as it is sent)"
    )


class Executor(ControlsMixin):
    """Runs plans on the hosts of one inventory; one instance serves many concurrent jobs.

    `Executor(hypervisor, inventory, sink, clock=None, *, record_progress=None, poll_interval_s=0.5)`.
    """

    async def run(self, job_id: int, plan: Plan) -> ExecutionResult:
        """Execute the plan to the end. Expected failures come back as the result, never as an exception
        (only a plan that cannot run at all raises: StateError, or InventoryError for an unknown host)."""
        if not plan.executable:
            names = ", ".join(c.name for c in plan.failures)
            raise StateError(f"job {job_id}'s plan has failing checks ({names})", "fix them and re-plan")
        return await self._execute(job_id, plan)

    async def recover_postcopy(self, job_id: int, plan: Plan, actor: str, *, settle_s: float = 15.0) -> ExecutionResult:
        """Finish a post-copy migration that broke (link cut, daemon restart). Run it once the link is back.

        What libvirt 9.0 + QEMU 7.2 did in the lab: when the link comes back while QEMU's TCP streams are
        still alive, QEMU carries on and the migration completes although libvirt reported it failed; when
        both ends have given up, both sit in "post-copy failed" and VIR_MIGRATE_POSTCOPY_RESUME (the same
        flags and params again) completes it. So: give the source `settle_s` to leave "post-copy failed" on
        its own (then the true outcome is reported, as after a restart); otherwise pause the source's QEMU
        (it may still think the stream lives, and then refuses to resume), wait for the destination to notice,
        resume, and watch it to the end like `run`.
        """
        r = route(plan, self.inventory, self.hypervisor)
        src = await self.hypervisor.domain(r.source.uri, r.vm)
        if not (src.postcopy_failed or src.in_postcopy):
            raise StateError(
                f"{plan.request.vm} on {r.source.name} is {src.describe()}, not in a broken post-copy",
                "post-copy recovery only applies to a post-copy migration that broke",
            )
        if src.postcopy_failed and not await self._peer_reachable(r):
            raise HostUnreachable(
                f"{r.source.name} cannot reach {r.destination.name} yet, so the post-copy migration of "
                f"{plan.request.vm} cannot be resumed; nothing was touched",
                "restore the link between the hosts; the resume is tried again",
            )
        deadline = asyncio.get_running_loop().time() + settle_s
        while src.postcopy_failed and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.5)
            src = await self.hypervisor.domain(r.source.uri, r.vm)
        if not src.postcopy_failed:
            text = f"{actor}: the post-copy migration carried on by itself once the link was back; checking"
            await self._emit(Notice(job_id, NoticeKind.POSTCOPY, text, self.clock()))
            return await self.reattach(job_id, plan)
        try:
            await self.hypervisor.pause_postcopy(r.source.uri, r.vm)
        except HypervisorError as err:  # already paused: fine
            log.debug("job %s: pausing post-copy before the resume: %s", job_id, err)
        await self._await_destination_failed(r)
        text = f"{actor}: resuming the broken post-copy migration (POSTCOPY_RESUME)"
        await self._emit(Notice(job_id, NoticeKind.POSTCOPY, text, self.clock()))
        return await self._execute(job_id, plan, resume=True)

    async def _peer_reachable(self, r: Route) -> bool:
        """Does the source's libvirtd reach the destination's again? Asked the harmless way, before anything is
        paused: a resume attempt. The source daemon dials the destination's first, so while the link is down
        it fails with "cannot reach" and touches nothing; once the link is up it fails with "QEMU reports
        migration is still running" (the stream is not paused yet) or, if the stream was already paused,
        resumes and finishes. Never pause while the link is down: in the lab (QEMU 7.2) the destination's
        QEMU crashed when the link came back, and a reset stream crashes it too (docs/reliability.md)."""
        try:
            await self.hypervisor.migrate(r.source.uri, r.vm, r.call("VIR_MIGRATE_POSTCOPY_RESUME"))
        except HostUnreachable as err:
            log.info("post-copy recovery of %s: %s", r.vm, err.message)
            return False
        except HypervisorError as err:
            log.info("post-copy recovery of %s: the hosts reach each other (%s)", r.vm, err.message)
        return True

    async def _await_destination_failed(self, r: Route, wait_s: float = 90.0) -> None:
        """libvirt resumes only when both ends know the post-copy broke; the destination learns it when the
        migration stream or the daemons' connection drops (after the link is back, or by keepalive)."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while asyncio.get_running_loop().time() < deadline:
            dst = await self._state(r.destination.uri, r.vm)
            if dst is None or dst.postcopy_failed or not dst.active:
                return
            await asyncio.sleep(0.5)

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
        goes_on = False
        try:
            await self._same_vm(plan, r)
            self.hypervisor.forget_completed(plan.vm_uuid)
            if not resume:
                for disk in await prepare_storage(self.hypervisor, r):
                    if disk.action in ("created", "replaced"):
                        stale = " (replacing a stale copy left there earlier)" if disk.action == "replaced" else ""
                        text = (
                            f"pre-created a thin {disk.path} on {r.destination.name} for the copy of {disk.target}"
                            + stale
                        )
                        await self._notice(run, NoticeKind.INFO, text)
            if run.controller is not None and not resume:
                await self.hypervisor.set_max_downtime(r.source.uri, r.vm, run.controller.initial_downtime_ms)
            if run.aborted_by:  # an operator aborted while the run was being prepared: libvirt never starts it
                raise JobAborted("the abort came before the migration started; nothing was sent")
            task = asyncio.ensure_future(self.hypervisor.migrate(r.source.uri, r.vm, r.call()))
            run.call_started = True
            # If this run is cancelled (replica stopping, lease lost), the call's end is nobody's business.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            await self._watch(run, task)
            await task
        except MigrateBotError as err:
            error = err
            # The call lost its connection, but a peer-to-peer migration is the source daemon's: if the source
            # still runs it (the bot's own link blipped), watch it to the end instead of reporting a failure.
            goes_on = run.call_started and isinstance(err, HostUnreachable) and await self._goes_on_without_us(run)
            if goes_on:
                text = f"lost the connection during the migration ({err.message}); libvirt carries on: watching it"
                await self._notice(run, NoticeKind.INFO, text)
                await self._watch(run, None)
        finally:
            run.active = False
            self._runs.pop(job_id, None)
        return await self._finish(run, None if goes_on else error, reattached=goes_on)

    async def _goes_on_without_us(self, run: RunState, wait_s: float = 30.0) -> bool:
        """After a lost connection: does the source (once it answers again) still run the migration job?"""
        deadline = asyncio.get_running_loop().time() + wait_s
        while await self._state(run.route.source.uri, run.route.vm) is None:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(1.0)
        stats = await self._poll(run)
        return stats is not None and stats.active and not await self._postcopy_broke(run)

    async def reattach(self, job_id: int, plan: Plan) -> ExecutionResult:
        """Restart recovery: watch a migration an earlier process started, or find out how it ended.

        The source's job type tells whether it still runs (then it is watched and steered to the end, like
        `run`); when it is over, Nova's heuristic decides: job none and the VM still active on the source ->
        failed; gone from the source and running on the destination -> succeeded (executor_outcome).
        """
        r = route(plan, self.inventory, self.hypervisor)
        run = self._new_run(job_id, plan, r)
        run.call_started = True  # libvirt already runs it: an abort goes to libvirt
        src = await self._state(r.source.uri, r.vm)
        run.postcopy = src is not None and (src.in_postcopy or src.postcopy_failed)
        self._runs[job_id] = run
        try:
            await self._watch(run, None)
        finally:
            run.active = False
            self._runs.pop(job_id, None)
        return await self._finish(run, None, reattached=True)

    async def start_evidence(self, plan: Plan) -> StartEvidence:
        """Restart recovery: do the hosts prove that `plan`'s migration never started (execution/start_evidence)?"""
        return await start_evidence(self.hypervisor, self.inventory, plan)

    async def _same_vm(self, plan: Plan, r: Route) -> None:
        """The plan names the VM; its UUID proves the source still has the VM that was approved."""
        info = await self.hypervisor.domain(r.source.uri, r.vm)
        if plan.vm_uuid and info.present and info.uuid.lower() != plan.vm_uuid.lower():
            raise StateError(
                f"{r.vm} on {r.source.name} has UUID {info.uuid}, not {plan.vm_uuid} as when it was planned",
                "the VM was replaced since the approval: plan and approve the migration again",
            )

    def _new_run(self, job_id: int, plan: Plan, r: Route) -> RunState:
        """A fresh run's state: controller (live moves), progress tracker seeded with the card's estimate."""
        controller = None
        if r.live:
            controller = ConvergenceController(plan.policy, memory_bytes=plan.vm_memory_bytes)
        stall_after = min(15.0, plan.policy.stall_timeout_s)
        return RunState(
            job_id=job_id,
            plan=plan,
            route=r,
            controller=controller,
            state=controller.initial_state() if controller else None,
            tracker=ProgressTracker(job_id, stall_after_s=stall_after, announced=announced_eta(plan)),
            started_at=self.clock(),
        )

    async def _watch(self, run: RunState, task: asyncio.Future[None] | None) -> None:
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
            if run.abort_pending:  # an operator's abort that came before libvirt showed the job
                run.abort_pending = False
                await self._apply_quietly(run, self.hypervisor.abort_job(run.route.source.uri, run.route.vm))
            if task is None and run.postcopy and await self._postcopy_broke(run):
                return  # reattached to a broken post-copy: its job stays "active" until someone resumes it
            if not downtime_set and run.state is not None:
                # libvirt may reset migration parameters when the job starts: set the ramp's value again.
                downtime_set = await self._apply_quietly(
                    run,
                    self.hypervisor.set_max_downtime(run.route.source.uri, run.route.vm, run.state.downtime_ms),
                )
            await self._step(run, stats)

    async def _postcopy_broke(self, run: RunState) -> bool:
        src = await self._state(run.route.source.uri, run.route.vm)
        return src is not None and src.postcopy_failed

    async def _poll(self, run: RunState) -> JobStats | None:
        try:
            return await self.hypervisor.job_stats(run.route.source.uri, run.route.vm)
        except DomainNotFound:
            return None  # undefined on the source: the migration has just finished
        except HypervisorError as err:
            # e.g. "not running" for the instant between the end of the job and the undefine: not news.
            log.debug("job %s: reading job stats failed: %s", run.job_id, err)
            return None

    async def _step(self, run: RunState, stats: JobStats) -> None:
        try:
            reading = reading_from_job_stats(stats)
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
        obs = Observation(now.timestamp(), sample.phase, reading)
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

    async def _apply(self, run: RunState, decision: Decision) -> bool:
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

    async def _apply_quietly(self, run: RunState, call: Awaitable[None]) -> bool:
        try:
            await call
        except HypervisorError as err:
            await self._notice(run, NoticeKind.INFO, f"could not apply the controller's decision: {err}")
            return False
        return True

    # ----- the end ---------------------------------------------------------------------------------------

    async def _finish(
        self, run: RunState, error: MigrateBotError | None, *, reattached: bool = False
    ) -> ExecutionResult:
        r, hv = run.route, self.hypervisor
        completed = await hv.completed_job_stats(
            run.plan.vm_uuid or r.vm,
            source_uri=r.source.uri,
            destination_uri=r.destination.uri,
            wait_s=1.0 if error is None else 0.2,
        )
        src, dst = await self._both_states(r, failed=error is not None)
        if reattached:
            outcome, message = true_outcome(run.plan, src, dst, completed)
            hint = None
        elif error is None:
            outcome, message, hint = JobState.SUCCEEDED, None, None
        elif isinstance(error, JobAborted) or run.aborted_by:
            run.aborted_by = run.aborted_by or "someone outside migrate-bot (virsh domjobabort?)"
            why = next((d.reason for d in reversed(run.decisions) if d.action is ControlAction.ABORT), None)
            outcome = JobState.ABORTED
            # An abort that kept the migrate call from going out is ours to word: libvirt said nothing.
            ours = isinstance(error, JobAborted) and not run.call_started
            said = error.message if ours else f"libvirt: {error.message}"
            message = f"aborted by {run.aborted_by}" + (f": {why}" if why else "") + f" ({said})"
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

    async def summarize(self, plan: Plan, result: ExecutionResult, *, emit: bool = True) -> VerificationSummary:
        """Verify the outcome on both hosts (verify.verify), then keep one owner per VM (cleanup: the source's
        definition and copied images go, unless --keep-source) and, unless `emit=False`, emit SummaryReady.

        The service's dispatcher passes `emit=False` and emits the summary itself once the job's final state is
        stored, so front ends get it exactly once and after the state change.
        """
        summary = await verify(plan, self.hypervisor, result)
        cleaned = await remove_source_copies(plan, summary, self.hypervisor, result.source_uri, result.destination_uri)
        if cleaned:
            state = summary.source_state
            if any(c.name == "source_definition" and c.status is CheckStatus.INFO for c in cleaned):
                state = "absent (not defined): its definition was removed after the move was verified"
            summary = replace(summary, checks=(*summary.checks, *cleaned), source_state=state)
        if emit:
            await self._emit(SummaryReady(summary))
        return summary
