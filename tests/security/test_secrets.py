"""Secrets never reach the log or Slack: tokens, the signing secret, the database password.

The bot runs with known, distinctive values (a bot token the fake Slack is seeded with, a signing secret, an
app token, and PostgreSQL as the password role of the test server) at DEBUG level, and is driven through
error paths: failed preflights, an unknown host, a forged click, unsigned and malformed requests, and the
database disappearing under it (its /healthz then reports the error). A second start with a wrong database
password fails, and says why, without the password. Then every byte the bot wrote to its log and everything
the fake Slack recorded (messages, thread replies, ephemerals, response_url posts, views, acks and the
arguments of every Web API call) is searched for each secret.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.fakeslack import FakeSlack
from tests.fakeslack.store import default_bot
from tests.fixtures.postgres import PW_ROLE, PW_SECRET
from tests.fixtures.slack import C_OPS, DEFAULT_WORKSPACE, U_ALICE, U_MALLORY
from tests.security.botproc import BotProcess
from tests.security.conftest import StartBot
from tests.security.fuzzkit import build_base
from tests.security.support import FORM, interactive, post_raw, post_signed

pytestmark = pytest.mark.postgres


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _as_password_role(admin_url: str, password: str) -> str:
    """The same database, as the server's password-checked role (scram-sha-256 on 127.0.0.1)."""
    rest = admin_url.split("://", 1)[1].split("@", 1)[1]  # host:port/db
    return f"postgresql+psycopg://{PW_ROLE}:{password}@{rest}"


async def _everything_the_fake_recorded(fake: FakeSlack) -> str:
    state = await fake.state()
    calls = [{k: v for k, v in c.items() if k != "token"} for c in await fake.calls()]  # the token authenticates
    parts = {
        "messages": await fake.messages(C_OPS, include_replies=True),
        "ephemerals": await fake.ephemerals(),
        "response_posts": state.get("response_posts"),
        "views": state.get("views"),
        "home_views": state.get("home_views"),
        "acks": state.get("acks"),
        "calls": calls,
    }
    return json.dumps(parts, default=str)


async def test_no_secret_reaches_the_log_or_slack(
    fake_slack: FakeSlack, start_bot: StartBot, pg_database_url: str, tmp_path: Path
):
    secrets = {
        "bot token": f"xoxb-{uuid.uuid4().hex}-{uuid.uuid4().hex[:12]}",
        "app token": f"xapp-1-{uuid.uuid4().hex}",
        "signing secret": f"sign-{uuid.uuid4().hex}",
        "database password": PW_SECRET,
    }
    await fake_slack.seed(DEFAULT_WORKSPACE, bot={**default_bot(), "token": secrets["bot token"]})
    dbname = pg_database_url.rsplit("/", 1)[1]
    with psycopg.connect(_libpq(pg_database_url), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{dbname}" OWNER TO {PW_ROLE}')
    db_url = _as_password_role(pg_database_url, PW_SECRET)
    env = {
        "SLACK_APP_TOKEN": secrets["app token"],
        "MIGRATE_BOT_LOG_LEVEL": "DEBUG",
        "MIGRATE_BOT_RATE_LIMIT": "100",
    }
    bot = start_bot(env, db=db_url, signing_secret=secrets["signing secret"], metrics=True)
    assert bot.env["SLACK_BOT_TOKEN"] == secrets["bot token"]
    signing = secrets["signing secret"]

    # Error paths: preflight failure (unreachable hosts), an unknown host, a grammar error, a forged click,
    # an unsigned request, a malformed signed one.
    for text in ("vm42 to hostB", "vm42 to nowhere", "vm42 to hostB --bandwidth lots"):
        assert (await fake_slack.slash_command_http(bot.url, signing, text, U_ALICE, C_OPS)).status == 200
    await fake_slack.wait_for(lambda: fake_slack.messages(C_OPS), what="the failed job's card")
    click = (await build_base(fake_slack, user=U_MALLORY, channel=C_OPS)).click  # approve job 1 (failed)
    click["response_url"] = await fake_slack.mint_response_url(channel=C_OPS, user_id=U_MALLORY)
    assert (await post_signed(bot.url, signing, interactive(click)))[0] == 200
    await fake_slack.wait_for(lambda: _told(fake_slack, U_MALLORY), what="mallory's refusal")
    assert (await post_raw(bot.url, b"text=hi", {"Content-Type": FORM}))[0] == 401
    assert (await post_signed(bot.url, signing, b"payload=%7Bnot-json"))[0] == 400

    # The database goes away under the running bot: requests fail, /healthz says why.
    with psycopg.connect(_libpq(pg_database_url.rsplit("/", 1)[0] + "/postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{dbname}" WITH (FORCE)')
    status, health = bot.health()
    assert status == 503 and health["detail"]["database"]["ok"] is False
    assert (await fake_slack.slash_command_http(bot.url, signing, "status vm42", U_ALICE, C_OPS)).status == 200
    assert (await fake_slack.slash_command_http(bot.url, signing, "vm42 to hostB", U_ALICE, C_OPS)).status == 200
    await fake_slack.wait_for(lambda: _db_error_told(fake_slack), timeout_s=60, what="the database error answer")
    metrics = (await _get(bot.metrics_url + "/metrics"))[1]
    bot.stop()

    # A start with the wrong password fails with a reason, without either password.
    wrong = f"wrong-{uuid.uuid4().hex}"
    failed = BotProcess.start(
        {**bot.env, "MIGRATE_BOT_DB": _as_password_role(pg_database_url, wrong)}, tmp_path / "wrong.log", wait=False
    )
    assert failed.wait_exit(60) != 0
    wrong_log = failed.log_text()
    assert "password authentication failed" in wrong_log or "refused the connection" in wrong_log, wrong_log

    recorded = await _everything_the_fake_recorded(fake_slack)
    seen = {
        "the bot's log": bot.log_text(),
        "the failed start's output": wrong_log,
        "the fake Slack's records": recorded,
        "/healthz": json.dumps(health),
        "/metrics": metrics,
    }
    for where, text in seen.items():
        for name, value in {**secrets, "wrong password": wrong}.items():
            assert value not in text, f"the {name} appears in {where}"
    assert "Traceback" not in bot.log_text()
    assert "[redacted]" in bot.log_text() or "***" in bot.log_text()  # the masking did happen somewhere


async def _told(fake: FakeSlack, user: str) -> bool:
    return any(p.get("user") == user for p in await fake.response_posts())


async def _db_error_told(fake: FakeSlack) -> bool:
    posts = await fake.response_posts()
    return any("database" in json.dumps(p.get("body"), default=str) for p in posts)


async def _get(url: str) -> tuple[int, str]:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()
