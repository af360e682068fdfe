"""Who must approve, from the policy file, pure: the requirement of a change and what is still missing.

`required_approvals(subject, policy)` is the one rule, for a single migration (`ApprovalSubject.of_plan`) and
for a drain (issue 11: one subject naming every VM and host it moves). `outstanding(requirement, approvals)`
says what is still needed after the approvals given so far; `describe_outstanding` turns it into the card's
"1 more from @dba".

The rule: `default` distinct approvers, `risky` when the change carries a risk, `emergency` when it bypasses a
freeze. Each `[[owners]]` entry matching a VM or a host adds a group need: `count` of the approvers must be
members of that group. A person counts once: towards the total, and towards at most one group's places
(approvers are matched to group places so that as many places as possible are filled). The total is raised to
the sum of the group needs when that is higher.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from migration_core.inventory.policy_file import OwnerRule, Policy
from migration_core.models import Approval, ApprovalRequirement, GroupNeed, Plan


@dataclass(frozen=True)
class ApprovalSubject:
    """What a change touches, as the approval rule needs it: VMs, hosts, its risks, and whether it bypasses a
    freeze. A drain passes every VM it moves and every host involved."""

    vms: tuple[str, ...]
    hosts: tuple[str, ...]
    risks: tuple[str, ...] = ()
    emergency: bool = False

    @staticmethod
    def of_plan(plan: Plan, risks: Sequence[str], emergency: bool = False) -> ApprovalSubject:
        hosts = tuple(h for h in (plan.source, plan.destination) if h)
        return ApprovalSubject((plan.request.vm,), hosts, tuple(risks), emergency)


def _vm_labels(vm: str, policy: Policy) -> set[str]:
    return {label for label, globs in policy.vm_labels.items() if any(fnmatch.fnmatchcase(vm, g) for g in globs)}


def owner_matches(rule: OwnerRule, subject: ApprovalSubject, policy: Policy) -> str | None:
    """Why `rule` applies to `subject` ("VM db1 (label db)"), or None. Every field of the match must hold."""
    m = rule.match
    for vm in subject.vms:
        why: list[str] = []
        if m.vm is not None:
            if not fnmatch.fnmatchcase(vm, m.vm):
                continue
            why.append(f"VM {vm}")
        if m.vm_label is not None:
            if m.vm_label not in _vm_labels(vm, policy):
                continue
            why.append(f"VM {vm} (label {m.vm_label})")
        if m.host is not None:
            hosts = [h for h in subject.hosts if h.lower() == m.host.lower()]
            if not hosts:
                continue
            why.append(f"host {hosts[0]}")
        return ", ".join(dict.fromkeys(why))
    return None


def required_approvals(subject: ApprovalSubject, policy: Policy) -> ApprovalRequirement:
    """The requirement for `subject` under `policy` (Policy.default() gives the built-in 1 / 2 rule)."""
    counts = policy.approvals
    reasons: list[str] = []
    if subject.emergency:
        total = counts.emergency
        reasons.append(f"emergency change during a freeze: {counts.emergency} approvers")
    elif subject.risks:
        total = counts.risky
        reasons.append(f"risky: {'; '.join(subject.risks)}")
    else:
        total = counts.default
    needs: dict[str, GroupNeed] = {}
    for rule in policy.owners:
        why = owner_matches(rule, subject, policy)
        if why is None:
            continue
        previous = needs.get(rule.group)
        count = max(rule.count, previous.count if previous else 0)
        why_all = f"{previous.why}; {why}" if previous and why not in previous.why else why
        needs[rule.group] = GroupNeed(rule.group, count, why_all)
    groups = tuple(needs.values())
    for need in groups:
        reasons.append(f"owners: {need.count} from @{need.group} ({need.why})")
    total = max(total, sum(n.count for n in groups))
    return ApprovalRequirement(total, groups, tuple(reasons), subject.emergency)


@dataclass(frozen=True)
class Outstanding:
    """What a job still needs: `total` more distinct approvers, of whom `groups` must come from those groups."""

    total: int
    groups: tuple[GroupNeed, ...] = ()

    @property
    def done(self) -> bool:
        return self.total <= 0


def _filled_places(requirement: ApprovalRequirement, approvals: Iterable[Approval]) -> dict[str, int]:
    """Match approvers to group places (each person fills at most one), filling as many as possible."""
    places = [n.group for n in requirement.groups for _ in range(n.count)]
    holder: list[str | None] = [None] * len(places)
    members = {a.actor: set(a.groups) for a in approvals}

    def place(person: str, seen: set[int]) -> bool:  # an augmenting path (Kuhn's algorithm; a few people)
        for i, group in enumerate(places):
            if group in members[person] and i not in seen:
                seen.add(i)
                current = holder[i]
                if current is None or place(current, seen):
                    holder[i] = person
                    return True
        return False

    for person in members:
        place(person, set())
    filled: dict[str, int] = {}
    for i, group in enumerate(places):
        if holder[i] is not None:
            filled[group] = filled.get(group, 0) + 1
    return filled


def outstanding(requirement: ApprovalRequirement, approvals: Sequence[Approval]) -> Outstanding:
    """What is still missing after `approvals` (the job's approvals of its current plan, one per person)."""
    unique = list({a.actor: a for a in approvals if a.approved}.values())
    filled = _filled_places(requirement, unique)
    left = tuple(
        GroupNeed(n.group, n.count - filled.get(n.group, 0), n.why)
        for n in requirement.groups
        if n.count > filled.get(n.group, 0)
    )
    total = max(requirement.total - len(unique), sum(n.count for n in left), 0)
    return Outstanding(total, left)


def describe_outstanding(left: Outstanding) -> str:
    """'1 more from @dba', '2 more: 1 from @dba, 1 from anyone', '1 more approval', '' when done."""
    if left.done:
        return ""
    if not left.groups:
        return f"{left.total} more approval{'s' if left.total > 1 else ''}"
    from_groups = sum(n.count for n in left.groups)
    parts = [f"{n.count} from @{n.group}" for n in left.groups]
    if left.total > from_groups:
        parts.append(f"{left.total - from_groups} from anyone")
    if len(parts) == 1:
        return f"{left.total} more from @{left.groups[0].group}"
    return f"{left.total} more: " + ", ".join(parts)


__all__ = [
    "ApprovalSubject",
    "Outstanding",
    "describe_outstanding",
    "outstanding",
    "owner_matches",
    "required_approvals",
]
