"""Who may approve a drain (pure): the person rules are a single move's (policy.check_approver), with D7's name."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from migration_core.dispatch import policy
from migration_core.dispatch.drain_policy import check_drain_approval
from migration_core.dispatch.policy import Decider
from migration_core.drains import Drain
from migration_core.models import Approval, ApprovalRequirement, GroupNeed
from tests.bot.factories import T0, drain_status

NOW = T0 + timedelta(minutes=1)
TTL_S = 1800.0


def drain(requirement: ApprovalRequirement, approvers: tuple[str, ...] = (), **groups: tuple[str, ...]) -> Drain:
    """D7 (requested by U0ALICE) awaiting approval under `requirement`, approved so far by `approvers`."""
    d = drain_status(approvers=approvers).drain
    approvals = tuple(Approval(7, a, True, d.plan.hash, T0, groups.get(a, ())) for a in approvers)
    return replace(d, requirement=requirement, approvals=approvals)


def test_the_requester_cannot_approve_their_own_drain() -> None:
    verdict = check_drain_approval(drain(ApprovalRequirement(2)), Decider("U0ALICE", True), NOW, TTL_S)
    assert not verdict.allowed
    assert verdict.code is policy.VerdictCode.SELF_APPROVAL
    assert verdict.reason == "you requested this; another approver must approve it"
    assert verdict.required == 2


def test_someone_neither_approver_nor_in_a_needed_group_is_told_who_can() -> None:
    d = drain(ApprovalRequirement(2, (GroupNeed("dba"),)))
    verdict = check_drain_approval(d, Decider("U0MALLORY", False, frozenset({"net"})), NOW, TTL_S)
    assert verdict.code is policy.VerdictCode.NOT_APPROVER
    assert verdict.reason == (
        "you are not an approver for migrations; ask someone in the approvers group "
        "(MIGRATE_BOT_APPROVER_GROUP / MIGRATE_BOT_APPROVERS) or in @dba"
    )


def test_an_approver_counts_once_and_is_told_what_is_still_needed() -> None:
    verdict = check_drain_approval(drain(ApprovalRequirement(2), ("U0BOB",)), Decider("U0BOB", True), NOW, TTL_S)
    assert verdict.code is policy.VerdictCode.ALREADY_APPROVED
    assert verdict.reason == "you already approved D7; it needs 1 more approval from someone else"


def test_an_approval_that_would_not_count_is_refused_naming_the_group() -> None:
    d = drain(ApprovalRequirement(2, (GroupNeed("dba"),)), ("U0BOB",))
    verdict = check_drain_approval(d, Decider("U0CAROL", True), NOW, TTL_S)
    assert verdict.code is policy.VerdictCode.NOT_IN_GROUP
    assert verdict.reason == (
        "D7 still needs 1 more from @dba, and you are not a member of that group; your approval would not count"
    )


def test_a_group_member_completes_the_drain_without_being_a_general_approver() -> None:
    d = drain(ApprovalRequirement(2, (GroupNeed("dba"),)), ("U0BOB",))
    verdict = check_drain_approval(d, Decider("U0ERIN", False, frozenset({"dba", "net"})), NOW, TTL_S)
    assert verdict.allowed and verdict.code is policy.VerdictCode.OK
    assert verdict.remaining == 0 and verdict.still_needed == "" and verdict.required == 2


def test_a_first_approval_says_how_many_more() -> None:
    d = drain(ApprovalRequirement(2, (GroupNeed("dba"),)))
    verdict = check_drain_approval(d, Decider("U0BOB", True), NOW, TTL_S)
    assert verdict.allowed and verdict.remaining == 1 and verdict.still_needed == "1 more from @dba"


@pytest.mark.parametrize("actor", ["U0ALICE", "U0BOB"])
def test_a_drain_past_its_approval_window_is_expired_before_any_person_rule(actor: str) -> None:
    late = T0 + timedelta(seconds=TTL_S)
    verdict = check_drain_approval(drain(ApprovalRequirement(2), ("U0BOB",)), Decider(actor, True), late, TTL_S)
    assert verdict.code is policy.VerdictCode.EXPIRED
