"""Drains and returns: request, approve, run wave by wave as ordinary jobs, cancel, report, resume after a restart.

One approval covers the whole plan: when a wave starts, each of its moves becomes a job (keyed by drain and VM,
so a restart never creates it twice) carrying the move's approved plan and the drain's approvers; the dispatcher
then re-checks it before it starts like any job, and a re-check that finds different facts sends that move
alone back for approval. The next wave starts when every move of the current one has ended. A move that cannot
move (did not converge with what its options allow, failed, expired) is parked on its host with the reason; the
drain goes on and ends `partially_done`. While it runs, a roll-up of every move goes to the sink every
`rollup_s` seconds and a line per move when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from migration_core.dispatch.dispatcher import Dispatcher
from migration_core.dispatch.drain_policy import (
    check_drain_approval,
    check_drain_cancel,
    check_drain_denial,
    drain_expires_at,
    drain_requirement,
)
from migration_core.dispatch.policy import Approvers
from migration_core.drains import (
    COMPLETED_DRAIN_STATES,
    PARKED_STATES,
    WORKING_DRAIN_STATES,
    CancelReport,
    Drain,
    DrainKind,
    DrainState,
    DrainStatus,
    MoveOutcome,
    MoveStatus,
    drain_ref,
    move_key,
)
from migration_core.errors import MigrateBotError, RequestError
from migration_core.events import DrainChanged, DrainMoveEnded, DrainRollup
from migration_core.inventory.policy_file import Policy
from migration_core.models import Approval, ChatRefs, Job, JobState, MigrationOptions, Phase
from migration_core.planning.drain import (
    WAVE_OVERHEAD_S,
    DrainPlan,
    DrainRequest,
    PlannedMove,
)
from migration_core.planning.placement import LeftBehind
from migration_core.store import ActiveJobExists, DrainStateError, DuplicateRequestError, poll_until
from migration_core.store.states import CANCELLABLE_STATES

log = logging.getLogger(__name__)

_WAITING = frozenset(
    {JobState.REQUESTED, JobState.PREFLIGHT, JobState.AWAITING_APPROVAL, JobState.APPROVED, JobState.QUEUED}
)
_MOVING = frozenset({JobState.RUNNING, JobState.VERIFYING})


class HostDrainPlanner(Protocol):
    """What the desk needs from the preflight runner: a drain plan of a host (or of some of its VMs)."""

    async def plan_drain(self, request: DrainRequest) -> DrainPlan: ...

    async def plan_return(
        self, host: str, vms_by_host: Mapping[str, Sequence[str]], options: MigrationOptions
    ) -> DrainPlan: ...


@dataclass(frozen=True)
class DrainConfig:
    replica_id: str = "replica"
    lease_s: float = 60.0
    approval_ttl_s: float = 1800.0
    poll_s: float = 1.0  # how often the conductor looks at its moves' jobs
    rollup_s: float = 5.0  # how often the roll-up is emitted while the drain runs (the issue asks <= 10 s)


Admit = Callable[[str, str | None, MigrationOptions, str], Awaitable[None]]
JobControl = Callable[[int, str], Awaitable[Job]]


class DrainDesk:
    """The drains of one replica: requests and approvals come in through the service, the conductor runs them."""

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        planner: HostDrainPlanner,
        rules: Policy,
        approvers: Approvers,
        admit: Admit,
        cancel_job: JobControl,
        abort_job: JobControl,
        config: DrainConfig,
    ) -> None:
        # The drain's jobs go through this dispatcher, so its store, sink, job mover and clock are the drain's too.
        self.dispatcher = d = dispatcher
        self.store, self.sink, self.mover, self.clock = d.store, d.sink, d.mover, d.clock
        self.planner = planner
        self.rules = rules
        self.approvers = approvers
        self.admit = admit
        self.cancel_job = cancel_job
        self.abort_job = abort_job
        self.config = config
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._wake: dict[int, asyncio.Event] = {}
        self._finished: dict[int, dict[int, tuple[float | None, float | None]]] = {}  # drain -> job -> figures

    # ----- life cycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Continue the drains a previous run left running (their jobs reattach through the dispatcher)."""
        for drain in await self.store.drains(states=WORKING_DRAIN_STATES, limit=1000):
            log.info("resuming %s (%s of %s)", drain.ref, drain.state.value, drain.host)
            self._launch(drain.id)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    def _launch(self, drain_id: int) -> None:
        if drain_id in self._tasks and not self._tasks[drain_id].done():
            self._wake[drain_id].set()
            return
        self._wake[drain_id] = asyncio.Event()
        self._tasks[drain_id] = asyncio.create_task(self._conduct(drain_id), name=f"drain-{drain_id}")

    def kick(self, drain_id: int) -> None:
        if drain_id in self._wake:
            self._wake[drain_id].set()

    # ----- marks -----------------------------------------------------------------------------------------

    async def host_marks(self) -> dict[str, str]:
        """Hosts no placement may use: being drained, or drained and not returned yet (newest drain decides)."""
        marks: dict[str, str] = {}
        decided: set[str] = set()
        for d in await self.store.drains(limit=500):
            if d.host in decided:
                continue
            if d.kind is DrainKind.DRAIN and d.state in WORKING_DRAIN_STATES:
                marks[d.host] = f"{d.host} is being drained ({d.ref})"
            elif d.kind is DrainKind.DRAIN and d.state in COMPLETED_DRAIN_STATES:
                marks[d.host] = f"{d.host} was drained for maintenance ({d.ref}); `/migrate return {d.host}` ends that"
            elif d.kind is DrainKind.RETURN and d.state not in (DrainState.DENIED, DrainState.EXPIRED):
                pass  # a return (asked for or done) clears the mark
            else:
                continue  # a drain nobody approved, or cancelled before it started, leaves the host as it was
            decided.add(d.host)
        return marks

    # ----- requests -----------------------------------------------------------------------------------

    async def request(self, request: DrainRequest, requester: str, *, chat_channel: str | None = None) -> Drain:
        """Plan the drain and put it up for approval. Refused (nothing recorded as a drain) when another drain
        of the host is unfinished, or when nothing can move."""
        host, options = request.host, request.options
        await self.admit(requester, chat_channel, options, f"drain of {host}")
        for d in await self.store.drains(host=host, limit=50):
            if not d.state.finished:
                raise RequestError(
                    f"{host} already has an unfinished {d.kind.value} ({d.ref}, {d.state.value.replace('_', ' ')})",
                    f"wait for it, or `/migrate cancel {d.ref}`",
                )
        plan = await self.timed(await self.planner.plan_drain(request))
        if not plan.executable:
            reasons = "; ".join(f"{lb.vm}: {lb.reason}" for lb in plan.left_behind) or f"{host} runs no VMs"
            raise RequestError(f"nothing on {host} can move: {reasons}", "see `/migrate plan drain " + host + "`")
        return await self._create(DrainKind.DRAIN, plan, requester, options.reason, None, chat_channel)

    async def timed(self, plan: DrainPlan) -> DrainPlan:
        """The plan with its ETA counting each wave's cost as this bot's last drains measured it (re-check,
        verification, hand-over differ per site); the built-in figure until there is a finished drain."""
        return plan.retimed(await self.wave_overhead_s())

    async def wave_overhead_s(self) -> float:
        """Median over the last drains that ended done: (measured total - the waves' longest predicted moves)
        per wave. Drains with a parked or re-approved move are left out (their time is not the pipeline's)."""
        seen = []
        for d in await self.store.drains(states=(DrainState.DONE,), limit=5):
            started = [a.at for a in d.approvals if a.approved]
            if not started or not d.plan.waves:
                continue
            total = (d.updated_at - max(started)).total_seconds()
            seen.append((total - d.plan.moving_s) / d.plan.waves)
        if not seen:
            return WAVE_OVERHEAD_S
        return min(10.0, max(0.2, statistics.median(seen)))

    async def plan_return(self, host: str) -> tuple[DrainPlan, Drain]:
        """The plan that brings back what the last completed drain of `host` moved away (where they are now)."""
        done = await self.store.drains(host=host, kind=DrainKind.DRAIN, states=COMPLETED_DRAIN_STATES, limit=1)
        if not done:
            raise RequestError(
                f"{host} has no completed drain to return from", "`/migrate drain <host>` empties a host first"
            )
        source = done[0]
        moved = [j for j in await self.store.jobs_of_drain(source.id) if j.state is JobState.SUCCEEDED]
        if not moved:
            raise RequestError(f"{source.ref} moved no VM off {host}: nothing to bring back", "nothing to do")
        options = replace(source.plan.options, reason=None)
        by_host: dict[str, list[str]] = {}
        for job in moved:
            by_host.setdefault(job.destination, []).append(job.vm)
        plan = await self.timed(await self.planner.plan_return(host, by_host, options))
        found = {m.vm for m in plan.moves} | {lb.vm for lb in plan.left_behind}
        left = [
            LeftBehind(vm, f"no longer on {where}", f"find it with `/migrate status {vm}` and move it by hand")
            for where, vms in sorted(by_host.items())
            for vm in vms
            if vm not in found
        ]
        return replace(plan, left_behind=tuple(sorted((*plan.left_behind, *left), key=lambda lb: lb.vm))), source

    async def request_return(
        self, host: str, requester: str, reason: str | None = None, *, chat_channel: str | None = None
    ) -> Drain:
        """`/migrate return <host>`: a return of the last completed drain's moves, up for approval."""
        await self.admit(requester, chat_channel, MigrationOptions(reason=reason), f"return to {host}")
        for d in await self.store.drains(host=host, limit=50):
            if not d.state.finished:
                raise RequestError(
                    f"{host} already has an unfinished {d.kind.value} ({d.ref})", f"wait for it or cancel {d.ref}"
                )
        plan, source = await self.plan_return(host)
        if not plan.executable:
            reasons = "; ".join(f"{lb.vm}: {lb.reason}" for lb in plan.left_behind)
            raise RequestError(f"nothing can return to {host}: {reasons}", "fix the reasons above and try again")
        return await self._create(DrainKind.RETURN, plan, requester, reason, source.id, chat_channel)

    async def _create(
        self,
        kind: DrainKind,
        plan: DrainPlan,
        requester: str,
        reason: str | None,
        returns: int | None,
        chat_channel: str | None,
    ) -> Drain:
        drain = await self.store.create_drain(
            kind=kind,
            plan=plan,
            requester=requester,
            requirement=drain_requirement(kind, plan, self.rules),
            reason=reason,
            returns_drain=returns,
            chat=ChatRefs(channel=chat_channel),
        )
        log.info(
            "%s: %s of %s requested by %s (%d moves)", drain.ref, kind.value, plan.host, requester, len(plan.moves)
        )
        await self._announce(drain, requester, "requested")
        return drain

    # ----- decisions ----------------------------------------------------------------------------------

    async def approve(self, drain_id: int, actor: str) -> Drain:
        drain = await self.store.get_drain(drain_id)
        now = self.clock()
        who = await self.approvers.decider(actor, drain.requirement)
        verdict = check_drain_approval(drain, who, now, self.config.approval_ttl_s)
        if not verdict.allowed:
            if drain.state is DrainState.AWAITING_APPROVAL and now >= drain_expires_at(
                drain, self.config.approval_ttl_s
            ):
                await self._move(drain, DrainState.EXPIRED, None, "expired before it was approved")
            err = verdict.error()
            assert err is not None
            raise err
        drain = await self.store.add_drain_approval(
            drain.id, Approval(drain.id, actor, True, drain.plan.hash, now, tuple(sorted(who.groups)))
        )
        if verdict.remaining > 0:
            await self._announce(drain, actor, f"approved by {actor}; needs {verdict.still_needed}")
            return drain
        drain = await self._move(drain, DrainState.RUNNING, actor, f"approved by {', '.join(drain.approvers)}")
        self._launch(drain.id)
        return drain

    async def deny(self, drain_id: int, actor: str, reason: str | None = None) -> Drain:
        drain = await self.store.get_drain(drain_id)
        check_drain_denial(drain, actor, await self.approvers.is_approver(actor)).raise_if_refused()
        await self.store.add_drain_approval(drain.id, Approval(drain.id, actor, False, drain.plan.hash, self.clock()))
        return await self._move(
            drain, DrainState.DENIED, actor, f"denied by {actor}" + (f": {reason}" if reason else "")
        )

    async def cancel(self, drain_id: int, actor: str) -> CancelReport:
        """Moves not started never start; pre-copy moves are aborted; post-copy moves finish. Said at once."""
        drain = await self.store.get_drain(drain_id)
        check_drain_cancel(drain, actor, await self.approvers.is_approver(actor)).raise_if_refused()
        if drain.state is DrainState.AWAITING_APPROVAL:
            drain = await self._move(drain, DrainState.CANCELLED, actor, f"withdrawn by {actor} before it started")
            return CancelReport(drain, never_started=tuple(m.vm for m in drain.plan.moves))
        drain = await self._move(drain, DrainState.CANCELLING, actor, f"cancel requested by {actor}")
        never: list[str] = []
        aborted: list[str] = []
        finishing: list[str] = []
        ended: list[str] = []
        jobs = {j.vm: j for j in await self.store.jobs_of_drain(drain.id)}
        for move in drain.plan.moves:
            job = jobs.get(move.vm)
            if job is None:
                never.append(move.vm)
            elif job.state.terminal:
                ended.append(move.vm)
            elif job.state in CANCELLABLE_STATES or job.state in _WAITING:
                with contextlib.suppress(MigrateBotError):
                    await self.cancel_job(job.id, actor)
                never.append(move.vm)
            elif job.state is JobState.RUNNING and not await self._in_postcopy(job.id):
                try:
                    await self.abort_job(job.id, actor)
                    aborted.append(move.vm)
                except MigrateBotError as err:  # it switched to post-copy in between: it finishes
                    log.info("%s: %s cannot be aborted (%s): it finishes", drain.ref, move.vm, err)
                    finishing.append(move.vm)
            else:
                finishing.append(move.vm)
        report = CancelReport(drain, tuple(never), tuple(aborted), tuple(finishing), tuple(ended))
        await self._announce(drain, actor, report.text)
        self._launch(drain.id)
        return report

    async def _in_postcopy(self, job_id: int) -> bool:
        samples = await self.store.progress(job_id, limit=1)
        return bool(samples) and samples[-1].phase is Phase.POSTCOPY

    # ----- status -------------------------------------------------------------------------------------

    async def get(self, drain_id: int) -> Drain:
        return await self.store.get_drain(drain_id)

    async def status(self, drain_id: int) -> DrainStatus:
        return await self.status_of(await self.store.get_drain(drain_id))

    async def active(self) -> list[DrainStatus]:
        """Drains waiting for approval or running, newest first (App Home, `/migrate status`)."""
        states = (DrainState.AWAITING_APPROVAL, *WORKING_DRAIN_STATES)
        return [await self.status_of(d) for d in await self.store.drains(states=states, limit=50)]

    async def recent(self, limit: int = 20) -> list[Drain]:
        return await self.store.drains(limit=limit)

    async def status_of(self, drain: Drain) -> DrainStatus:
        jobs = {j.vm: j for j in await self.store.jobs_of_drain(drain.id)}
        moves = [await self._move_status(drain, m, jobs.get(m.vm)) for m in drain.plan.moves]
        now = self.clock()
        elapsed = (now - drain.created_at).total_seconds() if drain.state is not DrainState.AWAITING_APPROVAL else 0.0
        return DrainStatus(
            drain,
            tuple(moves),
            None if drain.state.finished else _remaining(moves, drain.plan.wave_overhead_s),
            elapsed,
        )

    async def _move_status(self, drain: Drain, planned: PlannedMove, job: Job | None) -> MoveStatus:
        stopping = drain.state in (DrainState.CANCELLING, DrainState.CANCELLED)
        if job is None:
            if planned.vm in drain.skipped:
                return MoveStatus(planned, None, MoveOutcome.PARKED, why=drain.skipped[planned.vm])
            if stopping:
                return MoveStatus(planned, None, MoveOutcome.CANCELLED, why="the drain was cancelled before it started")
            if drain.state.finished:
                return MoveStatus(planned, None, MoveOutcome.SKIPPED, why=f"the drain ended ({drain.state.value})")
            return MoveStatus(planned, None, MoveOutcome.PENDING)
        if job.state is JobState.SUCCEEDED:
            total, downtime = await self._figures(drain.id, job.id)
            return MoveStatus(planned, job, MoveOutcome.SUCCEEDED, total_s=total, downtime_ms=downtime)
        if job.state in PARKED_STATES:
            if stopping and job.state is JobState.ABORTED:
                return MoveStatus(
                    planned, job, MoveOutcome.CANCELLED, why="aborted by the cancel; it stays on its host"
                )
            where = job.source or drain.plan.host
            why = (job.error or job.state.value).rstrip(".")
            nxt = f"it stays on {where}; retry later with `/migrate {job.vm} to any`"
            if not planned.plan.request.options.postcopy:
                nxt += " (add --postcopy if it is busy)"
            return MoveStatus(planned, job, MoveOutcome.PARKED, why=f"{why}; {nxt}")
        if job.state in _MOVING:
            samples = await self.store.progress(job.id, limit=1)
            s = samples[-1] if samples else None
            return MoveStatus(
                planned,
                job,
                MoveOutcome.RUNNING,
                phase=s.phase.value if s else "setup",
                remaining_bytes=s.data_remaining_bytes if s else None,
                eta_s=s.eta_s if s else None,
            )
        why = ""
        if job.state is JobState.AWAITING_APPROVAL:
            why = f"needs a new approval (job #{job.id}): the re-check found different facts"
        return MoveStatus(planned, job, MoveOutcome.WAITING, why=why)

    async def _figures(self, drain_id: int, job_id: int) -> tuple[float | None, float | None]:
        cache = self._finished.setdefault(drain_id, {})
        if job_id not in cache:
            record = await self.store.record(job_id)
            out = record.outcome
            cache[job_id] = (
                (out.total_s, float(out.downtime_ms) if out and out.downtime_ms is not None else None)
                if out
                else (None, None)
            )
        return cache[job_id]

    async def wait(self, drain_id: int, timeout_s: float | None = None) -> DrainStatus:
        """Until the drain is finished (or `timeout_s`): polls the store, so it works for any replica's drain."""
        drain = await poll_until(
            lambda: self.store.get_drain(drain_id), lambda d: d.state.finished, timeout_s, self.config.poll_s
        )
        return await self.status_of(drain)

    # ----- the conductor ------------------------------------------------------------------------------

    async def _conduct(self, drain_id: int) -> None:
        try:
            await self._conduct_loop(drain_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: the drain stays running in the store and resumes at the next start
            log.exception("the conductor of %s stopped on an error; it resumes at the next start", drain_ref(drain_id))

    async def _conduct_loop(self, drain_id: int) -> None:
        loop = asyncio.get_running_loop()
        announced: set[str] | None = None
        last_rollup = -1e9
        wake = self._wake[drain_id]
        while True:
            if not await self.store.claim_drain(drain_id, self.config.replica_id, self.config.lease_s):
                log.info("%s is conducted by another replica", drain_ref(drain_id))
                return
            drain = await self.store.get_drain(drain_id)
            if drain.state not in WORKING_DRAIN_STATES:
                return
            status = await self.status_of(drain)
            ended = {m.vm for m in status.moves if _ended(m)}
            if announced is None:
                announced = set(ended)  # a restart does not repeat the lines already said
            for m in status.moves:
                if m.vm in ended and m.vm not in announced:
                    announced.add(m.vm)
                    await self.sink.emit(DrainMoveEnded(status, m, self.clock()))
            if drain.state is DrainState.CANCELLING:
                if all(_ended(m) or m.job is None for m in status.moves):
                    await self._finish(drain, DrainState.CANCELLED, status)
                    return
            else:
                wave = min((m.planned.wave for m in status.moves if not _ended(m)), default=None)
                if wave is None:
                    parked = [m for m in status.moves if m.outcome is not MoveOutcome.SUCCEEDED]
                    await self._finish(drain, DrainState.PARTIALLY_DONE if parked else DrainState.DONE, status)
                    return
                for m in status.moves:
                    if m.planned.wave == wave and _needs_start(m, drain):
                        await self._start_move(drain, m)
            if loop.time() - last_rollup >= self.config.rollup_s:
                last_rollup = loop.time()
                await self.sink.emit(DrainRollup(await self.status(drain_id), self.clock()))
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.config.poll_s)

    async def _start_move(self, drain: Drain, move: MoveStatus) -> None:
        """Make the move's job (or finish making it, after a restart) and approve it with the drain's approvers."""
        planned = move.planned
        job = move.job
        if job is None:
            try:
                job = await self.store.create_job(
                    vm=planned.vm,
                    destination=planned.destination,
                    requester=drain.requester,
                    reason=f"{drain.ref}: {drain.kind.value} of {drain.host}"
                    + (f" ({drain.reason})" if drain.reason else ""),
                    chat=ChatRefs(channel=drain.chat.channel),
                    idempotency_key=move_key(drain.id, planned.vm),
                    drain_id=drain.id,
                )
            except DuplicateRequestError as dup:
                job = await self.store.get_job(dup.job_id)
            except ActiveJobExists as busy:
                await self.store.skip_drain_move(drain.id, planned.vm, f"{busy.message}; the drain left it where it is")
                return
        if job.state is JobState.REQUESTED:
            job = await self.mover.move(job, JobState.PREFLIGHT, None, f"checked as part of {drain.ref}")
        if job.state is JobState.PREFLIGHT:
            job = await self.mover.move(
                job,
                JobState.AWAITING_APPROVAL,
                None,
                f"planned by {drain.ref} (wave {planned.wave})",
                plan=planned.plan,
            )
        if job.state is not JobState.AWAITING_APPROVAL or job.plan is None or job.plan.hash != planned.plan.hash:
            return
        given = {a.actor for a in job.approvals if a.approved and a.plan_hash == planned.plan.hash}
        for a in drain.approvals:
            if a.approved and a.plan_hash == drain.plan.hash and a.actor not in given:
                await self.store.add_approval(job.id, a.actor, True, planned.plan.hash, list(a.groups))
        job = await self.store.get_job(job.id)
        approvers = ", ".join(drain.approvers)
        await self.mover.move(job, JobState.APPROVED, None, f"approved with {drain.ref} by {approvers}")
        self.dispatcher.kick()

    async def _finish(self, drain: Drain, state: DrainState, status: DrainStatus) -> None:
        done = status.count(MoveOutcome.SUCCEEDED)
        parked = [m for m in status.moves if m.outcome is MoveOutcome.PARKED]
        text = f"{done} of {len(status.moves)} moved"
        if parked:
            text += "; parked: " + "; ".join(f"{m.vm} ({m.why})" for m in parked)
        if state is DrainState.CANCELLED:
            text = f"cancelled: {text}"
        try:
            await self._move(drain, state, None, text)
        except DrainStateError as err:  # somebody else finished it (another replica after a takeover)
            log.info("%s: %s", drain.ref, err.message)
        self._finished.pop(drain.id, None)

    async def _move(self, drain: Drain, new: DrainState, actor: str | None, detail: str) -> Drain:
        moved = await self.store.move_drain(drain.id, drain.state, new, actor=actor, detail=detail)
        log.info("%s: %s -> %s: %s", drain.ref, drain.state.value, new.value, detail)
        await self.sink.emit(DrainChanged(await self.status_of(moved), actor, detail, self.clock()))
        return moved

    async def _announce(self, drain: Drain, actor: str | None, detail: str) -> None:
        await self.sink.emit(DrainChanged(await self.status_of(drain), actor, detail, self.clock()))


