"""Benchmark: /migrate ack latency over HTTP, and how fresh the Slack progress messages stay under load.

    .venv/bin/python bench/bench_slack.py                 # both parts
    .venv/bin/python bench/bench_slack.py --part ack --rounds 4
    .venv/bin/python bench/bench_slack.py --part freshness --jobs 10,1 --duration-s 60

Part "ack": a real `migrate-bot serve` process in HTTP mode (lab inventory, private SQLite) and the fake Slack
(tests/fakeslack) as Slack: the driver signs and POSTs slash commands to /slack/events, 1, 20 and 50 at a time
(each request its own connection, as Slack does), and times each from the start of its POST to the end of the
ack body. Two kinds of request: `/migrate help` (answered in the ack) and `/migrate plan shared to hostB` (acked
at once; the real preflight against the lab runs after the ack, in the same process, and is answered through
response_url, so later requests are acked while earlier preflights run). Target: p99 < 100 ms at 20.

Part "freshness": the lab cannot carry 10 concurrent real migrations (2 hosts, 2 slots each, shared with other
suites), so this drives the real SlackProgressSink with N jobs of the real MigrationService on the in-memory
fleet (tests/bot/fleet_service.py, on the wall clock, its store a private SQLite file): each job is requested
(preflight on the fleet), approved and marked running through the service and its store, as the dispatcher
would; the service is not started, so nothing migrates them and the samples are synthetic: each job emits a
ProgressUpdated at `--hz` (the executor's sampling rate). Every job, chat reference and queue read of the sink
goes to that store. Each job's card and progress message are real messages in the fake (over HTTP, through
the bot's real Web API client with its retry handlers). The fake's Slack-like rate limiter is
ON (chat.update: Tier 3 = 50/min for the whole workspace; chat.postMessage: ~1/s per channel). A sample's lag is
the time from its emit until Slack first shows it or a newer one (the iteration number rendered in the message
identifies the sample); 429s are counted from the fake's call log. Client and servers share this 2-core box.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.app import make_web_client  # noqa: E402
from bot.settings import Settings  # noqa: E402
from handlers.progress import SlackProgressSink  # noqa: E402
from migration_core.events import ProgressUpdated, RecordingSink, StateChanged  # noqa: E402
from migration_core.hypervisor.fleet import Fleet, HostSpec, VmSpec  # noqa: E402
from migration_core.models import Job, JobState, MigrationOptions, MigrationRequest, Phase, ProgressSample  # noqa: E402
from tests.bot.fleet_service import FleetService, open_fleet_service  # noqa: E402
from tests.e2e.botproc import start_bot, wait_lab_usable  # noqa: E402
from tests.fakeslack import FakeSlack  # noqa: E402
from tests.fixtures.slack import C_OPS, DEFAULT_WORKSPACE, SIGNING_SECRET, U_ALICE  # noqa: E402
from tests.labkit import LabInfo, reset_vm  # noqa: E402

LAB_JSON = Path("/var/tmp/migrate-bot-lab/lab.json")
ACK_TARGET_P99_MS = 100.0
LEVELS = (1, 20, 50)
_ITERATION = re.compile(r"iteration (\d+)")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# ---- part 1: ack latency ----------------------------------------------------------------------------------


async def plan_answers(fake: FakeSlack) -> list[dict[str, Any]]:
    return [e for e in await fake.ephemerals(C_OPS, U_ALICE) if str(e["text"]).startswith("Plan for ")]


async def ack_round(fake: FakeSlack, app_url: str, text: str, concurrency: int) -> tuple[list[float], list[float]]:
    """`concurrency` slash commands at once: their ack latencies in ms (payloads are built beforehand) and, for
    `plan`, the seconds until each preflight answer arrived (the round waits for all of them)."""
    payloads = [await fake.build_slash_command(text, U_ALICE, C_OPS) for _ in range(concurrency)]
    before = len(await plan_answers(fake))
    started = time.time()
    acks = await asyncio.gather(*(fake.post_http(app_url, SIGNING_SECRET, "slash_commands", p) for p in payloads))
    bad = [a for a in acks if a.status != 200]
    if bad:
        raise SystemExit(f"the bot answered {bad[0].status}: {bad[0].body[:200]}")
    answered: list[float] = []  # seen by polling every 50 ms (the fake's ts has 1 s resolution)
    if text.startswith("plan "):
        async def all_in() -> bool:
            got = len(await plan_answers(fake)) - before
            answered.extend([time.time() - started] * (got - len(answered)))
            return got >= concurrency

        await fake.wait_for(all_in, 120, 0.05, "every preflight answer")
    return [a.latency_s * 1000 for a in acks], answered


async def bench_ack(rounds: int) -> None:
    lab = LabInfo.load(LAB_JSON)
    wait_lab_usable(lab)
    reset_vm(lab, "shared")  # on hostA, running: the plan requests then run the full preflight
    fake = FakeSlack.start()
    workdir = Path(tempfile.mkdtemp(prefix="bench-slack-"))
    fake.seed_sync(DEFAULT_WORKSPACE)
    bot = start_bot(fake, lab, workdir, "http", MIGRATE_BOT_RATE_LIMIT="10000", MIGRATE_BOT_LOG_LEVEL="WARNING")
    assert bot.app_url is not None
    try:
        await ack_round(fake, bot.app_url, "help", 5)  # warm-up: imports, first auth.test, connections
        print(f"ack latency of /migrate over HTTP (signed POST -> ack body), {rounds} round(s) per level; "
              f"target p99 < {ACK_TARGET_P99_MS:g} ms at 20")
        print(f"{'request':<30} {'concurrent':>10} {'samples':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
              f"   preflight answer p50/max")
        for label, text in (("/migrate help", "help"), ("/migrate plan shared to hostB", "plan shared to hostB")):
            for level in LEVELS:
                samples: list[float] = []
                answers: list[float] = []
                for _ in range(rounds if level > 1 else rounds * 10):
                    acked, answered = await ack_round(fake, bot.app_url, text, level)
                    samples += acked
                    answers += answered
                extra = f"   {pct(answers, 50):.1f} s / {max(answers):.1f} s" if answers else ""
                print(f"{label:<30} {level:>10} {len(samples):>8} {pct(samples, 50):>8.1f} "
                      f"{pct(samples, 99):>8.1f} {max(samples):>8.1f}{extra}")
        failures = await fake.ack_failures()
        print(f"acks later than 3 s: {len(failures)}")
    finally:
        bot.stop()
        fake.close()
    print(f"(bot log: {bot.log_path})")


# ---- part 2: progress freshness -----------------------------------------------------------------------------


APPROVER = "U0BOB"
REQUESTS_PER_REQUESTER = 25  # below the service's per-user hourly limit (30): more jobs, more requesters


async def _approver(user: str) -> bool:
    return user == APPROVER


async def running_jobs(n_jobs: int) -> tuple[FleetService, list[Job]]:
    """The real service over hostA and hostB with guests vm01..vmN on hostA, and one job per guest, requested
    (preflight on the fleet) and approved through the service, then moved to running with the store's
    transition, as the dispatcher does when it starts one. The service is not started: nothing migrates them.
    Its own events (requested, approved) go to a recording sink: they come before what is measured."""
    vms = [VmSpec(f"vm{i:02d}", host="hostA", memory_mib=4096, dirty_mib_s=40) for i in range(1, n_jobs + 1)]
    fleet = Fleet.build(hosts=[HostSpec("hostA"), HostSpec("hostB")], vms=vms)
    fs = await open_fleet_service(RecordingSink(), _approver, start=False, fleet=fleet, real_time=True)
    service = fs.service

    async def one(i: int) -> Job:
        requester = f"{U_ALICE}{(i - 1) // REQUESTS_PER_REQUESTER or ''}"
        job = await service.submit(MigrationRequest(f"vm{i:02d}", "hostB", MigrationOptions()), requester)
        job = await service.approve(job.id, APPROVER)
        if job.state is not JobState.APPROVED:
            raise SystemExit(f"job {job.id} for vm{i:02d} is {job.state.value}, not approved: {job.error}")
        return await service.store.transition(job.id, JobState.APPROVED, JobState.RUNNING, detail="bench start")

    try:
        return fs, list(await asyncio.gather(*(one(i) for i in range(1, n_jobs + 1))))
    except BaseException:
        await fs.close()
        raise


@dataclass(frozen=True)
class Emitted:
    job_id: int
    iteration: int
    at_s: float  # wall clock (the fake's clock is the wall clock too)


def sample(job_id: int, iteration: int, percent: float, now: datetime) -> ProgressSample:
    total = 4 * 1024**3
    done = int(total * percent / 100)
    return ProgressSample(job_id=job_id, at=now, phase=Phase.PRECOPY, percent=percent, elapsed_s=iteration / 2,
                          data_processed_bytes=done, data_remaining_bytes=total - done, data_total_bytes=total,
                          throughput_mib_s=110.0, dirty_rate_mib_s=40.0, iteration=iteration,
                          expected_downtime_ms=120, eta_s=60.0, stalled=False)


def shown_iteration(args: dict[str, Any]) -> int | None:
    """The sample a chat.update carried (its `iteration N`), from the call's text or blocks."""
    m = _ITERATION.search(str(args.get("blocks") or "") + str(args.get("text") or ""))
    return int(m.group(1)) if m else None


