"""Issue 16, items 3, 4, 5 and 8 (noise): every command and click passes the same gates, against a real bot.

Workspace (bound from auth.test at start: the fake's T_FAKE), channel allow-list (MIGRATE_BOT_CHANNELS,
with no empty-channel bypass), people (MIGRATE_BOT_REQUESTERS plus approvers, for reads and plans too),
`/migrate hosts` without URIs for non-approvers, and refused clicks that cost no chat.update.
"""

from __future__ import annotations

import asyncio
import copy
from urllib.parse import urlencode

from migration_core.store import EventKind
from tests.fakeslack import FakeSlack
from tests.fixtures.slack import C_OPS, SIGNING_SECRET, U_ALICE, U_BOB, U_MALLORY
from tests.security.botproc import http_get
from tests.security.conftest import StartBot
from tests.security.fuzzkit import signed_headers
from tests.security.support import FORM, events, interactive, job_count, post_raw, post_signed, seed_awaiting_job


async def _slash(fake: FakeSlack, url: str, text: str, user: str, channel: str, **edit: str) -> tuple[int, str]:
    fields = await fake.build_slash_command(text, user, channel)
    fields.update(edit)
    body = urlencode(fields).encode()
    return await post_raw(url, body, signed_headers(SIGNING_SECRET, body, FORM))


async def test_a_command_and_a_click_from_another_team_are_refused_and_recorded(
    fake_slack: FakeSlack, start_bot: StartBot
):
    bot = start_bot()
    db = bot.env["MIGRATE_BOT_DB"]
    job, card = await seed_awaiting_job(db, fake_slack, vm="vm42", requester=U_ALICE, channel=C_OPS)
    status, _ = await _slash(fake_slack, bot.url, "vm42 to hostB", U_ALICE, C_OPS, team_id="T0OTHER")
    assert status == 403
    click = copy.deepcopy(await fake_slack.build_click(C_OPS, card, "deny", U_BOB))
    click["team"] = {"id": "T0OTHER", "domain": "evil"}
    status, _ = await post_signed(bot.url, SIGNING_SECRET, interactive(click))
    assert status == 403
    assert await job_count(db) == 1  # only the seeded job
    refused = [r for r in await events(db, None, [EventKind.REFUSED]) if r.data.get("action") == "foreign workspace"]
    assert len(refused) == 2 and all(r.data.get("team_id") == "T0OTHER" for r in refused)
    assert (await events(db, job.id, [EventKind.APPROVAL])) == []  # the forged deny was not applied
    # The same click from the bound team works: the gate is about the team, nothing else.
    assert (await fake_slack.click_http(bot.url, SIGNING_SECRET, C_OPS, card, "deny", U_BOB)).status == 200


async def test_an_empty_channel_does_not_bypass_the_channel_allow_list(fake_slack: FakeSlack, start_bot: StartBot):
    bot = start_bot({"MIGRATE_BOT_CHANNELS": C_OPS})
    db = bot.env["MIGRATE_BOT_DB"]
    for text in ("vm42 to hostB", "plan vm42 to hostB", "status", "history", "hosts"):
        status, body = await _slash(fake_slack, bot.url, text, U_ALICE, C_OPS, channel_id="")
        assert status == 200 and "MIGRATE_BOT_CHANNELS" in body, (text, body)
    assert await job_count(db) == 0
    assert await fake_slack.messages(C_OPS) == []  # no card was posted
    refused = await events(db, None, [EventKind.REFUSED])
    assert sum(r.data.get("code") == "wrong_channel" for r in refused) == 5


async def test_reads_and_plans_are_for_requesters_and_approvers_only(fake_slack: FakeSlack, start_bot: StartBot):
    bot = start_bot({"MIGRATE_BOT_REQUESTERS": U_ALICE})
    for text in ("plan vm42 to hostB", "status", "history", "hosts", "vm42 to hostB"):
        status, body = await _slash(fake_slack, bot.url, text, U_MALLORY, C_OPS)
        assert status == 200 and "MIGRATE_BOT_REQUESTERS" in body, (text, body)
    status, body = await _slash(fake_slack, bot.url, "status", U_BOB, C_OPS)  # bob approves: he may read
    assert status == 200 and "MIGRATE_BOT_REQUESTERS" not in body
    refused = [r for r in await events(bot.env["MIGRATE_BOT_DB"], None, [EventKind.REFUSED]) if r.actor == U_MALLORY]
    assert len(refused) == 5


async def test_hosts_shows_no_uri_to_people_who_are_not_approvers(fake_slack: FakeSlack, start_bot: StartBot):
    bot = start_bot()
    status, _ = await _slash(fake_slack, bot.url, "hosts", U_ALICE, C_OPS)
    assert status == 200

    async def answer(user: str) -> str | None:
        for post in await fake_slack.response_posts():
            if post.get("user") == user and "Hosts" in str(post.get("body")):
                return str(post.get("body"))
        return None

    alice_sees = await fake_slack.wait_for(lambda: answer(U_ALICE), what="alice's hosts answer")
    assert "hostA" in alice_sees and "qemu" not in alice_sees and "sock" not in alice_sees
    await _slash(fake_slack, bot.url, "hosts", U_BOB, C_OPS)
    bob_sees = await fake_slack.wait_for(lambda: answer(U_BOB), what="bob's hosts answer")
    assert "qemu+unix" in bob_sees  # an approver gets the URIs, to act on an unreachable host


async def test_refused_clicks_do_not_re_render_the_card(fake_slack: FakeSlack, start_bot: StartBot):
    bot = start_bot(metrics=True)
    db = bot.env["MIGRATE_BOT_DB"]
    job, card = await seed_awaiting_job(db, fake_slack, vm="vm42", requester=U_ALICE, channel=C_OPS)
    for _ in range(8):
        assert (await fake_slack.click_http(bot.url, SIGNING_SECRET, C_OPS, card, "approve", U_MALLORY)).status == 200

    async def eight() -> bool:
        return len(await events(db, job.id, [EventKind.REFUSED])) >= 8

    await fake_slack.wait_for(eight, what="eight refusals recorded")
    assert await fake_slack.calls("chat.update") == []  # was 8 updates, eating the rate limit progress needs
    _status, exposition = await asyncio.to_thread(http_get, bot.metrics_url + "/metrics")
    assert 'migrate_bot_refusals_total{action="approve",reason="policy"} 8.0' in exposition
    assert 'migrate_bot_migrations_total{outcome="failed"} 0.0' in exposition


async def test_the_home_tab_shows_approval_requests_to_approvers_only(fake_slack: FakeSlack, start_bot: StartBot):
    bot = start_bot()
    job, _card = await seed_awaiting_job(
        bot.env["MIGRATE_BOT_DB"], fake_slack, vm="vm42", requester=U_ALICE, channel=C_OPS
    )

    async def home_of(user: str) -> str:
        event = {"type": "app_home_opened", "user": user, "channel": "D_HOME", "tab": "home"}
        assert (await fake_slack.event_http(bot.url, SIGNING_SECRET, event)).status == 200

        async def published() -> str | None:
            view = await fake_slack.home_view(user)
            return str(view) if view else None

        return await fake_slack.wait_for(published, what=f"{user}'s Home tab")

    assert f"#{job.id}" in await home_of(U_BOB)  # an approver is asked
    assert f"#{job.id}" not in await home_of(U_MALLORY)  # was "Waiting for your approval" for anyone
    assert f"#{job.id}" in await home_of(U_ALICE)  # the requester sees her own request
