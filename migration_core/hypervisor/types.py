"""Typed results of the hypervisor port (the libvirt adapter and the fleet) and their pure helpers; no libvirt here.

The port returns these frozen dataclasses instead of libvirt objects or raw tuples, so that the rest of the
core (preflight, executor, verification) never sees libvirt. Numeric codes (job types, error codes) are copied
from libvirt 9.0's public headers; they are part of libvirt's stable ABI. The values that facts carry (a
domain's state, host versions, the clock reading, networks) are defined in `facts` and re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

# Defined in the core's one exception tree; importable from here as before.
from migration_core.errors import DomainNotFound as DomainNotFound
from migration_core.errors import JobAborted as JobAborted

# Typed facts the port hands back; facts/ owns them (its preflight bag carries them) and cannot import upwards.
from migration_core.facts.domain_state import PAUSED_MIGRATION as PAUSED_MIGRATION
from migration_core.facts.domain_state import PAUSED_POSTCOPY as PAUSED_POSTCOPY
from migration_core.facts.domain_state import PAUSED_POSTCOPY_FAILED as PAUSED_POSTCOPY_FAILED
from migration_core.facts.domain_state import RUNNING_POSTCOPY as RUNNING_POSTCOPY
from migration_core.facts.domain_state import RUNNING_POSTCOPY_FAILED as RUNNING_POSTCOPY_FAILED
from migration_core.facts.domain_state import STATE_BY_CODE as STATE_BY_CODE
from migration_core.facts.domain_state import DomainInfo as DomainInfo
from migration_core.facts.domain_state import DomainState as DomainState
from migration_core.facts.domain_state import reason_text as reason_text
from migration_core.facts.host import ClockReading as ClockReading
from migration_core.facts.host import HostVersions as HostVersions
from migration_core.facts.host import NetworkInfo as NetworkInfo
from migration_core.models import ParamValue

# A value in a job-stats dict: libvirt typed params are ints, floats, strings or booleans.
StatValue = int | float | str | bool


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
class NodeMemory:
    """Host memory in bytes. `available_bytes` = free + buffers + cached (what a new guest could get)."""

    total_bytes: int
    free_bytes: int
    available_bytes: int


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
