"""verify.judge and verify_checks.liveness_check, pure: a check that did not run is SKIPPED (never passed), and
the guest's liveness comes from evidence that is named (vCPU time advancing, the guest agent's answer)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from migration_core.execution.types import ExecutionResult
from migration_core.execution.verify import judge
from migration_core.execution.verify_checks import Observed
from migration_core.hypervisor.types import DomainInfo, DomainState
from migration_core.models import CheckResult, CheckStatus, JobState, MigrationMode, VerificationSummary
from tests.bot.factories import plan

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
A, B = "qemu+unix:///a", "qemu+unix:///b"


def succeeded() -> ExecutionResult:
    return ExecutionResult(
        job_id=7, outcome=JobState.SUCCEEDED, source_uri=A, destination_uri=B, started_at=T0, ended_at=T0, wall_s=2.0
    )


def dom(uri: str, state: DomainState, *, persistent: bool = True) -> DomainInfo:
    active = state in (DomainState.RUNNING, DomainState.PAUSED)
    return DomainInfo(uri, "vm42", state=state, active=active, persistent=persistent)


def check(summary: VerificationSummary, name: str) -> CheckResult:
    return next(c for c in summary.checks if c.name == name)


def moved(**kw: object) -> Observed:
    return Observed(dom(A, DomainState.SHUTOFF), dom(B, DomainState.RUNNING), **kw)  # type: ignore[arg-type]


def test_no_agent_is_skipped_not_passed_and_vcpu_time_is_the_evidence() -> None:
    s = judge(plan(), succeeded(), moved(cpu_advance_ns=12_500_000))
    assert s.outcome is JobState.SUCCEEDED
    agent = check(s, "guest_agent")
    assert agent.status is CheckStatus.SKIPPED and "no guest agent configured" in agent.reason
    alive = check(s, "guest_liveness")
    assert alive.status is CheckStatus.PASS
    assert "vCPU time +12.5 ms in 1.0 s on hostB" in alive.reason and "hostA's copy is not running" in alive.reason
    assert s.evidence == alive.reason and "guest agent" not in s.evidence


def test_with_an_agent_both_pieces_of_evidence_are_named() -> None:
    s = judge(plan(), succeeded(), moved(cpu_advance_ns=3_000_000, agent="answered"))
    assert check(s, "guest_liveness").status is CheckStatus.PASS
    assert s.evidence is not None and "vCPU time +3.0 ms" in s.evidence and "guest agent answered" in s.evidence
    assert check(s, "guest_agent").status is CheckStatus.PASS


def test_vcpus_that_did_not_run_are_a_warning() -> None:
    alive = check(judge(plan(), succeeded(), moved(cpu_advance_ns=0)), "guest_liveness")
    assert alive.status is CheckStatus.WARN and "may be hung" in alive.reason


def test_an_agent_that_does_not_answer_is_a_warning() -> None:
    s = judge(plan(), succeeded(), moved(cpu_advance_ns=1_000_000, agent="did not answer (timeout)"))
    agent = check(s, "guest_agent")
    assert agent.status is CheckStatus.WARN and "did not answer" in agent.reason
    # the vCPUs ran: that evidence stands, and only it is named
    alive = check(s, "guest_liveness")
    assert alive.status is CheckStatus.PASS and "guest agent" not in alive.reason
    only_agent = judge(plan(), succeeded(), moved(agent="did not answer (timeout)"))
    assert check(only_agent, "guest_liveness").status is CheckStatus.WARN


def test_unreadable_vcpu_time_and_no_agent_is_skipped_with_the_reason() -> None:
    s = judge(plan(), succeeded(), moved(liveness_error="could not read the vCPU time (no answer)"))
    alive = check(s, "guest_liveness")
    assert alive.status is CheckStatus.SKIPPED and "could not read the vCPU time" in alive.reason


@pytest.mark.parametrize("mode", [MigrationMode.OFFLINE])
def test_offline_moves_have_no_liveness_check(mode: MigrationMode) -> None:
    observed = Observed(dom(A, DomainState.SHUTOFF), dom(B, DomainState.SHUTOFF))
    s = judge(plan(mode=mode), succeeded(), observed)
    assert not any(c.name in ("guest_liveness", "guest_agent") for c in s.checks)
