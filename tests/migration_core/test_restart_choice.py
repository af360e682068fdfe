"""The pure restart-recovery decision (dispatch/restart.py): start again only on full proof, and only once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from migration_core.dispatch.restart import RESTART_MOVE, RestartChoice, judge_restart, restarts_so_far
from migration_core.execution.start_evidence import StartEvidence
from migration_core.models import JobState
from migration_core.store import EventKind, EventRecord

UNTOUCHED = StartEvidence(True, "web1 is active on h1 with no migration job, and h2 has no domain of it")
TOUCHED = StartEvidence(False, "h1 has a job for web1 (unbounded)")
UNKNOWN = StartEvidence(False, "could not read the hosts (h2 does not answer)")


@pytest.mark.parametrize(
    ("samples", "restarts", "hosts", "choice"),
    [
        (False, 0, UNTOUCHED, RestartChoice.RESTART),
        (True, 0, UNTOUCHED, RestartChoice.REATTACH),  # a sample: libvirt had started
        (True, 0, None, RestartChoice.REATTACH),
        (False, 0, TOUCHED, RestartChoice.REATTACH),
        (False, 0, UNKNOWN, RestartChoice.REATTACH),  # unknown is not "never"
        (False, 0, None, RestartChoice.REATTACH),
        (False, 1, UNTOUCHED, RestartChoice.NOT_AGAIN),  # once only
        (False, 2, UNTOUCHED, RestartChoice.NOT_AGAIN),
        (False, 1, TOUCHED, RestartChoice.REATTACH),
    ],
)
def test_judge_restart(samples: bool, restarts: int, hosts: StartEvidence | None, choice: RestartChoice) -> None:
    verdict = judge_restart(has_samples=samples, restarts=restarts, hosts=hosts)
    assert verdict.choice is choice
    assert verdict.why


def _state(n: int, old: JobState, new: JobState) -> EventRecord:
    return EventRecord(n, 7, datetime(2026, 1, 1, tzinfo=UTC), EventKind.STATE, None, "", old, new)


def test_restarts_are_counted_from_the_state_moves_only() -> None:
    events = [
        _state(1, JobState.APPROVED, JobState.RUNNING),
        _state(2, *RESTART_MOVE),
        _state(3, JobState.QUEUED, JobState.RUNNING),
        _state(4, JobState.APPROVED, JobState.QUEUED),  # an ordinary wait for a slot is not a restart
        EventRecord(5, 7, datetime(2026, 1, 1, tzinfo=UTC), EventKind.NOTICE, None, "running -> queued"),
    ]
    assert restarts_so_far(events) == 1
    assert restarts_so_far([]) == 0
