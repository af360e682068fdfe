"""Change-control policy: risk -> approvals needed, approval verdicts, expiry, who may request or control."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from migration_core.dispatch.policy import (
    Decider,
    RateLimiter,
    VerdictCode,
    approval_expires_at,
    check_approval,
    check_denial,
    may_control,
    may_request,
    required_approvals,
    risk_reasons,
)
from migration_core.errors import PolicyError, StateError
from migration_core.models import CheckResult, CheckStatus, CopyStorage, JobState
from tests.bot.factories import PASSING, T0, job, plan

OLDER = CheckResult("versions", CheckStatus.WARN, "destination QEMU 7.2 is older than source QEMU 8.0")
CACHE = CheckResult("disk-cache", CheckStatus.WARN, "disk vda uses cache=writeback")
FAIL = CheckResult("cpu", CheckStatus.FAIL, "destination lacks avx512f")


@pytest.mark.parametrize(
    ("name", "p", "approvals", "reason_starts"),
    [
        ("plain live", plan(), 1, []),
        ("post-copy", plan(postcopy=True), 2, ["post-copy"]),
        ("copy-storage", plan(copy_storage=CopyStorage.ALL), 2, ["copy-storage"]),
        ("undefine-source", plan(undefine_source=True), 2, ["--undefine-source"]),
        ("destination older", plan(checks=(*PASSING, OLDER)), 2, ["destination older than source"]),
        ("any warning", plan(checks=(*PASSING, CACHE)), 2, ["warning from check 'disk-cache'"]),
        ("a failure alone is not a risk", plan(checks=(*PASSING, FAIL)), 1, []),
        (
            "several reasons in order",
            plan(postcopy=True, undefine_source=True, checks=(*PASSING, CACHE)),
            2,
            ["post-copy", "--undefine-source", "warning from check"],
        ),
    ],
)
def test_risk_and_required_approvals(name, p, approvals, reason_starts):
    reasons = risk_reasons(p)
    assert required_approvals(p) == approvals, name
    assert len(reasons) == len(reason_starts), reasons
    for reason, start in zip(reasons, reason_starts, strict=True):
        assert reason.startswith(start), reason


def test_job_without_plan_needs_one_approval():
    assert required_approvals(None) == 1


NOW = T0 + timedelta(minutes=5)
TTL = 1800.0
RISKY = plan(postcopy=True)


@pytest.mark.parametrize(
    ("name", "j", "actor", "is_approver", "now", "allowed", "code", "remaining", "text"),
    [
        ("first of one", job(), "U0BOB", True, NOW, True, VerdictCode.OK, 0, ""),
        ("first of two", job(p=RISKY), "U0BOB", True, NOW, True, VerdictCode.OK, 1, ""),
        (
            "second of two",
            job(p=RISKY, approvers=("U0BOB",)),
            "U0CAROL",
            True,
            NOW,
            True,
            VerdictCode.OK,
            0,
            "",
        ),
        (
            "self-approval",
            job(),
            "U0ALICE",
            True,
            NOW,
            False,
            VerdictCode.SELF_APPROVAL,
            0,
            "you requested this; another approver must approve it",
        ),
        (
            "not an approver",
            job(),
            "U0EVE",
            False,
            NOW,
            False,
            VerdictCode.NOT_APPROVER,
            0,
            "not an approver",
        ),
        (
            "already approved by you",
            job(p=RISKY, approvers=("U0BOB",)),
            "U0BOB",
            True,
            NOW,
            False,
            VerdictCode.ALREADY_APPROVED,
            0,
            "you already approved",
        ),
        (
            "already decided: approved",
            job(state=JobState.APPROVED, approvers=("U0BOB",)),
            "U0CAROL",
            True,
            NOW,
            False,
            VerdictCode.ALREADY_DECIDED,
            0,
            "already approved by <@U0BOB>",
        ),
        (
            "already decided: running",
            job(state=JobState.RUNNING, approvers=("U0BOB",)),
            "U0BOB",
            True,
            NOW,
            False,
            VerdictCode.ALREADY_DECIDED,
            0,
            "already approved by <@U0BOB> and is running",
        ),
        (
            "already decided: denied",
            job(state=JobState.DENIED, deniers=("U0DAN",)),
            "U0CAROL",
            True,
            NOW,
            False,
            VerdictCode.ALREADY_DECIDED,
            0,
            "already denied by <@U0DAN>",
        ),
        (
            "failed preflight, never approved",
            job(state=JobState.FAILED, error="cpu check failed"),
            "U0BOB",
            True,
            NOW,
            False,
            VerdictCode.ALREADY_DECIDED,
            0,
            "failed before approval (cpu check failed)",
        ),
        (
            "expired state",
            job(state=JobState.EXPIRED),
            "U0BOB",
            True,
            NOW,
            False,
            VerdictCode.ALREADY_DECIDED,
            0,
            "expired",
        ),
        (
            "window closed (clock past the TTL)",
            job(),
            "U0BOB",
            True,
            T0 + timedelta(seconds=TTL),
            False,
            VerdictCode.EXPIRED,
            0,
            "closed at 2024-05-01 12:30:00 UTC",
        ),
        (
            "decided beats expired (idempotent double click)",
            job(state=JobState.APPROVED, approvers=("U0BOB",)),
            "U0BOB",
            True,
            T0 + timedelta(hours=2),
            False,
            VerdictCode.ALREADY_DECIDED,
            0,
            "already approved",
        ),
        (
            "expired beats self-approval",
            job(),
            "U0ALICE",
            True,
            T0 + timedelta(hours=1),
            False,
            VerdictCode.EXPIRED,
            0,
            "closed",
        ),
        ("console names work too", job(requester="alice"), "bob", True, NOW, True, VerdictCode.OK, 0, ""),
    ],
)
def test_check_approval(name, j, actor, is_approver, now, allowed, code, remaining, text):
    v = check_approval(j, Decider(actor, is_approver), now, TTL)
    assert (v.allowed, v.code) == (allowed, code), (name, v)
    assert text in v.reason, (name, v.reason)
    if allowed:
        assert v.remaining == remaining and v.error() is None
    else:
        assert v.reason  # every refusal says why


@pytest.mark.parametrize(
    ("code", "exc"),
    [
        (VerdictCode.SELF_APPROVAL, PolicyError),
        (VerdictCode.ALREADY_DECIDED, StateError),
        (VerdictCode.EXPIRED, StateError),
    ],
)
def test_refusals_map_to_the_exception_tree(code, exc):
    cases = {
        VerdictCode.SELF_APPROVAL: check_approval(job(), Decider("U0ALICE", True), NOW, TTL),
        VerdictCode.ALREADY_DECIDED: check_approval(job(state=JobState.DENIED), Decider("U0BOB", True), NOW, TTL),
        VerdictCode.EXPIRED: check_approval(job(), Decider("U0BOB", True), T0 + timedelta(days=1), TTL),
    }
    verdict = cases[code]
    assert verdict.code is code
    with pytest.raises(exc, match=verdict.reason[:20]):
        verdict.raise_if_refused()


def test_approval_expires_at_is_created_at_plus_ttl():
    assert approval_expires_at(job(), 600) == T0 + timedelta(minutes=10)


@pytest.mark.parametrize(
    ("name", "j", "actor", "is_approver", "now", "allowed", "code"),
    [
        ("approver denies", job(), "U0BOB", True, NOW, True, VerdictCode.OK),
        ("requester withdraws by denying", job(), "U0ALICE", False, NOW, True, VerdictCode.OK),
        ("stranger", job(), "U0EVE", False, NOW, False, VerdictCode.NOT_APPROVER),
        (
            "already approved",
            job(state=JobState.APPROVED),
            "U0BOB",
            True,
            NOW,
            False,
            VerdictCode.ALREADY_DECIDED,
        ),
        ("expired", job(), "U0BOB", True, T0 + timedelta(hours=1), False, VerdictCode.EXPIRED),
    ],
)
def test_check_denial(name, j, actor, is_approver, now, allowed, code):
    v = check_denial(j, actor, is_approver, now, TTL)
    assert (v.allowed, v.code) == (allowed, code), name


@pytest.mark.parametrize(
    ("name", "user", "allow", "channel", "channels", "allowed", "code"),
    [
        ("open to everyone", "U1", (), "C1", (), True, VerdictCode.OK),
        ("on the allowlist", "U1", ("U1", "U2"), "C1", (), True, VerdictCode.OK),
        ("not on the allowlist", "U3", ("U1", "U2"), "C1", (), False, VerdictCode.NOT_ALLOWED),
        ("allowed channel", "U1", (), "C1", ("C1",), True, VerdictCode.OK),
        ("wrong channel", "U1", (), "C2", ("C1",), False, VerdictCode.WRONG_CHANNEL),
        ("console (no channel)", "alice", (), None, ("C1",), True, VerdictCode.OK),
    ],
)
def test_may_request(name, user, allow, channel, channels, allowed, code):
    v = may_request(user, allow, channel, channels)
    assert (v.allowed, v.code) == (allowed, code), name
    if code is VerdictCode.WRONG_CHANNEL:
        assert "<#C1>" in v.reason


@pytest.mark.parametrize(
    ("user", "is_approver", "allowed"),
    [("U0ALICE", False, True), ("U0BOB", True, True), ("U0EVE", False, False)],
)
def test_may_control_is_requester_or_approver(user, is_approver, allowed):
    v = may_control(user, job(state=JobState.RUNNING), is_approver)
    assert v.allowed is allowed
    if not allowed:
        assert "<@U0ALICE>" in v.reason and isinstance(v.error(), PolicyError)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_rate_limiter_sliding_window():
    clock = FakeClock()
    rl = RateLimiter(3, 3600, clock)
    steps = [
        # (advance_s, user, allowed)
        (0, "U1", True),
        (10, "U1", True),
        (10, "U1", True),
        (10, "U1", False),  # 4th within the hour
        (0, "U2", True),  # other users have their own window
        (3600 - 30 + 1, "U1", True),  # the first hit (t=1000) has left the window
        (0, "U1", False),
    ]
    for advance, user, allowed in steps:
        clock.t += advance
        v = rl.hit(user)
        assert v.allowed is allowed, (clock.t, user)
    refused = rl.check("U1")
    assert refused.code is VerdictCode.RATE_LIMITED
    assert "3 migration requests in the last hour (limit 3)" in refused.reason
    assert "try again in" in refused.reason and refused.retry_after_s > 0
    assert isinstance(refused.error(), PolicyError)


def test_rate_limiter_refusals_do_not_extend_the_wait():
    clock = FakeClock()
    rl = RateLimiter(1, 60, clock)
    assert rl.hit("U1").allowed
    for _ in range(5):
        clock.t += 10
        assert not rl.hit("U1").allowed
    clock.t += 10.5  # 60.5 s after the only counted request
    assert rl.hit("U1").allowed


def test_rate_limiter_rejects_nonsense_configuration():
    with pytest.raises(ValueError):
        RateLimiter(0, 60, FakeClock())


def test_verdict_is_frozen():
    v = check_approval(job(), Decider("U0BOB", True), NOW, TTL)
    with pytest.raises(AttributeError):
        v.allowed = False  # type: ignore[misc]
    assert replace(v, remaining=3).remaining == 3
