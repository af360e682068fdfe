"""MigrationService: request -> preflight -> approval -> queue -> run -> verify, plus operator controls.

The one implementation of `service_api.MigrationServiceAPI`. Requests, approvals and controls are handled
here (policy checks, the event log, state transitions); running approved jobs (slots, queue, leases, the
executor, verification, restart recovery) is `dispatcher.Dispatcher`'s job. Every state change is persisted
by the store's compare-and-set first and only then emitted to the sink, so what a front end shows is always
what the store holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from migration_core import logctx
from migration_core.dispatch import policy, windows
from migration_core.dispatch.approvals import ApprovalSubject, required_approvals
from migration_core.dispatch.dispatcher import Dispatcher, DispatcherConfig, JobMover
from migration_core.dispatch.drains import DrainConfig, DrainDesk, HostDrainPlanner
from migration_core.drains import CancelReport, Drain, DrainStatus
from migration_core.errors import IllegalTransition, MigrateBotError, PolicyError, RequestError, StateError
from migration_core.events import EventSink, Notice, NoticeKind
from migration_core.execution.executor import Executor
from migration_core.inventory.hosts import Inventory
from migration_core.inventory.policy_file import Policy
from migration_core.limits import BANDWIDTH_MIB_S, DEFAULT_APPROVAL_TTL_S, MAX_DOWNTIME_MS, Limit
from migration_core.models import ChatRefs, Job, JobState, MigrationOptions, MigrationRequest, Plan
from migration_core.planning.drain import DrainPlan, DrainRequest, PlacedPlan
from migration_core.service_api import ApproverCheck, FreezeStatus, GroupCheck, HostStatus, QueuePosition
from migration_core.store import (
    ActiveJobExists,
    DuplicateRequestError,
    EventKind,
    HostLimit,
    Journal,
    Store,
    poll_until,
)
from migration_core.store.states import CANCELLABLE_STATES

log = logging.getLogger(__name__)
T = TypeVar("T")
# How long a control waits for a run this replica has just started to be watched (the start is being announced).
START_GRACE_S = 10.0


@runtime_checkable
class HostPlanner(HostDrainPlanner, Protocol):
    """Plans many moves at once (drains, `to any`); PreflightRunner implements it."""

    maintenance: Callable[[], Awaitable[Mapping[str, str]]] | None  # hosts placement must skip, and why

    async def plan_any(self, vm: str, options: MigrationOptions) -> PlacedPlan: ...

    async def plan_return(
        self, host: str, vms_by_host: Mapping[str, Sequence[str]], options: MigrationOptions
    ) -> DrainPlan: ...


class _DeferredHostPlanner:
    """The desk's planner: the real one when it can place VMs, else a clear refusal at the first use (the
    service is built with any PlanMaker, so whether it can drain is only known when a drain is asked for)."""

    def __init__(self, planner: object) -> None:
        self._planner = planner

    async def plan_drain(self, request: DrainRequest) -> DrainPlan:
        return await _host_planner(self._planner).plan_drain(request)

    async def plan_return(
        self, host: str, vms_by_host: Mapping[str, Sequence[str]], options: MigrationOptions
    ) -> DrainPlan:
        return await _host_planner(self._planner).plan_return(host, vms_by_host, options)


def _host_planner(planner: object) -> HostPlanner:
    if not isinstance(planner, HostPlanner):
        raise RequestError(
            "this bot's planner cannot place VMs (drain, `to any`)", "run the bot with the standard preflight runner"
        )
    return planner


class PlanMaker(Protocol):
    """Gathers facts and builds a plan (migration_core.preflight.runner.PreflightRunner implements it)."""

    async def make_plan(self, request: MigrationRequest, *, reuse_dirty_rate_s: float = 0.0) -> Plan: ...

    async def host_status(self, name: str) -> tuple[bool, str, int | None]: ...


@dataclass(frozen=True)
class ServiceConfig:
    """Policy and timing knobs of the service (filled from bot.settings.Settings)."""

    approval_ttl_s: float = DEFAULT_APPROVAL_TTL_S
    requesters: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    requests_per_user_per_hour: int = 30
    replica_id: str = "migrate-bot"
    lease_s: float = 30.0
    dispatch_interval_s: float = 1.0
    wait_poll_s: float = 0.25
    drain_rollup_s: float = 5.0  # the drain's roll-up message is refreshed this often (issue 11: <= 10 s)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def policy_group_check(rules: Policy) -> GroupCheck:
    """Group membership from the policy file's [groups] (console, tests, Slack without user groups)."""

    async def check(user: str, group: str) -> bool:
        return user in rules.members(group)

    return check


