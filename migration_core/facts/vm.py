"""Typed facts about one VM, parsed from its domain XML (see domxml.py).

Everything here is a frozen dataclass so checks and the planner can compare and hash them. Fields marked
"(adapter)" are not in the domain XML: the libvirt adapter fills them from node-device XML, devlink or SSH
with `dataclasses.replace` (see `domxml.attach_host_device_info`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from migration_core.facts.devices import (
    FilesystemFacts,
    GraphicsFacts,
    HostdevFacts,
    InterfaceFacts,
    IommuFacts,
    MdevFacts,
    ShmemFacts,
    TpmFacts,
)


class DiskSourceKind(StrEnum):
    """`<disk type=...>`: where the bytes live. NETWORK disks (RBD, NBD, iSCSI, Gluster) are shared."""

    FILE = "file"
    BLOCK = "block"
    NETWORK = "network"
    VOLUME = "volume"
    DIR = "dir"
    NVME = "nvme"
    VHOSTUSER = "vhostuser"
    OTHER = "other"


@dataclass(frozen=True)
class NetworkHost:
    """One `<host>` of a network disk source."""

    name: str
    port: int | None = None
    transport: str | None = None

    def __str__(self) -> str:
        return f"{self.name}:{self.port}" if self.port is not None else self.name


@dataclass(frozen=True)
class DiskSource:
    """Where a disk's (or a backing layer's) bytes are, by kind: a file/block/dir `path`, a network
    `protocol` + `name` on `hosts`, or a storage `pool` + `volume`. The one `<source>` reading of domxml."""

    kind: DiskSourceKind = DiskSourceKind.FILE
    path: str | None = None
    protocol: str | None = None
    name: str | None = None
    hosts: tuple[NetworkHost, ...] = ()
    pool: str | None = None
    volume: str | None = None

    @property
    def empty(self) -> bool:
        """No medium (an empty CD-ROM or floppy): nothing to share or copy."""
        return self.path is None and self.name is None and self.volume is None

    def __str__(self) -> str:
        """Report text: `/var/lib/libvirt/images/a.qcow2`, `rbd vms/x on 10.0.0.11:6789`, `volume p/v`."""
        if self.kind is DiskSourceKind.NETWORK:
            where = ", ".join(str(h) for h in self.hosts)
            return f"{self.protocol or 'network'} {self.name or '?'}" + (f" on {where}" if where else "")
        if self.kind is DiskSourceKind.VOLUME:
            return f"volume {self.pool or '?'}/{self.volume or '?'}"
        return self.path or "no medium"


@dataclass(frozen=True)
class BackingLayer:
    """One layer of a disk's `<backingStore>` chain, top first."""

    source: DiskSource
    format: str | None = None


@dataclass(frozen=True)
class DiskFacts:
    """One `<disk>`: its target (`vda`), where its bytes are (`source`), and how QEMU opens it."""

    target: str
    device: str = "disk"
    bus: str | None = None
    source: DiskSource = DiskSource()
    format: str | None = None
    cache: str | None = None
    readonly: bool = False
    shareable: bool = False
    transient: bool = False
    backing_chain: tuple[BackingLayer, ...] = ()

    @property
    def empty(self) -> bool:
        return self.source.empty

    @property
    def writable(self) -> bool:
        return not self.readonly and not self.empty

    @property
    def copyable(self) -> bool:
        """What `VIR_MIGRATE_NON_SHARED_*` copies: writable, non-shareable, local (non-network) disks."""
        return self.writable and not self.shareable and self.source.kind is not DiskSourceKind.NETWORK

    @property
    def label(self) -> str:
        """Report text: `vda (/var/lib/libvirt/images/a.qcow2)`, `vdb (rbd vms/x on 10.0.0.11:6789)`."""
        return f"{self.target} ({self.source})"


@dataclass(frozen=True)
class CpuFeature:
    name: str
    policy: str | None = None


@dataclass(frozen=True)
class GuestNumaCell:
    """One guest NUMA cell from `<cpu><numa><cell>`."""

    id: int
    cpus: str
    memory_bytes: int


