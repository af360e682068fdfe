"""A two-or-more-host fleet with the real preflight runner and executor on virtual time, for the fleet tests.

`Rig` holds the fleet, its inventory, the real `PreflightRunner` and `Executor`, and a sink that keeps every
event. Tests are plain functions that call `run_virtual(...)`: each runs on its own virtual-time loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from migration_core.events import JobEvent, Notice, ProgressUpdated
from migration_core.execution.executor import Executor
from migration_core.hypervisor.fleet import Fleet, HostSpec, VirtualClock, VmSpec
from migration_core.inventory.hosts import Inventory
from migration_core.inventory.policy_file import Policy
from migration_core.models import JobState, MigrationOptions, MigrationRequest, Plan
from migration_core.preflight.runner import PreflightRunner
from migration_core.service import MigrationService, ServiceConfig
from migration_core.service_api import ApproverCheck, GroupCheck
from migration_core.store import Store

H1, H2 = "h1", "h2"


@dataclass
class Recorder:
    """An event sink that keeps everything it is given."""

    events: list[JobEvent] = field(default_factory=list)

    async def emit(self, event: JobEvent) -> None:
        self.events.append(event)

    def notices(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, Notice)]

    def progress(self) -> list[ProgressUpdated]:
        return [e for e in self.events if isinstance(e, ProgressUpdated)]


@dataclass
class Rig:
    fleet: Fleet
    inventory: Inventory
    planner: PreflightRunner
    executor: Executor
    sink: Recorder
    clock: VirtualClock

    async def plan(self, vm: str, destination: str = H2, **options: object) -> Plan:
        plan = await self.planner.make_plan(MigrationRequest(vm, destination, MigrationOptions(**options)))  # type: ignore[arg-type]
        assert plan.executable, [c for c in plan.checks if c.status.value == "fail"]
        return plan


def rig(*vms: VmSpec, hosts: tuple[HostSpec, ...] = (HostSpec(H1), HostSpec(H2))) -> Rig:
    fleet = Fleet.build(hosts=hosts, vms=vms)
    inventory = fleet.inventory()
    clock = VirtualClock()
    sink = Recorder()
    planner = PreflightRunner(inventory, fleet, dirty_rate_window_s=1.0, prober=fleet.probe)
    executor = Executor(fleet, inventory, sink, clock.now, poll_interval_s=0.5)
    return Rig(fleet, inventory, planner, executor, sink, clock)


async def when(condition: Callable[[], bool], *, every_s: float = 0.1, limit_s: float = 3600.0) -> float:
    """Wait (virtual time) until `condition()` holds; returns how long it took. Fails after `limit_s`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        if loop.time() - start > limit_s:
            raise AssertionError(f"condition not met within {limit_s} s of virtual time")
        await asyncio.sleep(every_s)
    return loop.time() - start


async def started(task: Awaitable[object]) -> asyncio.Task[object]:
    """Start a coroutine as a task and let it run its first steps."""
    t = asyncio.ensure_future(task)
    await asyncio.sleep(0)
    return t  # type: ignore[return-value]


# ----- the whole service on the fleet ------------------------------------------------------------------------


async def _approver(_user: str) -> bool:
    return True


async def open_service(
    r: Rig,
    db_url: str,
    *,
    replica: str = "replica-a",
    lease_s: float = 10.0,
    approval_ttl_s: float = 1800.0,
    tick_s: float = 1.0,
    sink: Recorder | None = None,
    rules: Policy | None = None,
    group_check: GroupCheck | None = None,
    approver_check: ApproverCheck | None = None,
) -> MigrationService:
    """The real MigrationService (dispatcher, executor, preflight, store on SQLite) on the rig's fleet; `rules`
    is a policy file, `group_check` who is in its owners' groups (default: the file's [groups] lists)."""
    store = await Store.open(db_url, clock=r.clock.now)
    sink = sink or r.sink
    executor = Executor(r.fleet, r.inventory, sink, r.clock.now, poll_interval_s=0.5)
    service = MigrationService(
        store=store,
        inventory=r.inventory,
        planner=r.planner,
        executor=executor,
        sink=sink,
        approver_check=approver_check or _approver,
        config=ServiceConfig(
            approval_ttl_s=approval_ttl_s,
            replica_id=replica,
            lease_s=lease_s,
            dispatch_interval_s=tick_s,
            wait_poll_s=1.0,
        ),
        clock=r.clock.now,
        monotonic=r.clock.monotonic,
        rules=rules,
        group_check=group_check,
    )
    await service.start()
    return service


async def close_service(service: MigrationService) -> None:
    await service.close()
    await service.store.close()


async def approve(service: MigrationService, job_id: int) -> None:
    """Approve as many times as the plan needs (a risky plan, e.g. with post-copy, needs two people)."""
    for who in ("bob", "carol"):
        job = await service.get_job(job_id)
        if job.state is JobState.AWAITING_APPROVAL:
            await service.approve(job_id, who)
