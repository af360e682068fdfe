"""The fleet's hosts and VMs: the specs a test or benchmark writes, the live state, and the XML libvirt would give.

Specs are frozen (what you ask for); `HostState`/`VmState` are the mutable simulation (where a VM runs, its
state reason, the faults in force). The XML documents (capabilities, domain capabilities, domain XML) are the
minimum the core's parsers (facts/) read, built with lxml, so the real preflight runs on the fleet.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field

from lxml import etree

from migration_core.hypervisor.types import DomainInfo, DomainState
from migration_core.inventory.hosts import HostConfig
from migration_core.units import MIB

IMAGES = "/var/lib/libvirt/images"


@dataclass(frozen=True)
class PoolSpec:
    """A storage pool on a host. `pool_type="netfs"` (or another shared type) is storage every host sees."""

    name: str = "images"
    path: str = IMAGES
    pool_type: str = "netfs"
    capacity_gib: int = 4096


@dataclass(frozen=True)
class HostSpec:
    """One hypervisor: capacity, CPU, networks, storage, link speed. The name is also its inventory name."""

    name: str
    memory_mib: int = 256 * 1024
    cpus: int = 64
    cpu_model: str = "Skylake-Client-IBRS"
    cpu_vendor: str = "Intel"
    cpu_features: tuple[str, ...] = ("pcid", "ss")
    networks: tuple[str, ...] = ("default",)
    bridges: tuple[str, ...] = ("virbr0",)
    pools: tuple[PoolSpec, ...] = (PoolSpec(),)
    link_mib_s: float = 1000.0
    max_inbound: int = 2
    max_outbound: int = 2
    libvirt_version: int = 9_000_000
    qemu_version: int = 7_002_000
    labels: tuple[str, ...] = ()
    clock_offset_s: float = 0.0  # this host's wall clock minus the bot's (what `clock_reading` reports)

    @property
    def uri(self) -> str:
        """How the bot reaches this host's (simulated) daemon."""
        return f"qemu+fleet://{self.name}/system"

    @property
    def peer_uri(self) -> str:
        """How other hosts' daemons dial this one (a real-looking URI, so preflight probes its port)."""
        return f"qemu+tcp://{self.name}/system"

    def host_config(self) -> HostConfig:
        """This host's entry in the hosts file: migration traffic to its name, no ssh probe, its limits."""
        return HostConfig(self.name, self.uri, self.peer_uri, self.name, None, self.link_mib_s, self.max_inbound,
                          self.max_outbound, self.labels)  # fmt: skip


@dataclass(frozen=True)
class DiskSpec:
    """A VM disk: a file image at `path` (in a shared pool unless the pool says otherwise)."""

    target: str = "vda"
    path: str = ""  # "" -> IMAGES/<vm>-<target>.qcow2
    size_gib: int = 20
    allocated_gib: int = 4


@dataclass(frozen=True)
class VmSpec:
    """A guest: memory (and how much of it is non-zero, so transferable), its dirty rate, disks, NICs.

    `working_set_mib` bounds what the guest can keep dirty between two bitmap re-reads (default: all of its
    transferable memory). `cpu_model` None means the guest takes its host's model (a custom CPU of that model).
    """

    name: str
    host: str
    memory_mib: int = 1024
    transferable_mib: int | None = None
    dirty_mib_s: float = 0.0
    working_set_mib: int | None = None
    vcpus: int = 1
    cpu_model: str | None = None
    disks: tuple[DiskSpec, ...] = (DiskSpec(),)
    networks: tuple[str, ...] = ("default",)
    running: bool = True
    persistent: bool = True
    uuid: str = ""

    @property
    def transferable_bytes(self) -> int:
        mib = self.memory_mib if self.transferable_mib is None else min(self.transferable_mib, self.memory_mib)
        return max(1, mib) * MIB

    @property
    def working_set_bytes(self) -> int:
        if self.working_set_mib is None:
            return self.transferable_bytes
        return min(self.working_set_mib * MIB, self.transferable_bytes)


@dataclass
class DomainRecord:
    """A VM as one host holds it (a host may hold a VM's definition, its running copy, or both)."""

    state: DomainState
    reason: int
    persistent: bool

    def info(self, host_uri: str, spec: VmSpec) -> DomainInfo:
        active = self.state not in (DomainState.SHUTOFF, DomainState.ABSENT)
        return DomainInfo(host_uri, spec.name, spec.uuid, self.state, self.reason, active, self.persistent)


@dataclass
class HostState:
    spec: HostSpec
    daemon_up: bool = True
    domains: dict[str, DomainRecord] = field(default_factory=dict)  # VM name -> record
    volumes: dict[str, int] = field(default_factory=dict)  # path -> capacity bytes (non-shared pools)


def with_defaults(vm: VmSpec) -> VmSpec:
    """Fill a spec's derived defaults (UUID from the name, disk paths from the VM name)."""
    from dataclasses import replace

    disks = tuple(d if d.path else replace(d, path=f"{IMAGES}/{vm.name}-{d.target}.qcow2") for d in vm.disks)
    uuid = vm.uuid or str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"fleet-vm:{vm.name}"))
    return replace(vm, disks=disks, uuid=uuid)


