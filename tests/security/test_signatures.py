"""HTTP mode accepts only requests signed with the signing secret within Slack's 300 s window; all else is 401.

A real `migrate-bot serve` process; the requests are real HTTP. The refused body is a `/migrate vm42 to hostB`
that creates a job when it is accepted (the last test shows it does), so "refused" is checked by its effect
too: no job, no answer on the response_url, no card.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlencode

import pytest

from tests.fakeslack import FakeSlack
from tests.fakeslack import payloads as fake_payloads
from tests.fixtures.slack import C_OPS, SIGNING_SECRET, U_ALICE
from tests.security.conftest import StartBot
from tests.security.support import FORM, job_count, post_raw

Headers = Callable[[bytes, int], dict[str, str]]


def _sig(secret: str, ts: int | str, body: bytes) -> str:
    return fake_payloads.sign(secret, ts, body.decode())


def _h(ts: int | str | None, signature: str | None) -> dict[str, str]:
    """Form Content-Type plus whichever of the two Slack headers are given."""
    headers = {"Content-Type": FORM}
    if ts is not None:
        headers["X-Slack-Request-Timestamp"] = str(ts)
    if signature is not None:
        headers["X-Slack-Signature"] = signature
    return headers


def _signed_at(offset_s: int) -> Headers:
    return lambda body, now: _h(now + offset_s, _sig(SIGNING_SECRET, now + offset_s, body))


REFUSED: dict[str, Headers] = {
    "unsigned": lambda body, now: _h(None, None),
    "timestamp header missing": lambda body, now: _h(None, _sig(SIGNING_SECRET, now, body)),
    "signature header missing": lambda body, now: _h(now, None),
    "signed with another secret": lambda body, now: _h(now, _sig("not-the-secret-0123", now, body)),
    "signature of another body": lambda body, now: _h(now, _sig(SIGNING_SECRET, now, body + b"&x=1")),
    "signature of another timestamp": lambda body, now: _h(now, _sig(SIGNING_SECRET, now - 60, body)),
    "301 s old": _signed_at(-301),
    "an hour old": _signed_at(-3600),
    "330 s in the future": _signed_at(330),
    "a day in the future": _signed_at(86400),
    "timestamp not a number": lambda body, now: _h("soon", _sig(SIGNING_SECRET, "soon", body)),
    "negative timestamp": lambda body, now: _h("-5", _sig(SIGNING_SECRET, "-5", body)),
    "v1 signature scheme": lambda body, now: _h(now, "v1=" + _sig(SIGNING_SECRET, now, body)[3:]),
    "empty signature": lambda body, now: _h(now, "v0="),
}


async def _migrate_body(fake: FakeSlack) -> bytes:
    fields = await fake.build_slash_command("vm42 to hostB", U_ALICE, C_OPS)
    return urlencode(fields).encode()


async def test_every_unsigned_stale_or_forged_request_is_refused_with_401(fake_slack: FakeSlack, start_bot: StartBot):
    bot = start_bot()
    db = bot.env["MIGRATE_BOT_DB"]
    statuses: dict[str, int] = {}
    for name, headers in REFUSED.items():
        body = await _migrate_body(fake_slack)
        statuses[name], _ = await post_raw(bot.url, body, headers(body, int(time.time())))
    assert statuses == {name: 401 for name in REFUSED}
    # ...and the refused requests did nothing: no job, no answer, no card.
    assert await job_count(db) == 0
    assert await fake_slack.response_posts() == []
    assert await fake_slack.messages(C_OPS) == []
    assert "refused a request to /slack/events" in bot.log_text()


async def test_the_signature_is_checked_before_the_body_is_parsed(fake_slack: FakeSlack, start_bot: StartBot):
    bot = start_bot()
    garbage = b"payload=%7B%22type%22%3A"  # `payload={"type":` : broken JSON
    status, _ = await post_raw(bot.url, garbage, {"Content-Type": FORM})
    assert status == 401  # unsigned: refused as such, whatever the body
    now = int(time.time())
    status, text = await post_raw(bot.url, garbage, _h(now, _sig(SIGNING_SECRET, now, garbage)))
    assert status == 400 and "malformed_request" in text  # signed: a clean 400, not a 500
    assert "Traceback" not in bot.log_text()


@pytest.mark.parametrize("offset_s", [0, -290, 290], ids=["now", "290 s old", "290 s ahead (clock skew)"])
async def test_signed_requests_within_the_window_are_accepted(
    fake_slack: FakeSlack, start_bot: StartBot, offset_s: int
):
    bot = start_bot()
    fields = await fake_slack.build_slash_command("help", U_ALICE, C_OPS)
    body = urlencode(fields).encode()
    status, text = await post_raw(bot.url, body, _signed_at(offset_s)(body, int(time.time())))
    assert status == 200
    assert "/migrate" in text  # the help text came back in the ack


async def test_the_refused_request_would_have_created_a_job_had_it_been_signed(
    fake_slack: FakeSlack, start_bot: StartBot
):
    bot = start_bot()
    ack = await fake_slack.slash_command_http(bot.url, SIGNING_SECRET, "vm42 to hostB", U_ALICE, C_OPS)
    assert ack.status == 200
    await fake_slack.wait_for(lambda: job_count(bot.env["MIGRATE_BOT_DB"]), what="a job for the signed request")
