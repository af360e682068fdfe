"""Drain planning benchmark (pure, no lab): how long planning takes, and the planned ETA against fixed counts.

    PYTHONPATH=. .venv/bin/python bench/bench_drain_plan.py [--hosts 20] [--vms 40]

A synthetic fleet (tests/migration_core/drain_support.py): `--hosts` destinations with different free memory,
reserves, in-slots and CPU families, and a source host with `--vms` VMs of 0.5-16 GiB dirtying 0.5-60 MiB/s,
some in anti-affinity groups. Reported: the time to evaluate every (VM, host) pair with the single move's
checks, the time of the pure planner (placement + waves), and the planned ETA against the same moves run one
at a time (Nova's default) and two at a time (oVirt's), timed by the same model. The next round's benchmark
measures real drains on the lab and the fleet; this one only shows that planning is fast and what the rule
gains on paper.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from migration_core.models import MigrationOptions
from migration_core.planning.drain import DrainPlan, plan_drain
from migration_core.planning.estimates import CalibratedEstimator, ModelEstimator, MoveEstimator, MoveLoad
from tests.migration_core.drain_support import SynFleet, SynHost, SynVm


def fleet(n_hosts: int, n_vms: int) -> SynFleet:
    hosts = [
        SynHost(f"h{i:02d}", free_gib=32 + (i * 13) % 96, reserve_gib=(i % 3) * 4, max_inbound=1 + i % 3,
                link_mib_s=1190.0, cpu_family="old" if i % 5 == 0 else "new")
        for i in range(1, n_hosts + 1)
    ]  # fmt: skip
    vms = [
        SynVm(f"vm{j:03d}", memory_gib=[0.5, 1, 2, 4, 8, 16][j % 6], dirty_mib_s=[0.5, 5, 20, 60, 2][j % 5],
              groups=(f"g{j % 7}",) if j % 4 == 0 else (), cpu_family="new" if j % 3 == 0 else "old")
        for j in range(n_vms)
    ]  # fmt: skip
    return SynFleet(source="h00", source_link_mib_s=1190.0, max_outbound=4, hosts=hosts, vms=vms)


def fixed_count(plan: DrainPlan, f: SynFleet, count: int, est: MoveEstimator) -> tuple[float, int]:
    """The same moves, `count` at a time in name order (each on link/count), timed by the same model:
    (total seconds, moves predicted to miss their downtime target)."""
    vms = {v.name: v for v in f.vms}
    moves = sorted(plan.moves, key=lambda m: m.vm)
    total, misses = 0.0, 0
    for i in range(0, len(moves), count):
        batch = moves[i : i + count]
        share = f.source_link_mib_s / len(batch)
        found = [
            est.estimate(MoveLoad(m.vm, int(vms[m.vm].memory_gib * 2**30), vms[m.vm].dirty_mib_s), share, plan.options)
            for m in batch
        ]
        total += max(e.total_s for e in found)
        misses += sum(not e.meets_target for e in found)
    return total, misses


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--vms", type=int, default=40)
    args = ap.parse_args()
    f = fleet(args.hosts, args.vms)
    t0 = time.perf_counter()
    cand = f.candidacy()
    t1 = time.perf_counter()
    print(f"fleet: {args.hosts} destinations, {args.vms} VMs on the source")
    print(f"{'pairs evaluated (checks)':<34}{len(cand):>8}   {t1 - t0:8.3f} s")
    estimators: list[tuple[str, MoveEstimator]] = [
        ("iterative model", ModelEstimator()), ("calibrated prediction", CalibratedEstimator())
    ]  # fmt: skip
    for label, est in estimators:
        t1 = time.perf_counter()
        plan = plan_drain(f.drain_source(), f.drain_vms(), f.destinations(), cand, MigrationOptions(), est)
        t2 = time.perf_counter()
        per_wave = Counter(m.wave for m in plan.moves)
        print(f"--- {label}")
        print(f"{'pure planning (placement + waves)':<34}{len(plan.moves):>8}   {t2 - t1:8.3f} s")
        print(f"{'moves / left behind / waves':<34}{len(plan.moves):>4} / {len(plan.left_behind)} / {plan.waves}")
        print(f"{'largest wave':<34}{max(per_wave.values(), default=0):>8}")
        misses = sum(not m.meets_target for m in plan.moves)
        print(f"{'planned ETA (bot rule)':<34}{plan.eta_s:>8.1f} s   {misses} miss their downtime target")
        for count, who in ((1, "one at a time (Nova)"), (2, "two at a time (oVirt)"), (4, "four at a time")):
            total, missed = fixed_count(plan, f, count, est)
            print(f"{'same moves, ' + who:<34}{total:>8.1f} s   {missed} miss their downtime target")


if __name__ == "__main__":
    main()