# ----- XML the parsers read ---------------------------------------------------------------------------------


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _xml(root: etree._Element) -> str:
    return etree.tostring(root, encoding="unicode", pretty_print=True)


def capabilities_xml(host: HostSpec) -> str:
    """`virsh capabilities`: host CPU, one NUMA cell with all memory and CPUs, live migration, a KVM guest."""
    root = etree.Element("capabilities")
    h = _sub(root, "host")
    _sub(h, "uuid", str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"fleet-host:{host.name}")))
    cpu = _sub(h, "cpu")
    _sub(cpu, "arch", "x86_64")
    _sub(cpu, "model", host.cpu_model)
    _sub(cpu, "vendor", host.cpu_vendor)
    _sub(cpu, "topology", sockets="1", dies="1", cores=str(host.cpus), threads="1")
    for feature in host.cpu_features:
        _sub(cpu, "feature", name=feature)
    _sub(cpu, "pages", unit="KiB", size="4")
    mig = _sub(h, "migration_features")
    _sub(mig, "live")
    transports = _sub(mig, "uri_transports")
    _sub(transports, "uri_transport", "tcp")
    cells = _sub(_sub(h, "topology"), "cells", num="1")
    cell = _sub(cells, "cell", id="0")
    _sub(cell, "memory", str(host.memory_mib * 1024), unit="KiB")
    cpus = _sub(cell, "cpus", num=str(host.cpus))
    for i in range(host.cpus):
        _sub(cpus, "cpu", id=str(i), socket_id="0", die_id="0", core_id=str(i), siblings=str(i))
    guest = _sub(root, "guest")
    _sub(guest, "os_type", "hvm")
    arch = _sub(guest, "arch", name="x86_64")
    _sub(arch, "wordsize", "64")
    _sub(arch, "emulator", "/usr/bin/qemu-system-x86_64")
    _sub(arch, "machine", "pc-q35-7.2", maxCpus="288")
    _sub(arch, "domain", type="kvm")
    return _xml(root)


def domain_capabilities_xml(host: HostSpec) -> str:
    """`virsh domcapabilities`: the host-model CPU (this host's model) and the custom models it can run."""
    root = etree.Element("domainCapabilities")
    _sub(root, "path", "/usr/bin/qemu-system-x86_64")
    _sub(root, "domain", "kvm")
    _sub(root, "machine", "pc-q35-7.2")
    _sub(root, "arch", "x86_64")
    _sub(root, "vcpu", max="288")
    cpu = _sub(root, "cpu")
    _sub(cpu, "mode", name="host-passthrough", supported="yes")
    host_model = _sub(cpu, "mode", name="host-model", supported="yes")
    _sub(host_model, "model", host.cpu_model, fallback="forbid")
    _sub(host_model, "vendor", host.cpu_vendor)
    for feature in host.cpu_features:
        _sub(host_model, "feature", policy="require", name=feature)
    custom = _sub(cpu, "mode", name="custom", supported="yes")
    _sub(custom, "model", host.cpu_model, usable="yes")
    return _xml(root)


def cpu_xml(model: str, vendor: str) -> str:
    root = etree.Element("cpu", mode="custom", match="exact", check="partial")
    _sub(root, "model", model, fallback="forbid")
    _sub(root, "vendor", vendor)
    return _xml(root)


def domain_xml(vm: VmSpec, host: HostSpec) -> str:
    """`virsh dumpxml` of a plain KVM guest: memory, vCPUs, a custom CPU, file disks, NICs on networks."""
    root = etree.Element("domain", type="kvm")
    _sub(root, "name", vm.name)
    _sub(root, "uuid", vm.uuid)
    _sub(root, "memory", str(vm.memory_mib * 1024), unit="KiB")
    _sub(root, "currentMemory", str(vm.memory_mib * 1024), unit="KiB")
    _sub(root, "vcpu", str(vm.vcpus), placement="static")
    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc-q35-7.2")
    cpu = _sub(root, "cpu", mode="custom", match="exact", check="partial")
    _sub(cpu, "model", vm.cpu_model or host.cpu_model, fallback="forbid")
    devices = _sub(root, "devices")
    _sub(devices, "emulator", "/usr/bin/qemu-system-x86_64")
    for disk in vm.disks:
        d = _sub(devices, "disk", type="file", device="disk")
        _sub(d, "driver", name="qemu", type="qcow2", cache="none")
        _sub(d, "source", file=disk.path)
        _sub(d, "target", dev=disk.target, bus="virtio")
    for i, net in enumerate(vm.networks):
        nic = _sub(devices, "interface", type="network")
        _sub(nic, "mac", address=f"52:54:00:{vm.uuid[-6:-4]}:{vm.uuid[-4:-2]}:{(int(vm.uuid[-2:], 16) + i) % 256:02x}")
        _sub(nic, "source", network=net)
        _sub(nic, "model", type="virtio")
    _sub(devices, "memballoon", model="virtio")
    return _xml(root)
