"""HTTP mode end to end (signed requests to /slack/events of a real `migrate-bot serve`): signatures, the
ephemeral answers, a denied request with refused clicks, a failing preflight, a risky plan with two
approvers, and App Home."""

from __future__ import annotations

import asyncio
import time

import pytest

from migration_core.models import JobState
from migration_core.store import EventKind
from tests.e2e.botproc import BotProcess, fresh_vm, open_store
from tests.e2e.support import (
    action_ids,
    cards,
    connected_user,
    everything_text,
    job_id_of,
    replies,
    wait_card,
    wait_card_state,
    wait_summary,
)
from tests.fakeslack import FakeSlack
from tests.fixtures.slack import C_OPS, SIGNING_SECRET, U_ALICE, U_BOB, U_CAROL, U_MALLORY
from tests.labkit import LabInfo, vm_location

pytestmark = pytest.mark.lab
VM = "shared"


@pytest.fixture(scope="module")
def bot(bot_http: BotProcess) -> BotProcess:
    return bot_http


async def job_count(bot: BotProcess) -> int:
    async with open_store(bot) as store:
        return len(await store.history(None, 1000))


async def test_bad_or_stale_signature_is_refused_with_401_and_does_nothing(fake_slack: FakeSlack,
                                                                           bot: BotProcess) -> None:
    assert bot.app_url is not None
    before = await job_count(bot)
    payload = await fake_slack.build_slash_command(f"{VM} to hostB", U_ALICE, C_OPS)
    bad = await fake_slack.post_http(bot.app_url, SIGNING_SECRET, "slash_commands", payload, bad_signature=True)
    stale = await fake_slack.post_http(bot.app_url, SIGNING_SECRET, "slash_commands", payload,
                                       timestamp=int(time.time()) - 301)
    wrong_secret = await fake_slack.post_http(bot.app_url, "not-the-secret", "slash_commands", payload)
    assert (bad.status, stale.status, wrong_secret.status) == (401, 401, 401)
    # A click forged the same way is refused too.
    forged = {"type": "block_actions", "user": {"id": U_BOB}, "actions": [
        {"action_id": "approve", "block_id": "approval:1", "value": "1", "type": "button"}]}
    click = await fake_slack.post_http(bot.app_url, SIGNING_SECRET, "interactive", forged, bad_signature=True)
    assert click.status == 401
    await asyncio.sleep(1.0)  # give a (wrongly) accepted request time to show; nothing may appear
    assert await fake_slack.messages(C_OPS) == [] and await fake_slack.ephemerals() == []
    assert await job_count(bot) == before


async def test_help_status_history_hosts_and_grammar_errors_are_ephemeral(fake_slack: FakeSlack,
                                                                          bot: BotProcess) -> None:
    alice = await connected_user(fake_slack, bot, U_ALICE)
    ack = await alice.command("help")
    assert ack is not None and ack["response_type"] == "ephemeral" and "/migrate" in everything_text(ack)
    ack = await alice.command(f"{VM} too hostB")
    assert ack is not None and ack["response_type"] == "ephemeral"
    assert "could not read" in ack["text"] and "example: /migrate vm42 to hostB" in ack["text"]  # error + hint
    await alice.wait_ephemeral("example: /migrate vm42 to hostB")
    answers = {text: everything_text(await alice.ask(text)) for text in ("status", "history", "hosts")}
    assert "Active migrations" in answers["status"]
    assert "History" in answers["history"]
    assert "Hosts" in answers["hosts"] and "*hostA*" in answers["hosts"] and "*hostB*" in answers["hosts"]
    # Nobody else saw anything: no channel message, no ephemeral to another user.
    assert await fake_slack.messages(C_OPS) == []
    assert {e["user"] for e in await fake_slack.ephemerals()} == {U_ALICE}


