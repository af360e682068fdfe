"""Benchmark: 50 concurrent migration requests across the lab's two hosts with limits of 1 in / 1 out, run by two
real bot processes (replicas) sharing one PostgreSQL database. Reports double starts (must be 0), host-limit
violations (must be 0), how well the queue's announced place matched the actual start order, queue waits, and
where every VM really ended up.

    .venv/bin/python bench/bench_load.py                 # 50 requests, 2 replicas
    .venv/bin/python bench/bench_load.py --vms 20 --replicas 3

What is migrated (be honest about it): shut-off clones of the lab's `stopped` VM ("bl-00" ...: own name and
UUID, no disk), half defined on hostA and half on hostB, each requested to the other host. These are offline
migrations: libvirt's part is about a second (define on the destination), so the figures measure the bot —
50 preflights at once, approvals, claims with leases and `FOR UPDATE SKIP LOCKED`, the per-host queue, the
re-check before start, verification and the store — not memory copying (tests/reliability has the live ones).

The front end (this process) submits and approves; it runs no dispatcher. The replicas are
`migrate-bot console` processes with their own MIGRATE_BOT_REPLICA_ID and nothing typed in: their dispatchers
claim and run the jobs. Everything is read back from the job store's event log afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.settings import load_settings  # noqa: E402
from bot.wiring import make_service, open_core  # noqa: E402
from migration_core.grammar.parser import MigrateCommand, parse_command  # noqa: E402
from migration_core.hypervisor.libvirt_adapter import Hypervisor  # noqa: E402
from migration_core.models import JobState  # noqa: E402
from migration_core.store import EventKind, EventRecord, Store  # noqa: E402
from tests.labkit import LabInfo, bring_up, vm_location  # noqa: E402
from tests.migration_core.executor_lab_support import clone_xml  # noqa: E402
from tests.reliability.support import ConsoleBot, bot_env, inventory_with_limits  # noqa: E402

HOSTS = ("hostA", "hostB")
_PLACE = " in the queue)"


@dataclass
class JobTrace:
    """One job's life, read from the event log."""

    job_id: int
    vm: str
    source: str
    destination: str
    state: JobState
    requested_at: datetime | None = None
    approved_at: datetime | None = None
    running_at: list[datetime] = field(default_factory=list)
    verifying_at: datetime | None = None
    ended_at: datetime | None = None
    claims: list[str] = field(default_factory=list)  # "claimed by X" / "taken over by Y from X"
    place: int | None = None  # the first place the queue announced
    place_at: datetime | None = None
    queue_notices: list[str] = field(default_factory=list)


def trace(job_id: int, vm: str, source: str, destination: str, state: JobState, events: list[EventRecord]) -> JobTrace:
    t = JobTrace(job_id, vm, source, destination, state)
    for e in events:
        if e.kind is EventKind.STATE and e.new_state is not None:
            if e.new_state is JobState.REQUESTED:
                t.requested_at = e.at
            elif e.new_state is JobState.APPROVED:
                t.approved_at = e.at
            elif e.new_state is JobState.RUNNING:
                t.running_at.append(e.at)
            elif e.new_state is JobState.VERIFYING:
                t.verifying_at = e.at
            elif e.new_state.terminal:
                t.ended_at = e.at
        elif e.kind is EventKind.LEASE and e.detail.startswith(("claimed by", "taken over by")):
            t.claims.append(e.detail)
        elif e.kind is EventKind.NOTICE and e.detail.endswith(_PLACE):
            t.queue_notices.append(e.detail)
            if t.place is None:
                t.place = int(e.detail[: -len(_PLACE)].rsplit(" ", 1)[1])
                t.place_at = e.at
    return t


