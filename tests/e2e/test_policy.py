"""Change control with a policy file, end to end: `migrate-bot serve` against the fake Slack and the lab (issue 15).

Two bots, each with its own policy file: one where a change freeze is in force all week (refusals, an emergency
that needs three approvers), one without freezes (an owners' group, a ticket pattern, a scheduled move).
`risky = 1` keeps the numbers independent of the warnings a crowded lab host may add to a plan.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from migration_core.models import JobState
from tests.e2e.botproc import BOT_BIN, BotFactory, BotProcess, fresh_vm, open_store
from tests.e2e.support import (
    action_ids,
    connected_user,
    everything_text,
    job_id_of,
    replies,
    wait_card,
    wait_card_state,
    wait_summary,
)
from tests.fakeslack import FakeSlack
from tests.fixtures.slack import U_ALICE, U_BOB, U_CAROL, U_MALLORY
from tests.labkit import LabInfo, vm_location

pytestmark = pytest.mark.lab
VM = "shared"

FROZEN = f"""
[approvals]
default = 1
risky = 1
emergency = 3
[groups]
dba = ["{U_MALLORY}"]
[[owners]]
match = {{ vm = "{VM}" }}
group = "dba"
[[freeze]]
name = "lab-freeze"
weekly = "Mon-Sun 00:00-24:00"
timezone = "Europe/Berlin"
"""

OPEN = f"""
[approvals]
default = 1
risky = 1
emergency = 3
[groups]
dba = ["{U_MALLORY}"]
[vm_labels]
idle = ["vm4*"]
[[owners]]
match = {{ vm_label = "idle" }}
group = "dba"
[ticket]
pattern = "^CHG[0-9]{{7}}$"
"""


def _policy(tmp: Path, name: str, text: str) -> str:
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def frozen_bot(bot_factory: BotFactory, tmp_path_factory: pytest.TempPathFactory) -> BotProcess:
    return bot_factory("http", MIGRATE_BOT_POLICY=_policy(tmp_path_factory.mktemp("frozen"), "policy", FROZEN))


@pytest.fixture(scope="module")
def open_bot(bot_factory: BotFactory, tmp_path_factory: pytest.TempPathFactory) -> BotProcess:
    return bot_factory("http", MIGRATE_BOT_POLICY=_policy(tmp_path_factory.mktemp("open"), "policy", OPEN))


async def test_a_request_in_a_freeze_is_refused_with_the_window_and_its_end(
    fake_slack: FakeSlack, frozen_bot: BotProcess
) -> None:
    alice = await connected_user(fake_slack, frozen_bot, U_ALICE)
    await alice.command(f"{VM} to hostB")
    refusal = await alice.wait_ephemeral("changes are frozen")
    assert "'lab-freeze' is in force until" in refusal["text"]
    assert "--emergency" in refusal["text"] and "3 approvers" in refusal["text"]
    await alice.command("freezes")
    listing = await alice.wait_ephemeral("lab-freeze")
    assert "in force" in everything_text(listing)


async def test_an_emergency_in_a_freeze_needs_three_approvers_one_of_them_an_owner(
    fake_slack: FakeSlack, frozen_bot: BotProcess, lab: LabInfo
) -> None:
    await fresh_vm(lab, VM)
    alice, bob, carol, mallory = [
        await connected_user(fake_slack, frozen_bot, u) for u in (U_ALICE, U_BOB, U_CAROL, U_MALLORY)
    ]
    await alice.command(f'{VM} to hostB --emergency --reason "INC-42 hostA is failing"')
    card = await wait_card(fake_slack, VM, contains="Approval needed")
    text = everything_text(card)
    assert "needs 3 more: 1 from @dba, 2 from anyone" in text, text
    assert "emergency change during a freeze: 3 approvers" in text and "🚨 emergency" in text
    await bob.click(card["ts"], "approve")
    await wait_card(fake_slack, VM, contains="needs 2 more: 1 from @dba, 1 from anyone")
    await carol.click(card["ts"], "approve")
    await wait_card(fake_slack, VM, contains="needs 1 more from @dba")
    thread = await replies(fake_slack, card)
    assert any("still needs 1 more from @dba" in m["text"] for m in thread)
    async with open_store(frozen_bot) as store:
        job = await store.get_job(job_id_of(card))  # type: ignore[arg-type]
        assert job.state is JobState.AWAITING_APPROVAL  # two of three do not run it
    await mallory.click(card["ts"], "approve")  # the owner (dba), not a general approver
    await wait_summary(fake_slack, card)
    final = await wait_card_state(fake_slack, card, "succeeded")
    assert action_ids(final) == []
    assert vm_location(lab, VM).get("hostB") == "running"
    await fresh_vm(lab, VM)


async def test_the_owners_group_is_required_and_a_general_approver_is_told_so(
    fake_slack: FakeSlack, open_bot: BotProcess, lab: LabInfo
) -> None:
    await fresh_vm(lab, "vm42")
    alice, bob = [await connected_user(fake_slack, open_bot, u) for u in (U_ALICE, U_BOB)]
    await alice.command("vm42 to hostB --ticket CHG0012345")
    card = await wait_card(fake_slack, "vm42", contains="Approval needed")
    text = everything_text(card)
    assert "needs 1 more from @dba" in text and "CHG0012345" in text, text
    await bob.click(card["ts"], "approve")
    await bob.wait_ephemeral("still needs 1 more from @dba, and you are not a member of that group")
    await alice.command(f"cancel {job_id_of(card)}")  # withdraw it: this test proves the requirement only
    await wait_card_state(fake_slack, card, "aborted")


async def test_a_ticket_that_does_not_match_the_pattern_is_refused(
    fake_slack: FakeSlack, open_bot: BotProcess
) -> None:
    alice = await connected_user(fake_slack, open_bot, U_ALICE)
    await alice.command(f"{VM} to hostB --ticket CHG-12")
    refusal = await alice.wait_ephemeral("does not match the policy's pattern")
    assert "CHG-12" in refusal["text"]


async def test_a_scheduled_move_waits_for_its_time_then_runs(
    fake_slack: FakeSlack, open_bot: BotProcess, lab: LabInfo
) -> None:
    await fresh_vm(lab, VM)
    alice, bob = [await connected_user(fake_slack, open_bot, u) for u in (U_ALICE, U_BOB)]
    # Enough for preflight (a 3 s dirty-rate window), the card and the approval on a loaded machine (~8 s).
    start = (datetime.now(UTC) + timedelta(seconds=28)).replace(microsecond=0)
    end = start + timedelta(minutes=3)
    await alice.command(f"{VM} to hostB --window {start.isoformat()}/{end.isoformat()}")
    card = await wait_card(fake_slack, VM, contains="Approval needed")
    assert "Scheduled" in everything_text(card)
    await bob.click(card["ts"], "approve")
    queued = await wait_card_state(fake_slack, card, "queued")
    told = "\n".join(m["text"] for m in await replies(fake_slack, card)) + everything_text(queued)
    assert "scheduled: starts at" in told, told
    async with open_store(open_bot) as store:
        job = await store.get_job(job_id_of(card))  # type: ignore[arg-type]
        assert job.state is JobState.QUEUED and datetime.now(UTC) < start  # approved, not started early
    await wait_summary(fake_slack, card, timeout_s=240)
    async with open_store(open_bot) as store:
        job = await store.get_job(job_id_of(card))  # type: ignore[arg-type]
        started = [e for e in await store.events(job.id) if e.new_state is JobState.RUNNING]
        assert job.state is JobState.SUCCEEDED
        assert started and started[0].at >= start  # it started inside its window, not before
        assert started[0].at < end
    await fresh_vm(lab, VM)


async def test_audit_verify_on_the_bots_database_catches_an_edited_row(open_bot: BotProcess) -> None:
    """Runs after the tests above wrote approvals, refusals and state moves into this bot's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE_BOT_", "SLACK_"))}
    env["MIGRATE_BOT_DB"] = open_bot.db_url
    ok = subprocess.run([str(BOT_BIN), "audit", "verify"], capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("audit chain intact"), ok.stdout + ok.stderr
    path = open_bot.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS events_no_update")
        (victim,) = conn.execute("SELECT id FROM events WHERE kind = 'approval' ORDER BY id LIMIT 1").fetchone()
        conn.execute("UPDATE events SET actor = 'U_NOBODY' WHERE id = ?", (victim,))
    bad = subprocess.run([str(BOT_BIN), "audit", "verify"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 1
    assert bad.stdout.startswith(f"audit chain BROKEN at record #{victim}: record #{victim} was changed")
