"""Drain benchmark: the bot's plan against one-at-a-time (Nova) and two-at-a-time (oVirt), on the fleet and the lab.

    PYTHONPATH=. .venv/bin/python bench/bench_drain.py                 # in-memory fleet (no lab), ~1 min
    PYTHONPATH=. .venv/bin/python bench/bench_drain.py --lab [--rate 64] [--slots 4]   # the lab (hostA to B, C)

Fleet part: 500 VMs on 20 hosts (the real service, dispatcher, executor, controller and SQLite store on the
in-memory fleet, virtual time). Reported: the wall time to plan a drain of the 40-VM host; that drain run three
ways (the bot's waves, one at a time in name order, two at a time in name order) with the simulated total and
the downtime-target breaches; then five hosts drained one after the other with each drain's ETA (given before
it starts) against its simulated total.

Lab part: hostA drained to hostB and hostC on a shaped link, three ways as above, each followed by a return so
every run starts from the same place; the ETA the bot gave before the start against the measured total.
Targets (issue 11): the bot's total >= 30 % shorter than one at a time, no longer than two at a time, 0
downtime-target breaches, ETA within +-20 % of the measured total.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from migration_core.drains import DrainKind, DrainState, DrainStatus, MoveOutcome
from migration_core.hypervisor.fleet import HostSpec, VmSpec, run_virtual
from migration_core.models import MigrationOptions
from migration_core.planning.drain import DrainPlan, DrainRequest
from migration_core.service import MigrationService
from tests.migration_core.fleet.support import Recorder, close_service, open_service, rig

MIB = 2**20


@dataclass(frozen=True)
class Run:
    way: str
    moves: int
    eta_s: float
    total_s: float
    breaches: int
    parked: int

    @property
    def eta_error(self) -> float:
        return abs(self.eta_s - self.total_s) / self.total_s if self.total_s else 0.0


def fixed_count(plan: DrainPlan, count: int) -> DrainPlan:
    """The same moves to the same hosts, `count` at a time in name order (Nova 1, oVirt 2); ETA not re-predicted."""
    moves = sorted(plan.moves, key=lambda m: m.vm)
    rewaved = tuple(replace(m, wave=i // count + 1, order=i + 1) for i, m in enumerate(moves))
    return replace(plan, moves=rewaved, eta_s=0.0)


def breaches(status: DrainStatus) -> int:
    """Moves whose measured downtime exceeded their max downtime target."""
    n = 0
    for m in status.moves:
        target = m.planned.plan.request.options.max_downtime_ms or 300
        if m.outcome is MoveOutcome.SUCCEEDED and m.downtime_ms is not None and m.downtime_ms > target:
            n += 1
    return n


async def run_plan(service: MigrationService, plan: DrainPlan, way: str, clock: object) -> Run:
    """Put `plan` up as a drain, approve it twice, and time it on the service's clock."""
    desk = service.drains
    drain = await desk._create(DrainKind.DRAIN, plan, "bench", f"benchmark: {way}", None, None)
    loop = asyncio.get_running_loop()
    for who in ("approver-1", "approver-2"):
        if (await service.get_drain(drain.id)).state is DrainState.AWAITING_APPROVAL:
            await service.approve_drain(drain.id, who)
    start = loop.time()
    status = await service.wait_drain(drain.id, timeout_s=24 * 3600)
    total = loop.time() - start
    parked = status.count(MoveOutcome.PARKED)
    return Run(way, len(plan.moves), plan.eta_s, total, breaches(status), parked)


# ----- the fleet ---------------------------------------------------------------------------------------------


