"""Issue 16, items 1, 2 and 8 (tracebacks): idle, slow and oversized connections against a real bot process.

The bot runs with an open-files limit of 256 (as a small LimitNOFILE would); the attacks are plain sockets
(tests/security/edgeattack.py). Figures for before and after are printed by bench/bench_edge.py.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from bot.slack_runner import MAX_BODY_BYTES
from tests.fakeslack import FakeSlack
from tests.fixtures.slack import C_OPS, SIGNING_SECRET, U_ALICE
from tests.security.botproc import BotProcess, http_get
from tests.security.conftest import StartBot
from tests.security.edgeattack import MIB, close_all, held, open_idle, still_open, unsigned_flood
from tests.security.fuzzkit import signed_headers
from tests.security.support import FORM, post_raw

NOFILE = 256
FLOOD = 300  # connections sending a 1 MiB unsigned body at once
REQUEST_LIMIT_KIB = MAX_BODY_BYTES // 1024  # the bot refuses a declared body larger than this (413)
IDLE = 300  # more than the open-files limit: without a cap, accept() fails and nothing is answered


async def _signed_help(fake: FakeSlack, bot: BotProcess) -> tuple[int, str]:
    fields = await fake.build_slash_command("help", U_ALICE, C_OPS)
    body = urlencode(fields).encode()
    return await post_raw(bot.url, body, signed_headers(SIGNING_SECRET, body, FORM))


async def test_hundreds_of_idle_connections_do_not_stop_the_bot(fake_slack: FakeSlack, start_bot: StartBot):
    bot = start_bot(nofile=NOFILE)
    with held(open_idle(bot.port, IDLE)) as idle:
        await asyncio.sleep(0.5)
        status, _ = await asyncio.to_thread(http_get, bot.url + "/healthz", 15)
        assert status in (200, 503)  # answered (503 only says the hypervisors are unreachable)
        status, text = await _signed_help(fake_slack, bot)
        assert status == 200 and "/migrate" in text
        # Every one of them is dropped after the header deadline (5 s); wait for it rather than time it.
        for _ in range(40):
            if still_open(idle) == 0:
                break
            await asyncio.sleep(0.5)
        assert still_open(idle) == 0
    log = bot.log_text()
    assert log.count("out of system resource") <= 3  # throttled to one line per 10 s (was ~250,000)
    assert "Traceback" not in log
    assert bot.alive()


async def test_half_sent_headers_and_bodies_are_dropped(fake_slack: FakeSlack, start_bot: StartBot):
    bot = start_bot(nofile=NOFILE)
    kinds = ("headers", "body", "signed-body")
    with held([s for kind in kinds for s in open_idle(bot.port, 40, kind)]) as slow:
        assert len(slow) == 120
        for _ in range(60):
            if still_open(slow) == 0:
                break
            await asyncio.sleep(0.5)
        assert still_open(slow) == 0
    status, _ = await _signed_help(fake_slack, bot)
    assert status == 200
    assert "dropped a connection" in bot.log_text()


async def test_unsigned_large_bodies_are_refused_before_they_are_read(fake_slack: FakeSlack, start_bot: StartBot):
    bot = start_bot(nofile=NOFILE)
    await _signed_help(fake_slack, bot)  # warm up: the first request imports and caches what it needs
    before_kib = bot.rss_kib()
    flood = await asyncio.to_thread(unsigned_flood, bot.port, FLOOD, MIB)
    signed_looking = await asyncio.to_thread(unsigned_flood, bot.port, 50, MIB, True)
    after_kib = bot.rss_kib()
    # Nothing was answered with anything but a refusal, and the bodies were not buffered: 300 MiB sent at
    # once, and the process grew by ~360 MiB before the fix, never given back. What a connection may still
    # cost is what the transport reads before the refusal goes out, bounded by the 256 KiB request limit
    # (a few KiB when the machine is idle, up to ~140 KiB seen under a CI run's load); a buffered body
    # costs its whole 1 MiB. So the bound is per connection in flight, not a figure that holds only when idle.
    assert set(flood.statuses) <= {401}
    assert set(signed_looking.statuses) <= {413}  # fresh headers but 1 MiB declared: over the 256 KiB limit
    grown_per_connection_kib = (after_kib - before_kib) / FLOOD
    print(f"RSS grew {after_kib - before_kib} KiB for {FLOOD} connections of 1 MiB each")
    assert grown_per_connection_kib < REQUEST_LIMIT_KIB, (before_kib, after_kib)
    status, _ = await _signed_help(fake_slack, bot)
    assert status == 200
    assert bot.alive()


async def test_clients_that_go_away_mid_body_leave_no_traceback(fake_slack: FakeSlack, start_bot: StartBot):
    bot = start_bot()
    close_all(open_idle(bot.port, 50, "body"))
    # Signed headers, half a body, then gone: the bot reads this one (the signature headers are fine).
    fields = await fake_slack.build_slash_command("help", U_ALICE, C_OPS)
    body = urlencode(fields).encode()
    headers = signed_headers(SIGNING_SECRET, body, FORM)
    for _ in range(20):
        _reader, writer = await asyncio.open_connection("127.0.0.1", bot.port)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"POST /slack/events HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 5000\r\n\r\n".encode())
        writer.write(body[:100])
        await writer.drain()
        writer.transport.abort()
    await asyncio.sleep(1.0)
    status, _ = await _signed_help(fake_slack, bot)
    assert status == 200
    assert "Traceback" not in bot.log_text()
