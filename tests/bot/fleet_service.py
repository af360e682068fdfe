"""The real MigrationService on the in-memory fleet, for the front ends' unit tests (console, handlers, app).

Replaces the hand-written in-memory service: what the console and the Slack handlers talk to is the real
service (policy, store on SQLite, dispatcher, executor, verification) over simulated hosts hostA and hostB,
on virtual time (modules mark themselves `virtual_time`; tests/conftest.py gives them a VirtualTimeLoop).
VM names steer the fleet as they steered the old fake:

- `vm42`: a calm 1 GiB guest on hostA, migrates in a few virtual seconds (a name the fleet lacks fails preflight);
- `slowvm`: a guest whose migration is capped at 1 MiB/s (hours of virtual time): runs until aborted;
- `brokenvm`: its CPU model is one hostB cannot run: preflight fails the cpu check;
- `failingvm`: its migration fails (an injected libvirt failure) and it stays on hostA.

With `drain_host=True` (drain tests) a third host, hostC, holds three small idle guests `web1`..`web3` that a
`/migrate drain hostC` moves to hostA and hostB in a few virtual seconds each; `fleet.fail_migration("web3")`
makes one of them park. The default fleet is unchanged (two hosts), so placement and `hosts` answers of the
other tests do not move. A test that needs other guests passes its own `fleet=`; a benchmark that runs on
the wall clock (real HTTP to the fake Slack) passes `real_time=True` instead of running on a virtual loop.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from migration_core.events import EventSink
from migration_core.execution.executor import Executor
from migration_core.hypervisor.fleet import Fleet, HostSpec, VirtualClock, VmSpec
from migration_core.models import Job
from migration_core.preflight.runner import PreflightRunner
from migration_core.service import MigrationService, ServiceConfig
from migration_core.service_api import ApproverCheck
from migration_core.store import Store

A, B, C = "hostA", "hostB", "hostC"
DRAIN_VMS = ("web1", "web2", "web3")


def lab_like_fleet(*, drain_host: bool = False) -> Fleet:
    hosts = [HostSpec(A, link_mib_s=1000), HostSpec(B, link_mib_s=1000)]
    vms = [
        VmSpec("vm42", host=A, memory_mib=1024, transferable_mib=512, dirty_mib_s=5),
        VmSpec("slowvm", host=A, memory_mib=8192, dirty_mib_s=1),
        VmSpec("brokenvm", host=A, memory_mib=1024, cpu_model="Sapphirerapids"),
        VmSpec("failingvm", host=A, memory_mib=1024, dirty_mib_s=5),
    ]
    if drain_host:
        hosts.append(HostSpec(C, link_mib_s=100))
        vms += [
            VmSpec(name, host=C, memory_mib=512 * (i + 1), transferable_mib=128 * (i + 1), dirty_mib_s=1)
            for i, name in enumerate(DRAIN_VMS)
        ]
    fleet = Fleet.build(hosts=hosts, vms=vms)
    fleet.vms["slowvm"].max_speed_mib_s = 1
    fleet.fail_migration("failingvm")
    return fleet


@dataclass
class FleetService:
    """The service, its fleet and store; `close()` when done (tests use `async with`)."""

    service: MigrationService
    fleet: Fleet
    tmp: tempfile.TemporaryDirectory[str]

    async def job(self, job_id: int) -> Job:
        return await self.service.get_job(job_id)

    async def close(self) -> None:
        await self.service.close()
        await self.service.store.close()
        self.tmp.cleanup()

    async def __aenter__(self) -> MigrationService:
        return self.service

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


async def open_fleet_service(
    sink: EventSink,
    approver_check: ApproverCheck,
    *,
    ttl_s: float = 1800.0,
    start: bool = True,
    drain_host: bool = False,
    fleet: Fleet | None = None,
    real_time: bool = False,
) -> FleetService:
    """`fleet`: other hosts and guests than lab_like_fleet's; `real_time`: datetimes from the wall clock and
    `time.monotonic` (for code that runs on an ordinary event loop; the default is the virtual loop's clock)."""
    fleet = fleet if fleet is not None else lab_like_fleet(drain_host=drain_host)
    inventory = fleet.inventory("hosts.toml")
    clock = VirtualClock()
    now = (lambda: datetime.now(UTC)) if real_time else clock.now
    tmp = tempfile.TemporaryDirectory(prefix="mb-fleet-")
    store = await Store.open(f"sqlite:///{Path(tmp.name) / 'jobs.db'}", clock=now)
    planner = PreflightRunner(inventory, fleet, dirty_rate_window_s=1.0, prober=fleet.probe)
    service = MigrationService(
        store=store,
        inventory=inventory,
        planner=planner,
        executor=Executor(fleet, inventory, sink, now, poll_interval_s=0.5),
        sink=sink,
        approver_check=approver_check,
        config=ServiceConfig(approval_ttl_s=ttl_s, replica_id="test", wait_poll_s=0.5),
        clock=now,
        monotonic=time.monotonic if real_time else clock.monotonic,
    )
    if start:
        await service.start()
    return FleetService(service, fleet, tmp)
