"""Change-control policy, pure: who may request / approve / control a migration, expiry, two-person rule.

Nothing here does I/O or reads a clock: `now` (a datetime) or `clock` (a monotonic float source) is passed in,
so the rules are tested with tables and the service decides when "now" is. Every refusal carries a sentence an
operator can act on; `Verdict.error()` turns it into the core's exception (PolicyError for "you may not",
StateError for "the job is past that").

Rules (issue 6):
- risky plans (post-copy, copy-storage, --undefine-source, destination older than source, any warning) need
  two distinct approvers, other plans one;
- the requester never approves their own request; an approver approves once;
- a decided job (approved, denied, expired, running...) cannot be approved again;
- the approval window closes `ttl_s` after the request was made (`Job.created_at`);
- requests may be limited to an allowlist of users and of channels; controls (abort, post-copy, downtime,
  bandwidth) belong to approvers and the requester.
- with a policy file (issue 15) the plan carries its ApprovalRequirement (numbers and owners' groups, see
  dispatch/approvals.py): members of a needed group may approve, and an approval that would not reduce what is
  still needed (the places left all belong to a group the approver is not in) is refused, saying who is needed.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from migration_core.dispatch.approvals import ApprovalSubject, describe_outstanding, outstanding
from migration_core.dispatch.approvals import required_approvals as approval_rule
from migration_core.dispatch.windows import fmt_instant, frozen_until
from migration_core.errors import MigrateBotError, PolicyError, StateError
from migration_core.inventory.policy_file import ApprovalCounts, FreezeWindow, Policy, TicketRule
from migration_core.models import Approval, ApprovalRequirement, Job, JobState, Plan

# libvirt flag names that make a plan risky (the planner writes them; options are checked too).
_POSTCOPY_FLAGS = frozenset({"VIR_MIGRATE_POSTCOPY"})
_COPY_STORAGE_FLAGS = frozenset({"VIR_MIGRATE_NON_SHARED_DISK", "VIR_MIGRATE_NON_SHARED_INC"})
_UNDEFINE_FLAGS = frozenset({"VIR_MIGRATE_UNDEFINE_SOURCE"})
# Preflight check names that carry "the destination runs older software than the source" as a warning.
_VERSION_CHECK_NAMES = frozenset({"versions", "version", "machine", "machine_type"})

# Slack user ids are shown as mentions in refusals; console names ("alice") stay as they are.
_SLACK_USER = re.compile(r"[UW][A-Z0-9_]{1,40}")

# The built-in rule's numbers (no policy file): the policy file's defaults, owned by inventory/policy_file.py.
RISKY_APPROVALS = ApprovalCounts().risky
NORMAL_APPROVALS = ApprovalCounts().default
_BUILT_IN = Policy.default()


class VerdictCode(StrEnum):
    """Why a policy question was answered the way it was (stable: tests and the audit log use it)."""

    OK = "ok"
    SELF_APPROVAL = "self_approval"
    NOT_APPROVER = "not_approver"
    ALREADY_APPROVED = "already_approved"
    NOT_IN_GROUP = "not_in_group"
    ALREADY_DECIDED = "already_decided"
    EXPIRED = "expired"
    NOT_REQUESTER = "not_requester"
    WRONG_CHANNEL = "wrong_channel"
    NOT_ALLOWED = "not_allowed"
    RATE_LIMITED = "rate_limited"
    FROZEN = "frozen"
    NOT_FROZEN = "not_frozen"
    TICKET_MISSING = "ticket_missing"
    TICKET_INVALID = "ticket_invalid"
    SCHEDULE_PAST = "schedule_past"
    WINDOW_PASSED = "window_passed"
    SCHEDULE_TOO_FAR = "schedule_too_far"


# Refusals about the job's state rather than about the person.
_STATE_CODES = frozenset({VerdictCode.ALREADY_DECIDED, VerdictCode.EXPIRED, VerdictCode.WINDOW_PASSED})


@dataclass(frozen=True)
class Verdict:
    """Answer to "may this happen?": `allowed`, a stable `code`, the sentence to show (empty if allowed)."""

    allowed: bool
    code: VerdictCode
    reason: str = ""

    def error(self) -> MigrateBotError | None:
        """The exception the service should raise for a refusal (None when allowed)."""
        if self.allowed:
            return None
        if self.code in _STATE_CODES:
            return StateError(self.reason)
        return PolicyError(self.reason)

    def raise_if_refused(self) -> None:
        err = self.error()
        if err is not None:
            raise err


@dataclass(frozen=True)
class ApprovalVerdict(Verdict):
    """A Verdict for an approval; when allowed, `remaining` is how many more approvals are needed after it."""

    remaining: int = 0
    required: int = NORMAL_APPROVALS
    still_needed: str = ""  # "1 more from @dba" after this approval ("" when it completes the job)


@dataclass(frozen=True)
class RateVerdict(Verdict):
    """A Verdict for the request rate limit; `retry_after_s` says when the next request will be accepted."""

    retry_after_s: float = 0.0


_OK = Verdict(True, VerdictCode.OK)


def _user(user: str) -> str:
    """How a user is named inside policy messages (Slack renders <@U..> as a mention; the console as text)."""
    return f"<@{user}>" if _SLACK_USER.fullmatch(user) else user


def _users(users: Iterable[str]) -> str:
    return ", ".join(_user(u) for u in users)


def risk_reasons(plan: Plan) -> list[str]:
    """Why a plan is risky (empty list = not risky). One short phrase per reason, in a stable order.

    >>> # a post-copy plan with a cache-mode warning -> ["post-copy: ...", "warning: disk-cache: ..."]
    """
    opts = plan.request.options
    flags = set(plan.flags)
    reasons: list[str] = []
    if opts.postcopy or plan.policy.allow_postcopy or flags & _POSTCOPY_FLAGS:
        reasons.append("post-copy: if the link fails after the switch, the VM is lost on both hosts")
    if opts.copy_storage is not None or flags & _COPY_STORAGE_FLAGS:
        reasons.append("copy-storage: the VM's disks are copied over the network during the migration")
    if opts.undefine_source or flags & _UNDEFINE_FLAGS:
        reasons.append("--undefine-source: the VM's definition is removed from the source host")
    for check in plan.warnings:
        if check.name in _VERSION_CHECK_NAMES and "older" in check.reason.lower():
            reasons.append(f"destination older than source ({check.reason})")
        else:
            reasons.append(f"warning from check '{check.name}': {check.reason}")
    return reasons


def requirement_of(plan: Plan | None) -> ApprovalRequirement:
    """The plan's ApprovalRequirement (policy file), else the built-in rule's, computed by the one rule of
    dispatch/approvals.py with the default policy: 2 for a risky plan, 1 otherwise, no groups (a job without
    a plan cannot be approved: still 1)."""
    if plan is None:
        return ApprovalRequirement(NORMAL_APPROVALS)
    if plan.approval is not None:
        return plan.approval
    return approval_rule(ApprovalSubject.of_plan(plan, risk_reasons(plan)), _BUILT_IN)


def required_approvals(plan: Plan | None) -> int:
    """How many distinct approvers `plan` needs (see requirement_of)."""
    return requirement_of(plan).total


def current_approvals(job: Job) -> tuple[Approval, ...]:
    """The approvals (not denials) given for the job's current plan."""
    current = job.plan.hash if job.plan else None
    return tuple(a for a in job.approvals if a.approved and (current is None or a.plan_hash == current))


