"""Typed results of the libvirt adapter (hypervisor.py) and its pure helpers; no libvirt import here.

The adapter returns these frozen dataclasses instead of libvirt objects or raw tuples, so that the rest of
the core (preflight, executor, verification) never sees libvirt. Numeric codes (domain states, job types)
are copied from libvirt 9.0's public headers; they are part of libvirt's stable ABI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

# Defined in the core's one exception tree; importable from here as before.
from migration_core.errors import DomainNotFound as DomainNotFound
from migration_core.errors import JobAborted as JobAborted
from migration_core.facts.host import HostVersions as HostVersions  # the port returns it; facts/ owns it
from migration_core.models import ParamValue

# A value in a job-stats dict: libvirt typed params are ints, floats, strings or booleans.
StatValue = int | float | str | bool


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


class JobType(IntEnum):
    """virDomainJobType: what `jobStats()` says about the domain's current (or last) job."""

    NONE = 0
    BOUNDED = 1
    UNBOUNDED = 2
    COMPLETED = 3
    FAILED = 4
    CANCELLED = 5


@dataclass(frozen=True)
class JobStats:
    """One `virDomainGetJobStats` answer: the job type plus the raw typed params (units in libvirt.md §3)."""

    job_type: JobType
    values: Mapping[str, StatValue] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.job_type in (JobType.BOUNDED, JobType.UNBOUNDED)

    def get_int(self, key: str, default: int = 0) -> int:
        value = self.values.get(key)
        return int(value) if isinstance(value, int | float) and not isinstance(value, str) else default

    @property
    def success(self) -> bool | None:
        value = self.values.get("success")
        return bool(value) if value is not None else None

    @property
    def errmsg(self) -> str | None:
        value = self.values.get("errmsg")
        return str(value) if value else None


@dataclass(frozen=True)
class ClockReading:
    """A host's wall clock against the bot's: `offset_s` = host - bot (positive: the host is ahead), known to
    within +/- `uncertainty_s` (half the round trip of the call that read it, plus the file-timestamp tick)."""

    offset_s: float
    uncertainty_s: float


@dataclass(frozen=True)
class NodeMemory:
    """Host memory in bytes. `available_bytes` = free + buffers + cached (what a new guest could get)."""

    total_bytes: int
    free_bytes: int
    available_bytes: int


@dataclass(frozen=True)
class NetworkInfo:
    """A libvirt virtual network and the host bridge it uses (None for e.g. macvtap/hostdev networks)."""

    name: str
    active: bool = True
    bridge: str | None = None


@dataclass(frozen=True)
class InterfaceInfo:
    """A host network interface as libvirt's interface driver reports it (type: ethernet, bridge, ...)."""

    name: str
    active: bool
    kind: str


@dataclass(frozen=True)
class PoolInfo:
    """A storage pool, its target directory (for dir-like pools) and its space in bytes."""

    name: str
    active: bool
    pool_type: str
    target_path: str | None
    capacity_bytes: int
    allocation_bytes: int
    available_bytes: int

    def covers(self, directory: str) -> bool:
        """Whether `directory` is this pool's target (trailing slashes aside): the one "which pool" rule."""
        return bool(self.target_path) and str(self.target_path).rstrip("/") == directory.rstrip("/")


@dataclass(frozen=True)
class VolumeInfo:
    """A storage volume found by path: the pool it is in, its format and sizes."""

    path: str
    pool: str
    name: str
    format: str | None
    capacity_bytes: int
    allocation_bytes: int


@dataclass(frozen=True)
class MigrationCall:
    """How to call one migration: libvirt flag names, typed params, and where the destination is.

    With VIR_MIGRATE_PEER2PEER, `peer_uri` is the destination URI as the *source daemon* dials it; without it
    the bot drives both ends and needs `destination_uri` (its own URI for the destination). `destination`
    names the host in messages.
    """

    flags: tuple[str, ...]
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    peer_uri: str | None = None
    destination_uri: str | None = None
    destination: str | None = None

    @property
    def flag_names(self) -> frozenset[str]:
        """The flags without their VIR_MIGRATE_ prefix: {"LIVE", "PEER2PEER", ...}."""
        return frozenset(f.removeprefix("VIR_MIGRATE_") for f in self.flags)


@dataclass(frozen=True)
class EmulatorTarget:
    """Which emulator, architecture, machine type and virt type a CPU or domain-capabilities question is
    about (libvirt's four optional arguments; None: the host's default)."""

    emulator: str | None = None
    arch: str | None = None
    machine: str | None = None
    virttype: str | None = None


HOST_DEFAULT = EmulatorTarget()


@dataclass(frozen=True)
class CpuComparison:
    """`compareHypervisorCPU` on the destination: compatible or not, the missing features, libvirt's text."""

    compatible: bool
    result: int
    missing_features: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class DirtyRate:
    """A measured guest dirty rate (`dirtyrate.megabytes_per_second` is MB/s, libvirt.md §9)."""

    megabytes_per_second: int
    mode: str
    period_s: int


class VirErr(IntEnum):
    """The virErrorNumber codes this adapter treats specially (virterror.h; stable ABI)."""

    INTERNAL_ERROR = 1
    NO_SUPPORT = 3
    NO_CONNECT = 5
    INVALID_ARG = 8
    OPERATION_FAILED = 9
    XML_ERROR = 27
    DOM_EXIST = 28
    OPERATION_DENIED = 29
    SYSTEM_ERROR = 38
    RPC = 39
    NO_DOMAIN = 42
    NO_NETWORK = 43
    AUTH_FAILED = 45
    NO_STORAGE_POOL = 49
    NO_STORAGE_VOL = 50
    OPERATION_INVALID = 55
    CONFIG_UNSUPPORTED = 67
    OPERATION_TIMEOUT = 68
    ARGUMENT_UNSUPPORTED = 74
    OPERATION_ABORTED = 78
    MIGRATE_UNSAFE = 81
    OPERATION_UNSUPPORTED = 84
    CPU_INCOMPATIBLE = 91
    AUTH_UNAVAILABLE = 94
