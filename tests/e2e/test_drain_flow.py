"""A drain as people run it in Slack, against the real lab: `/migrate drain hostA` (two small idle guests) -> one
card with the moves and Approve/Deny -> the requester's own approval refused, a forged click refused -> approved by
bob and carol -> one roll-up message in the thread edited in place, a line per VM, the summary broadcast -> the
card says done; then `/migrate return hostA` the same way brings both home.

The bot is `migrate-bot serve` (HTTP mode) as a separate process; Slack is the fake Slack over real, signed HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.botproc import BotFactory, BotProcess
from tests.e2e.support import action_ids, connected_user, everything_text, replies
from tests.fakeslack import FakeSlack
from tests.fixtures.slack import BOT_USER_ID, C_OPS, U_ALICE, U_BOB, U_CAROL
from tests.labkit import LabInfo, reset_vm, vm_location

pytestmark = pytest.mark.lab

A = "hostA"
MOVED = ("web1", "web2")  # small and idle; one anti-affinity group, so they go to two hosts
KEEP = ("vm42", "busy", "disky", "shared", "web3", "web4", "db1", "pinned")
DRAIN_TIMEOUT_S = 240.0


@pytest.fixture(scope="module")
def bot(bot_factory: BotFactory) -> BotProcess:
    return bot_factory("http")


@pytest.fixture
def at_home(lab: LabInfo) -> Iterator[LabInfo]:
    if "hostC" not in lab.hosts:
        pytest.fail(f"the lab has no hostC: run `deploy/lab/lab up` from this checkout (hosts: {sorted(lab.hosts)})")
    for vm in MOVED:
        if vm_location(lab, vm) != {A: "running"}:
            reset_vm(lab, vm)
    try:
        yield lab
    finally:
        for vm in MOVED:  # whatever a failure left elsewhere goes home, as `lab up` made it
            if vm_location(lab, vm) != {A: "running"}:
                reset_vm(lab, vm)


async def top_level(fake: FakeSlack, starts: str) -> list[dict[str, Any]]:
    return [
        m
        for m in await fake.messages(C_OPS)
        if m["user"] == BOT_USER_ID and not m.get("thread_ts") and m["text"].startswith(starts)
    ]


async def wait_top(fake: FakeSlack, starts: str, contains: str = "", timeout_s: float = 60) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        found = await top_level(fake, starts)
        assert len(found) <= 1, [m["text"] for m in found]
        return found[0] if found and contains in everything_text(found[0]) else None

    msg: dict[str, Any] = await fake.wait_for(find, timeout_s, 0.2, f"a card starting {starts!r} with {contains!r}")
    return msg


async def wait_broadcast(fake: FakeSlack, card: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        done = [m for m in await replies(fake, card) if m.get("reply_broadcast")]
        return done[0] if done else None

    msg: dict[str, Any] = await fake.wait_for(find, timeout_s, 0.5, "the drain's summary broadcast")
    return msg


async def drain_through_slack(fake: FakeSlack, bot: BotProcess, text: str, title: str) -> dict[str, Any]:
    """Request, refuse the requester's own click, approve by bob and carol, follow the thread to the end."""
    alice = await connected_user(fake, bot, U_ALICE)
    ack = await alice.command(text)
    assert ack is not None and "preflight on every host" in everything_text(ack)
    card = await wait_top(fake, f"Approval needed: {title}", timeout_s=90)
    shown = everything_text(card)
    for vm in MOVED:
        assert vm in shown
    assert "predicted" in shown and "ETA" in shown and "needs 2 more approvals" in shown
    assert action_ids(card) == ["drain_approve", "drain_deny"]
    await alice.click(card["ts"], "drain_approve")
    await alice.wait_ephemeral("you requested this")
    for who in (U_BOB, U_CAROL):
        user = await connected_user(fake, bot, who)
        await user.click(card["ts"], "drain_approve")
    summary = await wait_broadcast(fake, card, DRAIN_TIMEOUT_S)
    assert "2 of 2 moved" in summary["text"], summary["text"]
    thread = await replies(fake, card)
    rollups = [m for m in thread if re.match(r"D[0-9]+ (running|done): ", m["text"])]
    assert len(rollups) == 1, [m["text"] for m in thread]
    assert rollups[0]["edits"] >= 1 and "2 of 2 done" in rollups[0]["text"]  # edited in place to the end
    for vm in MOVED:
        assert sum(1 for m in thread if m["text"].startswith(f"✅ {vm} → host")) == 1, [m["text"] for m in thread]
    # The card is edited by its own sink after the broadcast; under load (and Slack's rate limits) that edit
    # may come a few seconds later, so wait for it rather than read it once.
    async def card_done() -> dict[str, Any] | None:
        msg = await fake.message(C_OPS, card["ts"])
        return msg if ": done" in msg["text"] else None

    final = await fake.wait_for(card_done, 30, 0.5, "the drain card edited to done")
    assert action_ids(final) == []
    return final


async def test_drain_and_return_through_slack(fake_slack: FakeSlack, bot: BotProcess, at_home: LabInfo) -> None:
    lab = at_home
    await drain_through_slack(fake_slack, bot, f"drain {A} --except {','.join(KEEP)}", "Drain of hostA")
    where = {vm: vm_location(lab, vm) for vm in MOVED}
    assert all(A not in w and list(w.values()) == ["running"] for w in where.values()), where
    assert where["web1"] != where["web2"], where  # anti-affinity
    await drain_through_slack(fake_slack, bot, f"return {A}", "Return to hostA")
    assert {vm: vm_location(lab, vm) for vm in MOVED} == {vm: {A: "running"} for vm in MOVED}