class MigrationService:
    """The core's service API. Create it, `await start()`, use it, `await close()`."""

    def __init__(
        self,
        *,
        store: Store,
        inventory: Inventory,
        planner: PlanMaker,
        executor: Executor,
        sink: EventSink,
        approver_check: ApproverCheck,
        config: ServiceConfig | None = None,
        clock: Callable[[], datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        journal: Journal | None = None,
        rules: Policy | None = None,
        group_check: GroupCheck | None = None,
    ) -> None:
        self.store = store
        self.journal = journal  # the executor's record writer (bot.wiring); flushed on close
        self.inventory = inventory
        self.planner = planner
        self.executor = executor
        self.sink = sink
        self.config = config or ServiceConfig()
        self.clock = clock
        self.rules = rules or Policy.default()  # the policy file (`policy` is the module of pure rules)
        self.approvers = policy.Approvers(approver_check, group_check or policy_group_check(self.rules))
        self._rate = policy.RateLimiter(self.config.requests_per_user_per_hour, 3600.0, monotonic)
        self._mover = JobMover(store, sink, clock)
        self.dispatcher = Dispatcher(
            store=store,
            inventory=inventory,
            planner=planner,
            executor=executor,
            mover=self._mover,
            sink=sink,
            config=DispatcherConfig(
                replica_id=self.config.replica_id,
                lease_s=self.config.lease_s,
                interval_s=self.config.dispatch_interval_s,
                approval_ttl_s=self.config.approval_ttl_s,
            ),
            clock=clock,
            freezes=self.rules.freezes,
        )
        self.drains = DrainDesk(
            dispatcher=self.dispatcher,
            planner=_DeferredHostPlanner(planner),
            rules=self.rules,
            approvers=self.approvers,
            admit=self._admit_drain,
            cancel_job=self.cancel,
            abort_job=self.abort,
            config=DrainConfig(
                replica_id=self.config.replica_id,
                lease_s=self.config.lease_s,
                approval_ttl_s=self.config.approval_ttl_s,
                # a wave's end is noticed within a quarter second: the hand-over is part of every wave's cost
                poll_s=min(0.25, self.config.dispatch_interval_s),
                rollup_s=self.config.drain_rollup_s,
            ),
        )
        if isinstance(planner, HostPlanner):
            # placement (drains, `to any`) skips hosts under maintenance; a single move to one gets a warning
            planner.maintenance = self.drains.host_marks

    async def start(self) -> None:
        """Recover unfinished jobs (restart) and start dispatching approved ones; continue running drains."""
        await self.dispatcher.start()
        await self.drains.start()

    async def close(self) -> None:
        await self.drains.stop()
        await self.dispatcher.stop()
        if self.journal is not None:
            await self.journal.aclose(10.0)  # what the migrations reported last is written before we go

    # ----- requests ---------------------------------------------------------------------------------------

    async def plan(self, request: MigrationRequest) -> Plan:
        self.inventory.get(request.destination)  # an unknown host is bad input: say so before any I/O
        return await self.planner.make_plan(request)

    async def plan_drain(self, request: DrainRequest) -> DrainPlan:
        """The dry run of `drain <host>`: nothing changes. Unknown hosts are bad input, refused before any I/O."""
        return await self.drains.timed(await _host_planner(self.planner).plan_drain(self._checked(request)))

    async def plan_any(self, vm: str, options: MigrationOptions) -> PlacedPlan:
        """`<vm> to any`: the single move's plan to the host placement chooses, with the reason."""
        return await _host_planner(self.planner).plan_any(vm, options)

    # ----- drains (issue 11): the desk does the work; these check the input and name the operation -------

    def _checked(self, request: DrainRequest) -> DrainRequest:
        """The front end's drain request with the host's canonical name: unknown hosts are refused before any I/O."""
        source = self.inventory.get(request.host)
        for name in request.to:
            self.inventory.get(name)
        if len(self.inventory) < 2:
            raise RequestError(
                f"{source.name} is the only host in {self.inventory.path}: there is nowhere to drain it to",
                "add the other hosts to the hosts file",
            )
        return replace(request, host=source.name)

    async def request_drain(self, request: DrainRequest, requester: str, *, chat_channel: str | None = None) -> Drain:
        """`drain <host>`: the plan, up for approval (a drain needs a risky plan's approvers)."""
        checked = self._checked(request)
        with logctx.job_context(actor=requester):
            return await self.drains.request(checked, requester, chat_channel=chat_channel)

    async def plan_return(self, host: str) -> DrainPlan:
        """The dry run of `return <host>`."""
        plan, _source = await self.drains.plan_return(self.inventory.get(host).name)
        return plan

    async def request_return(
        self, host: str, requester: str, reason: str | None = None, *, chat_channel: str | None = None
    ) -> Drain:
        """`return <host>`: move back what the last completed drain of `host` took off it; up for approval."""
        return await self.drains.request_return(
            self.inventory.get(host).name, requester, reason, chat_channel=chat_channel
        )

    async def approve_drain(self, drain_id: int, actor: str) -> Drain:
        return await self._drain_decision(drain_id, actor, "approve drain", self.drains.approve(drain_id, actor))

    async def deny_drain(self, drain_id: int, actor: str, reason: str | None = None) -> Drain:
        return await self._drain_decision(drain_id, actor, "deny drain", self.drains.deny(drain_id, actor, reason))

    async def cancel_drain(self, drain_id: int, actor: str) -> CancelReport:
        return await self._drain_decision(drain_id, actor, "cancel drain", self.drains.cancel(drain_id, actor))

    async def _drain_decision(self, drain_id: int, actor: str, action: str, decision: Awaitable[T]) -> T:
        """Await a person's decision on a drain; a refused one is recorded (who, what, which drain) and re-raised."""
        try:
            return await decision
        except MigrateBotError as err:
            await self.record_refusal(None, actor, action, err, {"drain": drain_id})
            raise

    async def get_drain(self, drain_id: int) -> Drain:
        return await self.drains.get(drain_id)

    async def drain_status(self, drain_id: int) -> DrainStatus:
        return await self.drains.status(drain_id)

    async def active_drains(self) -> list[DrainStatus]:
        return await self.drains.active()

    async def recent_drains(self, limit: int = 20) -> list[Drain]:
        return await self.drains.recent(limit)

    async def host_marks(self) -> dict[str, str]:
        return await self.drains.host_marks()

    async def set_drain_refs(
        self, drain_id: int, *, channel: str | None = None, thread: str | None = None, progress: str | None = None
    ) -> Drain:
        return await self.store.update_drain_chat(drain_id, ChatRefs(channel, thread, progress))

    async def wait_drain(self, drain_id: int, timeout_s: float | None = None) -> DrainStatus:
        return await self.drains.wait(drain_id, timeout_s)

    async def _admit_drain(
        self, requester: str, chat_channel: str | None, options: MigrationOptions, what: str
    ) -> None:
        """The request rules of a single move, for a drain or a return: who, where, ticket, freeze, rate."""
        if options.not_before is not None or options.not_after is not None:
            raise RequestError(
                f"a {what} starts when it is approved: --at / --window are for single moves",
                "drop --at / --window, and approve the drain when the window opens",
            )
        now = self.clock()
        for verdict in (
            policy.may_request(requester, self.config.requesters, chat_channel, self.config.channels),
            policy.check_ticket(options.ticket, self.rules.ticket),
            policy.check_change_window(options.emergency, self.rules.freezes, now, self.rules.approvals.emergency),
        ):
            if not verdict.allowed:
                err = verdict.error()
                assert err is not None
                await self.record_refusal(None, requester, "request", err, {"what": what})
                raise err
        rate = self._rate.hit(requester)
        if not rate.allowed:
            limited = PolicyError(rate.reason, "wait a little, or ask an operator to raise MIGRATE_BOT_RATE_LIMIT")
            await self.record_refusal(None, requester, "request", limited, {"what": what})
            raise limited

    async def submit(
        self,
        request: MigrationRequest,
        requester: str,
        *,
        chat_channel: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        if idempotency_key:
            existing = await self.store.find_by_idempotency_key(idempotency_key)
            if existing is not None:
                return existing
        allowed = policy.may_request(requester, self.config.requesters, chat_channel, self.config.channels)
        if not allowed.allowed:
            err = allowed.error()
            assert err is not None
            await self.record_refusal(None, requester, "request", err, {"vm": request.vm})
            raise err
        now = self.clock()
        start, end = windows.resolve_schedule(
            request.options.not_before, request.options.not_after, self.rules.schedule
        )
        request = replace(request, options=replace(request.options, not_before=start, not_after=end))
        opts = request.options
        for verdict in (
            policy.check_ticket(opts.ticket, self.rules.ticket),
            policy.check_schedule(start, end, now),
            # A scheduled request is judged at its start: one made during a freeze for after it is fine.
            policy.check_change_window(
                opts.emergency, self.rules.freezes, max(now, start or now), self.rules.approvals.emergency
            ),
        ):
            if not verdict.allowed:
                err = verdict.error()
                assert err is not None
                await self.record_refusal(None, requester, "request", err, {"vm": request.vm, "code": verdict.code})
                raise err
        destination = self.inventory.get(request.destination).name  # canonical spelling; unknown -> error
        active = await self.store.active_job_for_vm(request.vm)
        if active is not None:
            # a concurrent duplicate delivery may have created the job since the first look: it is this request
            if idempotency_key and (mine := await self.store.find_by_idempotency_key(idempotency_key)) is not None:
                return mine
            raise ActiveJobExists(request.vm, active.id, active.state)
        rate = self._rate.hit(requester)
        if not rate.allowed:
            limited = PolicyError(rate.reason, "wait a little, or ask an operator to raise MIGRATE_BOT_RATE_LIMIT")
            await self.record_refusal(None, requester, "request", limited, {"vm": request.vm})
            raise limited
        try:
            job = await self.store.create_job(
                vm=request.vm,
                destination=destination,
                requester=requester,
                reason=request.options.reason,
                chat=ChatRefs(channel=chat_channel),
                idempotency_key=idempotency_key,
            )
        except DuplicateRequestError as dup:
            return await self.store.get_job(dup.job_id)
        with logctx.for_job(job, requester):  # every log line of the preflight names the job
            return await self._preflight(job, request, requester)

    async def _preflight(self, job: Job, request: MigrationRequest, requester: str) -> Job:
        job = await self._mover.move(job, JobState.PREFLIGHT, requester, "running preflight checks")
        try:
            plan = await self.planner.make_plan(request)
        except MigrateBotError as err:
            return await self._mover.move(job, JobState.FAILED, None, f"preflight failed: {err}", error=str(err))
        except Exception as err:  # a bug: log it with a reference the operator can quote
            ref = f"E{job.id}-{int(time.time())}"
            log.exception("preflight of job %s crashed (ref %s)", job.id, ref)
            text = f"internal error during preflight (reference {ref}); the logs have the details"
            await self._mover.move(job, JobState.FAILED, None, text, error=text)
            raise MigrateBotError(text) from err
        if plan.executable:
            if self.rules.path is not None:  # without a policy file the built-in rule stays as it was
                subject = ApprovalSubject.of_plan(plan, policy.risk_reasons(plan), request.options.emergency)
                plan = replace(plan, approval=required_approvals(subject, self.rules))
            need = policy.required_approvals(plan)
            detail = f"preflight passed; needs {need} approval{'s' if need > 1 else ''}"
            if plan.approval is not None and plan.approval.groups:
                detail += " (" + ", ".join(f"{n.count} from @{n.group}" for n in plan.approval.groups) + ")"
            return await self._mover.move(job, JobState.AWAITING_APPROVAL, None, detail, plan=plan)
        names = ", ".join(c.name for c in plan.failures)
        return await self._mover.move(
            job, JobState.FAILED, None, f"preflight failed: {names}", plan=plan, error=f"preflight failed: {names}"
        )

    # ----- change control ---------------------------------------------------------------------------------

    async def _refuse(self, job: Job | None, job_id: int, actor: str, action: str, err: MigrateBotError) -> None:
        await self.record_refusal(job.id if job else None, actor, action, err, {"job_id": job_id})

    async def record_refusal(
        self,
        job_id: int | None,
        actor: str,
        action: str,
        err: MigrateBotError | str,
        data: dict[str, object] | None = None,
    ) -> None:
        """Record a refused attempt in the event log (kind "refused") and the log; `job_id=None` when the
        attempt named no existing job (a forged or stale button). Never raises: the refusal itself is what the
        person sees, a store hiccup must not replace it."""
        text = err.message if isinstance(err, MigrateBotError) else err
        log.warning("refused %s by %s: %s", action, actor or "?", text)
        try:
            detail = f"{action} refused: {text}"
            data = {"action": action, **(data or {})}
            await self.store.record_event(job_id, EventKind.REFUSED, actor or None, detail, data)
        except MigrateBotError as store_err:
            log.error("could not record the refused %s by %s: %s", action, actor, store_err)

    async def _load(self, job_id: int, actor: str, action: str) -> Job:
        try:
            return await self.store.get_job(job_id)
        except MigrateBotError as err:
            await self._refuse(None, job_id, actor, action, err)
            raise

    @logctx.scoped(job_id="job_id", actor="actor")
    async def approve(self, job_id: int, actor: str) -> Job:
        job = await self._load(job_id, actor, "approve")
        who = await self.approvers.decider(actor, policy.requirement_of(job.plan))
        verdict = policy.check_approval(job, who, self.clock(), self.config.approval_ttl_s)
        if not verdict.allowed:
            err = verdict.error()
            assert err is not None
            await self._refuse(job, job_id, actor, "approve", err)
            if verdict.code is policy.VerdictCode.EXPIRED:
                await self.dispatcher.expire(job)
            elif verdict.code is policy.VerdictCode.WINDOW_PASSED:
                await self.dispatcher.expire(job, verdict.reason)
            raise err
        assert job.plan is not None  # awaiting approval always has a plan
        await self.store.add_approval(job.id, actor, True, job.plan.hash, sorted(who.groups))
        job = await self.store.get_job(job.id)
        if verdict.remaining > 0:
            return job
        approvers = ", ".join(job.approvers)
        job = await self._mover.move(job, JobState.APPROVED, actor, f"approved by {approvers}")
        self.dispatcher.kick()
        return job

    @logctx.scoped(job_id="job_id", actor="actor")
    async def deny(self, job_id: int, actor: str, reason: str | None = None) -> Job:
        job = await self._load(job_id, actor, "deny")
        verdict = policy.check_denial(
            job, actor, await self.approvers.is_approver(actor), self.clock(), self.config.approval_ttl_s
        )
        if not verdict.allowed:
            err = verdict.error()
            assert err is not None
            await self._refuse(job, job_id, actor, "deny", err)
            raise err
        await self.store.add_approval(job.id, actor, False, job.plan.hash if job.plan else "")
        detail = f"denied by {actor}" + (f": {reason}" if reason else "")
        return await self._mover.move(job, JobState.DENIED, actor, detail)

    async def _controlled(self, job_id: int, actor: str, action: str) -> Job:
        job = await self._load(job_id, actor, action)
        verdict = policy.may_control(actor, job, await self.approvers.is_approver(actor))
        if not verdict.allowed:
            err = verdict.error()
            assert err is not None
            await self._refuse(job, job_id, actor, action, err)
            raise err
        return job

    @logctx.scoped(job_id="job_id", actor="actor")
    async def cancel(self, job_id: int, actor: str) -> Job:
        job = await self._controlled(job_id, actor, "cancel")
        if job.state not in CANCELLABLE_STATES:
            err = StateError(
                f"job {job.id} is {job.state.value} and can no longer be cancelled",
                "use abort for a running migration" if job.state is JobState.RUNNING else "nothing to do",
            )
            await self._refuse(job, job_id, actor, "cancel", err)
            raise err
        return await self._withdraw(job, actor)

    async def _withdraw(self, job: Job, actor: str) -> Job:
        """Withdraw a job that has not started. IllegalTransition when the dispatcher moved it first."""
        await self.store.record_event(job.id, EventKind.CONTROL, actor, "cancel")
        return await self._mover.move(job, JobState.ABORTED, actor, f"cancelled by {actor} before it ran")

    async def _run_control(self, job_id: int, actor: str, action: str, call: Any, detail: str) -> Job:
        try:
            job = await self._controlled(job_id, actor, action)
            job = await self._until_watched(job)
            if job.state is not JobState.RUNNING or not self.executor.running(job.id):
                call.close()  # the control never starts: close its coroutine (no "never awaited" warning)
                where = f" (it is run by replica {job.owner})" if job.owner and job.state is JobState.RUNNING else ""
                err = StateError(f"job {job.id} is {job.state.value}{where}; {action} applies to a running migration")
                await self._refuse(job, job_id, actor, action, err)
                raise err
        except BaseException:
            call.close()
            raise
        try:
            await call
        except MigrateBotError as err:
            await self._refuse(job, job_id, actor, action, err)
            raise
        await self.store.record_event(job.id, EventKind.CONTROL, actor, detail)
        return await self.store.get_job(job.id)

    async def _until_watched(self, job: Job) -> Job:
        """A job this replica has just moved to running, and whose executor run is not registered yet (the state
        change is being announced): wait for the run, so a control typed at that moment is not refused."""
        deadline = asyncio.get_running_loop().time() + START_GRACE_S
        while (
            job.state is JobState.RUNNING
            and not self.executor.running(job.id)
            and self.dispatcher.runs_here(job.id)
            and asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.05)
            job = await self.store.get_job(job.id)
        return job

    @logctx.scoped(job_id="job_id", actor="actor")
    async def abort(self, job_id: int, actor: str) -> Job:
        job = await self._load(job_id, actor, "abort")  # an unknown job is a refused attempt, recorded
        if job.state in CANCELLABLE_STATES:
            job = await self._controlled(job_id, actor, "cancel")  # before the run an abort is a cancel
            try:
                if job.state in CANCELLABLE_STATES:
                    return await self._withdraw(job, actor)
            except IllegalTransition:  # the dispatcher started it meanwhile: abort the run instead
                log.info("job %s: it started while %s withdrew it; aborting the run", job_id, actor)
        return await self._run_control(job_id, actor, "abort", self.executor.abort(job_id, actor), "abort")

    @logctx.scoped(job_id="job_id", actor="actor")
    async def switch_postcopy(self, job_id: int, actor: str) -> Job:
        return await self._run_control(
            job_id, actor, "postcopy", self.executor.switch_postcopy(job_id, actor), "switch to post-copy"
        )

    @logctx.scoped(job_id="job_id", actor="actor")
    async def set_max_downtime(self, job_id: int, downtime_ms: int, actor: str) -> Job:
        apply = self.executor.set_max_downtime
        return await self._set_limit(job_id, actor, "downtime", MAX_DOWNTIME_MS, downtime_ms, apply)

    @logctx.scoped(job_id="job_id", actor="actor")
    async def set_bandwidth(self, job_id: int, bandwidth_mib_s: int, actor: str) -> Job:
        apply = self.executor.set_bandwidth
        return await self._set_limit(job_id, actor, "bandwidth", BANDWIDTH_MIB_S, bandwidth_mib_s, apply)

    async def _set_limit(
        self,
        job_id: int,
        actor: str,
        action: str,
        limit: Limit,
        value: int,
        apply: Callable[[int, int, str], Coroutine[Any, Any, None]],
    ) -> Job:
        """Change one of a running migration's limits: checked against the limit's range before anything runs
        (the event says "max downtime 300 ms")."""
        shown = f"{value} {limit.unit.value}"
        limit.check(value, limit.name, shown)
        return await self._run_control(job_id, actor, action, apply(job_id, value, actor), f"{limit.name} {shown}")

    # ----- reading ----------------------------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job:
        return await self.store.get_job(job_id)

    async def latest_job_for_vm(self, vm: str) -> Job | None:
        return await self.store.latest_job_for_vm(vm)

    async def history(self, subject: str | None = None, limit: int = 20) -> list[Job]:
        if subject is not None and (host := self.inventory.find(subject)) is not None:
            subject = host.name
        return await self.store.history(subject, limit)

    async def active_jobs(self) -> list[Job]:
        return await self.store.active_jobs()

    async def queue(self) -> list[QueuePosition]:
        return await self.dispatcher.queue_positions()

    async def hosts(self) -> list[HostStatus]:
        load = await self.store.host_load()

        async def one(name: str) -> HostStatus:
            host = self.inventory.get(name)
            try:
                ok, detail, running = await asyncio.wait_for(self.planner.host_status(name), 15)
            except TimeoutError:
                ok, detail, running = False, "no answer within 15 s", None
            hl = load.get(host.name)
            return HostStatus(
                name=host.name,
                uri=host.uri,
                reachable=ok,
                detail=detail,
                running_vms=running,
                inbound_active=hl.inbound if hl else 0,
                outbound_active=hl.outbound if hl else 0,
                limit=HostLimit(host.max_inbound, host.max_outbound),
            )

        return list(await asyncio.gather(*(one(n) for n in self.inventory.names())))

    async def freezes(self) -> list[FreezeStatus]:
        now = self.clock()
        return [
            FreezeStatus(
                name=o.window.name,
                start=o.start,
                end=o.end,
                in_force=o.contains(now),
                rule=f"weekly {o.window.weekly.text} {o.window.timezone.key}" if o.window.weekly else "",
                timezone=o.window.timezone.key,
            )
            for o in windows.upcoming(self.rules.freezes, now)
        ]

    async def set_chat_refs(
        self, job_id: int, *, channel: str | None = None, thread: str | None = None, progress: str | None = None
    ) -> Job:
        return await self.store.update_job_chat(job_id, ChatRefs(channel, thread, progress))

    async def wait(self, job_id: int, timeout_s: float | None = None) -> Job:
        return await poll_until(
            lambda: self.store.get_job(job_id), lambda job: job.state.terminal, timeout_s, self.config.wait_poll_s
        )

    async def notice(self, job_id: int, kind: NoticeKind, text: str) -> None:
        """Record and emit a notice (used by the dispatcher and front ends)."""
        await self.store.record_event(job_id, EventKind.NOTICE, None, text)
        await self.sink.emit(Notice(job_id, kind, text, self.clock()))
