"""Benchmark: how fast the in-memory fleet simulates migrations, wall time against virtual time.

    .venv/bin/python bench/bench_fleet.py                        # both parts, 100 migrations on 20 hosts
    .venv/bin/python bench/bench_fleet.py --part executor --vms 500 --hosts 20
    .venv/bin/python bench/bench_fleet.py --part service --vms 100

Part "executor": the real PreflightRunner plans and the real Executor runs every migration (VM i on host i%N
moves to host (i+1)%N), at most `--per-host` at once out of and into each host (a semaphore per host, as the
inventory's max_outbound/max_inbound would), all on one virtual-time loop. Guests are mixed: most calm, every
fifth busy (converges after a few passes), every tenth too busy for pre-copy (switched to post-copy).

Part "service": the same through the real MigrationService (SQLite store in a temporary directory, dispatcher
queue and leases, verification): submit, approve twice, wait for every job. The store's transactions run on
real worker threads, so this part shows what the database costs per simulated migration.

Prints wall seconds, virtual seconds, their ratio and migrations per wall second. The drain issue (11) builds
its scale benchmarks on the same fleet (`Fleet.build`, see migration_core/hypervisor/fleet/__init__.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from migration_core.events import JobEvent  # noqa: E402
from migration_core.execution.executor import Executor  # noqa: E402
from migration_core.hypervisor.fleet import Fleet, HostSpec, VirtualClock, VmSpec, run_virtual  # noqa: E402
from migration_core.models import JobState, MigrationOptions, MigrationRequest  # noqa: E402
from migration_core.preflight.runner import PreflightRunner  # noqa: E402
from migration_core.service import MigrationService, ServiceConfig  # noqa: E402
from migration_core.store import Store  # noqa: E402


class Counting:
    """An event sink that only counts (the benchmark measures the core, not a front end)."""

    def __init__(self) -> None:
        self.count = 0

    async def emit(self, event: JobEvent) -> None:
        self.count += 1


def build(hosts: int, vms: int, per_host: int) -> Fleet:
    specs = [HostSpec(f"h{i:02d}", link_mib_s=1000, max_inbound=per_host, max_outbound=per_host) for i in range(hosts)]
    guests = []
    for i in range(vms):
        kind = "pc" if i % 10 == 9 else "busy" if i % 5 == 4 else "calm"
        dirty = {"calm": 10.0, "busy": 400.0, "pc": 1500.0}[kind]
        guests.append(
            VmSpec(
                f"vm{i:03d}-{kind}",
                host=specs[i % hosts].name,
                memory_mib=4096,
                transferable_mib=2048,
                dirty_mib_s=dirty,
                working_set_mib=512 if kind != "pc" else 2048,
            )
        )
    return Fleet.build(hosts=specs, vms=guests)


def targets(fleet: Fleet) -> list[tuple[str, str]]:
    names = list(fleet.hosts)
    return [(vm, names[(names.index(fleet.where(vm)) + 1) % len(names)]) for vm in fleet.vms]


async def executor_part(fleet: Fleet, per_host: int) -> tuple[Counter[str], float]:
    inventory, clock, sink = fleet.inventory(), VirtualClock(), Counting()
    planner = PreflightRunner(inventory, fleet, dirty_rate_window_s=1.0, prober=fleet.probe)
    executor = Executor(fleet, inventory, sink, clock.now, poll_interval_s=0.5)
    # Outbound and inbound slots are separate resources (as the inventory's limits): no cycle, no deadlock.
    out_slots = {h: asyncio.Semaphore(per_host) for h in fleet.hosts}
    in_slots = {h: asyncio.Semaphore(per_host) for h in fleet.hosts}
    outcomes: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(job_id: int, vm: str, destination: str) -> None:
        source = fleet.where(vm)
        async with out_slots[source], in_slots[destination]:
            postcopy = vm.endswith("-pc")
            plan = await planner.make_plan(MigrationRequest(vm, destination, MigrationOptions(postcopy=postcopy)))
            result = await executor.run(job_id, plan)
            outcomes[result.outcome.value] += 1

    await asyncio.gather(*(one(i + 1, vm, dst) for i, (vm, dst) in enumerate(targets(fleet))))
    return outcomes, loop.time() - start


async def service_part(fleet: Fleet, db_dir: str) -> tuple[Counter[str], float]:
    inventory, clock, sink = fleet.inventory(), VirtualClock(), Counting()
    store = await Store.open(f"sqlite:///{db_dir}/bench.db", clock=clock.now)
    planner = PreflightRunner(inventory, fleet, dirty_rate_window_s=1.0, prober=fleet.probe)

    async def anyone(_user: str) -> bool:
        return True

    service = MigrationService(
        store=store,
        inventory=inventory,
        planner=planner,
        executor=Executor(fleet, inventory, sink, clock.now, poll_interval_s=0.5),
        sink=sink,
        approver_check=anyone,
        config=ServiceConfig(
            replica_id="bench", dispatch_interval_s=1.0, wait_poll_s=5.0, requests_per_user_per_hour=1_000_000
        ),
        clock=clock.now,
        monotonic=clock.monotonic,
    )
    await service.start()
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        ids = []
        for vm, destination in targets(fleet):
            postcopy = vm.endswith("-pc")
            job = await service.submit(MigrationRequest(vm, destination, MigrationOptions(postcopy=postcopy)), "ops")
            for who in ("bob", "carol"):
                if (await service.get_job(job.id)).state is JobState.AWAITING_APPROVAL:
                    await service.approve(job.id, who)
            ids.append(job.id)
        outcomes: Counter[str] = Counter()
        for job_id in ids:
            outcomes[(await service.wait(job_id, timeout_s=24 * 3600)).state.value] += 1
        return outcomes, loop.time() - start
    finally:
        await service.close()
        await store.close()


def report(part: str, hosts: int, vms: int, outcomes: Counter[str], virtual_s: float, wall_s: float) -> None:
    ended = ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items()))
    print(
        f"{part:9s} {vms} migrations on {hosts} hosts: wall {wall_s:.2f} s, virtual {virtual_s:.0f} s "
        f"(x{virtual_s / max(wall_s, 1e-9):.0f}), {vms / max(wall_s, 1e-9):.0f} migrations per wall second; {ended}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--part", choices=("executor", "service", "both"), default="both")
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--vms", type=int, default=100)
    ap.add_argument("--per-host", type=int, default=2, help="concurrent migrations out of / into one host")
    args = ap.parse_args()
    if args.part in ("executor", "both"):
        fleet = build(args.hosts, args.vms, args.per_host)
        t0 = time.perf_counter()
        outcomes, virtual_s = run_virtual(executor_part(fleet, args.per_host))
        report("executor", args.hosts, args.vms, outcomes, virtual_s, time.perf_counter() - t0)
    if args.part in ("service", "both"):
        fleet = build(args.hosts, args.vms, args.per_host)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            outcomes, virtual_s = run_virtual(service_part(fleet, tmp))
            report("service", args.hosts, args.vms, outcomes, virtual_s, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
