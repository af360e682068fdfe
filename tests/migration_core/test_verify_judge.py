"""verify.judge, pure: what a failed migration left on the destination, in words that do not cry wolf."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from migration_core.execution.types import ExecutionResult
from migration_core.execution.verify import judge
from migration_core.execution.verify_checks import Observed
from migration_core.hypervisor.types import DomainInfo, DomainState
from migration_core.models import CheckStatus, JobState
from tests.bot.factories import plan

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
A, B = "qemu+unix:///a", "qemu+unix:///b"


def failed() -> ExecutionResult:
    return ExecutionResult(
        job_id=7,
        outcome=JobState.FAILED,
        source_uri=A,
        destination_uri=B,
        started_at=T0,
        ended_at=T0,
        wall_s=9.0,
        error="client socket is closed",
    )


def vm(uri: str, state: DomainState) -> DomainInfo:
    return DomainInfo(uri, "vm42", state=state, active=state in (DomainState.RUNNING, DomainState.PAUSED))


@pytest.mark.parametrize(
    ("dest_state", "status", "headline_words", "reason_words"),
    [
        # The incoming copy libvirt destroys once the destination notices the source is gone: not a split brain.
        (DomainState.PAUSED, CheckStatus.WARN, "still holds a paused incoming copy", "paused incoming copy"),
        (DomainState.ABSENT, CheckStatus.PASS, "stays on hostA", "on hostB"),
    ],
)
def test_a_failed_precopy_names_what_the_destination_still_holds(
    dest_state: DomainState, status: CheckStatus, headline_words: str, reason_words: str
) -> None:
    p = plan()
    summary = judge(p, failed(), Observed(vm(A, DomainState.RUNNING), vm(B, dest_state)))
    assert summary.outcome is JobState.FAILED
    assert headline_words in summary.headline and "too!" not in summary.headline
    cleanup = next(c for c in summary.checks if c.name == "destination_cleanup")
    assert cleanup.status is status and reason_words in cleanup.reason
    if status is CheckStatus.WARN:
        assert cleanup.fix and "virsh destroy vm42" in cleanup.fix


def test_running_on_both_hosts_is_still_a_split_brain() -> None:
    summary = judge(plan(), failed(), Observed(vm(A, DomainState.RUNNING), vm(B, DomainState.RUNNING)))
    assert summary.outcome is JobState.FAILED
    assert any(c.name == "split_brain" and c.status is CheckStatus.FAIL for c in summary.checks)
