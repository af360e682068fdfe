"""An in-memory MigrationServiceAPI for unit tests of the front ends (parsing, rendering, wiring) only.

It applies the real policy functions and emits the real event types, but migrates nothing: the end-to-end
proof runs the real service against the lab. VM names steer it: `broken*` plans fail a check, `slow*` runs
until aborted, `failing*` runs and fails.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from migration_core.dispatch.policy import check_approval, check_denial, may_control
from migration_core.errors import PolicyError, StateError, UnknownJobError
from migration_core.events import EventSink, Notice, NoticeKind, ProgressUpdated, StateChanged, SummaryReady
from migration_core.models import (
    Approval,
    CheckResult,
    CheckStatus,
    Job,
    JobState,
    MigrationRequest,
    Plan,
)
from migration_core.service_api import ApproverCheck, FreezeStatus, HostStatus, QueuePosition
from tests.bot.factories import PASSING, T0, plan, sample, summary


class InMemoryService:
    def __init__(self, sink: EventSink, approver_check: ApproverCheck, *, ttl_s: float = 1800.0) -> None:
        self.sink = sink
        self.approver_check = approver_check
        self.ttl_s = ttl_s
        self.now = T0
        self.jobs: dict[int, Job] = {}
        self.keys: dict[str, int] = {}
        self.submits = 0
        self.freeze_list: list[FreezeStatus] = []
        self._aborts: dict[int, asyncio.Event] = {}
        self._done: dict[int, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- helpers
    async def _move(
        self, job_id: int, new: JobState, actor: str | None = None, detail: str = "", **kw: object
    ) -> Job:
        old = self.jobs[job_id]
        self.jobs[job_id] = replace(old, state=new, updated_at=self.now, **kw)  # type: ignore[arg-type]
        moved = self.jobs[job_id]
        await self.sink.emit(StateChanged(job_id, old.state, new, actor, detail, self.now, moved.approvers))
        if new.terminal:
            self._done.setdefault(job_id, asyncio.Event()).set()
        return self.jobs[job_id]

    def _job(self, job_id: int) -> Job:
        if job_id not in self.jobs:
            raise UnknownJobError(f"there is no job {job_id}", "see /migrate history")
        return self.jobs[job_id]

    # --- API
    async def plan(self, request: MigrationRequest) -> Plan:
        checks = PASSING
        if request.vm.startswith("broken"):
            checks = (
                *PASSING,
                CheckResult("cpu", CheckStatus.FAIL, "destination lacks avx512f", "use a baseline"),
            )
        p = plan(
            vm=request.vm, postcopy=request.options.postcopy, checks=checks, reason=request.options.reason
        )
        return replace(p, request=request, destination=request.destination)

    async def submit(self, request, requester, *, chat_channel=None, idempotency_key=None) -> Job:
        self.submits += 1
        if idempotency_key and idempotency_key in self.keys:
            return self.jobs[self.keys[idempotency_key]]
        p = await self.plan(request)
        job_id = len(self.jobs) + 1
        self.jobs[job_id] = Job(
            job_id, request.vm, p.source, request.destination, requester, JobState.REQUESTED,
            self.now, self.now, plan=p, reason=request.options.reason, chat_channel=chat_channel,
        )  # fmt: skip
        if idempotency_key:
            self.keys[idempotency_key] = job_id
        await self._move(job_id, JobState.PREFLIGHT)
        if not p.executable:
            return await self._move(job_id, JobState.FAILED, detail="preflight failed")
        return await self._move(job_id, JobState.AWAITING_APPROVAL)

    async def approve(self, job_id: int, actor: str) -> Job:
        job = self._job(job_id)
        verdict = check_approval(job, actor, await self.approver_check(actor), self.now, self.ttl_s)
        verdict.raise_if_refused()
        approval = Approval(job_id, actor, True, job.plan.hash if job.plan else "", self.now)
        self.jobs[job_id] = replace(job, approvals=(*job.approvals, approval))
        if verdict.remaining:
            return self.jobs[job_id]
        job = await self._move(job_id, JobState.APPROVED, actor)
        await self._move(job_id, JobState.RUNNING)  # at once, so a following `abort` line finds it running
        task = asyncio.create_task(self._run(job_id))
        self._tasks.add(task)
        return job

    async def deny(self, job_id: int, actor: str, reason: str | None = None) -> Job:
        job = self._job(job_id)
        check_denial(job, actor, await self.approver_check(actor), self.now, self.ttl_s).raise_if_refused()
        self.jobs[job_id] = replace(
            job, approvals=(*job.approvals, Approval(job_id, actor, False, "", self.now))
        )
        return await self._move(job_id, JobState.DENIED, actor, reason or "")

    async def cancel(self, job_id: int, actor: str) -> Job:
        job = self._job(job_id)
        may_control(actor, job, await self.approver_check(actor)).raise_if_refused()
        if job.state not in (JobState.AWAITING_APPROVAL, JobState.APPROVED, JobState.QUEUED):
            raise StateError(
                f"job {job_id} is {job.state.value}; only a job that has not started can be cancelled"
            )
        return await self._move(job_id, JobState.ABORTED, actor, "cancelled")

    async def _control(self, job_id: int, actor: str) -> Job:
        job = self._job(job_id)
        may_control(actor, job, await self.approver_check(actor)).raise_if_refused()
        if job.state is not JobState.RUNNING:
            raise StateError(f"job {job_id} is {job.state.value}, not running")
        return job

    async def abort(self, job_id: int, actor: str) -> Job:
        job = await self._control(job_id, actor)
        self._aborts.setdefault(job_id, asyncio.Event()).set()
        await self.sink.emit(Notice(job_id, NoticeKind.CONTROL, f"abort requested by {actor}", self.now))
        return job

    async def switch_postcopy(self, job_id: int, actor: str) -> Job:
        job = await self._control(job_id, actor)
        if not (job.plan and job.plan.policy.allow_postcopy):
            raise PolicyError("this plan was approved without post-copy")
        await self.sink.emit(
            Notice(job_id, NoticeKind.POSTCOPY, f"switched to post-copy by {actor}", self.now)
        )
        return job

    async def set_max_downtime(self, job_id: int, downtime_ms: int, actor: str) -> Job:
        return await self._control(job_id, actor)

    async def set_bandwidth(self, job_id: int, bandwidth_mib_s: int, actor: str) -> Job:
        return await self._control(job_id, actor)

    async def _run(self, job_id: int) -> None:
        vm = self.jobs[job_id].vm
        abort = self._aborts.setdefault(job_id, asyncio.Event())
        for pct in (25.0, 50.0, 75.0):
            await self.sink.emit(ProgressUpdated(sample(job_id=job_id, percent=pct)))
            if vm.startswith("slow"):
                await abort.wait()
            if abort.is_set():
                await self._move(job_id, JobState.ABORTED, detail="aborted by the operator")
                await self.sink.emit(SummaryReady(replace(summary(job_id=job_id, outcome=JobState.ABORTED))))
                return
            await asyncio.sleep(0)
        await self._move(job_id, JobState.VERIFYING)
        outcome = JobState.FAILED if vm.startswith("failing") else JobState.SUCCEEDED
        await self.sink.emit(SummaryReady(summary(job_id=job_id, outcome=outcome)))
        await self._move(job_id, outcome)

    async def get_job(self, job_id: int) -> Job:
        return self._job(job_id)

    async def latest_job_for_vm(self, vm: str) -> Job | None:
        jobs = [j for j in self.jobs.values() if j.vm == vm]
        return jobs[-1] if jobs else None

    async def history(self, subject: str | None = None, limit: int = 20) -> list[Job]:
        jobs = [j for j in self.jobs.values() if subject in (None, j.vm, j.source, j.destination)]
        return list(reversed(jobs))[:limit]

    async def active_jobs(self) -> list[Job]:
        return [j for j in reversed(self.jobs.values()) if not j.state.terminal]

    async def queue(self) -> list[QueuePosition]:
        return []

    async def hosts(self) -> list[HostStatus]:
        return [
            HostStatus("hostA", "qemu:///system", True, "ok"),
            HostStatus("hostB", "qemu:///system", True, "ok"),
        ]

    async def freezes(self) -> list[FreezeStatus]:
        return list(self.freeze_list)

    async def set_chat_refs(self, job_id, *, channel=None, thread=None, progress=None) -> Job:
        job = self._job(job_id)
        self.jobs[job_id] = replace(
            job,
            chat_channel=channel or job.chat_channel,
            chat_thread=thread or job.chat_thread,
            chat_progress=progress or job.chat_progress,
        )
        return self.jobs[job_id]

    async def wait(self, job_id: int, timeout_s: float | None = None) -> Job:
        if not self._job(job_id).state.terminal:
            await asyncio.wait_for(self._done.setdefault(job_id, asyncio.Event()).wait(), timeout_s)
        return self.jobs[job_id]

    def expire_all(self) -> None:
        self.now = self.now + timedelta(seconds=self.ttl_s + 1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)