def still_needed(job: Job) -> str:
    """'1 more from @dba' / '2 more approvals' / '' for a job's current approvals."""
    return describe_outstanding(outstanding(requirement_of(job.plan), current_approvals(job)))


def approval_expires_at(job: Job, ttl_s: float) -> datetime:
    """When the approval window of `job` closes: `ttl_s` after the request was made."""
    return job.created_at + timedelta(seconds=ttl_s)


def _fmt_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _decided_reason(job: Job) -> str:
    """A sentence saying who decided a job that is no longer waiting for approval."""
    approvers = job.approvers
    deniers = [a.actor for a in job.approvals if not a.approved]
    if job.state is JobState.DENIED:
        who = f" by {_users(deniers)}" if deniers else ""
        return f"job {job.id} was already denied{who}; request it again with /migrate if it is still needed"
    if job.state is JobState.EXPIRED:
        return f"job {job.id} expired before it was approved; request it again with /migrate"
    if job.state in (JobState.REQUESTED, JobState.PREFLIGHT):
        return f"job {job.id} is still running its preflight checks; wait for the card before approving"
    state = job.state.value.replace("_", " ")
    if approvers:
        return f"job {job.id} was already approved by {_users(approvers)} and is {state}; nothing to do"
    if job.state is JobState.FAILED:
        why = job.error or "see its card"
        return f"job {job.id} failed before approval ({why}); request it again once that is fixed"
    return f"job {job.id} is {state} and can no longer be approved"


