"""Block Kit renderers: golden files, Slack's limits (slack_sdk validation + our own checks), and semantics.

Regenerate the golden files after an intended change with `UPDATE_GOLDEN=1 .venv/bin/pytest tests/bot`.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from handlers.blocks.answers import freezes_message, help_message, hosts_message, jobs_message, status_message
from handlers.blocks.card import card_message, plan_message
from handlers.blocks.drain import drain_plan_message, placed_plan_message
from handlers.blocks.drain_card import drain_card_message, drain_rollup_message, drain_summary_message
from handlers.blocks.home import home_message
from handlers.blocks.ir import CONSOLE, SLACK, Message
from handlers.blocks.modals import ModalTarget, bandwidth_modal, downtime_modal
from handlers.blocks.progress import notice_message, progress_message, state_change_message
from handlers.blocks.slack import MAX_VIEW_BLOCKS, home_view, message_payload, problems, to_blocks
from handlers.blocks.summary import summary_message
from migration_core.events import Notice, NoticeKind, StateChanged
from migration_core.grammar.parser import help_text
from migration_core.models import (
    ApprovalRequirement,
    CheckResult,
    CheckStatus,
    ControlAction,
    Decision,
    GroupNeed,
    JobState,
    MigrationOptions,
    Phase,
)
from migration_core.service_api import FreezeStatus, HostStatus, QueuePosition
from migration_core.store import HostLimit
from tests.bot.factories import (
    PASSING,
    T0,
    big_drain_plan,
    drain_plan,
    drain_status,
    job,
    placed_plan,
    plan,
    sample,
    summary,
)

GOLDEN = Path(__file__).parent / "golden"
TTL = 1800.0
FAILING = plan(
    checks=(
        *PASSING,
        CheckResult("network", CheckStatus.FAIL, "bridge br-lab is missing on hostB", "create br-lab on hostB"),
        CheckResult("versions", CheckStatus.WARN, "destination QEMU 7.2 is older than source QEMU 8.0"),
    )
)
RISKY = plan(postcopy=True)
RUNNING = job(state=JobState.RUNNING, p=RISKY, approvers=("U0BOB", "U0CAROL"))
SCHEDULED = replace(
    plan(),
    request=replace(
        plan().request,
        options=replace(
            plan().request.options, not_before=T0 + timedelta(hours=10), not_after=T0 + timedelta(hours=10, minutes=30)
        ),
    ),
)
# A policy-file plan (issue 15): an emergency during a freeze on a VM the DBAs own, with a change ticket.
POLICY_PLAN = replace(
    plan(vm="db1"),
    request=replace(
        plan(vm="db1").request,
        options=replace(plan(vm="db1").request.options, ticket="CHG0012345", emergency=True),
    ),
    approval=ApprovalRequirement(
        3,
        (GroupNeed("dba", 1, "VM db1 (label db)"),),
        ("emergency change during a freeze: 3 approvers", "owners: 1 from @dba (VM db1 (label db))"),
        emergency=True,
    ),
)


RUNNING_OUTCOMES = {"gpu": "succeeded", "db1": "running", "db2": "waiting"}
FINISHED_OUTCOMES = {"gpu": "succeeded", "db1": "succeeded", "db2": "parked", "web1": "succeeded", "vm42": "succeeded"}


def _cases() -> dict[str, dict[str, Any]]:
    m = message_payload
    return {
        "drain_plan": m(drain_plan_message(drain_plan(), SLACK)),
        "drain_card_awaiting": m(drain_card_message(drain_status(approvers=("U0BOB",)), SLACK, now=T0)),
        "drain_card_running": m(
            drain_card_message(
                drain_status("running", approvers=("U0BOB", "U0CAROL"), outcomes=RUNNING_OUTCOMES), SLACK, now=T0
            )
        ),
        "drain_rollup_running": m(
            drain_rollup_message(
                drain_status("running", approvers=("U0BOB", "U0CAROL"), outcomes=RUNNING_OUTCOMES), SLACK
            )
        ),
        "drain_summary_partial": m(
            drain_summary_message(
                drain_status("partially_done", approvers=("U0BOB", "U0CAROL"), outcomes=FINISHED_OUTCOMES), SLACK
            )
        ),
        "home_drains": home_view(
            home_message(
                "U0BOB",
                [],
                [],
                [],
                SLACK,
                now=T0,
                drains=[
                    drain_status(approvers=("U0CAROL",)),
                    drain_status("running", approvers=("U0BOB", "U0CAROL"), outcomes=RUNNING_OUTCOMES),
                ],
            )
        ),
        "plan_any": m(placed_plan_message(placed_plan(), SLACK)),
        "plan_any_nowhere": m(placed_plan_message(placed_plan(nowhere=True), SLACK)),
        "card_awaiting": m(card_message(job(), SLACK, ttl_s=TTL)),
        "card_awaiting_risky_one_of_two": m(card_message(job(p=RISKY, approvers=("U0BOB",)), SLACK, ttl_s=TTL)),
        "card_policy_emergency_owners": m(card_message(job(p=POLICY_PLAN, approvers=("U0BOB",)), SLACK, ttl_s=TTL)),
        "card_scheduled": m(
            card_message(job(state=JobState.QUEUED, p=SCHEDULED, approvers=("U0BOB",)), SLACK, ttl_s=TTL)
        ),
        "home_scheduled": home_view(
            home_message(
                "U0BOB",
                [job(id=11, state=JobState.QUEUED, p=SCHEDULED, approvers=("U0CAROL",))],
                [QueuePosition(11, 1, "scheduled: starts at 2024-05-01 22:00 UTC (until 2024-05-01 22:30 UTC)")],
                [],
                SLACK,
                now=T0,
            )
        ),
        "summary_with_ticket": m(
            summary_message(summary(), job(state=JobState.SUCCEEDED, p=POLICY_PLAN, approvers=("U0BOB",)), SLACK)
        ),
        "freezes": m(
            freezes_message(
                [
                    FreezeStatus(
                        "business hours",
                        T0,
                        T0 + timedelta(hours=6),
                        True,
                        "weekly Mon-Fri 08:00-18:00 Europe/Berlin",
                        "Europe/Berlin",
                    ),
                    FreezeStatus("year-end", T0 + timedelta(days=200), T0 + timedelta(days=215), False),
                ],
                SLACK,
            )
        ),
        "card_not_executable": m(card_message(job(state=JobState.FAILED, p=FAILING), SLACK, ttl_s=TTL)),
        "card_approved": m(card_message(job(state=JobState.APPROVED, approvers=("U0BOB",)), SLACK, ttl_s=TTL)),
        "card_queued": m(
            card_message(
                job(state=JobState.QUEUED, approvers=("U0BOB",)),
                SLACK,
                ttl_s=TTL,
                queue=QueuePosition(7, 2, "hostB already receives 1 migration: #5"),
            )
        ),
        "card_running": m(card_message(RUNNING, SLACK, ttl_s=TTL)),
        "card_denied": m(card_message(job(state=JobState.DENIED, deniers=("U0DAN",)), SLACK, ttl_s=TTL)),
        "card_expired": m(card_message(job(state=JobState.EXPIRED), SLACK, ttl_s=TTL)),
        "card_succeeded": m(card_message(job(state=JobState.SUCCEEDED, approvers=("U0BOB",)), SLACK, ttl_s=TTL)),
        "card_failed": m(
            card_message(
                job(
                    state=JobState.FAILED,
                    approvers=("U0BOB",),
                    error="destination libvirtd stopped answering",
                ),
                SLACK,
                ttl_s=TTL,
            )
        ),
        "plan_report": m(plan_message(FAILING, SLACK)),
        "progress_running": m(
            progress_message(
                RUNNING,
                sample(),
                Decision(ControlAction.RAISE_DOWNTIME, "stalled at 212 MiB remaining; raising downtime", 500),
                SLACK,
                now=T0,
            )
        ),
        "progress_stalled_postcopy": m(
            progress_message(RUNNING, sample(phase=Phase.POSTCOPY, stalled=True, percent=88), None, SLACK, now=T0)
        ),
        "progress_succeeded": m(
            progress_message(replace(RUNNING, state=JobState.SUCCEEDED), sample(percent=97), None, SLACK, now=T0)
        ),
        "notice_stall": m(notice_message(Notice(7, NoticeKind.STALLED, "stalled for 40 s at 212 MiB", T0), SLACK)),
        "summary_succeeded": m(summary_message(summary(), replace(RUNNING, state=JobState.SUCCEEDED), SLACK)),
        "summary_failed": m(
            summary_message(
                summary(outcome=JobState.FAILED),
                replace(RUNNING, state=JobState.FAILED, error="link down"),
                SLACK,
            )
        ),
        "status": m(status_message(RUNNING, SLACK, ttl_s=TTL, sample=sample())),
        "history": m(jobs_message("History", [job(), RUNNING], SLACK, empty="none")),
        "hosts": m(
            hosts_message(
                [
                    HostStatus("hostA", "qemu:///system", True, "libvirt 9.0.0, QEMU 7.2.0", 3, 0, 1, HostLimit(2, 2)),
                    HostStatus("hostB", "qemu+ssh://b/system", False, "connection refused"),
                ],
                SLACK,
            )
        ),
        "help": m(help_message(help_text(None), SLACK)),
        "home": home_view(
            home_message(
                "U0BOB",
                [job(), RUNNING, job(id=9, state=JobState.QUEUED)],
                [QueuePosition(9, 1, "hostB already receives 1 migration: #8")],
                [job(id=3, state=JobState.SUCCEEDED)],
                SLACK,
                now=T0,
            )
        ),
        "modal_downtime": downtime_modal(RUNNING, ModalTarget(7, "C0OPS", "1714564800.000100")),
        "modal_bandwidth": bandwidth_modal(RUNNING, ModalTarget(7, "C0OPS", "1714564800.000100")),
    }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    path = GOLDEN / f"{name}.json"
    got = json.dumps(CASES[name], indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1" or not path.exists():
        if os.environ.get("UPDATE_GOLDEN") != "1":
            pytest.fail(f"no golden file {path.name}; run with UPDATE_GOLDEN=1 to create it")
        path.write_text(got)
    assert got == path.read_text(), f"{name} differs from {path.name} (UPDATE_GOLDEN=1 to accept)"


@pytest.mark.parametrize("name", sorted(CASES))
def test_valid_block_kit(name: str) -> None:
    payload = CASES[name]
    if payload.get("type") in ("modal", "home"):
        View(**payload).to_dict()  # slack_sdk validates title/submit lengths, 100 blocks, metadata
        blocks = payload["blocks"]
        assert not problems(blocks, max_blocks=MAX_VIEW_BLOCKS) or payload["type"] == "modal"
        return
    assert payload["text"].strip(), "every message needs the top-level text fallback"
    for b in payload["blocks"]:
        assert Block.parse(b).to_dict()  # raises SlackObjectFormationError past a limit
    assert problems(payload["blocks"]) == []


def test_a_big_drain_stays_within_slack_limits_and_points_at_the_rest() -> None:
    big = big_drain_plan()
    assert len(big.moves) >= 40 and len(big.left_behind) >= 10
    outcomes = {m.vm: "running" for m in big.moves[:4]}
    payloads = [
        message_payload(drain_card_message(drain_status(plan=big), SLACK, now=T0)),
        message_payload(drain_card_message(drain_status("running", outcomes=outcomes, plan=big), SLACK, now=T0)),
        message_payload(drain_rollup_message(drain_status("running", outcomes=outcomes, plan=big), SLACK)),
        message_payload(drain_summary_message(drain_status("partially_done", plan=big), SLACK)),
    ]
    for payload in payloads:
        for b in payload["blocks"]:
            assert Block.parse(b).to_dict()
        assert problems(payload["blocks"]) == []
    card = json.dumps(payloads[0]["blocks"], ensure_ascii=False)
    assert "more: see `migrate-bot status D7 --json`" in card and "/migrate status D7" in card
    assert _actions(payloads[0])["drain_approve"]["value"] == f"7:{big.hash}"


def _actions(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["action_id"]: e for b in payload["blocks"] if b["type"] == "actions" for e in b["elements"]}


def _all_text(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)


def test_card_awaiting_has_approve_and_deny_routed_by_job():
    payload = CASES["card_awaiting"]
    actions = [b for b in payload["blocks"] if b["type"] == "actions"]
    assert [a["block_id"] for a in actions] == ["approval:7"]
    buttons = _actions(payload)
    assert buttons["approve"]["style"] == "primary" and buttons["deny"]["style"] == "danger"
    assert buttons["approve"]["value"] == "7"
    assert "confirm" not in buttons["approve"]  # a plain plan needs no "are you sure?"
    assert payload["text"] == "Approval needed: migrate vm42 from hostA to hostB (job 7)"


def test_risky_card_confirms_and_says_two_approvers():
    payload = CASES["card_awaiting_risky_one_of_two"]
    approve = _actions(payload)["approve"]
    assert "post-copy" in approve["confirm"]["text"]["text"]
    text = _all_text(payload)
    assert "Two approvers needed" in text and "1 of 2: <@U0BOB>" in text


def test_not_executable_card_has_nothing_to_approve_and_lists_fails_first():
    payload = CASES["card_not_executable"]
    assert _actions(payload) == {}
    report = next(b["text"]["text"] for b in payload["blocks"] if "*Preflight*" in b.get("text", {}).get("text", ""))
    assert report.index("❌ *network*") < report.index("⚠️ *versions*") < report.index("✅ passed")
    assert "↳ _fix:_ create br-lab on hostB" in report


def test_not_executable_card_still_awaiting_offers_deny_only():
    payload = message_payload(card_message(job(p=FAILING), SLACK, ttl_s=TTL))
    assert set(_actions(payload)) == {"deny"}


@pytest.mark.parametrize(
    ("case", "must_contain"),
    [
        ("card_approved", "Approved* by <@U0BOB>"),
        ("card_denied", "Denied* by <@U0DAN>"),
        ("card_expired", "Expired* at <!date^1714566600^"),
        ("card_queued", "place 2): hostB already receives 1 migration: #5"),
        ("card_failed", "destination libvirtd stopped answering"),
    ],
)
def test_decided_cards_have_no_buttons_and_say_who(case, must_contain):
    payload = CASES[case]
    assert _actions(payload) == {}
    assert must_contain in _all_text(payload)


def test_progress_message_bar_fields_and_controls():
    payload = CASES["progress_running"]
    first = payload["blocks"][0]["text"]["text"]
    assert "`████████░░░░░░░░░░░░` 40%" in first
    text = _all_text(payload)
    for needle in ("112 MiB/s", "30.5 MiB/s", "ETA", "120 ms", "iteration 3", "raise max downtime to 500 ms"):
        assert needle in text, needle
    buttons = _actions(payload)
    assert list(buttons) == ["abort", "postcopy", "downtime", "bandwidth"]
    assert buttons["abort"]["confirm"] and buttons["postcopy"]["confirm"]
    assert [b["block_id"] for b in payload["blocks"] if b["type"] == "actions"] == ["controls:7"]


def test_no_abort_or_postcopy_button_once_in_postcopy():
    buttons = _actions(CASES["progress_stalled_postcopy"])
    assert "abort" not in buttons and "postcopy" not in buttons
    assert "Stalled" in _all_text(CASES["progress_stalled_postcopy"])


def test_postcopy_button_only_when_the_plan_allows_it():
    plain = job(state=JobState.RUNNING, approvers=("U0BOB",))
    buttons = _actions(message_payload(progress_message(plain, sample(), None, SLACK, now=T0)))
    assert "postcopy" not in buttons and "abort" in buttons


def test_finished_progress_message_loses_its_controls():
    payload = CASES["progress_succeeded"]
    assert _actions(payload) == {}
    assert "100%" in payload["blocks"][0]["text"]["text"]


def test_failed_summary_gives_true_state_and_next_step():
    text = _all_text(CASES["summary_failed"])
    assert "Where the VM is now:* hostA: running; hostB: absent" in text
    assert "Next step:* nothing was changed" in text
    ok = _all_text(CASES["summary_succeeded"])
    assert "85 ms (target 300 ms) ✅" in ok and "<@U0BOB>, <@U0CAROL>" in ok


def test_user_text_is_escaped():
    j = replace(job(), reason="<!channel> urgent & <script>")
    text = _all_text(message_payload(card_message(j, SLACK, ttl_s=TTL)))
    assert "<!channel>" not in text and "&lt;!channel&gt; urgent &amp; &lt;script&gt;" in text


def test_state_change_replies():
    approved = StateChanged(7, JobState.AWAITING_APPROVAL, JobState.APPROVED, "U0BOB", "", T0)
    msg = state_change_message(approved, SLACK)
    assert msg is not None and "Approved by <@U0BOB>" in msg.text
    first = StateChanged(7, JobState.PREFLIGHT, JobState.AWAITING_APPROVAL, None, "", T0)
    assert state_change_message(first, SLACK) is None  # the card itself says it


def test_an_approval_by_two_people_credits_both():
    """Issue 13 §5: the thread said only "Approved by carol" when bob and carol approved."""
    both = StateChanged(7, JobState.AWAITING_APPROVAL, JobState.APPROVED, "U0CAROL", "", T0, ("U0BOB", "U0CAROL"))
    msg = state_change_message(both, SLACK)
    assert msg is not None and "Approved by <@U0BOB> and <@U0CAROL>;" in msg.text
    three = StateChanged(7, JobState.AWAITING_APPROVAL, JobState.APPROVED, "carol", "", T0, ("al", "bob", "carol"))
    msg = state_change_message(three, CONSOLE)
    assert msg is not None and "Approved by al, bob and carol;" in msg.text


def test_long_report_is_cut_with_a_pointer_and_keeps_the_buttons():
    many = tuple(
        CheckResult(f"check{i}", CheckStatus.WARN, "x" * 300, "do something sensible " * 10) for i in range(120)
    )
    payload = message_payload(card_message(job(p=plan(checks=many)), SLACK, ttl_s=TTL))
    for b in payload["blocks"]:
        Block.parse(b).to_dict()
    assert problems(payload["blocks"]) == []
    assert "/migrate status 7" in _all_text(payload)
    assert set(_actions(payload)) == {"approve", "deny"}


def test_to_blocks_caps_block_count_and_keeps_actions_last():
    from handlers.blocks.ir import Actions, Button, Text

    msg = Message(
        "x", (*(Text(f"line {i}") for i in range(80)), Actions("approval:1", (Button("Go", "approve", "1"),)))
    )
    blocks = to_blocks(msg)
    assert len(blocks) == 50 and blocks[-1]["block_id"] == "approval:1"
    assert "cut to fit" in blocks[-2]["elements"][0]["text"]
    assert problems(blocks) == []


def test_block_ids_change_when_content_changes():
    a = message_payload(card_message(job(), SLACK, ttl_s=TTL))["blocks"]
    b = message_payload(card_message(job(approvers=("U0BOB",)), SLACK, ttl_s=TTL))["blocks"]
    assert a[0]["block_id"] != b[0]["block_id"]
    assert a == message_payload(card_message(job(), SLACK, ttl_s=TTL))["blocks"]  # deterministic


def test_home_with_many_jobs_fits_a_view():
    jobs = [job(id=i, state=JobState.SUCCEEDED) for i in range(1, 300)]
    view = home_view(home_message("U0BOB", jobs[:100], [], jobs, SLACK, now=T0))
    View(**view).to_dict()
    assert problems(view["blocks"], max_blocks=MAX_VIEW_BLOCKS) == []


def test_card_past_its_window_shows_expired_without_buttons_even_before_the_store_says_so():
    from datetime import timedelta

    inside = message_payload(card_message(job(), SLACK, ttl_s=TTL, now=T0 + timedelta(minutes=29)))
    assert set(_actions(inside)) == {"approve", "deny"}
    past = message_payload(card_message(job(), SLACK, ttl_s=TTL, now=T0 + timedelta(minutes=30)))
    assert _actions(past) == {} and "Expired* at" in _all_text(past)


def test_drain_dry_run_shows_every_vm_with_a_host_or_a_reason_and_changes_nothing():
    plan = drain_plan()
    text = _all_text(CASES["drain_plan"])
    assert _actions(CASES["drain_plan"]) == {}  # a dry run has nothing to approve
    for m in plan.moves:
        assert m.vm in text and m.destination in text
    for lb in plan.left_behind:
        assert f"*{lb.vm}*" in text and "fix:" in text
    assert "nothing was changed" in text and "ETA" in text and plan.hash in text
    assert {lb.vm for lb in plan.left_behind} == {"huge", "stopped"}
    assert "To run it: /migrate drain" in text


def test_plan_to_any_says_why_the_host_was_chosen():
    text = _all_text(CASES["plan_any"])
    assert "*Placement*" in text and "hostB: most free memory after the moves already placed" in text
    nowhere = _all_text(CASES["plan_any_nowhere"])
    assert "No host can take vm42" in nowhere and "fix:" in nowhere


def test_a_big_drain_fits_slack_limits():
    from migration_core.planning.drain import plan_drain
    from migration_core.planning.estimates import ModelEstimator
    from tests.migration_core.drain_support import SynFleet, SynHost, SynVm

    fleet = SynFleet(hosts=[SynHost(f"host{i:02d}", free_gib=64) for i in range(20)],
                     vms=[SynVm(f"a-rather-long-vm-name-{j:03d}", 1) for j in range(120)])  # fmt: skip
    plan = plan_drain(fleet.drain_source(), fleet.drain_vms(), fleet.destinations(), fleet.candidacy(),
                      MigrationOptions(),
                      ModelEstimator())  # fmt: skip
    payload = message_payload(drain_plan_message(plan, SLACK))
    for b in payload["blocks"]:
        assert Block.parse(b).to_dict()
    assert problems(payload["blocks"]) == []
    assert "more: see `migrate-bot plan drain h00 --json`" in _all_text(payload)