def competes(a: JobTrace, b: JobTrace) -> bool:
    """Both need one of the same slots: the same source's outbound or the same destination's inbound."""
    return a.source == b.source or a.destination == b.destination


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment (touching ends do not overlap)."""
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda p: (p[0], p[1]))
    best = now = 0
    for _, step in points:
        now += step
        best = max(best, now)
    return best


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def define_clones(hv: Hypervisor, lab: LabInfo, count: int) -> list[tuple[str, str, str]]:
    """(name, source, destination) for each clone, defined shut off on its source host."""
    plan = []
    for i in range(count):
        name = f"bl-{i:02d}"
        source, destination = (HOSTS[0], HOSTS[1]) if i % 2 == 0 else (HOSTS[1], HOSTS[0])
        await remove(hv, lab, name)
        xml = clone_xml(lab, "stopped", name, str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.bench.migrate-bot")))
        await hv.define(lab.host(source).uri, xml)
        plan.append((name, source, destination))
    return plan


async def remove(hv: Hypervisor, lab: LabInfo, name: str) -> None:
    for host in HOSTS:
        info = await hv.domain(lab.host(host).uri, name)
        if info.active:
            await hv.destroy(lab.host(host).uri, name)
        if (await hv.domain(lab.host(host).uri, name)).present:
            await hv.undefine(lab.host(host).uri, name)


def pg_url() -> str:
    script = ROOT / "deploy" / "pg-test-server"
    subprocess.run([str(script), "start"], check=True, capture_output=True, text=True)
    return subprocess.run([str(script), "url"], check=True, capture_output=True, text=True).stdout.strip()


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


async def run(args: argparse.Namespace) -> int:
    lab, _ = bring_up()
    hv = Hypervisor({h: lab.host(h).uri for h in HOSTS})
    admin = pg_url()
    dbname = f"bench_load_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    db_url = admin.rsplit("/", 1)[0] + "/" + dbname
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    hosts_file = inventory_with_limits(lab, work, 1, 1)
    env = bot_env(lab, db_url, hosts_file=hosts_file, MIGRATE_BOT_LEASE="10s", MIGRATE_BOT_LOG_LEVEL="WARNING")
    vms = await define_clones(hv, lab, args.vms)
    replicas = [
        ConsoleBot(f"replica-{n}", {**env, "MIGRATE_BOT_REPLICA_ID": f"replica-{n}"}, work, user=f"ops{n}")
        for n in range(1, args.replicas + 1)
    ]
    core = await open_core(load_settings({**env, "MIGRATE_BOT_REPLICA_ID": "front-end"}))

    async def anyone(_user: str) -> bool:
        return True

    front = make_service(core, _Quiet(), anyone)  # never started: this process only submits and approves
    try:
        began = time.monotonic()

        async def request(i: int, name: str, destination: str) -> int:
            command = parse_command(f"{name} to {destination}")
            assert isinstance(command, MigrateCommand)
            job = await front.submit(command.request, f"user{i % 10}")
            assert job.state is JobState.AWAITING_APPROVAL, (name, job.state, job.error)
            await front.approve(job.id, "approver")
            return job.id

        ids = await asyncio.gather(*(request(i, n, d) for i, (n, _s, d) in enumerate(vms)))
        requested_s = time.monotonic() - began
        store: Store = core.store
        deadline = time.monotonic() + args.timeout_s
        while True:
            states = [(await store.get_job(j)).state for j in ids]
            if all(s.terminal for s in states):
                break
            if time.monotonic() > deadline:
                print(f"timed out: {sum(s.terminal for s in states)}/{len(ids)} jobs ended", file=sys.stderr)
                return 1
            await asyncio.sleep(0.5)
        wall_s = time.monotonic() - began
        traces = []
        for job_id in ids:
            job = await store.get_job(job_id)
            traces.append(trace(job.id, job.vm, job.source, job.destination, job.state, await store.events(job.id)))
        truth = {name: vm_location(lab, name) for name, _s, _d in vms}
        report(args, traces, truth, vms, requested_s, wall_s)
    finally:
        for bot in replicas:
            with_timeout_finish(bot)
        await core.close()
        for name, _s, _d in vms:
            await remove(hv, lab, name)
        with psycopg.connect(_libpq(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return 0


class _Quiet:
    async def emit(self, _event: object) -> None:
        return None


def with_timeout_finish(bot: ConsoleBot) -> None:
    """End of input for a replica: it exits once its running work is done (then stop it, by its PID)."""
    if bot.process.poll() is None and bot.process.stdin is not None:
        bot.process.stdin.close()
        try:
            bot.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            bot.stop()


def report(
    args: argparse.Namespace,
    traces: list[JobTrace],
    truth: dict[str, dict[str, str]],
    vms: list[tuple[str, str, str]],
    requested_s: float,
    wall_s: float,
) -> None:
    n = len(traces)
    by_state = {s: sum(t.state.value == s for t in traces) for s in sorted({t.state.value for t in traces})}
    double_starts = sum(len(t.running_at) > 1 for t in traces)
    claimers = [{c.split(" by ", 1)[1].split(" ", 1)[0] for c in t.claims} for t in traces]
    two_claims = sum(len(t.claims) > 1 and not any(c.startswith("taken over") for c in t.claims) for t in traces)
    per_replica = {r: sum(r in c for c in claimers) for r in sorted(set().union(*claimers))}
    # Host limits: a job holds its hosts' slots from running until verifying (jobs.SLOT_STATES).
    slots = {}
    for host in HOSTS:
        for direction, key in (("in", "destination"), ("out", "source")):
            spans = [
                (t.running_at[0].timestamp(), (t.verifying_at or t.ended_at or t.running_at[0]).timestamp())
                for t in traces
                if t.running_at and getattr(t, key) == host
            ]
            slots[f"{host} {direction}"] = max_overlap(spans)
    violations = sum(v > 1 for v in slots.values())
    # The queue: the place announced first vs the actual place: 1 + the jobs competing for the same slots
    # that started between that announcement and this job's start.
    errors = []
    for t in traces:
        if t.place is None or t.place_at is None or not t.running_at:
            continue
        ahead = sum(
            1
            for o in traces
            if o is not t and o.running_at and competes(o, t) and t.place_at < o.running_at[0] < t.running_at[0]
        )
        errors.append(abs((ahead + 1) - t.place))
    # First come, first served: of two competing jobs that were both waiting at once (approved before either
    # started), the older request starts first.
    in_order = pairs = 0
    for a in traces:
        for b in traces:
            if a is b or not (a.running_at and b.running_at and a.approved_at and b.approved_at and competes(a, b)):
                continue
            if (a.requested_at, a.job_id) < (b.requested_at, b.job_id) and b.approved_at < a.running_at[0]:
                pairs += 1
                in_order += a.running_at[0] <= b.running_at[0]
    repeats = sum(sum(x == y for x, y in zip(t.queue_notices, t.queue_notices[1:], strict=False)) for t in traces)
    notices = sum(len(t.queue_notices) for t in traces)
    waits = [(t.running_at[0] - t.approved_at).total_seconds() for t in traces if t.running_at and t.approved_at]
    queued = sum(t.place is not None for t in traces)
    landed = sum(truth[name].get(dest) == "shut off" for name, _s, dest in vms)
    print(f"bench_load: {n} concurrent requests, {args.replicas} replicas on PostgreSQL, limits 1 in / 1 out")
    print("  workload: offline migrations of shut-off clones of `stopped` (half hostA->hostB, half hostB->hostA)")
    print(f"  submitted + approved all {n}: {requested_s:.1f} s (50 preflights at once in one front-end process)")
    print(f"  all ended: {wall_s:.1f} s after the first request ({n / wall_s * 60:.0f} jobs/min); states {by_state}")
    print(f"  double starts: {double_starts} (jobs with more than one running transition)")
    print(f"  claimed by two replicas without a take-over: {two_claims}; jobs per replica: {per_replica}")
    print(f"  host slots, most at once: {slots} -> limit violations: {violations}")
    print(f"  VMs defined on their destination afterwards: {landed}/{n}")
    print(f"  queued with a place: {queued}/{n}; queue notices {notices}, repeated by a second replica: {repeats}")
    if errors:
        exact = sum(e == 0 for e in errors) / len(errors) * 100
        print(
            f"  first announced place vs actual place at start: exact {exact:.0f} %, mean |error| "
            f"{statistics.mean(errors):.2f}, max {max(errors)}"
        )
    print(f"  first come, first served among competing waiting jobs: {in_order}/{pairs} pairs in request order")
    print(
        f"  queue wait (approved -> running): p50 {pct(waits, 0.5):.1f} s, p95 {pct(waits, 0.95):.1f} s, "
        f"max {max(waits, default=float('nan')):.1f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=50)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (the lab)", file=sys.stderr)
        return 2
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
