"""The whole flow, in both transports, against the real lab: /migrate shared to hostB -> one card -> the
requester's own approval refused -> approved by bob -> progress edited in place in the thread -> summary
broadcast -> card final; then the same back to hostA. Also: one request delivered twice is one job."""

from __future__ import annotations

import asyncio
import re

import pytest

from migration_core.models import JobState
from migration_core.store import EventKind
from tests.e2e.botproc import BotFactory, BotProcess, fresh_vm, open_store
from tests.e2e.support import (
    action_ids,
    cards,
    connected_user,
    everything_text,
    job_id_of,
    progress_percents,
    replies,
    wait_card,
    wait_card_state,
    wait_progress,
    wait_summary,
)
from tests.fakeslack import FakeSlack
from tests.fixtures.slack import U_ALICE, U_BOB, U_CAROL
from tests.labkit import LabInfo, vm_location

pytestmark = pytest.mark.lab
VM = "shared"


@pytest.fixture(scope="module", params=["http", "socket"])
def bot(request: pytest.FixtureRequest, bot_factory: BotFactory) -> BotProcess:
    """One bot process per transport for this module."""
    return bot_factory(request.param)


async def migrate_and_check(fake: FakeSlack, bot: BotProcess, lab: LabInfo, source: str, destination: str) -> int:
    """One migration as people do it in Slack, asserting everything they see on the way; returns the job id."""
    alice = await connected_user(fake, bot, U_ALICE)
    bob = await connected_user(fake, bot, U_BOB)

    ack = await alice.command(f"{VM} to {destination}")
    assert ack is not None and "preflight" in everything_text(ack).lower()  # acked at once, work follows

    card = await wait_card(fake, VM, contains="Approval needed")
    text = everything_text(card)
    assert f"{source} → {destination}" in text
    assert "*Preflight*" in text and "passed:" in text  # the preflight report
    assert "Prediction" in text and "converges" in text  # the prediction
    assert "*Plan*" in text and "VIR_MIGRATE_LIVE" in text  # the exact plan
    assert action_ids(card) == ["approve", "deny"]
    job_id = job_id_of(card)
    assert job_id is not None
    # Any preflight warning makes the plan risky (two approvers); a crowded lab host can warn about vCPU
    # overcommit. A round trip never does by itself: the first move left no definition on the source (one
    # owner), so the way back finds none, and an old copy of the VM would only be information (replaced).
    need = int(re.search(r"(\d) more approval\(s\) needed", text).group(1))  # type: ignore[union-attr]
    assert need == (2 if "⚠️ *Two approvers needed:*" in text else 1), text
    assert "⚠️ *vm.name_clash*" not in text, text

    await alice.click(card["ts"], "approve")  # the requester approves her own request: refused
    refusal = await alice.wait_ephemeral("another approver must approve")
    assert refusal["user"] == U_ALICE
    assert (await fake.message(card["channel"], card["ts"]))["text"].startswith("Approval needed")

    await bob.click(card["ts"], "approve")
    approvers = [U_BOB]
    if need == 2:
        carol = await connected_user(fake, bot, U_CAROL)
        await wait_card(fake, VM, contains="1 more approval(s) needed")
        await carol.click(card["ts"], "approve")
        approvers.append(U_CAROL)
    summary = await wait_summary(fake, card)
    final = await wait_card_state(fake, card, "succeeded")

    # The progress message: one thread reply, edited in place, percent never going back, ending at 100 %.
    progress = await wait_progress(fake, card, contains="Succeeded")
    assert progress["thread_ts"] == card["ts"] and progress["edits"] >= 1
    percents = progress_percents(progress)
    assert percents == sorted(percents) and percents[-1] == 100, percents
    assert percents.count(100) == 1, percents  # 100 % is shown once, by the last edit (issue 13 §5)
    # The summary: a broadcast reply in the card's thread, after the progress message, with the verification.
    assert summary["reply_broadcast"] is True and summary["thread_ts"] == card["ts"]
    assert float(summary["ts"]) > float(progress["ts"])
    stext = everything_text(summary)
    assert "succeeded" in stext and "Verification" in stext and "Downtime" in stext
    assert "<@U_ALICE>" in stext and all(f"<@{a}>" in stext for a in approvers)  # who requested and approved
    thread = "\n".join(everything_text(m) for m in await replies(fake, card))
    credit = "Approved by <@U_BOB> and <@U_CAROL>;" if need == 2 else "Approved by <@U_BOB>;"
    assert credit in thread, thread  # every approver is credited (issue 13 §5)
    assert summary["ts"] in {m["ts"] for m in await fake.messages(card["channel"])}  # seen in the channel too
    # The card, edited to its final state: no buttons left, approved by bob.
    assert action_ids(final) == [] and "Succeeded*, approved by <@U_BOB>" in everything_text(final)
    assert len(await cards(fake, VM)) == 1
    assert summary["ts"] in {m["ts"] for m in await replies(fake, card)}

    async with open_store(bot) as store:
        job = await store.get_job(job_id)
        assert job.state is JobState.SUCCEEDED and list(job.approvers) == approvers and job.requester == U_ALICE
        refused = await store.events(job_id, [EventKind.REFUSED])
        assert [(e.actor, "approve refused" in e.detail) for e in refused] == [(U_ALICE, True)]
    assert vm_location(lab, VM) == {destination: "running"}  # one owner: defined on the destination only
    return job_id


