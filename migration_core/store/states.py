"""The job state machine: which moves are allowed, and the operator-readable refusal for the others (pure).

    requested -> preflight -> awaiting_approval -> approved -> queued -> running -> verifying -> succeeded
    (plus the side exits to failed | aborted | denied | expired, and three loops back:
     awaiting_approval -> preflight to re-plan, approved/queued -> awaiting_approval when the plan changed,
     running -> queued when a restarted bot proves the migration never started)

The store enforces this table on every write (`Store.transition` calls `check_transition` before its
compare-and-set), so no code path can persist a move that is not listed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from migration_core.errors import IllegalTransition
from migration_core.models import TERMINAL_STATES, JobState

_S = JobState

# Every allowed move, listed explicitly; anything not here is refused. Terminal states have no way out.
ALLOWED: Mapping[JobState, frozenset[JobState]] = MappingProxyType(
    {
        # aborted = the operator cancelled before anything ran (cancel <job-id>).
        _S.REQUESTED: frozenset({_S.PREFLIGHT, _S.FAILED, _S.ABORTED}),
        _S.PREFLIGHT: frozenset({_S.AWAITING_APPROVAL, _S.FAILED, _S.ABORTED}),
        # -> preflight: re-plan (facts changed, the operator asked again); the old approvals no longer bind.
        _S.AWAITING_APPROVAL: frozenset({_S.APPROVED, _S.DENIED, _S.EXPIRED, _S.ABORTED, _S.FAILED, _S.PREFLIGHT}),
        # -> awaiting_approval: the re-check before start found a different plan hash, so it needs a new OK.
        # -> running directly: a free slot, no queueing needed.
        _S.APPROVED: frozenset({_S.QUEUED, _S.RUNNING, _S.AWAITING_APPROVAL, _S.ABORTED, _S.FAILED, _S.EXPIRED}),
        # -> expired: an approval is valid for a limited time; a job that waited too long must be re-approved
        #    by a new request rather than start on stale consent.
        _S.QUEUED: frozenset({_S.RUNNING, _S.AWAITING_APPROVAL, _S.ABORTED, _S.FAILED, _S.EXPIRED}),
        # -> queued: restart recovery proved that libvirt never started the migration (the bot died in between):
        #    the approved move waits for a slot and starts again, once (dispatch/restart.py).
        _S.RUNNING: frozenset({_S.VERIFYING, _S.FAILED, _S.ABORTED, _S.QUEUED}),
        _S.VERIFYING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.ABORTED}),
        _S.SUCCEEDED: frozenset(),
        _S.FAILED: frozenset(),
        _S.ABORTED: frozenset(),
        _S.DENIED: frozenset(),
        _S.EXPIRED: frozenset(),
    }
)

# Not finished yet: these jobs show as active, hold their VM, and are looked at again after a restart.
ACTIVE_STATES: frozenset[JobState] = frozenset(s for s in JobState if s not in TERMINAL_STATES)
# A job in these states may still be withdrawn without touching a hypervisor.
CANCELLABLE_STATES: frozenset[JobState] = frozenset(
    {_S.REQUESTED, _S.PREFLIGHT, _S.AWAITING_APPROVAL, _S.APPROVED, _S.QUEUED}
)
# Approved and waiting for a replica (and a free host slot) to run it.
CLAIMABLE_STATES: frozenset[JobState] = frozenset({_S.APPROVED, _S.QUEUED})
# Moving data between the hosts: these count against the per-host inbound/outbound limits. A claimed job
# that is still approved/queued also counts (its replica is about to start it); see Store.host_load.
SLOT_STATES: frozenset[JobState] = frozenset({_S.RUNNING})


def next_states(old: JobState) -> frozenset[JobState]:
    """The states a job in `old` may move to (empty for a terminal state)."""
    return ALLOWED[old]


def can_transition(old: JobState, new: JobState) -> bool:
    """True when the state machine allows `old -> new`."""
    return new in ALLOWED[old]


def check_transition(old: JobState, new: JobState, job_id: int | None = None) -> None:
    """Raise IllegalTransition, with what is allowed instead, unless `old -> new` is allowed.

    >>> check_transition(JobState.RUNNING, JobState.VERIFYING)  # allowed: returns None
    """
    if can_transition(old, new):
        return
    who = f"job #{job_id}" if job_id is not None else "the job"
    if old in TERMINAL_STATES:
        raise IllegalTransition(
            f"{who} cannot go from {old.value} to {new.value}: {old.value} is final",
            "start a new request if the VM still has to move",
        )
    if old == new:
        raise IllegalTransition(f"{who} is already {old.value}", "nothing to do")
    allowed = ", ".join(sorted(s.value for s in ALLOWED[old]))
    raise IllegalTransition(
        f"{who} cannot go from {old.value} to {new.value}",
        f"from {old.value} it can only go to: {allowed}",
    )