@dataclass(frozen=True)
class Decider:
    """The person approving a job or a drain: who, whether they are an approver, and the groups of the
    requirement they are a member of (the service asks Slack or the policy file; the rules here stay pure)."""

    actor: str
    is_approver: bool
    groups: frozenset[str] = frozenset()


# Is this user an approver? (the Slack layer resolves a user group; the console uses a static list)
ApproverCheck = Callable[[str], Awaitable[bool]]
# Is this user a member of this group? (Slack user groups where available, else the policy file's [groups];
# used for the owners' groups of the policy file)
GroupCheck = Callable[[str, str], Awaitable[bool]]


@dataclass(frozen=True)
class Approvers:
    """How the core learns who a person is, asked of the front end: an approver or not, a member of which group.
    One object for single moves and drains, so both judge a person the same way."""

    is_approver: ApproverCheck
    in_group: GroupCheck

    async def decider(self, actor: str, requirement: ApprovalRequirement) -> Decider:
        """`actor` as the approval rules see them for `requirement` (asked only about the groups it names)."""
        groups = frozenset([n.group for n in requirement.groups if await self.in_group(actor, n.group)])
        return Decider(actor, await self.is_approver(actor), groups)


def check_approval(job: Job, who: Decider, now: datetime, ttl_s: float) -> ApprovalVerdict:
    """May `who` approve `job` now? Refusals name the rule; acceptance says how many more are needed.

    Order matters: a decided job answers "already decided" to everybody (idempotent double clicks), then
    expiry, then the person rules.
    """
    required = required_approvals(job.plan)
    requirement = requirement_of(job.plan)
    if job.state is not JobState.AWAITING_APPROVAL:
        return ApprovalVerdict(False, VerdictCode.ALREADY_DECIDED, _decided_reason(job), required=required)
    expires = approval_expires_at(job, ttl_s)
    if now >= expires:
        return ApprovalVerdict(
            False,
            VerdictCode.EXPIRED,
            f"the approval window of job {job.id} closed at {_fmt_time(expires)} "
            f"({ttl_s / 60:g} min after the request); ask the requester to run /migrate again",
            required=required,
        )
    opts = job.plan.request.options if job.plan is not None else None
    if opts is not None and opts.not_after is not None and now >= opts.not_after:
        return ApprovalVerdict(
            False,
            VerdictCode.WINDOW_PASSED,
            f"the start window of job {job.id} ended at {fmt_instant(opts.not_after)} before it was approved; "
            "ask the requester to run /migrate again with a new --at or --window",
            required=required,
        )
    approvers = job.approvers
    return check_approver(
        f"job {job.id}",
        job.requester,
        requirement,
        current_approvals(job),
        Approval(job.id, who.actor, True, job.plan.hash if job.plan else "", now, tuple(sorted(who.groups))),
        actor_is_approver=who.is_approver,
        approved_by=approvers,
        already=f"you already approved job {job.id}; it needs {required - len(set(approvers))} more "
        "approval(s) from someone else",
    )


