"""The lab part of bench_drain.py: hostA drained to hostB and hostC three ways on a shaped link, each run
followed by a return, with the ETA given before the start against the measured total.

    PYTHONPATH=. .venv/bin/python bench/bench_drain.py --lab [--rate 64]
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from pathlib import Path

from bench.bench_drain import Run, breaches, fixed_count
from migration_core.drains import DrainKind, DrainState, MoveOutcome
from migration_core.models import MigrationOptions
from migration_core.planning.drain import DrainPlan, DrainRequest
from migration_core.service import MigrationService
from tests.labkit import LabInfo, bring_up, link_rate, link_reset, reset_vm, vm_location
from tests.reliability.support import bot_env, in_process_bot, inventory_with_link

A = "hostA"
GUESTS = ("vm42", "busy", "disky", "shared", "web1", "web2", "web3", "web4", "db1", "pinned")


def home(lab: LabInfo) -> None:
    for vm in GUESTS:
        if vm_location(lab, vm) != {A: "running"}:
            reset_vm(lab, vm)


async def approve_and_time(service: MigrationService, drain_id: int) -> tuple[float, DrainState, int, int]:
    """Approve twice, wait; (seconds from the approval to the drain's end, state, breaches, parked)."""
    await service.approve_drain(drain_id, "approver-1")
    start = time.monotonic()
    await service.approve_drain(drain_id, "approver-2")
    while not (drain := await service.get_drain(drain_id)).state.finished:
        await asyncio.sleep(0.1)
    total = time.monotonic() - start
    status = await service.drain_status(drain_id)
    return total, drain.state, breaches(status), status.count(MoveOutcome.PARKED)


def hosts_file(lab: LabInfo, tmp: Path, rate: int, slots: int) -> Path:
    """The lab's hosts file declaring the shaped rate and `slots` in and out per host (the hard limits)."""
    path = inventory_with_link(lab, tmp, rate)
    text = re.sub(r"(?m)^max_(inbound|outbound) = \d+", lambda m: f"max_{m.group(1)} = {slots}", path.read_text())
    path.write_text(text)
    return path


async def one_way(lab: LabInfo, way: str, count: int | None, rate: int, slots: int, db: str, tmp: Path) -> Run:
    env = bot_env(lab, db, hosts_file=hosts_file(lab, tmp, rate, slots))
    async with in_process_bot(env) as bot:
        service = bot.service
        link_rate(lab, rate)
        plan: DrainPlan = await service.plan_drain(DrainRequest(A, MigrationOptions()))
        eta = plan.eta_s
        if count is not None:
            plan = fixed_count(plan, count)
        drain = await service.drains._create(DrainKind.DRAIN, plan, "bench", f"benchmark: {way}", None, None)
        total, state, breached, parked = await approve_and_time(service, drain.id)
        print(f"    {way}: {state.value} in {total:.1f} s ({len(plan.moves)} moves, {plan.waves} waves)", flush=True)
        link_reset(lab)
        back = await service.request_return(A, "bench", "benchmark: back home")
        await approve_and_time(service, back.id)
        return Run(way, len(plan.moves), eta if count is None else 0.0, total, breached, parked)


def lab_part(rate: int, slots: int) -> None:
    lab, _out = bring_up()
    print(
        f"lab: hostA drained to hostB and hostC, every host's NIC shaped to {rate} MiB/s, {slots} migrations in and "
        "out per host; a return after each run"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="mb-bench-drain-lab-") as tmp:
        try:
            home(lab)
            for i, (way, count) in enumerate((("bot plan", None), ("1 at a time", 1), ("2 at a time", 2))):
                db = f"sqlite:///{Path(tmp) / f'bot{i}.db'}"
                rows.append(asyncio.run(one_way(lab, way, count, rate, slots, db, Path(tmp))))
                home(lab)
        finally:
            link_reset(lab)
            home(lab)
    one = rows[1].total_s
    print("  | way | moves | ETA s | measured total s | vs 1 at a time | breaches | parked |")
    print("  |---|---|---|---|---|---|---|")
    for run in rows:
        eta = f"{run.eta_s:.1f}" if run.eta_s else "-"
        print(
            f"  | {run.way} | {run.moves} | {eta} | {run.total_s:.1f} | {(1 - run.total_s / one) * 100:+.0f} % "
            f"| {run.breaches} | {run.parked} |"
        )
    bot, two = rows[0], rows[2]
    print(
        f"  bot vs 1 at a time: {(1 - bot.total_s / one) * 100:.0f} % shorter (target >= 30 %); vs 2 at a time: "
        f"{bot.total_s:.1f} s vs {two.total_s:.1f} s (target: no longer); ETA error {bot.eta_error * 100:.0f} % "
        "(target <= 20 %)"
    )
