"""Edge benchmark (issue 16): idle, slow and oversized connections against a real `migrate-bot serve` (HTTP).

    .venv/bin/python bench/bench_edge.py                       # this checkout's code, open-files limit 256
    .venv/bin/python bench/bench_edge.py --code /work/main     # another checkout's bot (before/after figures)

Starts the fake Slack and a bot whose open-files limit is `--nofile` (as a small LimitNOFILE would), then:
1. opens `--idle` connections that send nothing, and asks /healthz and a signed `/migrate help` meanwhile;
2. opens 100 half-header and 100 half-body connections; counts how many of all are still open after 8 s;
3. sends 300 unsigned 1 MiB bodies at once and reads the bot's RSS before and after;
4. drops 50 connections mid-body and counts tracebacks in the log.
Prints the figures; no pass/fail (tests/security/test_edge_connections.py asserts the behaviour).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakeslack import FakeSlack
from tests.fixtures.slack import APPROVERS_HANDLE, C_OPS, DEFAULT_WORKSPACE, SIGNING_SECRET, U_ALICE
from tests.security.botproc import BotProcess, http_get, unreachable_inventory
from tests.security.edgeattack import close_all, held, open_idle, still_open, unsigned_flood
from tests.security.fuzzkit import signed_headers
from tests.security.support import FORM, post_raw


async def _timed(what: str, coro: object) -> str:
    start = time.monotonic()
    try:
        result = await asyncio.wait_for(coro, 20)  # type: ignore[arg-type]
        return f"{what}: {result} in {time.monotonic() - start:.2f} s"
    except Exception as err:
        return f"{what}: FAILED ({type(err).__name__}) after {time.monotonic() - start:.2f} s"


async def main(code: str, nofile: int, idle: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    fake = FakeSlack.start()
    try:
        await fake.reset()
        await fake.seed(DEFAULT_WORKSPACE)
        env = {
            **fake.env(SIGNING_SECRET),
            "MIGRATE_BOT_HOSTS": str(unreachable_inventory(workdir)),
            "MIGRATE_BOT_DB": f"sqlite:///{workdir / 'bot.db'}",
            "MIGRATE_BOT_APPROVER_GROUP": APPROVERS_HANDLE,
            "PYTHONPATH": code,
        }
        with BotProcess.start(env, workdir / "bot.log", nofile=nofile) as bot:
            print(f"code {code}, open-files limit {nofile}, RSS at start {bot.rss_kib() / 1024:.0f} MiB")

            async def help_status() -> int:
                fields = await fake.build_slash_command("help", U_ALICE, C_OPS)
                body = urlencode(fields).encode()
                return (await post_raw(bot.url, body, signed_headers(SIGNING_SECRET, body, FORM)))[0]

            async def healthz() -> int:
                return (await asyncio.to_thread(http_get, bot.url + "/healthz", 20))[0]

            with held(open_idle(bot.port, idle)) as idle_socks:
                await asyncio.sleep(1.0)
                print(f"1. {len(idle_socks)} idle connections open")
                print("   " + await _timed("/healthz", healthz()))
                print("   " + await _timed("signed /migrate help", help_status()))
                log_bytes = len(bot.log_text())
                accept_lines = bot.log_text().count("out of system resource")
                print(f"   log: {log_bytes} bytes, {accept_lines} 'out of system resource' lines")
                with held(open_idle(bot.port, 100, "headers") + open_idle(bot.port, 100, "body")) as slow:
                    await asyncio.sleep(8.0)
                    print(
                        f"2. after 8 s still open: {still_open(idle_socks)}/{len(idle_socks)} idle, "
                        f"{still_open(slow)}/{len(slow)} half-header/half-body"
                    )
            await asyncio.sleep(2.0)
            before = bot.rss_kib()
            flood = await asyncio.to_thread(unsigned_flood, bot.port, 300)
            await asyncio.sleep(1.0)
            after = bot.rss_kib()
            print(
                f"3. 300 unsigned 1 MiB bodies: RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB; answers "
                f"{flood.statuses}, closed without answer {flood.closed_without_answer}, "
                f"{flood.bytes_sent / 2**20:.0f} MiB sent"
            )
            tracebacks = bot.log_text().count("Traceback")
            socks = open_idle(bot.port, 50, "body")
            close_all(socks)
            await asyncio.sleep(2.0)
            print(f"4. 50 clients gone mid-body: {bot.log_text().count('Traceback') - tracebacks} new tracebacks")
            print("   " + await _timed("/healthz afterwards", healthz()))
            print(f"   alive: {bot.alive()}, log {len(bot.log_text())} bytes, "
                  f"{bot.log_text().count('out of system resource')} 'out of system resource' lines in all")
    finally:
        fake.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", default=str(Path(__file__).resolve().parents[1]), help="PYTHONPATH of the bot")
    parser.add_argument("--nofile", type=int, default=256)
    parser.add_argument("--idle", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.code, args.nofile, args.idle))
