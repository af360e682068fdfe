"""Domain XML -> VmFacts (lxml, pure). Host and domain capabilities and node devices are in domxml_host.py.

Parse once, into typed facts; the checks never touch XML. Parsing is lenient about *content* (an unknown
element or a missing attribute gives a None field, never an exception) and strict only about *syntax*
(malformed XML raises PreflightError with the reason).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from lxml import etree

from migration_core.errors import PreflightError
from migration_core.facts.devices import (
    FilesystemFacts,
    MdevFacts,
    PciDeviceInfo,
    ShmemFacts,
    TpmFacts,
)
from migration_core.facts.domxml_devices import parse_graphics, parse_hostdevs, parse_interface, parse_iommu
from migration_core.facts.domxml_host import (
    cpu_model_of,
    parse_capabilities,
    parse_domain_capabilities,
    parse_mdev_nodedev,
    parse_pci_nodedev,
)
from migration_core.facts.metadata import parse_placement_metadata
from migration_core.facts.vm import (
    BackingLayer,
    CpuFacts,
    CpuFeature,
    DiskFacts,
    DiskSource,
    DiskSourceKind,
    GuestNumaCell,
    HugepageRequest,
    MemNode,
    MemoryBackingFacts,
    NetworkHost,
    PinningFacts,
    VcpuPin,
    VmFacts,
)
from migration_core.facts.xmlutil import (
    attr,
    element_xml,
    parse_cpuset,
    parse_xml,
    text,
    to_bytes,
    to_int,
    yes,
)

__all__ = [
    "attach_host_device_info",
    "cpu_model_of",
    "parse_capabilities",
    "parse_cpuset",
    "parse_domain",
    "parse_domain_capabilities",
    "parse_mdev_nodedev",
    "parse_pci_nodedev",
]


def parse_domain(xml: str | bytes) -> VmFacts:
    """Domain XML (`dom.XMLDesc()`, ideally with VIR_DOMAIN_XML_MIGRATABLE) -> VmFacts."""
    root = parse_xml(xml, "domain XML", root="domain", call="virDomainGetXMLDesc")
    name = text(root, "name")
    if name is None:
        raise PreflightError("the domain XML has no <name>", "pass the output of virDomainGetXMLDesc")
    memory = to_bytes(text(root, "memory"), attr(root, "memory", "unit")) or 0
    current = to_bytes(text(root, "currentMemory"), attr(root, "currentMemory", "unit")) or memory
    max_vcpus = to_int(text(root, "vcpu"), 1) or 1
    devices = root.find("devices")
    hostdevs, mdevs = parse_hostdevs(devices)
    return VmFacts(
        name=name,
        uuid=(text(root, "uuid") or "").lower(),
        domain_type=root.get("type") or "kvm",
        arch=attr(root, "os/type", "arch"),
        machine=attr(root, "os/type", "machine"),
        os_type=text(root, "os/type"),
        memory_bytes=memory,
        current_memory_bytes=current,
        max_memory_bytes=to_bytes(text(root, "maxMemory"), attr(root, "maxMemory", "unit")),
        vcpus=to_int(attr(root, "vcpu", "current"), max_vcpus) or max_vcpus,
        max_vcpus=max_vcpus,
        emulator=text(devices, "emulator"),
        cpu=_cpu(root.find("cpu")),
        disks=tuple(_disk(d) for d in _all(devices, "disk")),
        interfaces=tuple(parse_interface(i) for i in _all(devices, "interface") if i.get("type") != "hostdev"),
        hostdevs=hostdevs,
        mdevs=mdevs,
        iommu=parse_iommu(devices),
        pinning=_pinning(root),
        memory_backing=_memory_backing(root.find("memoryBacking")),
        tpms=tuple(
            TpmFacts(t.get("model"), attr(t, "backend", "type"), attr(t, "backend", "version"))
            for t in _all(devices, "tpm")
        ),
        graphics=tuple(parse_graphics(g) for g in _all(devices, "graphics")),
        filesystems=tuple(
            FilesystemFacts(attr(f, "driver", "type"), attr(f, "source", "dir"), attr(f, "target", "dir"))
            for f in _all(devices, "filesystem")
        ),
        shmems=tuple(ShmemFacts(s.get("name") or "?", s.get("role")) for s in _all(devices, "shmem")),
        tsc_frequency_hz=_tsc_frequency(root),
        launch_security=attr(root, "launchSecurity", "type"),
        anti_affinity_groups=parse_placement_metadata(root).anti_affinity_groups,
    )


def attach_host_device_info(
    vm: VmFacts,
    pci: Mapping[str, PciDeviceInfo] | None = None,
    mdev: Mapping[str, MdevFacts] | None = None,
    devlink_migratable: Mapping[str, bool] | None = None,
) -> VmFacts:
    """Merge what the adapter learned on the source host into the VM's device facts.

    `pci` is keyed by PCI address (`0000:e1:00.1`, from `parse_pci_nodedev`), `mdev` by mdev UUID (from
    `parse_mdev_nodedev`), `devlink_migratable` by VF PCI address (`devlink port function show` ->
    `migratable enabled`). Unknown keys are ignored.
    """
    pci, mdev, devlink_migratable = pci or {}, mdev or {}, devlink_migratable or {}
    hostdevs = tuple(
        replace(
            h,
            host=pci.get(h.address, h.host),
            devlink_migratable=devlink_migratable.get(h.address, h.devlink_migratable),
        )
        for h in vm.hostdevs
    )
    mdevs = tuple(
        replace(m, type_id=info.type_id, type_name=info.type_name, parent=info.parent)
        if (info := mdev.get(m.uuid))
        else m
        for m in vm.mdevs
    )
    return replace(vm, hostdevs=hostdevs, mdevs=mdevs)


def _all(parent: etree._Element | None, tag: str) -> list[etree._Element]:
    return [] if parent is None else parent.findall(tag)


def _cpu(el: etree._Element | None) -> CpuFacts:
    if el is None:
        return CpuFacts()
    migratable = el.get("migratable")
    cells = tuple(
        GuestNumaCell(
            id=to_int(c.get("id"), i) or 0,
            cpus=c.get("cpus") or "",
            memory_bytes=to_bytes(c.get("memory"), c.get("unit")) or 0,
        )
        for i, c in enumerate(el.findall("numa/cell"))
    )
    return CpuFacts(
        mode=el.get("mode") or ("custom" if el.find("model") is not None else None),
        match=el.get("match"),
        check=el.get("check"),
        model=text(el, "model"),
        fallback=attr(el, "model", "fallback"),
        vendor=text(el, "vendor"),
        migratable=None if migratable is None else yes(migratable),
        features=tuple(CpuFeature(f.get("name") or "?", f.get("policy")) for f in el.findall("feature")),
        numa_cells=cells,
        xml=element_xml(el),
    )


def _source_kind(value: str | None) -> DiskSourceKind:
    try:
        return DiskSourceKind(value or "file")
    except ValueError:
        return DiskSourceKind.OTHER


def _source(kind_attr: str | None, el: etree._Element | None) -> DiskSource:
    """The `<source>` of a disk or backing layer, read by the element's `type`: file/dir path, block dev,
    network, volume."""
    kind = _source_kind(kind_attr)
    if el is None:
        return DiskSource(kind)
    if kind is DiskSourceKind.NETWORK:
        hosts = tuple(
            NetworkHost(h.get("name") or h.get("socket") or "?", to_int(h.get("port")), h.get("transport"))
            for h in el.findall("host")
        )
        return DiskSource(kind, protocol=el.get("protocol"), name=el.get("name"), hosts=hosts)
    if kind is DiskSourceKind.VOLUME:
        return DiskSource(kind, pool=el.get("pool"), volume=el.get("volume"))
    return DiskSource(kind, path=el.get("file") or el.get("dev") or el.get("dir") or el.get("path"))


def _backing_chain(disk: etree._Element) -> tuple[BackingLayer, ...]:
    chain: list[BackingLayer] = []
    layer = disk.find("backingStore")
    # The chain ends with an empty <backingStore/>; bound the walk so a pathological document cannot loop.
    while layer is not None and layer.get("type") is not None and len(chain) < 64:
        src = _source(layer.get("type"), layer.find("source"))
        chain.append(BackingLayer(src, format=attr(layer, "format", "type")))
        layer = layer.find("backingStore")
    return tuple(chain)


def _disk(el: etree._Element) -> DiskFacts:
    return DiskFacts(
        target=attr(el, "target", "dev") or "?",
        device=el.get("device") or "disk",
        bus=attr(el, "target", "bus"),
        source=_source(el.get("type"), el.find("source")),
        format=attr(el, "driver", "type"),
        cache=attr(el, "driver", "cache"),
        readonly=el.find("readonly") is not None,
        shareable=el.find("shareable") is not None,
        transient=el.find("transient") is not None,
        backing_chain=_backing_chain(el),
    )


def _pinning(root: etree._Element) -> PinningFacts:
    cputune, numatune = root.find("cputune"), root.find("numatune")
    pins = tuple(
        VcpuPin(to_int(p.get("vcpu"), 0) or 0, p.get("cpuset") or "")
        for p in ([] if cputune is None else cputune.findall("vcpupin"))
    )
    memnodes = tuple(
        MemNode(to_int(m.get("cellid"), 0) or 0, m.get("mode"), m.get("nodeset") or "")
        for m in ([] if numatune is None else numatune.findall("memnode"))
    )
    return PinningFacts(
        vcpu_placement=attr(root, "vcpu", "placement"),
        vcpu_cpuset=attr(root, "vcpu", "cpuset"),
        vcpupins=pins,
        emulatorpin=attr(cputune, "emulatorpin", "cpuset"),
        numatune_mode=attr(numatune, "memory", "mode"),
        numatune_nodeset=attr(numatune, "memory", "nodeset"),
        numatune_placement=attr(numatune, "memory", "placement"),
        memnodes=memnodes,
    )


def _memory_backing(el: etree._Element | None) -> MemoryBackingFacts:
    if el is None:
        return MemoryBackingFacts()
    huge = el.find("hugepages")
    pages: tuple[HugepageRequest, ...] = ()
    if huge is not None:
        listed = tuple(
            HugepageRequest(size_kib=_kib(to_bytes(p.get("size"), p.get("unit"))), nodeset=p.get("nodeset"))
            for p in huge.findall("page")
        )
        pages = listed or (HugepageRequest(),)
    return MemoryBackingFacts(
        hugepages=pages,
        locked=el.find("locked") is not None,
        source_type=attr(el, "source", "type"),
        access_mode=attr(el, "access", "mode"),
    )


def _kib(size_bytes: int | None) -> int | None:
    return None if size_bytes is None else size_bytes // 1024


def _tsc_frequency(root: etree._Element) -> int | None:
    for timer in root.findall("clock/timer"):
        if timer.get("name") == "tsc" and timer.get("frequency"):
            return to_int(timer.get("frequency"))
    return None
