"""Fuzz benchmark: 10,000 signed requests through the real HTTP endpoint of a running `migrate-bot serve`.

    .venv/bin/python bench/bench_fuzz.py                         # 10,000 cases, seed 1
    .venv/bin/python bench/bench_fuzz.py --cases 2000 --seed 42 --concurrency 16

Starts the fake Slack (tests/fakeslack) and a bot process in HTTP mode whose inventory holds only unreachable
unix sockets (no fuzz case can start a migration), then sends generated `/migrate` texts (grammar-built,
grammar-mutated, random unicode, huge) and malformed Slack payloads (bad JSON, missing fields, unknown action
ids, forged job ids, oversized values, wrong types, empty bodies, wrong content types, invalid UTF-8,
bodies over 1 MiB), each correctly signed. Prints the statuses per category, the throughput, and the checks:
no 5xx, every request answered, every well-formed /migrate answered 200, the process alive, no traceback in
its log. Exit status 1 when any check fails. The same engine runs as the slow test tests/security/test_fuzz.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakeslack import FakeSlack
from tests.fixtures.slack import APPROVERS_HANDLE, C_OPS, DEFAULT_WORKSPACE, SIGNING_SECRET, U_ALICE
from tests.security.botproc import BotProcess, unreachable_inventory
from tests.security.fuzzkit import run_fuzz, settle


async def main(cases: int, seed: int, concurrency: int) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-fuzz-"))
    fake = FakeSlack.start()
    bot: BotProcess | None = None
    try:
        await fake.reset()
        await fake.seed(DEFAULT_WORKSPACE)
        env = {
            **fake.env(SIGNING_SECRET),
            "MIGRATE_BOT_HOSTS": str(unreachable_inventory(workdir)),
            "MIGRATE_BOT_DB": f"sqlite:///{workdir / 'bot.db'}",
            "MIGRATE_BOT_APPROVER_GROUP": APPROVERS_HANDLE,
            "MIGRATE_BOT_RATE_LIMIT": "10000",
        }
        bot = BotProcess.start(env, workdir / "bot.log")
        print(f"bot pid {bot.process.pid} on {bot.url}; log {bot.log_path}")
        report = await run_fuzz(
            fake, bot.url, SIGNING_SECRET, n=cases, seed=seed, user=U_ALICE, channel=C_OPS, concurrency=concurrency
        )
        started = time.monotonic()
        calls = await settle(fake, max_s=600)
        settle_s = time.monotonic() - started
        alive = bot.alive()
        log = bot.log_text()
    finally:
        if bot is not None:
            bot.stop()
        fake.close()

    print(report.table())
    rate = report.sent / report.elapsed_s if report.elapsed_s else 0.0
    print(
        f"\nsent {report.sent} requests in {report.elapsed_s:.1f} s ({rate:.0f}/s, concurrency {concurrency}); "
        f"background work settled {settle_s:.1f} s later ({calls} Slack calls and answers)"
    )
    tracebacks = log.count("Traceback")
    problems = report.problems()
    checks = {
        "no 5xx": report.status_classes()["5xx"] == 0,
        "every request answered (2xx or 4xx)": not report.no_answer,
        "every well-formed /migrate answered 200": not report.unanswered_commands,
        "bot process alive": alive,
        f"no traceback in the log ({tracebacks} found)": tracebacks == 0,
    }
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    for problem in problems[:20]:
        print(f"  problem: {problem}")
    print(f"log: {workdir / 'bot.log'}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.cases, args.seed, args.concurrency)))
