"""The job state machine: every (old, new) pair is allowed or refused exactly as the table below says."""

from __future__ import annotations

import itertools

import pytest

from migration_core.errors import IllegalTransition, StateError
from migration_core.models import TERMINAL_STATES, JobState
from migration_core.store.states import (
    ACTIVE_STATES,
    ALLOWED,
    CANCELLABLE_STATES,
    can_transition,
    check_transition,
    next_states,
)

S = JobState

# Written out independently of jobs.ALLOWED: a change to the machine must change this table too.
EXPECTED_MOVES: dict[JobState, set[JobState]] = {
    S.REQUESTED: {S.PREFLIGHT, S.FAILED, S.ABORTED},
    S.PREFLIGHT: {S.AWAITING_APPROVAL, S.FAILED, S.ABORTED},
    S.AWAITING_APPROVAL: {S.APPROVED, S.DENIED, S.EXPIRED, S.ABORTED, S.FAILED, S.PREFLIGHT},
    S.APPROVED: {S.QUEUED, S.RUNNING, S.AWAITING_APPROVAL, S.ABORTED, S.FAILED, S.EXPIRED},
    S.QUEUED: {S.RUNNING, S.AWAITING_APPROVAL, S.ABORTED, S.FAILED, S.EXPIRED},
    S.RUNNING: {S.VERIFYING, S.FAILED, S.ABORTED, S.QUEUED},
    S.VERIFYING: {S.SUCCEEDED, S.FAILED, S.ABORTED},
    S.SUCCEEDED: set(),
    S.FAILED: set(),
    S.ABORTED: set(),
    S.DENIED: set(),
    S.EXPIRED: set(),
}

ALL_PAIRS = list(itertools.product(JobState, JobState))
LEGAL = [(old, new) for old, new in ALL_PAIRS if new in EXPECTED_MOVES[old]]
ILLEGAL = [(old, new) for old, new in ALL_PAIRS if new not in EXPECTED_MOVES[old]]


def test_the_table_covers_every_state() -> None:
    assert set(ALLOWED) == set(JobState)
    assert {s: set(v) for s, v in ALLOWED.items()} == EXPECTED_MOVES


@pytest.mark.parametrize(("old", "new"), LEGAL, ids=[f"{o}->{n}" for o, n in LEGAL])
def test_legal_transition_is_accepted(old: JobState, new: JobState) -> None:
    assert can_transition(old, new)
    assert new in next_states(old)
    check_transition(old, new, job_id=7)  # must not raise


@pytest.mark.parametrize(("old", "new"), ILLEGAL, ids=[f"{o}->{n}" for o, n in ILLEGAL])
def test_illegal_transition_is_refused_with_a_readable_message(old: JobState, new: JobState) -> None:
    assert not can_transition(old, new)
    with pytest.raises(IllegalTransition) as caught:
        check_transition(old, new, job_id=7)
    err = caught.value
    assert isinstance(err, StateError)
    assert "job #7" in err.message
    assert old.value in err.message
    if old in TERMINAL_STATES:
        assert "final" in err.message
        assert err.hint
    elif old == new:
        assert "already" in err.message
    else:
        assert new.value in err.message
        # The hint lists exactly what is allowed instead.
        for allowed in EXPECTED_MOVES[old]:
            assert allowed.value in err.hint


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_terminal_states_never_move(state: JobState) -> None:
    assert next_states(state) == frozenset()
    assert state not in ACTIVE_STATES


def test_every_state_is_reachable_from_requested_and_every_path_ends_terminal() -> None:
    seen = {S.REQUESTED}
    frontier = [S.REQUESTED]
    while frontier:
        state = frontier.pop()
        for nxt in next_states(state):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(JobState)
    # From every non-terminal state some terminal state is reachable (no trap loops).
    for start in ACTIVE_STATES:
        reach, todo = {start}, [start]
        while todo:
            for nxt in next_states(todo.pop()):
                if nxt not in reach:
                    reach.add(nxt)
                    todo.append(nxt)
        assert reach & TERMINAL_STATES, start


def test_cancellable_states_can_all_be_aborted() -> None:
    for state in CANCELLABLE_STATES:
        assert can_transition(state, S.ABORTED)
    assert S.RUNNING not in CANCELLABLE_STATES  # a running job is aborted through the hypervisor, not cancelled


def test_message_without_job_id() -> None:
    with pytest.raises(IllegalTransition, match="the job cannot go from requested to running"):
        check_transition(S.REQUESTED, S.RUNNING)
