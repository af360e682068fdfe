"""Authorisation on every click, checked against the job the bot looks up (never the button's value).

Real bot process, real signed HTTP, clicks built by the fake Slack from the cards as they are stored there.
Two jobs wait for approval: A (vm42, requested by alice) and B (busy, requested by carol); approvers are the
fake's approver group (bob, carol). Every refused click is answered with an ephemeral refusal, changes
nothing, and leaves a "refused" row in the job store's event log naming who tried what.
"""

from __future__ import annotations

import copy
from typing import Any

from migration_core.models import JobState
from migration_core.store import EventKind, EventRecord
from tests.fakeslack import FakeSlack
from tests.fixtures.slack import C_OPS, SIGNING_SECRET, U_ALICE, U_BOB, U_CAROL, U_MALLORY
from tests.security.conftest import StartBot
from tests.security.support import events, interactive, job_state, post_signed, seed_awaiting_job


def _refusals(records: list[EventRecord], actor: str, action: str) -> list[EventRecord]:
    return [r for r in records if r.actor == actor and r.data.get("action") == action]


async def _answers(fake: FakeSlack, user: str) -> list[str]:
    """Texts the bot sent back to `user` on response_urls (ephemeral answers to their clicks)."""
    texts = []
    for post in await fake.response_posts():
        body = post.get("body") or {}
        if post.get("user") == user and isinstance(body, dict):
            texts.append(str(body.get("text", "")))
    return texts


async def _click(fake: FakeSlack, bot_url: str, ts: str, action_id: str, user: str, **edit: Any) -> int:
    """A click on the stored card `ts`, optionally edited (forged) before it is signed and sent."""
    payload = await fake.build_click(C_OPS, ts, "approve" if action_id not in ("approve", "deny") else action_id, user)
    payload = copy.deepcopy(payload)
    action = payload["actions"][0]
    action["action_id"] = action_id
    action.update(edit)
    status, _ = await post_signed(bot_url, SIGNING_SECRET, interactive(payload))
    return status


async def test_people_without_rights_cannot_approve_or_control_and_each_attempt_is_recorded(
    fake_slack: FakeSlack, start_bot: StartBot
):
    bot = start_bot()
    db = bot.env["MIGRATE_BOT_DB"]
    job_a, card_a = await seed_awaiting_job(db, fake_slack, vm="vm42", requester=U_ALICE, channel=C_OPS)

    assert (await fake_slack.click_http(bot.url, SIGNING_SECRET, C_OPS, card_a, "approve", U_MALLORY)).status == 200
    assert (await fake_slack.click_http(bot.url, SIGNING_SECRET, C_OPS, card_a, "approve", U_ALICE)).status == 200
    assert (await fake_slack.click_http(bot.url, SIGNING_SECRET, C_OPS, card_a, "deny", U_MALLORY)).status == 200

    async def recorded() -> list[EventRecord] | None:
        found = await events(db, job_a.id, [EventKind.REFUSED])
        return found if len(found) >= 3 else None

    refused = await fake_slack.wait_for(recorded, what="three refusals in the event log")
    assert _refusals(refused, U_MALLORY, "approve") and _refusals(refused, U_MALLORY, "deny")
    assert _refusals(refused, U_ALICE, "approve")  # the requester may not approve her own request
    assert await job_state(db, job_a.id) is JobState.AWAITING_APPROVAL
    assert any("approve" in t.lower() for t in await _answers(fake_slack, U_MALLORY))
    assert await _answers(fake_slack, U_ALICE)

    # The positive control: an approver's click on the same card is accepted.
    assert (await fake_slack.click_http(bot.url, SIGNING_SECRET, C_OPS, card_a, "approve", U_BOB)).status == 200

    async def approved() -> bool:
        return bool(await events(db, job_a.id, [EventKind.APPROVAL]))

    await fake_slack.wait_for(approved, what="bob's approval")
    assert [r.actor for r in await events(db, job_a.id, [EventKind.APPROVAL])] == [U_BOB]