def _ended(m: MoveStatus) -> bool:
    return m.outcome in (MoveOutcome.SUCCEEDED, MoveOutcome.PARKED, MoveOutcome.CANCELLED, MoveOutcome.SKIPPED)


def _needs_start(m: MoveStatus, drain: Drain) -> bool:
    """No job yet, or one a restart left half made (not yet approved with the drain's approvers)."""
    if m.outcome is not MoveOutcome.PENDING and m.outcome is not MoveOutcome.WAITING:
        return False
    job = m.job
    if job is None:
        return True
    if job.state in (JobState.REQUESTED, JobState.PREFLIGHT):
        return True
    return (
        job.state is JobState.AWAITING_APPROVAL
        and job.plan is not None
        and job.plan.hash == m.planned.plan.hash
        and not any(a.approved and a.plan_hash == job.plan.hash for a in job.approvals)
        and bool(drain.approvers)
    )


def _remaining(moves: Sequence[MoveStatus], overhead_s: float = WAVE_OVERHEAD_S) -> float:
    """Seconds left: the current wave's longest remaining move, then every later wave's longest prediction."""
    by_wave: dict[int, float] = {}
    for m in moves:
        if _ended(m):
            left = 0.0
        elif m.outcome is MoveOutcome.RUNNING and m.eta_s is not None:
            left = m.eta_s
        elif m.outcome is MoveOutcome.RUNNING and m.job is not None:
            left = m.planned.predicted_total_s
        else:
            left = m.planned.predicted_total_s
        by_wave[m.planned.wave] = max(by_wave.get(m.planned.wave, 0.0), left)
    return round(sum(left + overhead_s for left in by_wave.values() if left > 0), 1)
