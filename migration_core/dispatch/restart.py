"""Restart recovery: a move the bot died before starting is started again, once (issue 11).

If the bot dies after the dispatcher marked a job running but before libvirt started the migration, reattaching
finds no job on the source and the VM still active there, and Nova's heuristic calls that a failed migration.
Nothing moved and the approval still binds the plan, so the operator expects the move to simply run. It goes
back to `queued` (the normal path: re-check before start, slot limits) when all of this proves it never started:
no progress sample was ever recorded for the job, and the hosts agree (execution/start_evidence). Anything
unknown or contrary means "reattach and judge" as before. It happens once per job: a move that stops the bot
at the same point again ends as before, with the reason, instead of looping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from migration_core.execution.start_evidence import StartEvidence
from migration_core.models import JobState
from migration_core.store import EventKind, EventRecord

# The state move that records a restart; counting these in the job's event log is the once-only guard, so
# the guard holds across any number of replicas and restarts without a column of its own.
RESTART_MOVE = (JobState.RUNNING, JobState.QUEUED)
RESTART_DETAIL = "restart recovery: libvirt never started this migration; it starts again at the next free slot"


class RestartChoice(StrEnum):
    """What the dispatcher does with a running job it takes over."""

    REATTACH = "reattach"  # the migration started (or we cannot tell): watch it or judge how it ended
    RESTART = "restart"  # it provably never started: queue it again
    NOT_AGAIN = "not_again"  # it never started, but it was already started again once: reattach, say why


@dataclass(frozen=True)
class RestartVerdict:
    """The choice and the evidence behind it (for the log)."""

    choice: RestartChoice
    why: str


def restarts_so_far(events: Sequence[EventRecord]) -> int:
    """How many times the job was already sent back from running to queued by restart recovery."""
    return sum(1 for e in events if e.kind is EventKind.STATE and (e.old_state, e.new_state) == RESTART_MOVE)


def judge_restart(*, has_samples: bool, restarts: int, hosts: StartEvidence | None) -> RestartVerdict:
    """Decide from the evidence (pure). `hosts` is None when it was not asked (a sample already answers)."""
    if has_samples:
        return RestartVerdict(RestartChoice.REATTACH, "progress was recorded: the migration started")
    if hosts is None or not hosts.untouched:
        return RestartVerdict(RestartChoice.REATTACH, hosts.why if hosts else "the hosts were not asked")
    if restarts >= 1:
        return RestartVerdict(RestartChoice.NOT_AGAIN, f"already started again {restarts} time(s); {hosts.why}")
    return RestartVerdict(RestartChoice.RESTART, hosts.why)


def restart_text(who: str) -> str:
    """The notice (and state-move detail) for a move that is started again; `who`: 'the bot' or a replica."""
    return f"{who} stopped before libvirt started this migration; starting it again (nothing had been copied)"


def not_again_text(who: str) -> str:
    """The notice for a move whose bot stopped before the start a second time: it is not restarted again."""
    return (
        f"{who} stopped again before libvirt started this migration, after it had already been started again "
        "once; it is not started a third time, so a move that stops the bot cannot loop. Find why the bot "
        "stopped (its log just before this restart), then request the move again"
    )
