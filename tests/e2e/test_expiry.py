"""An approval that expires (a bot with a 10 s approval window): the card says so and loses its buttons, and
a late Approve pressed on the old card is refused and recorded."""

from __future__ import annotations

import pytest

from migration_core.models import JobState
from migration_core.store import EventKind
from tests.e2e.botproc import BotFactory, BotProcess, fresh_vm, open_store
from tests.e2e.support import (
    action_ids,
    connected_user,
    everything_text,
    job_id_of,
    replies,
    wait_card,
    wait_card_state,
)
from tests.fakeslack import FakeSlack
from tests.fixtures.slack import U_ALICE, U_BOB
from tests.labkit import LabInfo, vm_location

pytestmark = pytest.mark.lab
VM = "shared"
TTL_S = 10  # the shortest window the settings accept


@pytest.fixture(scope="module")
def bot(bot_factory: BotFactory) -> BotProcess:
    return bot_factory("http", MIGRATE_BOT_APPROVAL_TTL=f"{TTL_S}s")


async def test_expired_approval_loses_its_buttons_and_a_late_approve_is_refused(
        fake_slack: FakeSlack, bot: BotProcess, lab: LabInfo) -> None:
    await fresh_vm(lab, VM)
    alice, bob = [await connected_user(fake_slack, bot, u) for u in (U_ALICE, U_BOB)]
    await alice.command(f"{VM} to hostB")
    card = await wait_card(fake_slack, VM, contains="Approval needed")
    assert "Expires" in everything_text(card) and action_ids(card) == ["approve", "deny"]

    final = await wait_card_state(fake_slack, card, "expired", timeout_s=TTL_S + 30)
    text = everything_text(final)
    assert action_ids(final) == [] and "Expired" in text and "Run `/migrate` again" in text
    thread = await fake_slack.wait_for(lambda: replies(fake_slack, card), 10, 0.1, "the expiry in the thread")
    assert any("Expired" in m["text"] for m in thread)

    await bob.click_stale(card, "approve")  # bob's client still showed the old card with its buttons
    await bob.wait_ephemeral("expired before it was approved")
    async with open_store(bot) as store:
        job = await store.get_job(job_id_of(card))  # type: ignore[arg-type]
        assert job.state is JobState.EXPIRED and job.approvers == ()
        refused = await store.events(job.id, [EventKind.REFUSED])
        assert [e.actor for e in refused] == [U_BOB] and "expired before it was approved" in refused[0].detail
    assert vm_location(lab, VM) == {"hostA": "running"}
