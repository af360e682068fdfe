"""Who may approve, deny or cancel a drain, and how many approvers it needs (pure).

A drain moves many VMs on one approval, so it is a risky change: it needs the approvers a risky plan needs
(and the owners' groups of every VM it moves, from the policy file). The person rules are the single move's
(`policy.check_approver`, shared): not the requester, an approver or a member of a needed group, once per person.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from migration_core.dispatch.approvals import ApprovalSubject, describe_outstanding, outstanding, required_approvals
from migration_core.dispatch.policy import (
    ApprovalVerdict,
    Decider,
    Verdict,
    VerdictCode,
    check_approver,
    risk_reasons,
)
from migration_core.drains import Drain, DrainKind, DrainState
from migration_core.inventory.policy_file import Policy
from migration_core.models import Approval, ApprovalRequirement
from migration_core.planning.drain import DrainPlan


def drain_risks(kind: DrainKind, plan: DrainPlan) -> tuple[str, ...]:
    """Why the drain is risky: always the number of VMs moved on one approval, plus each move's own risks."""
    what = "leave" if kind is DrainKind.DRAIN else "return to"
    risks = [f"{kind.value}: {len(plan.moves)} VM(s) {what} {plan.host} on one approval"]
    for move in plan.moves:
        risks += [f"{move.vm}: {r}" for r in risk_reasons(move.plan)]
    return tuple(dict.fromkeys(risks))


def drain_requirement(kind: DrainKind, plan: DrainPlan, rules: Policy) -> ApprovalRequirement:
    hosts = tuple(dict.fromkeys((plan.host, *(m.destination for m in plan.moves))))
    subject = ApprovalSubject(tuple(m.vm for m in plan.moves), hosts, drain_risks(kind, plan))
    return required_approvals(subject, rules)


def drain_expires_at(drain: Drain, ttl_s: float) -> datetime:
    return drain.created_at + timedelta(seconds=ttl_s)


def _current(drain: Drain) -> tuple[Approval, ...]:
    return tuple(a for a in drain.approvals if a.approved and a.plan_hash == drain.plan.hash)


def still_needed(drain: Drain) -> str:
    """'1 more approval' / '1 more from @dba' / '' for the drain's approvals so far."""
    return describe_outstanding(outstanding(drain.requirement, _current(drain)))


def check_drain_approval(drain: Drain, who: Decider, now: datetime, ttl_s: float) -> ApprovalVerdict:
    """May `who` approve the drain now? The same rules, in the same order, as a single move's approval."""
    requirement = drain.requirement
    required = requirement.total
    if drain.state is not DrainState.AWAITING_APPROVAL:
        state = drain.state.value.replace("_", " ")
        return ApprovalVerdict(
            False, VerdictCode.ALREADY_DECIDED, f"{drain.ref} is {state}: nothing to approve", required=required
        )
    if now >= drain_expires_at(drain, ttl_s):
        return ApprovalVerdict(
            False,
            VerdictCode.EXPIRED,
            f"the approval window of {drain.ref} closed ({ttl_s / 60:g} min after the request); "
            f"ask for the {drain.kind.value} again",
            required=required,
        )
    given = _current(drain)
    return check_approver(
        drain.ref,
        drain.requester,
        requirement,
        given,
        Approval(drain.id, who.actor, True, drain.plan.hash, now, tuple(sorted(who.groups))),
        actor_is_approver=who.is_approver,
        approved_by={a.actor for a in given},
        already=f"you already approved {drain.ref}; it needs {still_needed(drain)} from someone else",
    )


def check_drain_denial(drain: Drain, actor: str, actor_is_approver: bool) -> Verdict:
    """Approvers may deny a drain waiting for approval, and the requester may withdraw it."""
    if drain.state is not DrainState.AWAITING_APPROVAL:
        return Verdict(False, VerdictCode.ALREADY_DECIDED, f"{drain.ref} is {drain.state.value}: nothing to deny")
    if not actor_is_approver and actor != drain.requester:
        return Verdict(False, VerdictCode.NOT_APPROVER, "only approvers (or the requester) can deny a drain")
    return Verdict(True, VerdictCode.OK)


def check_drain_cancel(drain: Drain, actor: str, actor_is_approver: bool) -> Verdict:
    """The requester or an approver may cancel a drain that has not finished."""
    if not actor_is_approver and actor != drain.requester:
        return Verdict(
            False,
            VerdictCode.NOT_APPROVER,
            f"only the requester ({drain.requester}) or an approver can cancel {drain.ref}",
        )
    if drain.state.finished or drain.state is DrainState.CANCELLING:
        state = drain.state.value.replace("_", " ")
        return Verdict(False, VerdictCode.ALREADY_DECIDED, f"{drain.ref} is {state} already; nothing to cancel")
    return Verdict(True, VerdictCode.OK)
