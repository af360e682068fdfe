"""Fuzz through the real endpoint (slow): hundreds of generated /migrate texts and malformed Slack payloads.

Each case is correctly signed, so it reaches the shape gate and the handlers. The bot's hosts are unreachable
sockets: no fuzz case can start a migration. Zero crashes means: every case answered 2xx or refused 4xx (no 5xx,
none unanswered), every well-formed /migrate answered 200, the process alive, no traceback in its log, and
the bot still answering normally afterwards. bench/bench_fuzz.py runs the same with 10,000 cases.
"""

from __future__ import annotations

import pytest

from tests.fakeslack import FakeSlack
from tests.fixtures.slack import C_OPS, SIGNING_SECRET, U_ALICE
from tests.security.conftest import StartBot
from tests.security.fuzzkit import run_fuzz, settle

CASES = 500


@pytest.mark.slow
async def test_fuzzed_commands_and_payloads_never_crash_the_bot(fake_slack: FakeSlack, start_bot: StartBot):
    bot = start_bot({"MIGRATE_BOT_RATE_LIMIT": "10000"})
    report = await run_fuzz(fake_slack, bot.url, SIGNING_SECRET, n=CASES, seed=7, user=U_ALICE, channel=C_OPS)
    await settle(fake_slack)  # let the background work (preflights, cards, answers) finish too
    print("\n" + report.table())

    assert report.sent == CASES
    assert report.problems() == []
    classes = report.status_classes()
    assert classes["2xx"] + classes["4xx"] == CASES
    assert set(report.by_category) >= {"migrate_text", "forged_click", "unknown_action", "wrong_types", "bad_json"}
    assert bot.alive()
    log = bot.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 300 :][:3000]
    ack = await fake_slack.slash_command_http(bot.url, SIGNING_SECRET, "help", U_ALICE, C_OPS)
    assert ack.status == 200 and "/migrate" in ack.body  # still serving
