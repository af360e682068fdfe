"""Runs approved jobs: host slots and the queue, leases between replicas, the executor, verification, recovery.

One dispatcher per bot process (replica). It claims approved jobs with a lease (so two replicas never run the
same job), re-checks each plan against the hosts before starting (an approval binds to the plan hash: changed
facts send the job back for approval), keeps jobs that would exceed a host's inbound/outbound limit queued with
the reason, renews its leases while migrations run, and on start reattaches to the migrations its previous
life (or a dead replica) left running; a running job whose migration provably never started (the bot died just
before libvirt started it) is queued again instead, once (dispatch/restart.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from migration_core import logctx
from migration_core.dispatch.queue import (
    QueuePosition,
    limits_of,
    queue_notice,
    queue_notice_reason,
    queue_places,
    waiting_reason,
)
from migration_core.dispatch.recovery import resume_broken_postcopy
from migration_core.dispatch.restart import (
    RESTART_DETAIL,
    RestartChoice,
    judge_restart,
    not_again_text,
    restart_text,
    restarts_so_far,
)
from migration_core.dispatch.windows import fmt_instant, hold_reason
from migration_core.errors import MigrateBotError
from migration_core.events import EventSink, Notice, NoticeKind, StateChanged, SummaryReady
from migration_core.execution.executor import Executor
from migration_core.execution.types import ExecutionResult
from migration_core.inventory.hosts import Inventory
from migration_core.inventory.policy_file import FreezeWindow
from migration_core.limits import DEFAULT_APPROVAL_TTL_S
from migration_core.models import Job, JobState, MigrationRequest, Plan, VerificationSummary
from migration_core.planning.estimate import sample_from_run
from migration_core.store import SUMMARY_DETAIL, EventKind, HostLimit, Store

log = logging.getLogger(__name__)

# The re-check before start reuses a dirty-rate measurement younger than this instead of measuring again: a
# guest's working set does not change in minutes the way host facts can, and a new measurement would put the
# whole dirty-rate window (3 s by default) between the approval and the start. The one owner of that age.
RECHECK_DIRTY_RATE_MAX_AGE_S = 300.0


class _Planner(Protocol):
    async def make_plan(self, request: MigrationRequest, *, reuse_dirty_rate_s: float = 0.0) -> Plan: ...


@dataclass(frozen=True)
class DispatcherConfig:
    """Identity and timing of one replica."""

    replica_id: str = "migrate-bot"
    lease_s: float = 30.0
    interval_s: float = 1.0
    approval_ttl_s: float = DEFAULT_APPROVAL_TTL_S
    preflight_stale_s: float = 120.0  # a preflight older than this was interrupted (its bot died): fail it
    postcopy_retry_s: float = 10.0  # a broken post-copy is resumed every this long ...
    postcopy_give_up_s: float = 30 * 60.0  # ... until this long has passed (then: the summary's manual steps)
    postcopy_settle_s: float = 15.0  # link back: time for the stream to carry on by itself before pause + resume
    dirty_rate_reuse_s: float = RECHECK_DIRTY_RATE_MAX_AGE_S  # the re-check before start reuses a younger measurement


class JobMover:
    """Persists a state change (compare-and-set) and then tells the sink about it."""

    def __init__(self, store: Store, sink: EventSink, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.sink = sink
        self.clock = clock

    async def move(
        self,
        job: Job,
        new: JobState,
        actor: str | None,
        detail: str,
        *,
        plan: Plan | None = None,
        error: str | None = None,
    ) -> Job:
        # Whoever calls (a click, the dispatcher loop, recovery), the line names the job, its VM and hosts.
        fields = logctx.fields_of(job, actor)
        if actor is None and "actor" in logctx.current():
            fields["actor"] = None  # a system move inside someone's click: keep that person as the actor
        with logctx.job_context(**fields):
            moved = await self.store.transition(
                job.id, job.state, new, actor=actor, detail=detail, plan=plan, error=error
            )
            with logctx.job_context(source=moved.source or None):  # a new plan names the source
                log.info("job %s: %s -> %s: %s", job.id, job.state.value, new.value, detail)
                event = StateChanged(job.id, job.state, new, actor, detail, self.clock(), moved.approvers)
                await self.sink.emit(event)
        return moved


class Dispatcher:
    """Claims, queues, runs and recovers jobs for one replica."""

    def __init__(
        self,
        *,
        store: Store,
        inventory: Inventory,
        planner: _Planner,
        executor: Executor,
        mover: JobMover,
        sink: EventSink,
        config: DispatcherConfig,
        clock: Callable[[], datetime],
        freezes: tuple[FreezeWindow, ...] = (),
    ) -> None:
        self.store = store
        self.inventory = inventory
        self.planner = planner
        self.executor = executor
        self.mover = mover
        self.sink = sink
        self.config = config
        self.clock = clock
        self.freezes = freezes  # the policy file's change freezes: an approved move never starts inside one
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._runs: dict[int, asyncio.Task[None]] = {}
        self._queued_reason: dict[int, str] = {}
        self._taken_from: dict[int, str | None] = {}  # job -> the replica whose expired lease we took over

    # ----- life cycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._recover()
        self._loop_task = asyncio.create_task(self._loop(), name="dispatcher")

    async def stop(self) -> None:
        """Stop dispatching. Running migrations are left to libvirt (peer-to-peer): a restart reattaches."""
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._runs.values()):
            task.cancel()
        for task in list(self._runs.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def kick(self) -> None:
        """Look for work now instead of at the next tick (a job was approved, a slot freed)."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await self._tick()
            except MigrateBotError as err:
                log.warning("dispatcher: %s", err)
            except Exception:
                log.exception("dispatcher tick failed; trying again")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.interval_s)

    async def _tick(self) -> None:
        await self._expire_stale()
        await self._fail_interrupted_preflights()
        for job in await self.store.expired_leases():
            taken = await self.store.take_over(job.id, self.config.replica_id, self.config.lease_s)
            if taken is not None:
                self._taken_from[job.id] = job.owner
                self._spawn(taken, recovering=True)
        await self._expire_missed_windows()
        limits = limits_of(self.inventory)
        held = await self._held()
        await self._claim_runnable(limits, frozenset(held))
        if await self._mark_waiting(limits, held):
            await self._claim_runnable(limits, frozenset(held))  # approved during this tick, with a free slot
        for job_id, task in list(self._runs.items()):
            if not await self.store.renew_lease(job_id, self.config.replica_id, self.config.lease_s):
                await self._lost_lease(job_id, task)

    async def _lost_lease(self, job_id: int, task: asyncio.Task[None]) -> None:
        """Our lease on a running job ran out (e.g. the database was away longer than the lease) and another
        replica took the job over: stop watching it here, so exactly one replica steers and records it. The
        migration itself is libvirt's (peer-to-peer) and goes on; the new owner has reattached to it."""
        job = await self.store.get_job(job_id)
        if job.state.terminal or job.owner in (None, self.config.replica_id):
            return  # finished (no lease to renew), or still ours
        log.warning("job %s: replica %s took it over (our lease ran out); stopping our watch", job_id, job.owner)
        task.cancel()

    # ----- approvals that ran out, queue ------------------------------------------------------------------

    async def expire(self, job: Job, why: str | None = None) -> Job:
        """The approval window (or a scheduled start window, `why`) closed: the card loses its buttons; the
        requester must ask again."""
        detail = why or f"no decision within {self.config.approval_ttl_s / 60:g} min; request it again if still needed"
        try:
            return await self.mover.move(job, JobState.EXPIRED, None, detail)
        except MigrateBotError:  # decided or expired by someone else in the meantime
            return await self.store.get_job(job.id)

    async def _fail_interrupted_preflights(self) -> None:
        """A job stuck in requested/preflight for longer than any preflight takes was abandoned by a bot that
        died (or restarted) in the middle of it: nothing ran, so close it and free the VM for a new request."""
        stale = self.clock() - timedelta(seconds=self.config.preflight_stale_s)
        for job in await self.store.jobs_in_states([JobState.REQUESTED, JobState.PREFLIGHT]):
            if job.updated_at < stale:
                await self._fail(job.id, "the bot stopped during preflight; nothing was changed, request it again")

    async def _expire_stale(self) -> None:
        now = self.clock()
        ttl = timedelta(seconds=self.config.approval_ttl_s)
        for job in await self.store.jobs_in_states([JobState.AWAITING_APPROVAL]):
            if job.created_at + ttl <= now:
                await self.expire(job)

    async def _waiting(self) -> list[Job]:
        jobs = await self.store.jobs_in_states([JobState.APPROVED, JobState.QUEUED])
        return sorted((j for j in jobs if j.owner is None), key=lambda j: (j.created_at, j.id))

    async def _held(self) -> dict[int, str]:
        """Approved jobs that must not start now, with why (not yet their scheduled time, a change freeze):
        they are not claimed."""
        held: dict[int, str] = {}
        for job in await self._waiting():
            why = self._hold(job)
            if why is not None:
                held[job.id] = why
        return held

    def _hold(self, job: Job) -> str | None:
        opts = job.plan.request.options if job.plan is not None else None
        if opts is None:
            return None
        return hold_reason(opts.emergency, self.freezes, self.clock(), opts.not_before, opts.not_after)

    async def _expire_missed_windows(self) -> None:
        """A scheduled job that has not started by the end of its window expires, saying why it waited."""
        now = self.clock()
        for job in await self._waiting():
            opts = job.plan.request.options if job.plan is not None else None
            if opts is None or opts.not_after is None or now < opts.not_after:
                continue
            waited = self._queued_reason.get(job.id)
            why = f" ({queue_notice_reason(waited).removeprefix('waiting: ')})" if waited else ""
            detail = (
                f"its start window ended at {fmt_instant(opts.not_after)} before it could start{why}; "
                "nothing was changed: request it again with a new --at or --window"
            )
            with contextlib.suppress(MigrateBotError):  # started or moved by another replica in the meantime
                await self.mover.move(job, JobState.EXPIRED, None, detail)
                self._queued_reason.pop(job.id, None)

    async def _claim_runnable(self, limits: dict[str, HostLimit], held: frozenset[int] = frozenset()) -> None:
        while True:
            claimed = await self.store.claim_next_runnable(
                self.config.replica_id, self.config.lease_s, limits=limits, exclude=held
            )
            if claimed is None:
                return
            self._spawn(claimed)

    async def _mark_waiting(self, limits: dict[str, HostLimit], held: dict[int, str] | None = None) -> bool:
        """Queue (with the reason and place) every approved job that cannot start; True if one could start.

        A job approved after this tick's claims has free slots and no reason to wait: calling it "queued"
        would tell its thread a wait that is not happening, so it is left to the next claim instead.
        """
        load = await self.store.host_load()
        waiting = await self._waiting()
        places = queue_places(waiting)
        startable = False
        for job in waiting:
            why = (held or {}).get(job.id) or waiting_reason(job, load, limits)
            if why is None:
                startable = True
                continue
            text = queue_notice(why, places[job.id])
            if job.state is JobState.APPROVED:
                with contextlib.suppress(MigrateBotError):  # another replica may have moved it first
                    await self.mover.move(job, JobState.QUEUED, None, text)
            if self._queued_reason.get(job.id) != text:
                self._queued_reason[job.id] = text
                # Every replica sees the same queue: the store lets exactly one of them announce a change.
                if await self.store.record_notice_if_new(job.id, text, prefix="waiting:"):
                    await self.sink.emit(Notice(job.id, NoticeKind.QUEUED, text, self.clock()))
        return startable

    async def queue_positions(self) -> list[QueuePosition]:
        load = await self.store.host_load()
        limits = limits_of(self.inventory)
        waiting = await self._waiting()
        places = queue_places(waiting)
        held = await self._held()
        return [
            QueuePosition(
                job.id,
                places[job.id],
                held.get(job.id) or waiting_reason(job, load, limits) or "waiting for a free slot",
            )
            for job in waiting
        ]

    # ----- running ----------------------------------------------------------------------------------------

    def _spawn(self, job: Job, *, recovering: bool = False) -> None:
        if job.id in self._runs:
            return
        self._queued_reason.pop(job.id, None)
        task = asyncio.create_task(self._run(job, recovering), name=f"job-{job.id}")
        self._runs[job.id] = task
        job_id = job.id
        task.add_done_callback(lambda _t: self._done(job_id))

    def runs_here(self, job_id: int) -> bool:
        """Whether this replica's dispatcher is running (starting, watching, verifying) that job now."""
        task = self._runs.get(job_id)
        return task is not None and not task.done()

    def _done(self, job_id: int) -> None:
        self._runs.pop(job_id, None)
        self.kick()  # a slot is free: let the queue drain

    async def _run(self, job: Job, recovering: bool) -> None:
        with logctx.for_job(job):  # the run's task and everything it starts carry the job's fields
            await self._run_in_context(job, recovering)

    async def _run_in_context(self, job: Job, recovering: bool) -> None:
        try:
            if job.state in (JobState.RUNNING, JobState.VERIFYING):
                await self._reattach(job)
            elif job.state in (JobState.APPROVED, JobState.QUEUED):
                why = self._hold(job)  # a job taken over (or claimed just before a freeze began) is checked too
                if why is None:
                    await self._start(job)
                else:
                    log.info("job %s: not starting now (%s); it stays queued", job.id, why)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # never leave a job hanging without a record
            log.exception("job %s: the run crashed", job.id)
            await self._fail(job.id, f"internal error while running the job: {err}")
        finally:
            with contextlib.suppress(Exception):
                await self.store.release(job.id, self.config.replica_id)

    async def _fail(self, job_id: int, text: str) -> None:
        with contextlib.suppress(MigrateBotError):
            job = await self.store.get_job(job_id)
            if not job.state.terminal:
                await self.mover.move(job, JobState.FAILED, None, text, error=text)

    async def _start(self, job: Job) -> None:
        assert job.plan is not None
        try:
            # Every fact is read again; a dirty rate measured minutes ago (at the request) still holds, and
            # measuring it again would put the whole window between the approval and the start.
            plan = await self.planner.make_plan(job.plan.request, reuse_dirty_rate_s=self.config.dirty_rate_reuse_s)
        except MigrateBotError as err:
            await self.mover.move(job, JobState.FAILED, None, f"re-check before start failed: {err}", error=str(err))
            return
        if not plan.executable:
            names = ", ".join(c.name for c in plan.failures)
            text = f"re-check before start failed: {names}"
            await self.mover.move(job, JobState.FAILED, None, text, plan=plan, error=text)
            return
        if plan.hash != job.plan.hash and plan.within_approval_of(job.plan):
            # only better news (e.g. a warning gone): the approved plan still describes the move exactly
            log.info(
                "job %s: re-check found no new risk (%s); running the approved plan", job.id, _better(plan, job.plan)
            )
            plan = job.plan
        if plan.hash != job.plan.hash:
            text = "the facts changed since approval (the plan is different now); it needs a new approval"
            await self.mover.move(job, JobState.AWAITING_APPROVAL, None, text, plan=plan)
            await self.sink.emit(Notice(job.id, NoticeKind.INFO, text, self.clock()))
            return
        job = await self.mover.move(job, JobState.RUNNING, None, f"migrating {plan.source} -> {plan.destination}")
        result = await self.executor.run(job.id, plan)
        result = await self._resume_postcopy(job, plan, result)
        await self._verify(job, plan, result)

    async def _reattach(self, job: Job) -> None:
        assert job.plan is not None
        me = self.config.replica_id
        before = self._taken_from.pop(job.id, None)
        if job.state is JobState.RUNNING and await self._restart_unstarted(job, before):
            return
        who = "the bot restarted" if before in (None, me) else f"replica {before} stopped renewing its lease"
        text = f"{who}; reattaching to the migration of {job.vm} (replica {me})"
        await self._say(job.id, NoticeKind.INFO, text, actor=me)
        result = await self.executor.reattach(job.id, job.plan)
        result = await self._resume_postcopy(job, job.plan, result)
        await self._verify(job, job.plan, result)

    async def _restart_unstarted(self, job: Job, before: str | None) -> bool:
        """A running job whose migration provably never started (the bot died in between) goes back to the
        queue, once (dispatch/restart.py); True if it did. Otherwise the caller reattaches as always."""
        assert job.plan is not None
        has_samples = bool(await self.store.progress(job.id, limit=1))
        hosts = None if has_samples else await self.executor.start_evidence(job.plan)
        restarts = restarts_so_far(await self.store.events(job.id, [EventKind.STATE]))
        verdict = judge_restart(has_samples=has_samples, restarts=restarts, hosts=hosts)
        log.info("job %s: restart recovery: %s (%s)", job.id, verdict.choice.value, verdict.why)
        who = "the bot" if before in (None, self.config.replica_id) else f"replica {before}"
        if verdict.choice is RestartChoice.NOT_AGAIN:
            await self._say(job.id, NoticeKind.FAILURE, not_again_text(who), actor=self.config.replica_id)
        if verdict.choice is not RestartChoice.RESTART:
            return False
        # The state line stays short: the thread shows it next to the notice, which explains.
        await self.mover.move(job, JobState.QUEUED, None, RESTART_DETAIL)
        await self._say(job.id, NoticeKind.INFO, restart_text(who), actor=self.config.replica_id)
        return True  # the run ends and releases the lease: the next claim starts it (re-check, slot limits)

    async def _resume_postcopy(self, job: Job, plan: Plan, result: ExecutionResult) -> ExecutionResult:
        async def say(kind: NoticeKind, text: str) -> None:
            await self._say(job.id, kind, text)

        return await resume_broken_postcopy(
            self.executor,
            job.id,
            plan,
            result,
            say,
            retry_s=self.config.postcopy_retry_s,
            give_up_s=self.config.postcopy_give_up_s,
            settle_s=self.config.postcopy_settle_s,
        )

    async def _say(self, job_id: int, kind: NoticeKind, text: str, *, actor: str | None = None) -> None:
        """A notice in the job's thread and in its record."""
        await self.sink.emit(Notice(job_id, kind, text, self.clock()))
        await self.store.record_event(job_id, EventKind.NOTICE, actor, text, {"kind": kind.value})

    async def _verify(self, job: Job, plan: Plan, result: ExecutionResult) -> None:
        job = await self.store.get_job(job.id)
        if job.state is JobState.RUNNING:
            job = await self.mover.move(job, JobState.VERIFYING, None, f"migration {result.outcome.value}; verifying")
        summary: VerificationSummary = await self.executor.summarize(plan, result, emit=False)
        outcome = summary.outcome if summary.outcome.terminal else JobState.FAILED
        error = None if outcome is JobState.SUCCEEDED else (result.error or summary.headline)
        # The summary is written before the job is closed: if the process dies in between, the restarted bot
        # finds the job still verifying and verifies again, rather than a closed job without its summary.
        await self.store.record_event(job.id, EventKind.NOTICE, None, SUMMARY_DETAIL, summary.to_json())
        await self.mover.move(job, outcome, result.aborted_by, summary.headline, error=error)
        await self._record_sample(job, plan, result, summary)
        await self.sink.emit(SummaryReady(summary))

    async def _record_sample(self, job: Job, plan: Plan, result: ExecutionResult, summary: VerificationSummary) -> None:
        """Keep the predicted and measured figures for calibration (planning/estimate.py). A failed or
        aborted run is kept too (marked), so `calibration` can count it, but estimates never learn from it.
        Never fails the job: calibration is an improvement, not a duty."""
        if plan.prediction is None:
            return
        sample = sample_from_run(
            plan.prediction,
            vm_uuid=plan.vm_uuid,
            vm=plan.request.vm,
            source=plan.source,
            destination=plan.destination,
            finished_at=self.clock(),
            succeeded=summary.outcome is JobState.SUCCEEDED and result.aborted_by is None,
            total_s=summary.total_s,
            downtime_ms=summary.downtime_ms,
            stats=dict(result.completed.values) if result.completed is not None else {},
            postcopy=result.postcopy,
        )
        if sample is None:
            return
        try:
            await self.store.add_move_sample(sample, job.id)
        except MigrateBotError as err:
            log.warning("job %s: could not record its calibration sample: %s", job.id, err)

    # ----- restart recovery -------------------------------------------------------------------------------

    async def _recover(self) -> None:
        """Resume what this replica (or a dead one) left: running jobs are reattached, approved ones re-queued."""
        mine = await self.store.jobs_owned_by(self.config.replica_id)
        for job in mine:
            if job.state in (JobState.RUNNING, JobState.VERIFYING):
                taken = await self.store.take_over(job.id, self.config.replica_id, self.config.lease_s)
                if taken is not None:
                    self._spawn(taken, recovering=True)
            else:
                await self.store.release(job.id, self.config.replica_id)
        # Preflight interrupted by the restart (nothing ran): checked at every tick, see the method.
        await self._fail_interrupted_preflights()


def _better(fresh: Plan, approved: Plan) -> str:
    """Which checks the re-check found better than at approval ('capacity.memory warn -> pass')."""
    before = {c.name: c.status for c in approved.checks}
    changed = [
        f"{c.name} {before[c.name].value} -> {c.status.value}"
        for c in fresh.checks
        if before.get(c.name, c.status) != c.status
    ]
    return ", ".join(changed) or "the same checks"