async def test_forged_button_payloads_are_refused_cleanly_and_recorded(fake_slack: FakeSlack, start_bot: StartBot):
    bot = start_bot()
    db = bot.env["MIGRATE_BOT_DB"]
    job_a, card_a = await seed_awaiting_job(db, fake_slack, vm="vm42", requester=U_ALICE, channel=C_OPS)
    job_b, _card_b = await seed_awaiting_job(db, fake_slack, vm="busy", requester=U_CAROL, channel=C_OPS)
    a, b = str(job_a.id), str(job_b.id)

    # 1. mallory edits A's approve button to point at job B (block_id and value agree): the bot looks up B
    #    and refuses her there.
    assert await _click(fake_slack, bot.url, card_a, "approve", U_MALLORY, block_id=f"approval:{b}", value=b) == 200
    # 2. the value names B but the block is A's: the click belongs to no card.
    assert await _click(fake_slack, bot.url, card_a, "approve", U_BOB, value=b) == 200
    # 3. a control the bot never rendered.
    assert await _click(fake_slack, bot.url, card_a, "approve_all", U_BOB) == 200
    # 4. a job that does not exist, by an approver.
    ghost = "999999"
    assert await _click(fake_slack, bot.url, card_a, "approve", U_BOB, block_id=f"approval:{ghost}", value=ghost) == 200
    # 5. abort on A by someone who is neither requester nor approver.
    assert await _click(fake_slack, bot.url, card_a, "abort", U_MALLORY, block_id=f"controls:{a}", value=a) == 200

    async def all_recorded() -> tuple[list[EventRecord], list[EventRecord], list[EventRecord]] | None:
        on_a = await events(db, job_a.id, [EventKind.REFUSED])
        on_b = await events(db, job_b.id, [EventKind.REFUSED])
        no_job = await events(db, None, [EventKind.REFUSED])
        return (on_a, on_b, no_job) if (len(on_a), len(on_b), len(no_job)) >= (1, 1, 3) else None

    on_a, on_b, no_job = await fake_slack.wait_for(all_recorded, what="five refusals in the event log")
    assert _refusals(on_b, U_MALLORY, "approve"), on_b  # 1: judged against job B, where she has no rights
    assert _refusals(on_a, U_MALLORY, "cancel"), on_a  # 5: abort before the run is a cancel, refused as such
    mismatched = _refusals(no_job, U_BOB, "approve")
    assert any(r.data.get("value") == b and r.data.get("block_id") == f"approval:{a}" for r in mismatched)  # 2
    assert any(r.data.get("action_id") == "approve_all" for r in _refusals(no_job, U_BOB, "unknown control"))  # 3
    assert any(r.data.get("job_id") == 999999 for r in mismatched)  # 4
    # Nothing moved, and the clickers were told.
    assert await job_state(db, job_a.id) is JobState.AWAITING_APPROVAL
    assert await job_state(db, job_b.id) is JobState.AWAITING_APPROVAL
    assert len(await _answers(fake_slack, U_BOB)) >= 3 and len(await _answers(fake_slack, U_MALLORY)) >= 2
    assert "Traceback" not in bot.log_text()


async def test_a_view_submission_for_a_job_the_submitter_cannot_control_is_refused_and_recorded(
    fake_slack: FakeSlack, start_bot: StartBot
):
    bot = start_bot()
    db = bot.env["MIGRATE_BOT_DB"]
    job_a, _ = await seed_awaiting_job(db, fake_slack, vm="vm42", requester=U_ALICE, channel=C_OPS)
    ctx = await fake_slack._get("/_test/context", user=U_MALLORY)
    view = {
        "type": "view_submission", "team": {"id": ctx["team"]["id"]}, "api_app_id": ctx["bot"]["app_id"],
        "user": {"id": U_MALLORY, "team_id": ctx["team"]["id"]}, "trigger_id": "1.2.3",
        "view": {"id": "V1", "type": "modal", "callback_id": "set_downtime",
                 "private_metadata": f'{{"job": {job_a.id}, "channel": "{C_OPS}"}}',
                 "state": {"values": {"value": {"value_input": {"type": "plain_text_input", "value": "900"}}}}},
    }  # fmt: skip
    status, text = await post_signed(bot.url, SIGNING_SECRET, interactive(view))
    assert status == 200 and '"errors"' in text  # the form stays open with the refusal
    refused = await events(db, job_a.id, [EventKind.REFUSED])
    assert _refusals(refused, U_MALLORY, "downtime"), refused
