"""THE hypervisor port: what the core asks of hypervisors, as one Protocol returning typed values only.

The executor, the preflight runner, verification, the dispatcher and the service depend on this Protocol,
never on an implementation. Two implementations: `libvirt_adapter.Hypervisor` (real hosts; the only libvirt
importer) and `fleet.Fleet` (simulated hosts on virtual time, for fast tests and scale benchmarks). Hosts
are addressed by URI; VMs by name or UUID. Errors are the core's tree (migration_core.errors,
hypervisor.types.DomainNotFound/JobAborted), translated once by hypervisor.errors.

XML documents (capabilities, domain capabilities, domain XML) are returned as libvirt's text because the
facts package parses each of them once (lxml) into typed facts; everything else is a frozen dataclass of
hypervisor.types.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from migration_core.hypervisor.types import (
    HOST_DEFAULT,
    ClockReading,
    CpuComparison,
    DirtyRate,
    DomainInfo,
    EmulatorTarget,
    HostVersions,
    InterfaceInfo,
    JobStats,
    MigrationCall,
    NetworkInfo,
    NodeMemory,
    PoolInfo,
    VolumeInfo,
)


class HostNames(Protocol):
    """How hosts are named in messages."""

    def label(self, uri: str) -> str:
        """The inventory name of a host URI (or the URI)."""
        ...

    def add_host(self, name: str, *uris: str | None) -> None:
        """Name a host in messages: its client URI and its peer URI."""
        ...


class HostFacts(Protocol):
    """Facts about hosts and domains, for preflight and verification."""

    async def ping(self, uri: str) -> str: ...

    async def hostname(self, uri: str) -> str: ...

    async def capabilities(self, uri: str) -> str: ...

    async def versions(self, uri: str) -> HostVersions: ...

    async def node_memory(self, uri: str) -> NodeMemory: ...

    async def domain_capabilities(self, uri: str, target: EmulatorTarget = HOST_DEFAULT) -> str: ...

    async def compare_cpu(self, uri: str, cpu_xml: str, target: EmulatorTarget = HOST_DEFAULT) -> CpuComparison: ...

    async def baseline_cpu(self, uri: str, cpu_xmls: Sequence[str], target: EmulatorTarget = HOST_DEFAULT) -> str: ...

    async def list_domains(self, uri: str) -> tuple[DomainInfo, ...]: ...

    async def domain(self, uri: str, vm: str) -> DomainInfo: ...

    async def domain_xml(self, uri: str, vm: str, *, migratable: bool = True, inactive: bool = False) -> str: ...

    async def snapshot_count(self, uri: str, vm: str) -> int: ...

    async def memory_rss_bytes(self, uri: str, vm: str) -> int | None:
        """The QEMU process's resident memory (bounds what pre-copy's first pass sends); None if unknown."""
        ...

    async def cpu_time_ns(self, uri: str, vm: str) -> int:
        """Total vCPU time the VM has used there (advances only while the guest executes)."""
        ...

    async def dirty_rate(
        self, uri: str, vm: str, *, seconds: int = 3, mode: str = "page-sampling", timeout_s: float | None = None
    ) -> DirtyRate: ...

    async def guest_agent_configured(self, uri: str, vm: str) -> bool: ...

    async def guest_agent_ping(self, uri: str, vm: str) -> str: ...


class StorageAndNetworks(Protocol):
    """Pools, volumes, networks and host interfaces; pre-creating copy-storage images."""

    async def networks(self, uri: str) -> tuple[NetworkInfo, ...]: ...

    async def interfaces(self, uri: str) -> tuple[InterfaceInfo, ...]: ...

    async def refresh_pools(self, uri: str) -> None: ...

    async def pools(self, uri: str) -> tuple[PoolInfo, ...]: ...

    async def volume_by_path(self, uri: str, path: str, *, refresh: bool = True) -> VolumeInfo | None: ...

    async def pool_for_directory(self, uri: str, directory: str) -> PoolInfo | None: ...

    async def path_exists(self, uri: str, path: str) -> bool | None: ...

    async def create_volume(self, uri: str, path: str, capacity_bytes: int, fmt: str = "qcow2") -> VolumeInfo: ...

    async def delete_volume(self, uri: str, path: str) -> bool: ...

    async def disk_capacity_bytes(self, uri: str, vm: str, disk: str) -> int: ...

    async def same_storage(self, uri: str, other_uri: str, directory: str) -> bool | None:
        """Do both hosts see one and the same `directory` (a probe file written on one, looked for on the other)?"""
        ...

    async def volume_allocation_bytes(self, uri: str, path: str) -> int | None: ...

    async def clock_reading(self, uri: str) -> ClockReading:
        """The host's wall clock against the bot's (a probe file's ctime through libvirt); raises when it
        cannot be measured (no permission to create a volume, no usable pool)."""
        ...


class Migrations(Protocol):
    """Running a migration, reading its job, and the operator's controls."""

    async def migrate(self, source_uri: str, vm: str, call: MigrationCall) -> None:
        """Run one migration to its end; raises the translated error (JobAborted, HostUnreachable, ...)."""
        ...

    async def job_stats(self, uri: str, vm: str) -> JobStats: ...

    async def completed_job_stats(
        self, vm_uuid: str, *, source_uri: str, destination_uri: str, wait_s: float = 1.0
    ) -> JobStats | None: ...

    def forget_completed(self, vm_uuid: str) -> None: ...

    async def abort_job(self, uri: str, vm: str) -> None: ...

    async def pause_postcopy(self, uri: str, vm: str) -> None: ...

    async def start_postcopy(self, uri: str, vm: str) -> None: ...

    async def set_max_downtime(self, uri: str, vm: str, downtime_ms: int) -> None: ...

    async def get_max_downtime(self, uri: str, vm: str) -> int: ...

    async def set_max_speed(self, uri: str, vm: str, bandwidth_mib_s: int, *, postcopy: bool = False) -> None: ...

    async def get_max_speed(self, uri: str, vm: str, *, postcopy: bool = False) -> int: ...


class Lifecycle(Protocol):
    """Power and definition (tests, cleanup)."""

    async def destroy(self, uri: str, vm: str) -> None: ...

    async def undefine(self, uri: str, vm: str) -> None: ...

    async def undefine_inactive(self, uri: str, vm: str) -> None:
        """Remove a shut-off VM's definition (and its metadata) there; refused for a running VM."""
        ...

    async def define(self, uri: str, xml: str) -> str: ...

    async def start(self, uri: str, vm: str) -> None: ...

    async def close(self) -> None: ...


class HypervisorPort(HostNames, HostFacts, StorageAndNetworks, Migrations, Lifecycle, Protocol):
    """Everything the core asks of hypervisors (see the module docstring)."""
