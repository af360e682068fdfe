"""What one host says of a domain at run time (virDomainGetState: its state and the reason), as typed values.

The state and reason codes are copied from libvirt 9.0's public headers; they are part of its stable ABI.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DomainState(StrEnum):
    """A domain's state on one host, with ABSENT for "not defined there at all"."""

    NOSTATE = "no state"
    RUNNING = "running"
    BLOCKED = "blocked"
    PAUSED = "paused"
    SHUTDOWN = "shutting down"
    SHUTOFF = "shut off"
    CRASHED = "crashed"
    PMSUSPENDED = "suspended"
    ABSENT = "absent"


# virDomainState codes -> our enum (libvirt-domain.h).
STATE_BY_CODE: dict[int, DomainState] = {
    0: DomainState.NOSTATE,
    1: DomainState.RUNNING,
    2: DomainState.BLOCKED,
    3: DomainState.PAUSED,
    4: DomainState.SHUTDOWN,
    5: DomainState.SHUTOFF,
    6: DomainState.CRASHED,
    7: DomainState.PMSUSPENDED,
}

# Reason codes per state (second element of virDomainGetState); only the states whose reasons matter.
_REASONS: dict[DomainState, dict[int, str]] = {
    DomainState.RUNNING: {
        0: "unknown",
        1: "booted",
        2: "migrated",
        3: "restored",
        4: "from snapshot",
        5: "unpaused",
        6: "migration canceled",
        7: "save canceled",
        8: "wakeup",
        9: "crashed",
        10: "post-copy",
        11: "post-copy failed",
    },
    DomainState.PAUSED: {
        0: "unknown",
        1: "user",
        2: "migration",
        3: "save",
        4: "dump",
        5: "I/O error",
        6: "watchdog",
        7: "from snapshot",
        8: "shutting down",
        9: "snapshot",
        10: "crashed",
        11: "starting up",
        12: "post-copy",
        13: "post-copy failed",
    },
    DomainState.SHUTOFF: {
        0: "unknown",
        1: "shutdown",
        2: "destroyed",
        3: "crashed",
        4: "migrated",
        5: "saved",
        6: "failed",
        7: "from snapshot",
        8: "daemon",
    },
}

RUNNING_POSTCOPY = 10
RUNNING_POSTCOPY_FAILED = 11
PAUSED_MIGRATION = 2
PAUSED_POSTCOPY = 12
PAUSED_POSTCOPY_FAILED = 13


def reason_text(state: DomainState, reason: int) -> str:
    """Human text of a state reason: reason_text(DomainState.PAUSED, 13) == "post-copy failed"."""
    return _REASONS.get(state, {}).get(reason, "unknown" if reason == 0 else str(reason))


@dataclass(frozen=True)
class DomainInfo:
    """A VM as one host sees it. `state` is ABSENT (and the rest empty) when the host does not know it."""

    host: str
    name: str
    uuid: str = ""
    state: DomainState = DomainState.ABSENT
    reason: int = 0
    active: bool = False
    persistent: bool = False

    @property
    def present(self) -> bool:
        return self.state is not DomainState.ABSENT

    @property
    def reason_text(self) -> str:
        return reason_text(self.state, self.reason)

    @property
    def postcopy_failed(self) -> bool:
        """Paused or running in "post-copy failed": the migration broke after the switch (needs recovery)."""
        return (self.state is DomainState.PAUSED and self.reason == PAUSED_POSTCOPY_FAILED) or (
            self.state is DomainState.RUNNING and self.reason == RUNNING_POSTCOPY_FAILED
        )

    @property
    def in_postcopy(self) -> bool:
        return (self.state is DomainState.RUNNING and self.reason == RUNNING_POSTCOPY) or (
            self.state is DomainState.PAUSED and self.reason == PAUSED_POSTCOPY
        )

    def describe(self) -> str:
        """One phrase for a summary: "running (migrated), persistent" or "absent"."""
        if not self.present:
            return "absent (not defined)"
        kind = "persistent" if self.persistent else "transient"
        return f"{self.state.value} ({self.reason_text}), {kind}"