async def test_request_approve_progress_summary_there_and_back(fake_slack: FakeSlack, bot: BotProcess,
                                                                lab: LabInfo) -> None:
    await fresh_vm(lab, VM)
    first = await migrate_and_check(fake_slack, bot, lab, "hostA", "hostB")
    await fake_slack.reset()
    from tests.fixtures.slack import DEFAULT_WORKSPACE

    await fake_slack.seed(DEFAULT_WORKSPACE)
    second = await migrate_and_check(fake_slack, bot, lab, "hostB", "hostA")
    assert second != first
    bot.assert_alive()


async def test_two_approvers_are_both_credited(fake_slack: FakeSlack, bot: BotProcess, lab: LabInfo) -> None:
    """A risky plan (post-copy allowed) needs bob and carol: the thread credits both, not only carol."""
    await fresh_vm(lab, VM)
    alice, bob, carol = [await connected_user(fake_slack, bot, u) for u in (U_ALICE, U_BOB, U_CAROL)]
    await alice.command(f"{VM} to hostB --postcopy")
    card = await wait_card(fake_slack, VM, contains="2 more approval(s) needed")
    await bob.click(card["ts"], "approve")
    await wait_card(fake_slack, VM, contains="1 more approval(s) needed")
    await carol.click(card["ts"], "approve")
    await wait_summary(fake_slack, card)
    await wait_card_state(fake_slack, card, "succeeded")
    thread = [everything_text(m) for m in await replies(fake_slack, card)]
    approved = [t for t in thread if t.startswith("👍 Approved by")]
    assert len(approved) == 1 and "Approved by <@U_BOB> and <@U_CAROL>;" in approved[0], thread
    progress = await wait_progress(fake_slack, card, contains="Succeeded")
    percents = progress_percents(progress)
    assert percents[-1] == 100 and percents.count(100) == 1, percents


async def test_duplicate_delivery_of_one_command_is_one_card_and_one_job(fake_slack: FakeSlack, bot: BotProcess,
                                                                          lab: LabInfo) -> None:
    await fresh_vm(lab, VM)
    alice = await connected_user(fake_slack, bot, U_ALICE)
    async with open_store(bot) as store:
        before = len(await store.history(VM, 1000))
    payload = await fake_slack.build_slash_command(f"{VM} to hostB", U_ALICE, "C_OPS")
    # Slack's retry of the same delivery (same trigger_id), arriving while the first is still in preflight.
    acks = await asyncio.gather(alice.send("slash_commands", payload),
                                alice.send("slash_commands", payload, retry=1))
    # One of them is answered ("Checking…"); the other, Slack's retry of the same delivery, is acked silently.
    assert sorted(a is None for a in acks) == [False, True], acks
    card = await wait_card(fake_slack, VM, contains="Approval needed")
    await alice.send("slash_commands", payload, retry=2)  # and once more after the card is out
    # Slack's retries are acked without a word: alice was told "Checking…" once (issue 13 §5), and the card
    # is the answer; a retry is not a new request, so no "already requested" either.
    await asyncio.sleep(1.0)
    said = [everything_text(e) for e in await alice.ephemerals()]
    assert sum("Checking" in t for t in said) == 1, said
    assert not any("Already requested" in t for t in said), said
    async with open_store(bot) as store:
        jobs = await store.history(VM, 1000)
        assert len(jobs) == before + 1 and jobs[0].id == job_id_of(card)
    assert len(await cards(fake_slack, VM)) == 1
    # Withdraw it so that the next test finds the VM free.
    await alice.command(f"cancel {job_id_of(card)}")
    await wait_card_state(fake_slack, card, "aborted")
