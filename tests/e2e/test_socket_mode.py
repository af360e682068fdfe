"""Socket Mode end to end (envelopes over the fake's /link WebSocket to a real `migrate-bot serve`): an abort
from the thread on a slowed link, a 429 storm during progress, answers over the socket, App Home."""

from __future__ import annotations

import asyncio

import pytest

from migration_core.models import JobState
from migration_core.store import EventKind
from tests.e2e.botproc import BotProcess, fresh_vm, open_store
from tests.e2e.support import (
    action_ids,
    connected_user,
    everything_text,
    job_id_of,
    progress_percents,
    summaries,
    wait_card,
    wait_card_state,
    wait_progress,
    wait_summary,
)
from tests.fakeslack import FakeSlack
from tests.fixtures.slack import C_OPS, U_ALICE, U_BOB
from tests.labkit import LabInfo, link_rate, link_reset, vm_location

pytestmark = pytest.mark.lab
VM = "shared"
SLOW_LINK_MIB_S = 4  # the VM's ~16 MiB then take seconds: time to press Abort, and several progress edits


@pytest.fixture(scope="module")
def bot(bot_socket: BotProcess) -> BotProcess:
    return bot_socket


async def request_and_approve(fake: FakeSlack, bot: BotProcess) -> dict[str, object]:
    alice, bob = [await connected_user(fake, bot, u) for u in (U_ALICE, U_BOB)]
    await alice.command(f"{VM} to hostB")
    card = await wait_card(fake, VM, contains="Approval needed")
    await bob.click(card["ts"], "approve")
    return card


async def test_abort_from_the_thread_keeps_the_vm_on_the_source(fake_slack: FakeSlack, bot: BotProcess,
                                                                lab: LabInfo) -> None:
    await fresh_vm(lab, VM)
    alice = await connected_user(fake_slack, bot, U_ALICE)
    try:
        await asyncio.to_thread(link_rate, lab, SLOW_LINK_MIB_S)
        card = await request_and_approve(fake_slack, bot)
        progress = await wait_progress(fake_slack, card, contains="Abort")  # running, with its controls
        abort = next(e for b in progress["blocks"] if b["type"] == "actions" for e in b["elements"]
                     if e["action_id"] == "abort")
        assert "confirm" in abort and "keeps running on hostA" in everything_text({"blocks": [abort]})
        await alice.click(progress["ts"], "abort")  # the requester may abort (after Slack's confirm dialog)
        await alice.wait_ephemeral("abort of job")
        summary = await wait_summary(fake_slack, card)
        final = await wait_card_state(fake_slack, card, "aborted")
    finally:
        await asyncio.to_thread(link_reset, lab)
    assert "aborted" in summary["text"] and summary["reply_broadcast"]
    assert action_ids(final) == []
    ended = await wait_progress(fake_slack, card, contains="Aborted")
    assert action_ids(ended) == []  # no controls on a finished migration
    assert vm_location(lab, VM).get("hostA") == "running" and vm_location(lab, VM).get("hostB") != "running"
    async with open_store(bot) as store:
        job = await store.get_job(job_id_of(card))  # type: ignore[arg-type]
        assert job.state is JobState.ABORTED
        controls = await store.events(job.id, [EventKind.CONTROL])
        assert [(e.actor, e.detail) for e in controls] == [(U_ALICE, "abort")]


async def test_429_storm_during_progress_is_survived(fake_slack: FakeSlack, bot: BotProcess,
                                                     lab: LabInfo) -> None:
    await fresh_vm(lab, VM)
    try:
        await asyncio.to_thread(link_rate, lab, SLOW_LINK_MIB_S)
        card = await request_and_approve(fake_slack, bot)
        await wait_progress(fake_slack, card)  # the progress message is out; now Slack starts refusing
        await fake_slack.inject("chat.update", count=4, retry_after_s=1)
        await fake_slack.inject("chat.postMessage", count=2, retry_after_s=1)
        summary = await wait_summary(fake_slack, card)
        final = await wait_card_state(fake_slack, card, "succeeded")
        progress = await wait_progress(fake_slack, card, contains="Succeeded", timeout_s=30)
    finally:
        await asyncio.to_thread(link_reset, lab)
    # Every refusal was served and retried after Retry-After; nothing was lost and nothing stale came last.
    injected = {m: [c for c in await fake_slack.calls(m) if c.get("injected")]
                for m in ("chat.update", "chat.postMessage")}
    assert (len(injected["chat.update"]), len(injected["chat.postMessage"])) == (4, 2)
    assert "succeeded" in summary["text"] and len(await summaries(fake_slack, card)) == 1
    percents = progress_percents(progress)
    assert percents == sorted(percents) and percents[-1] == 100, percents
    assert action_ids(final) == [] and "Succeeded" in everything_text(final)
    assert vm_location(lab, VM).get("hostB") == "running"


@pytest.mark.parametrize("mode", ["500", "503"])
async def test_server_errors_during_progress_are_survived(fake_slack: FakeSlack, bot: BotProcess,
                                                          lab: LabInfo, mode: str) -> None:
    """Slack answering 5xx for a while (issue 7): progress catches up afterwards and the summary is not lost."""
    await fresh_vm(lab, VM)
    try:
        await asyncio.to_thread(link_rate, lab, SLOW_LINK_MIB_S)
        card = await request_and_approve(fake_slack, bot)
        await wait_progress(fake_slack, card)
        await fake_slack.inject("chat.update", count=4, mode=mode)
        await fake_slack.inject("chat.postMessage", count=2, mode=mode)
        summary = await wait_summary(fake_slack, card)
        final = await wait_card_state(fake_slack, card, "succeeded")
        progress = await wait_progress(fake_slack, card, contains="Succeeded", timeout_s=30)
    finally:
        await asyncio.to_thread(link_reset, lab)
    served = [c for m in ("chat.update", "chat.postMessage") for c in await fake_slack.calls(m) if c.get("injected")]
    assert len(served) == 6, served  # every injected failure was actually hit, and then retried past
    assert "succeeded" in summary["text"] and len(await summaries(fake_slack, card)) == 1
    percents = progress_percents(progress)
    assert percents == sorted(percents) and percents[-1] == 100, percents
    assert action_ids(final) == [] and "Succeeded" in everything_text(final)
    assert vm_location(lab, VM).get("hostB") == "running"


async def test_answers_and_app_home_over_the_socket(fake_slack: FakeSlack, bot: BotProcess) -> None:
    alice, bob = [await connected_user(fake_slack, bot, u) for u in (U_ALICE, U_BOB)]
    ack = await alice.command("vm42 to")
    assert ack is not None and ack["response_type"] == "ephemeral"
    assert "missing the destination host" in ack["text"] and "example:" in ack["text"]
    history = await alice.ask("history")
    assert "History" in everything_text(history) and history["user"] == U_ALICE
    await bob.open_home()
    view = await fake_slack.wait_for(lambda: fake_slack.home_view(U_BOB), 10, 0.1, "bob's Home tab")
    assert view["type"] == "home" and len(view["blocks"]) >= 2
    assert await fake_slack.messages(C_OPS) == []
