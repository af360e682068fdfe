"""Everything preflight needs, gathered once through the hypervisor port and handed to the pure checks.

`PreflightFacts` is the single input of `preflight.run_checks` and of the planner. The preflight runner fills
it (domain / capabilities XML through domxml.py, plus probes and measurements); tests build it directly. Every
field that may be unknown is Optional: a check that lacks a fact answers WARN ("could not check ..."),
never raises. The VM, device and host types it holds are imported from where they are defined
(facts/vm.py, facts/devices.py, facts/host.py); this module defines only what the gathering adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from migration_core.facts.domain_state import DomainInfo, DomainState
from migration_core.facts.host import DomainCapsFacts, HostFacts, NetworkInfo
from migration_core.facts.vm import VmFacts
from migration_core.models import MigrationRequest
from migration_core.units import MIB


class VmState(StrEnum):
    """The VM's libvirt state, folded to what matters for migration."""

    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "shut off"
    CRASHED = "crashed"
    PMSUSPENDED = "pmsuspended"
    OTHER = "other"

    @staticmethod
    def of(state: DomainState) -> VmState:
        """What a domain's state on its host means for planning; the one mapping preflight uses.

        A domain that is shutting down still runs (a live migration is still what it would need).

        >>> VmState.of(DomainState.BLOCKED), VmState.of(DomainState.SHUTOFF)
        (<VmState.RUNNING: 'running'>, <VmState.SHUTOFF: 'shut off'>)
        """
        return {
            DomainState.RUNNING: VmState.RUNNING,
            DomainState.BLOCKED: VmState.RUNNING,
            DomainState.PAUSED: VmState.PAUSED,
            DomainState.SHUTOFF: VmState.SHUTOFF,
            DomainState.SHUTDOWN: VmState.RUNNING,
            DomainState.CRASHED: VmState.CRASHED,
            DomainState.PMSUSPENDED: VmState.PMSUSPENDED,
        }.get(state, VmState.OTHER)


@dataclass(frozen=True)
class Endpoint:
    """One end of the migration as the inventory and libvirt see it.

    `known`: the name is in the inventory. `answered`: its libvirt connection opened (else `error` says why).
    """

    name: str
    known: bool = True
    answered: bool = True
    error: str | None = None
    uri: str | None = None
    peer_uri: str | None = None
    # The hosts file says this host's QEMU has migration-TLS certificates (qemu.conf migrate_tls_x509_cert_dir).
    migration_tls: bool = False
    # The hosts file's memory_reserve_mib: memory kept free for the host itself, never given to a moved VM.
    memory_reserve_bytes: int = 0


@dataclass(frozen=True)
class DiskVisibility:
    """What the destination sees of one VM disk (by target dev). None = could not be determined.

    - `same_path_exists`: something exists at the disk's path on the destination.
    - `shared`: proven to be the *same* storage (a probe file written on one host seen on the other, like
      Nova's shared-storage test file): no copy needed.
    - `shared_fs`: the path is on a filesystem libvirt itself treats as shared (NFS, GFS2, OCFS2, CephFS,
      GlusterFS, ...). Shared but not `shared_fs` (e.g. one ext4 seen by both lab hosts) needs
      `VIR_MIGRATE_UNSAFE`, which the planner adds only in that case.
    - `size_bytes`: bytes a storage copy would send (allocation); `capacity_bytes`: the virtual size.
    - `destination_free_bytes`: free space where the copy would land on the destination.
    - `destination_pool`: a destination storage pool whose directory holds the path (libvirt then
      pre-creates the image for `--copy-storage`; outside a pool it must already exist, lab P4).
    - `backing_on_destination`: the backing chain exists on the destination (`--copy-storage inc` needs it).
    """

    target: str
    same_path_exists: bool | None = None
    shared: bool | None = None
    shared_fs: bool | None = None
    fs_type: str | None = None
    size_bytes: int | None = None
    capacity_bytes: int | None = None
    destination_free_bytes: int | None = None
    destination_pool: str | None = None
    backing_on_destination: bool | None = None
    error: str | None = None


@dataclass(frozen=True)
class CpuComparison:
    """Result of `compareHypervisorCPU` of the VM's migratable CPU against the destination.

    `compatible=None`: not compared (see `error`). `baseline_xml`: `baselineHypervisorCPU` of both hosts
    (migratable), offered as the fix exactly as in seed 12.9.
    """

    compatible: bool | None = None
    result: str | None = None
    missing_features: tuple[str, ...] = ()
    error: str | None = None
    baseline_xml: str | None = None
    baseline_model: str | None = None


@dataclass(frozen=True)
class PortProbe:
    """One reachability probe. `what`: `libvirt-tcp` (16509), `libvirt-tls` (16514), `ssh` (22) or
    `migration` (49152-49215); `ok=None`: not probed. `origin`: where it ran from (`bot` or a host name).
    For the migration range nothing listens before a migration, so "refused" counts as reachable."""

    what: str
    host: str
    port: int
    ok: bool | None
    detail: str = ""
    origin: str = "bot"


@dataclass(frozen=True)
class DirtyRateSample:
    """The measured dirty page rate (`startDirtyRateCalc` + `dirtyrate.megabytes_per_second`)."""

    rate_mib_s: float | None
    period_s: float
    mode: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class PreflightSettings:
    """Thresholds the checks use (configurable by the operator's settings; defaults are the issue's)."""

    memory_headroom_bytes: int = 256 * MIB
    memory_headroom_fraction: float = 0.10
    # Overcommitting vCPUs is normal (Nova's default allocation ratio is 4:1); warn only beyond that.
    vcpu_overcommit_ratio: float = 4.0

    def memory_headroom_for(self, vm_memory_bytes: int) -> int:
        """The larger of the fixed and proportional headroom.

        >>> from migration_core.units import GIB
        >>> PreflightSettings().memory_headroom_for(8 * GIB) // MIB
        819
        """
        return max(self.memory_headroom_bytes, int(vm_memory_bytes * self.memory_headroom_fraction))


@dataclass(frozen=True)
class PreflightFacts:
    """Everything the checks and the planner need for one request (see module doc)."""

    request: MigrationRequest
    source: Endpoint
    destination: Endpoint
    known_hosts: tuple[str, ...] = ()
    source_host: HostFacts | None = None
    destination_host: HostFacts | None = None
    destination_domcaps: DomainCapsFacts | None = None
    destination_domcaps_error: str | None = None
    vm: VmFacts | None = None
    known_vms: tuple[str, ...] = ()
    vm_state: VmState | None = None
    vm_persistent: bool | None = None
    vm_snapshots: int | None = None
    # The domains defined or running on the destination, as the port listed them (name / UUID clash check).
    destination_domains: tuple[DomainInfo, ...] | None = None
    # Definitions of the VM's UUID on the other hosts, `host` being the inventory name (split-brain hazard;
    # None: no host list; unanswered hosts are left out).
    definitions_elsewhere: tuple[DomainInfo, ...] | None = None
    hosts_unanswered: tuple[str, ...] = ()
    # The destination's libvirt networks (`virsh net-list --all`), as the port listed them.
    destination_networks: tuple[NetworkInfo, ...] | None = None
    destination_bridges: frozenset[str] | None = None
    destination_netdevs: frozenset[str] | None = None
    disks: tuple[DiskVisibility, ...] = ()
    cpu: CpuComparison | None = None
    probes: tuple[PortProbe, ...] = ()
    dirty_rate: DirtyRateSample | None = None
    settings: PreflightSettings = PreflightSettings()