def check_approver(
    subject: str,
    requester: str,
    requirement: ApprovalRequirement,
    given: Sequence[Approval],
    mine: Approval,
    *,
    actor_is_approver: bool,
    approved_by: Collection[str],
    already: str,
) -> ApprovalVerdict:
    """The person rules of an approval, the same for a job and a drain (dispatch/drain_policy.py), in order:
    not the requester; an approver or a member of a group the requirement names; once per person (`already`
    is the refusal, `approved_by` who has approved); and the approval must count towards what is outstanding.

    `subject` names it in the messages ("job 12", "D7"); `given` are the approvals of its current plan and
    `mine` the one `mine.actor` would give now (with the groups they are in; only the needed ones count)."""
    actor, required = mine.actor, requirement.total
    needed_groups = {n.group for n in requirement.groups}
    actor_groups = frozenset(mine.groups) & needed_groups
    if actor == requester:
        return ApprovalVerdict(
            False, VerdictCode.SELF_APPROVAL, "you requested this; another approver must approve it", required=required
        )
    if not actor_is_approver and not actor_groups:
        groups = ", ".join(f"@{g}" for g in sorted(needed_groups))
        also = f" or in {groups}" if groups else ""
        return ApprovalVerdict(
            False,
            VerdictCode.NOT_APPROVER,
            "you are not an approver for migrations; ask someone in the approvers group "
            f"(MIGRATE_BOT_APPROVER_GROUP / MIGRATE_BOT_APPROVERS){also}",
            required=required,
        )
    if actor in approved_by:
        return ApprovalVerdict(False, VerdictCode.ALREADY_APPROVED, already, required=required)
    before = outstanding(requirement, given)
    after = outstanding(requirement, (*given, replace(mine, groups=tuple(sorted(actor_groups)))))
    if after.total >= before.total:
        return ApprovalVerdict(
            False,
            VerdictCode.NOT_IN_GROUP,
            f"{subject} still needs {describe_outstanding(before)}, and you are not a member of "
            f"{'that group' if len(before.groups) == 1 else 'those groups'}; your approval would not count",
            required=required,
        )
    return ApprovalVerdict(
        True, VerdictCode.OK, "", remaining=after.total, required=required, still_needed=describe_outstanding(after)
    )


def check_denial(job: Job, actor: str, actor_is_approver: bool, now: datetime, ttl_s: float) -> Verdict:
    """May `actor` deny `job`? Approvers may, and so may the requester (withdrawing is always safe)."""
    if job.state is not JobState.AWAITING_APPROVAL:
        return Verdict(False, VerdictCode.ALREADY_DECIDED, _decided_reason(job))
    if now >= approval_expires_at(job, ttl_s):
        return Verdict(False, VerdictCode.EXPIRED, f"job {job.id} has already expired; nothing to deny")
    if not actor_is_approver and actor != job.requester:
        return Verdict(
            False,
            VerdictCode.NOT_APPROVER,
            "only approvers (or the requester) can deny a migration request",
        )
    return _OK


def may_request(
    user: str, requesters_allowlist: Iterable[str], channel: str | None, allowed_channels: Iterable[str]
) -> Verdict:
    """May `user` request a migration from `channel`? Empty lists mean "everyone" / "any channel".

    `channel=None` is a request that does not come from a chat channel (console, CLI): the channel rule does
    not apply to it.
    """
    allowed = tuple(requesters_allowlist)
    if allowed and user not in allowed:
        return Verdict(
            False,
            VerdictCode.NOT_ALLOWED,
            "you are not allowed to request migrations (MIGRATE_BOT_REQUESTERS); ask an operator to add you",
        )
    channels = tuple(allowed_channels)
    if channels and channel is not None and channel not in channels:
        where = ", ".join(f"<#{c}>" for c in channels)
        return Verdict(
            False,
            VerdictCode.WRONG_CHANNEL,
            f"migrations are requested in {where} only (MIGRATE_BOT_CHANNELS); run /migrate there",
        )
    return _OK


def check_change_window(
    emergency: bool, freezes: Iterable[FreezeWindow], now: datetime, emergency_approvers: int
) -> Verdict:
    """May a migration be requested at `now`? Not during a freeze, unless it is an emergency (--emergency with
    --reason, checked by the grammar); --emergency outside a freeze is refused so nobody asks three people
    for nothing."""
    frozen = frozen_until(freezes, now)
    if frozen is None:
        if emergency:
            return Verdict(
                False,
                VerdictCode.NOT_FROZEN,
                "no change freeze is in force, so --emergency does not apply; request it again without "
                "--emergency (see `/migrate freezes`)",
            )
        return _OK
    if emergency:
        return _OK
    occurrence, until = frozen
    return Verdict(
        False,
        VerdictCode.FROZEN,
        f"changes are frozen: '{occurrence.window.name}' is in force until "
        f"{fmt_instant(until, occurrence.window)}. Request it again after that, or, if it cannot wait, add "
        f'--emergency --reason "why" (it then needs {emergency_approvers} approvers)',
    )