def lags_from_calls(emitted: list[Emitted], progress_ts: dict[int, str], calls: list[dict[str, Any]]) -> list[float]:
    """For each emitted sample: seconds until a successful chat.update showed it or a newer one."""
    shown: dict[int, list[tuple[float, int]]] = {j: [] for j in progress_ts}
    by_ts = {ts: j for j, ts in progress_ts.items()}
    for call in calls:
        job_id = by_ts.get(str(call["args"].get("ts")))
        it = shown_iteration(call["args"])
        if call.get("ok") and job_id is not None and it is not None:
            shown[job_id].append((float(call["t"]), it))
    lags = []
    for e in emitted:
        times = [t for t, it in shown[e.job_id] if it >= e.iteration and t >= e.at_s - 0.001]
        if times:
            lags.append(min(times) - e.at_s)
    return lags


async def bench_freshness(n_jobs: int, duration_s: float, hz: float, stagger_s: float) -> None:
    fake = FakeSlack.start()
    fake.seed_sync(DEFAULT_WORKSPACE)
    settings = Settings(slack_bot_token=fake.bot_token, slack_api_url=fake.api_base_url)
    client = make_web_client(settings)
    fs, running = await running_jobs(n_jobs)
    service = fs.service
    jobs = {j.id: j for j in running}
    sink = SlackProgressSink(client, service)
    try:
        for job_id, job in jobs.items():  # the cards, before the limiter is on (not what is measured)
            resp = await client.chat_postMessage(channel=C_OPS, text=f"Migration of {job.vm} (job {job_id})")
            await service.set_chat_refs(job_id, channel=C_OPS, thread=str(resp["ts"]))
        await fake.set_rate_limits(True)
        t_start = time.time()
        emitted: list[Emitted] = []

        async def run_job(job_id: int, delay_s: float) -> None:
            await asyncio.sleep(delay_s)
            await sink.emit(StateChanged(job_id, JobState.APPROVED, JobState.RUNNING, None, "start",
                                         datetime.now(UTC)))
            steps = int(duration_s * hz)
            for it in range(1, steps + 1):
                emitted.append(Emitted(job_id, it, time.time()))
                await sink.emit(ProgressUpdated(sample(job_id, it, min(99.0, 99 * it / steps), datetime.now(UTC))))
                await asyncio.sleep(1 / hz)

        span = stagger_s / max(1, n_jobs - 1)
        await asyncio.gather(*(run_job(j, (j - 1) * span) for j in jobs))
        drained = await sink.drain(timeout_s=180)
        elapsed_s = time.time() - t_start
        calls = await fake.calls()
        progress_ts = {j: (await service.get_job(j)).chat.progress for j in jobs}  # what the sink stored
    finally:
        await sink.aclose()
        await fs.close()
        fake.close()
    missing = [j for j, ts in progress_ts.items() if ts is None]
    ts_map = {j: ts for j, ts in progress_ts.items() if ts is not None}
    lags = lags_from_calls(emitted, ts_map, [c for c in calls if c["method"] == "chat.update"])
    measured = [c for c in calls if c["t"] >= t_start]
    count: Callable[[str, bool], int] = lambda m, ok: sum(  # noqa: E731
        1 for c in measured if c["method"] == m and (c.get("ok") if ok else c.get("status") == 429))
    minutes = elapsed_s / 60
    print(f"progress freshness: {n_jobs} jobs (real service on the fleet, SQLite) x {hz:g} Hz synthetic samples for "
          f"{duration_s:g} s (starts spread over {stagger_s:g} s), real SlackProgressSink -> fake Slack over HTTP, "
          f"rate limiter ON")
    print(f"  samples emitted: {len(emitted)}; shown (or superseded by a newer one shown): {len(lags)}"
          f"{'; progress message never posted for jobs ' + str(missing) if missing else ''}; drained: {drained}")
    if lags:
        print(f"  lag sample -> Slack message: p50 {pct(lags, 50):.1f} s, p90 {pct(lags, 90):.1f} s, "
              f"p99 {pct(lags, 99):.1f} s, max {max(lags):.1f} s, mean {statistics.fmean(lags):.1f} s")
    print(f"  chat.update: {count('chat.update', True)} ok ({count('chat.update', True) / minutes:.0f}/min; "
          f"Tier 3 allows 50/min), {count('chat.update', False)} answered 429")
    print(f"  chat.postMessage: {count('chat.postMessage', True)} ok, {count('chat.postMessage', False)} answered 429")
    per_job = [sum(1 for c in calls if c["method"] == "chat.update" and c.get("ok")
                   and c["args"].get("ts") == ts) for ts in ts_map.values()]
    if per_job:
        print(f"  edits per progress message: min {min(per_job)}, max {max(per_job)} over {elapsed_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("ack", "freshness", "all"), default="all")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per concurrency level (x10 at level 1)")
    parser.add_argument("--jobs", default="10,1", help="comma-separated numbers of concurrent jobs, one run each")
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--hz", type=float, default=2.0)
    parser.add_argument("--stagger-s", type=float, default=5.0, help="spread the jobs' starts over this")
    args = parser.parse_args()
    if args.part in ("ack", "all"):
        asyncio.run(bench_ack(args.rounds))
    if args.part in ("freshness", "all"):
        for n_jobs in (int(n) for n in str(args.jobs).split(",") if n.strip()):
            asyncio.run(bench_freshness(n_jobs, args.duration_s, args.hz, args.stagger_s if n_jobs > 1 else 0.0))


if __name__ == "__main__":
    main()