@dataclass(frozen=True)
class CpuFacts:
    """The VM's `<cpu>`; `xml` is the element as a string, as `compareHypervisorCPU` wants it."""

    mode: str | None = None
    match: str | None = None
    check: str | None = None
    model: str | None = None
    fallback: str | None = None
    vendor: str | None = None
    migratable: bool | None = None
    features: tuple[CpuFeature, ...] = ()
    numa_cells: tuple[GuestNumaCell, ...] = ()
    xml: str = ""

    @property
    def required_features(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.policy in (None, "require", "force"))

    def has_feature(self, name: str) -> bool:
        return name in self.required_features


@dataclass(frozen=True)
class VcpuPin:
    vcpu: int
    cpuset: str


@dataclass(frozen=True)
class MemNode:
    cellid: int
    mode: str | None
    nodeset: str


@dataclass(frozen=True)
class PinningFacts:
    """CPU and NUMA placement: `<vcpu cpuset>`, `<cputune>`, `<numatune>`."""

    vcpu_placement: str | None = None
    vcpu_cpuset: str | None = None
    vcpupins: tuple[VcpuPin, ...] = ()
    emulatorpin: str | None = None
    numatune_mode: str | None = None
    numatune_nodeset: str | None = None
    numatune_placement: str | None = None
    memnodes: tuple[MemNode, ...] = ()

    @property
    def cpus_pinned(self) -> bool:
        return bool(self.vcpu_cpuset or self.vcpupins or self.emulatorpin)

    @property
    def memory_pinned(self) -> bool:
        return bool(self.numatune_nodeset or self.memnodes)


@dataclass(frozen=True)
class HugepageRequest:
    """One `<hugepages><page>`; `size_kib=None` means the host's default huge page size."""

    size_kib: int | None = None
    nodeset: str | None = None


@dataclass(frozen=True)
class MemoryBackingFacts:
    hugepages: tuple[HugepageRequest, ...] = ()
    locked: bool = False
    source_type: str | None = None
    access_mode: str | None = None

    @property
    def uses_hugepages(self) -> bool:
        return bool(self.hugepages)


@dataclass(frozen=True)
class VmFacts:
    """One VM as its domain XML describes it. Whether it is persistent comes from libvirt, not the XML."""

    name: str
    uuid: str
    domain_type: str = "kvm"
    arch: str | None = None
    machine: str | None = None
    os_type: str | None = None
    memory_bytes: int = 0
    current_memory_bytes: int = 0
    max_memory_bytes: int | None = None
    vcpus: int = 1
    max_vcpus: int = 1
    emulator: str | None = None
    cpu: CpuFacts = CpuFacts()
    disks: tuple[DiskFacts, ...] = ()
    interfaces: tuple[InterfaceFacts, ...] = ()
    hostdevs: tuple[HostdevFacts, ...] = ()
    mdevs: tuple[MdevFacts, ...] = ()
    iommu: IommuFacts | None = None
    pinning: PinningFacts = PinningFacts()
    memory_backing: MemoryBackingFacts = MemoryBackingFacts()
    tpms: tuple[TpmFacts, ...] = ()
    graphics: tuple[GraphicsFacts, ...] = ()
    filesystems: tuple[FilesystemFacts, ...] = ()
    shmems: tuple[ShmemFacts, ...] = ()
    tsc_frequency_hz: int | None = None
    launch_security: str | None = None
    # from the bot's own <metadata> section (facts/metadata.py): groups whose VMs placement keeps apart
    anti_affinity_groups: tuple[str, ...] = ()

    @property
    def accelerator(self) -> str:
        """`kvm` (hardware) or `tcg` (QEMU's software emulation, domain type 'qemu')."""
        return "tcg" if self.domain_type == "qemu" else self.domain_type

    @property
    def pci_hostdevs(self) -> tuple[HostdevFacts, ...]:
        return tuple(h for h in self.hostdevs if h.type == "pci")

    @property
    def migratable_vfs(self) -> tuple[HostdevFacts, ...]:
        """Mellanox VFs on the migration driver (seed 12.6): live migration is a technology preview."""
        return tuple(h for h in self.pci_hostdevs if h.is_mellanox_vf and h.has_migration_driver)

    @property
    def has_vgpu(self) -> bool:
        return bool(self.mdevs)