def fleet_vms(n_hosts: int, n_vms: int, big_host_vms: int) -> list[VmSpec]:
    sizes = [512, 1024, 2048, 4096, 8192, 1024, 2048]
    dirty = [0.5, 2.0, 5.0, 10.0, 1.0, 25.0, 0.2]
    vms = []
    for j in range(n_vms):
        host = "h00" if j < big_host_vms else f"h{1 + (j - big_host_vms) % (n_hosts - 1):02d}"
        mib = sizes[j % len(sizes)]
        vms.append(VmSpec(f"vm{j:03d}", host=host, memory_mib=mib, transferable_mib=mib // 2, dirty_mib_s=dirty[j % 7]))
    return vms


def fleet_hosts(n_hosts: int) -> tuple[HostSpec, ...]:
    return tuple(
        HostSpec(f"h{i:02d}", memory_mib=(96 + (i * 37) % 160) * 1024, link_mib_s=1190.0, max_inbound=2, max_outbound=4)
        for i in range(n_hosts)
    )


def fleet_part(n_hosts: int, n_vms: int, big: int) -> None:
    print(f"fleet: {n_vms} VMs on {n_hosts} hosts; h00 runs {big} of them; link 1190 MiB/s (10 GbE), max out 4 / in 2")

    def one_way(way: str, count: int | None) -> tuple[Run, float]:
        r = rig(*fleet_vms(n_hosts, n_vms, big), hosts=fleet_hosts(n_hosts))

        async def main() -> tuple[Run, float]:
            with tempfile.TemporaryDirectory(prefix="mb-bench-drain-") as tmp:
                service = await open_service(r, f"sqlite:///{tmp}/jobs.db", sink=Recorder())
                try:
                    t0 = time.perf_counter()
                    plan = await service.plan_drain(DrainRequest("h00", MigrationOptions()))
                    planning = time.perf_counter() - t0
                    if count is not None:
                        plan = fixed_count(plan, count)
                    return await run_plan(service, plan, way, r.clock), planning
                finally:
                    await close_service(service)

        return run_virtual(main())

    rows = []
    for way, count in (("bot plan", None), ("1 at a time", 1), ("2 at a time", 2)):
        t0 = time.perf_counter()
        run, planning = one_way(way, count)
        rows.append((run, planning, time.perf_counter() - t0))
    bot = rows[0][0]
    print(f"  planning the drain of h00 ({bot.moves} moves over {n_hosts - 1} hosts): {rows[0][1]:.2f} s wall")
    print("  | way | moves | ETA s | simulated total s | vs 1 at a time | breaches | parked | wall s |")
    print("  |---|---|---|---|---|---|---|---|")
    one = rows[1][0].total_s
    for run, _p, wall in rows:
        eta = f"{run.eta_s:.0f}" if run.eta_s else "-"
        gain = f"{(1 - run.total_s / one) * 100:+.0f} %" if one else "-"
        print(
            f"  | {run.way} | {run.moves} | {eta} | {run.total_s:.0f} | {gain} | {run.breaches} | {run.parked} "
            f"| {wall:.1f} |"
        )
    print(f"  ETA error of the bot's plan: {bot.eta_error * 100:.0f} %")

    # five hosts drained one after the other on one fleet (each drain's VMs avoid the hosts already drained)
    r = rig(*fleet_vms(n_hosts, n_vms, big), hosts=fleet_hosts(n_hosts))

    async def five() -> list[tuple[str, Run, float]]:
        out = []
        with tempfile.TemporaryDirectory(prefix="mb-bench-drain-") as tmp:
            service = await open_service(r, f"sqlite:///{tmp}/jobs.db", sink=Recorder())
            try:
                for host in ("h00", "h01", "h02", "h03", "h04"):
                    t0 = time.perf_counter()
                    plan = await service.plan_drain(DrainRequest(host, MigrationOptions()))
                    planning = time.perf_counter() - t0
                    out.append((host, await run_plan(service, plan, "bot plan", r.clock), planning))
            finally:
                await close_service(service)
        return out

    t0 = time.perf_counter()
    results = run_virtual(five())
    print(f"  five hosts drained one after the other ({time.perf_counter() - t0:.1f} s wall):")
    print("  | host | moves | planning s | ETA s | simulated total s | ETA error | breaches | parked |")
    print("  |---|---|---|---|---|---|---|---|")
    for host, run, planning in results:
        print(
            f"  | {host} | {run.moves} | {planning:.2f} | {run.eta_s:.0f} | {run.total_s:.0f} | "
            f"{run.eta_error * 100:.0f} % | {run.breaches} | {run.parked} |"
        )
    errors = [run.eta_error for _h, run, _p in results]
    print(f"  ETA error: median {statistics.median(errors) * 100:.0f} %, max {max(errors) * 100:.0f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--vms", type=int, default=500)
    ap.add_argument("--big", type=int, default=40, help="VMs on the host drained first (h00)")
    ap.add_argument("--lab", action="store_true", help="run the lab part instead (needs `deploy/lab/lab up`)")
    ap.add_argument("--rate", type=int, default=64, help="lab: the shaped link, MiB/s")
    ap.add_argument("--slots", type=int, default=4, help="lab: max_inbound / max_outbound per host (hard limits)")
    args = ap.parse_args()
    if args.lab:
        from bench.bench_drain_lab import lab_part

        lab_part(args.rate, args.slots)
    else:
        fleet_part(args.hosts, args.vms, args.big)


if __name__ == "__main__":
    main()