async def test_denied_request_with_refused_clicks_leaves_the_vm_alone(fake_slack: FakeSlack, bot: BotProcess,
                                                                      lab: LabInfo) -> None:
    await fresh_vm(lab, VM)
    alice, bob = [await connected_user(fake_slack, bot, u) for u in (U_ALICE, U_BOB)]
    mallory = await connected_user(fake_slack, bot, U_MALLORY)
    await alice.command(f'{VM} to hostB --reason "CHG-1234 kernel update"')
    card = await wait_card(fake_slack, VM, contains="Approval needed")
    job_id = job_id_of(card)
    assert job_id is not None and "CHG-1234 kernel update" in everything_text(card)

    await mallory.click(card["ts"], "approve")  # not an approver
    await mallory.wait_ephemeral("not an approver")
    await mallory.click(card["ts"], "deny")
    await mallory.wait_ephemeral("not an approver")
    assert (await fake_slack.message(C_OPS, card["ts"]))["text"].startswith("Approval needed")

    await bob.click(card["ts"], "deny")
    final = await wait_card_state(fake_slack, card, "denied")
    assert action_ids(final) == [] and "Denied* by <@U_BOB>" in everything_text(final)
    thread = await fake_slack.wait_for(lambda: replies(fake_slack, card), 10, 0.1, "the denial in the thread")
    assert any("Denied by <@U_BOB>" in m["text"] for m in thread)

    async with open_store(bot) as store:
        job = await store.get_job(job_id)
        assert job.state is JobState.DENIED and job.approvers == ()
        refused = await store.events(job_id, [EventKind.REFUSED])
        assert {(e.actor, e.detail.split(" refused")[0]) for e in refused} == {(U_MALLORY, "approve"),
                                                                                (U_MALLORY, "deny")}
    assert vm_location(lab, VM) == {"hostA": "running"}  # nothing moved


async def test_failing_preflight_shows_the_fail_and_no_approve_button(fake_slack: FakeSlack,
                                                                      bot: BotProcess, lab: LabInfo) -> None:
    # disky has a local disk: without --copy-storage the storage check fails. Other suites migrate disky, so
    # it is not reset here; preflight only reads it.
    alice = await connected_user(fake_slack, bot, U_ALICE)
    await alice.command("disky to hostB")
    card = await wait_card(fake_slack, "disky", contains="failed")
    text = everything_text(card)
    assert "Not executable" in text and "❌" in text
    assert "approve" not in action_ids(card)  # nothing to approve
    job_id = job_id_of(card)
    assert job_id is not None
    async with open_store(bot) as store:
        job = await store.get_job(job_id)
        assert job.state is JobState.FAILED and job.plan is not None and not job.plan.executable
        failed = [c.name for c in job.plan.failures]
    if vm_location(lab, "disky").get("hostA") == "running":  # where the suite left it: the fail is storage
        assert "storage" in failed and "❌ *storage*" in text and "--copy-storage" in text, text


async def test_risky_plan_needs_two_distinct_approvers(fake_slack: FakeSlack, bot: BotProcess,
                                                       lab: LabInfo) -> None:
    await fresh_vm(lab, VM)
    alice, bob, carol = [await connected_user(fake_slack, bot, u) for u in (U_ALICE, U_BOB, U_CAROL)]
    await alice.command(f"{VM} to hostB --postcopy")
    card = await wait_card(fake_slack, VM, contains="Approval needed")
    text = everything_text(card)
    assert "Two approvers needed" in text and "post-copy" in text and "2 more approval(s) needed" in text
    approve = next(e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
                   if e["action_id"] == "approve")
    assert "confirm" in approve  # a risky approval asks "are you sure?"

    await bob.click(card["ts"], "approve")
    await wait_card(fake_slack, VM, contains="1 more approval(s) needed")
    assert any("1 more approval(s) needed" in m["text"] for m in await replies(fake_slack, card))
    await bob.click(card["ts"], "approve")  # the same person twice does not count twice
    await bob.wait_ephemeral("already approved")
    await carol.click(card["ts"], "approve")
    summary = await wait_summary(fake_slack, card)
    assert "succeeded" in summary["text"]
    final = await wait_card_state(fake_slack, card, "succeeded")
    assert "<@U_BOB>" in everything_text(final) and "<@U_CAROL>" in everything_text(final)
    async with open_store(bot) as store:
        job = await store.get_job(job_id_of(card))  # type: ignore[arg-type]
        assert job.state is JobState.SUCCEEDED and list(job.approvers) == [U_BOB, U_CAROL]
    assert vm_location(lab, VM).get("hostB") == "running"


async def test_app_home_shows_active_migrations(fake_slack: FakeSlack, bot: BotProcess, lab: LabInfo) -> None:
    await fresh_vm(lab, VM)
    alice, bob = [await connected_user(fake_slack, bot, u) for u in (U_ALICE, U_BOB)]
    await alice.command(f"{VM} to hostB")
    card = await wait_card(fake_slack, VM, contains="Approval needed")
    job_id = job_id_of(card)
    await bob.open_home()
    view = await fake_slack.wait_for(lambda: fake_slack.home_view(U_BOB), 10, 0.1, "bob's Home tab")
    home = everything_text(view)
    assert view["type"] == "home" and f"#{job_id}" in home and VM in home
    assert await fake_slack.home_view(U_ALICE) is None  # published for the person who opened it
    await alice.command(f"cancel {job_id}")  # withdraw it: the VM stays free for the next test
    await wait_card_state(fake_slack, card, "aborted")
    assert len(await cards(fake_slack, VM)) == 1
