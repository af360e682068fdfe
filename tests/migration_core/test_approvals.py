"""Who must approve under a policy file (pure): numbers, owners' groups, an approver counting once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from migration_core.dispatch import policy
from migration_core.dispatch.approvals import (
    ApprovalSubject,
    describe_outstanding,
    outstanding,
    required_approvals,
)
from migration_core.inventory.policy_file import Policy, parse_policy
from migration_core.models import Approval, ApprovalRequirement, GroupNeed, Job, JobState
from tests.bot.factories import plan as make_plan

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
POLICY = parse_policy(
    """
[approvals]
default = 1
risky = 2
emergency = 3
[groups]
dba = ["dave", "erin"]
net = ["nina", "dave"]
[vm_labels]
db = ["db*", "pg-*"]
[[owners]]
match = { vm_label = "db" }
group = "dba"
[[owners]]
match = { host = "hostC" }
group = "net"
""",
    "p.toml",
)


def subject(vm: str = "web1", hosts: tuple[str, ...] = ("hostA", "hostB"), **kw: object) -> ApprovalSubject:
    return ApprovalSubject((vm,), hosts, **kw)  # type: ignore[arg-type]


def test_without_a_policy_file_the_built_in_rule() -> None:
    assert required_approvals(subject(), Policy.default()).total == 1
    assert required_approvals(subject(risks=("post-copy",)), Policy.default()).total == 2


@pytest.mark.parametrize(
    ("kw", "total", "groups"),
    [
        ({}, 1, ()),
        ({"risks": ("post-copy",)}, 2, ()),
        ({"emergency": True}, 3, ()),
        ({"vm": "db1"}, 1, ("dba",)),
        ({"vm": "pg-7", "risks": ("x",)}, 2, ("dba",)),
        ({"vm": "db1", "hosts": ("hostA", "hostC")}, 2, ("dba", "net")),  # total rises to cover both groups
        ({"vm": "web1", "hosts": ("hostc", "hostB")}, 1, ("net",)),  # host names match without case
    ],
)
def test_requirement_numbers_and_groups(kw: dict[str, object], total: int, groups: tuple[str, ...]) -> None:
    req = required_approvals(subject(**kw), POLICY)  # type: ignore[arg-type]
    assert req.total == total
    assert tuple(n.group for n in req.groups) == groups


def test_reasons_say_why_for_the_card() -> None:
    req = required_approvals(subject(vm="db1", emergency=True), POLICY)
    assert req.reasons == (
        "emergency change during a freeze: 3 approvers",
        "owners: 1 from @dba (VM db1 (label db))",
    )


def test_a_drain_is_one_subject_with_every_vm() -> None:
    drain = ApprovalSubject(("web1", "db2", "web3"), ("hostA",), risks=("drain",))
    req = required_approvals(drain, POLICY)
    assert (req.total, [n.group for n in req.groups]) == (2, ["dba"])


def approval(actor: str, *groups: str) -> Approval:
    return Approval(1, actor, True, "h", T0, groups)


REQ = ApprovalRequirement(2, (GroupNeed("dba"), GroupNeed("net")))


@pytest.mark.parametrize(
    ("given", "total", "text"),
    [
        ((), 2, "2 more: 1 from @dba, 1 from @net"),
        ((approval("erin", "dba"),), 1, "1 more from @net"),
        # dave is in both groups but counts once: one of the two places stays open.
        ((approval("dave", "dba", "net"),), 1, "1 more from @net"),  # he takes the first place he can
        ((approval("dave", "dba", "net"), approval("erin", "dba")), 0, ""),  # dave moves to net, erin takes dba
        ((approval("bob"),), 2, "2 more: 1 from @dba, 1 from @net"),
        ((approval("erin", "dba"), approval("erin", "dba")), 1, "1 more from @net"),  # one person, once
    ],
)
def test_outstanding_matches_people_to_group_places(given: tuple[Approval, ...], total: int, text: str) -> None:
    left = outstanding(REQ, given)
    assert left.total == total
    assert describe_outstanding(left) == text


def test_describe_plain_and_mixed() -> None:
    assert describe_outstanding(outstanding(ApprovalRequirement(3), (approval("a"),))) == "2 more approvals"
    mixed = ApprovalRequirement(3, (GroupNeed("dba"),))
    assert describe_outstanding(outstanding(mixed, ())) == "3 more: 1 from @dba, 2 from anyone"


def waiting_job(requirement: ApprovalRequirement, approvals: tuple[Approval, ...] = ()) -> Job:
    p = make_plan()
    from dataclasses import replace

    p = replace(p, approval=requirement)
    approvals = tuple(replace(a, plan_hash=p.hash) for a in approvals)
    return Job(1, p.request.vm, "hostA", "hostB", "alice", JobState.AWAITING_APPROVAL, T0, T0, p, approvals=approvals)


def test_a_group_member_may_approve_without_being_a_general_approver() -> None:
    job = waiting_job(ApprovalRequirement(1, (GroupNeed("dba"),)))
    erin = policy.Decider("erin", False, frozenset({"dba"}))
    verdict = policy.check_approval(job, erin, T0 + timedelta(minutes=1), 1800)
    assert verdict.allowed and verdict.remaining == 0 and verdict.still_needed == ""


def test_an_approval_that_would_not_count_is_refused_naming_the_group() -> None:
    job = waiting_job(ApprovalRequirement(2, (GroupNeed("dba"),)), (approval("bob"),))
    verdict = policy.check_approval(job, policy.Decider("carol", True), T0 + timedelta(minutes=1), 1800)
    assert not verdict.allowed
    assert verdict.code is policy.VerdictCode.NOT_IN_GROUP
    assert verdict.reason == (
        "job 1 still needs 1 more from @dba, and you are not a member of that group; your approval would not count"
    )


def test_a_general_approver_fills_the_places_anyone_may_fill() -> None:
    job = waiting_job(ApprovalRequirement(3, (GroupNeed("dba"),)))
    verdict = policy.check_approval(job, policy.Decider("bob", True), T0 + timedelta(minutes=1), 1800)
    assert verdict.allowed and verdict.remaining == 2 and verdict.still_needed == "2 more: 1 from @dba, 1 from anyone"


def test_someone_neither_approver_nor_in_a_needed_group_is_told_both() -> None:
    job = waiting_job(ApprovalRequirement(1, (GroupNeed("dba"),)))
    mallory = policy.Decider("mallory", False, frozenset({"net"}))
    verdict = policy.check_approval(job, mallory, T0 + timedelta(minutes=1), 1800)
    assert verdict.code is policy.VerdictCode.NOT_APPROVER and "or in @dba" in verdict.reason


def test_the_requirement_survives_the_plan_json_round_trip() -> None:
    from migration_core.models import Plan

    p = waiting_job(required_approvals(subject(vm="db1", emergency=True), POLICY)).plan
    assert p is not None
    back = Plan.from_json(p.to_json())
    assert back.approval == p.approval and back.hash == p.hash