MAX_SCHEDULE_AHEAD = timedelta(days=30)


def check_schedule(not_before: datetime | None, not_after: datetime | None, now: datetime) -> Verdict:
    """Is a start window (already resolved to aware instants) usable: not over, not more than 30 days away?"""
    if not_before is None or not_after is None:
        return _OK
    if not_after <= now:
        return Verdict(
            False,
            VerdictCode.SCHEDULE_PAST,
            f"the start window ended at {fmt_instant(not_after)}, before this request; give a later --at or "
            "--window (times without a zone are read in the policy file's [schedule] timezone)",
        )
    if not_before - now > MAX_SCHEDULE_AHEAD:
        return Verdict(
            False,
            VerdictCode.SCHEDULE_TOO_FAR,
            f"{fmt_instant(not_before)} is more than 30 days away; request it closer to the time "
            "(the plan would be stale by then)",
        )
    return _OK


def check_ticket(ticket: str | None, rule: TicketRule) -> Verdict:
    """Is the change ticket acceptable under the policy file's [ticket] rule?"""
    if ticket is None:
        if rule.required:
            example = f" matching {rule.pattern.pattern}" if rule.pattern is not None else ""
            return Verdict(
                False,
                VerdictCode.TICKET_MISSING,
                f"a change ticket is required (policy file [ticket] required = true); add --ticket ID{example}",
            )
        return _OK
    if rule.pattern is not None and not rule.pattern.search(ticket):
        return Verdict(
            False,
            VerdictCode.TICKET_INVALID,
            f"ticket `{ticket}` does not match the policy's pattern {rule.pattern.pattern}; "
            "check the id in your change system",
        )
    return _OK


def may_control(user: str, job: Job, actor_is_approver: bool) -> Verdict:
    """May `user` press a control (abort, post-copy, downtime, bandwidth, cancel)? Approvers + requester."""
    if actor_is_approver or user == job.requester:
        return _OK
    return Verdict(
        False,
        VerdictCode.NOT_APPROVER,
        f"only the requester ({_user(job.requester)}) or an approver can control job {job.id}",
    )


class RateLimiter:
    """Per-user sliding-window limit on requests: at most `limit` in any `window_s` seconds.

    `clock` returns monotonic seconds (inject a fake in tests). `check` does not count; `hit` counts and
    returns the verdict (a refused request is not counted, so a burst of refusals does not extend the wait).
    """

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float]) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("RateLimiter needs limit >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}

    def _prune(self, user: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(user, deque())
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        return hits

    def check(self, user: str) -> RateVerdict:
        now = self._clock()
        hits = self._prune(user, now)
        if len(hits) < self.limit:
            return RateVerdict(True, VerdictCode.OK)
        retry_s = hits[0] + self.window_s - now
        return RateVerdict(
            False,
            VerdictCode.RATE_LIMITED,
            f"you made {len(hits)} migration requests in the last {_fmt_last(self.window_s)} "
            f"(limit {self.limit}); try again in {_fmt_window(retry_s)}",
            retry_after_s=retry_s,
        )

    def hit(self, user: str) -> RateVerdict:
        verdict = self.check(user)
        if verdict.allowed:
            self._hits[user].append(self._clock())
        return verdict


def _fmt_last(seconds: float) -> str:
    """'hour' for 3600 s (reads as "in the last hour"), else the span."""
    return "hour" if seconds == 3600 else _fmt_window(seconds)


def _fmt_window(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{max(1, round(seconds))} s"


__all__ = [
    "NORMAL_APPROVALS",
    "RISKY_APPROVALS",
    "ApprovalVerdict",
    "RateLimiter",
    "RateVerdict",
    "Verdict",
    "VerdictCode",
    "approval_expires_at",
    "check_approval",
    "check_change_window",
    "check_denial",
    "check_schedule",
    "check_ticket",
    "current_approvals",
    "may_control",
    "may_request",
    "required_approvals",
    "requirement_of",
    "risk_reasons",
    "still_needed",
]
