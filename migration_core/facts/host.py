"""Typed facts about a hypervisor host: capabilities XML and domain capabilities XML, and the port's readings
that preflight carries with them (libvirt and QEMU versions, the host clock, virtual networks).

Fields marked "(adapter)" are not in the capabilities XML; the libvirt adapter fills them from other calls
(`getHostname`, `getLibVersion`, `getVersion`, `getFreeMemory`, `getFreePages`, active domains, SSH).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HugepagePool:
    """Huge pages of one size on one NUMA cell (`cell=None`: whole host); `free_pages` from the adapter."""

    size_kib: int
    total_pages: int
    cell: int | None = None
    free_pages: int | None = None


@dataclass(frozen=True)
class HostNumaCell:
    id: int
    memory_bytes: int
    cpu_ids: tuple[int, ...] = ()
    pages: tuple[HugepagePool, ...] = ()


@dataclass(frozen=True)
class HostCpu:
    """The host CPU from `<host><cpu>`."""

    arch: str | None = None
    model: str | None = None
    vendor: str | None = None
    features: frozenset[str] = frozenset()
    sockets: int | None = None
    dies: int | None = None
    cores: int | None = None
    threads: int | None = None


@dataclass(frozen=True)
class GuestMachine:
    """One `<machine>` of a guest arch; `canonical` is set for aliases (`q35` -> `pc-q35-7.2`)."""

    name: str
    canonical: str | None = None
    max_cpus: int | None = None
    deprecated: bool = False


@dataclass(frozen=True)
class GuestArch:
    """One `<guest>` arch: its emulator, machine types and domain types (kvm and/or qemu)."""

    os_type: str
    arch: str
    emulator: str | None = None
    machines: tuple[GuestMachine, ...] = ()
    domain_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClockReading:
    """A host's wall clock against the bot's: `offset_s` = host - bot (positive: the host is ahead), known to
    within +/- `uncertainty_s` (half the round trip of the call that read it, plus the file-timestamp tick)."""

    offset_s: float
    uncertainty_s: float


@dataclass(frozen=True)
class HostVersions:
    """libvirt and hypervisor versions of one host, as libvirt's packed integers and as text."""

    libvirt: int
    hypervisor: int
    hypervisor_type: str

    @staticmethod
    def text(packed: int) -> str:
        """HostVersions.text(9000000) == "9.0.0" (libvirt packs major*1e6 + minor*1e3 + release)."""
        return f"{packed // 1_000_000}.{packed // 1000 % 1000}.{packed % 1000}"

    @property
    def libvirt_text(self) -> str:
        return self.text(self.libvirt)

    @property
    def hypervisor_text(self) -> str:
        return self.text(self.hypervisor)


@dataclass(frozen=True)
class NetworkInfo:
    """A libvirt virtual network and the host bridge it uses (None for e.g. macvtap/hostdev networks)."""

    name: str
    active: bool = True
    bridge: str | None = None


@dataclass(frozen=True)
class HostFacts:
    """One host, from its capabilities XML plus the adapter's extra readings."""

    uuid: str | None = None
    arch: str | None = None
    cpu: HostCpu = HostCpu()
    cells: tuple[HostNumaCell, ...] = ()
    page_sizes_kib: tuple[int, ...] = ()
    iommu_supported: bool | None = None
    security_models: tuple[str, ...] = ()
    live_migration: bool = False
    uri_transports: tuple[str, ...] = ()
    guests: tuple[GuestArch, ...] = ()
    # (adapter) from other libvirt calls or SSH; None = unknown, and the checks then warn
    name: str = ""  # the inventory name
    hostname: str | None = None  # conn.getHostname()
    versions: HostVersions | None = None  # conn.getLibVersion() and conn.getVersion()
    free_memory_bytes: int | None = None  # what a new guest could get: free + buffers + cached
    total_memory_bytes: int | None = None  # conn.getInfo(); else the NUMA cells' sum
    cpu_count: int | None = None  # online host CPUs; else the CPUs the NUMA cells list
    running_vcpus: int | None = None  # vCPUs of the domains running there now (overcommit)
    nvidia_vgpu_driver: str | None = None  # NVIDIA vGPU host driver version (nvidia-smi), vGPU hosts only
    mdev_types: frozenset[str] | None = None  # mdev types the host can create (e.g. nvidia-63)

    @property
    def memory_bytes(self) -> int | None:
        """Total memory: the adapter's figure, else the sum of the NUMA cells."""
        if self.total_memory_bytes is not None:
            return self.total_memory_bytes
        return sum(c.memory_bytes for c in self.cells) if self.cells else None

    @property
    def cpus(self) -> int | None:
        """Host CPUs: the adapter's figure, else the CPUs listed in the NUMA cells, else the CPU topology."""
        if self.cpu_count is not None:
            return self.cpu_count
        listed = sum(len(c.cpu_ids) for c in self.cells)
        if listed:
            return listed
        topo = (self.cpu.sockets, self.cpu.dies or 1, self.cpu.cores, self.cpu.threads)
        if None in topo:
            return None
        total = 1
        for n in topo:
            total *= n or 1
        return total

    @property
    def cpu_ids(self) -> frozenset[int]:
        return frozenset(i for c in self.cells for i in c.cpu_ids)

    @property
    def domain_types(self) -> frozenset[str]:
        """Accelerators offered for any guest: `kvm` and/or `qemu` (TCG)."""
        return frozenset(t for g in self.guests for t in g.domain_types)

    def machines(self, arch: str | None, domain_type: str | None = None) -> dict[str, GuestMachine]:
        """Machine types (by name, aliases included) for `arch` (and `domain_type`, when given)."""
        found: dict[str, GuestMachine] = {}
        for g in self.guests:
            if arch is not None and g.arch != arch:
                continue
            if domain_type is not None and g.domain_types and domain_type not in g.domain_types:
                continue
            for m in g.machines:
                found.setdefault(m.name, m)
        return found

    def hugepage_pools(self, size_kib: int) -> tuple[HugepagePool, ...]:
        return tuple(p for c in self.cells for p in c.pages if p.size_kib == size_kib)


@dataclass(frozen=True)
class CpuModelInfo:
    """A `<model>` of the custom CPU mode in domain capabilities; `usable=None` when libvirt did not say."""

    name: str
    usable: bool | None = None
    vendor: str | None = None


@dataclass(frozen=True)
class DomainCapsFacts:
    """Domain capabilities of one (emulator, arch, machine, virt type) on a host."""

    path: str | None = None
    domain_type: str | None = None
    machine: str | None = None
    arch: str | None = None
    max_vcpus: int | None = None
    cpu_modes: frozenset[str] = frozenset()
    host_model: str | None = None
    host_model_vendor: str | None = None
    host_model_features: tuple[str, ...] = ()
    custom_models: tuple[CpuModelInfo, ...] = ()
    hostdev_supported: bool | None = None
    hostdev_subsys_types: frozenset[str] = frozenset()
    iommu_supported: bool | None = None
    iommu_models: frozenset[str] = frozenset()
    filesystem_drivers: frozenset[str] = frozenset()
    tpm_backends: frozenset[str] = frozenset()
    features: frozenset[str] = frozenset()

    def model_usable(self, name: str) -> bool | None:
        for m in self.custom_models:
            if m.name == name:
                return m.usable
        return None
