"""Host capabilities, domain capabilities and node-device XML -> typed facts (lxml, pure)."""

from __future__ import annotations

import copy

from lxml import etree

from migration_core.errors import PreflightError
from migration_core.facts.devices import (
    MdevFacts,
    PciDeviceInfo,
)
from migration_core.facts.host import (
    CpuModelInfo,
    DomainCapsFacts,
    GuestArch,
    GuestMachine,
    HostCpu,
    HostFacts,
    HostNumaCell,
    HugepagePool,
)
from migration_core.facts.xmlutil import attr, parse_cpuset, parse_xml, pci_address, text, to_bytes, to_int, yes


def parse_capabilities(xml: str | bytes) -> HostFacts:
    """`conn.getCapabilities()` -> HostFacts (without the adapter-only fields, which stay None)."""
    root = parse_xml(xml, "host capabilities XML", root="capabilities", call="virConnectGetCapabilities")
    host = root.find("host")
    cpu_el = None if host is None else host.find("cpu")
    cpu = HostCpu(
        arch=text(cpu_el, "arch"),
        model=text(cpu_el, "model"),
        vendor=text(cpu_el, "vendor"),
        features=frozenset(f.get("name") or "" for f in ([] if cpu_el is None else cpu_el.findall("feature"))),
        sockets=to_int(attr(cpu_el, "topology", "sockets")),
        dies=to_int(attr(cpu_el, "topology", "dies")),
        cores=to_int(attr(cpu_el, "topology", "cores")),
        threads=to_int(attr(cpu_el, "topology", "threads")),
    )
    page_sizes = tuple(
        size for p in ([] if cpu_el is None else cpu_el.findall("pages")) if (size := _kib(p)) is not None
    )
    iommu = attr(host, "iommu", "support")
    migration = None if host is None else host.find("migration_features")
    return HostFacts(
        uuid=(text(host, "uuid") or "").lower() or None,
        arch=cpu.arch,
        cpu=cpu,
        cells=tuple(_cell(c) for c in ([] if host is None else host.findall("topology/cells/cell"))),
        page_sizes_kib=page_sizes,
        iommu_supported=None if iommu is None else yes(iommu),
        security_models=tuple(m for s in ([] if host is None else host.findall("secmodel")) if (m := text(s, "model"))),
        live_migration=migration is not None and migration.find("live") is not None,
        uri_transports=tuple(
            t.text.strip()
            for t in ([] if migration is None else migration.findall("uri_transports/uri_transport"))
            if t.text and t.text.strip()
        ),
        guests=tuple(g for el in root.findall("guest") for g in _guests(el)),
    )


def _kib(pages: etree._Element) -> int | None:
    size = to_bytes(pages.get("size"), pages.get("unit"))
    return None if size is None else size // 1024


def _cell(el: etree._Element) -> HostNumaCell:
    cell_id = to_int(el.get("id"), 0) or 0
    pools = tuple(
        HugepagePool(size_kib=size, total_pages=to_int(p.text, 0) or 0, cell=cell_id)
        for p in el.findall("pages")
        if (size := _kib(p)) is not None
    )
    cpu_ids = tuple(sorted(i for c in el.findall("cpus/cpu") if (i := to_int(c.get("id"))) is not None))
    return HostNumaCell(
        id=cell_id,
        memory_bytes=to_bytes(text(el, "memory"), attr(el, "memory", "unit")) or 0,
        cpu_ids=cpu_ids,
        pages=pools,
    )


def _guests(el: etree._Element) -> list[GuestArch]:
    os_type = text(el, "os_type") or "?"
    out = []
    for arch in el.findall("arch"):
        machines = tuple(
            GuestMachine(
                name=m.text.strip(),
                canonical=m.get("canonical"),
                max_cpus=to_int(m.get("maxCpus")),
                deprecated=yes(m.get("deprecated")),
            )
            for m in arch.findall("machine")
            if m.text and m.text.strip()
        )
        domain_types = tuple(t for d in arch.findall("domain") if (t := d.get("type")))
        out.append(
            GuestArch(
                os_type=os_type,
                arch=arch.get("name") or "?",
                emulator=text(arch, "emulator"),
                machines=machines,
                domain_types=domain_types,
            )
        )
    return out


def parse_domain_capabilities(xml: str | bytes) -> DomainCapsFacts:
    """`conn.getDomainCapabilities(emulator, arch, machine, virttype)` -> DomainCapsFacts."""
    root = parse_xml(xml, "domain capabilities XML", root="domainCapabilities", call="virConnectGetDomainCapabilities")
    modes = root.findall("cpu/mode")
    supported = frozenset(m.get("name") or "" for m in modes if yes(m.get("supported")))
    host_model = next((m for m in modes if m.get("name") == "host-model"), None)
    custom = next((m for m in modes if m.get("name") == "custom"), None)
    devices = root.find("devices")
    hostdev = None if devices is None else devices.find("hostdev")
    iommu = None if devices is None else devices.find("iommu")
    features = root.find("features")
    return DomainCapsFacts(
        path=text(root, "path"),
        domain_type=text(root, "domain"),
        machine=text(root, "machine"),
        arch=text(root, "arch"),
        max_vcpus=to_int(attr(root, "vcpu", "max")),
        cpu_modes=supported,
        host_model=text(host_model, "model"),
        host_model_vendor=text(host_model, "vendor"),
        host_model_features=tuple(
            f.get("name") or ""
            for f in ([] if host_model is None else host_model.findall("feature"))
            if f.get("policy") in (None, "require")
        ),
        custom_models=tuple(
            CpuModelInfo(
                name=m.text.strip(),
                usable=None if m.get("usable") in (None, "unknown") else yes(m.get("usable")),
                vendor=m.get("vendor"),
            )
            for m in ([] if custom is None else custom.findall("model"))
            if m.text and m.text.strip()
        ),
        hostdev_supported=None if hostdev is None else yes(hostdev.get("supported")),
        hostdev_subsys_types=_enum(hostdev, "subsysType"),
        iommu_supported=None if iommu is None else yes(iommu.get("supported")),
        iommu_models=_enum(iommu, "model"),
        filesystem_drivers=_enum(None if devices is None else devices.find("filesystem"), "driverType"),
        tpm_backends=_enum(None if devices is None else devices.find("tpm"), "backendModel"),
        features=frozenset(
            f.tag for f in ([] if features is None else features) if isinstance(f.tag, str) and yes(f.get("supported"))
        ),
    )


def _enum(el: etree._Element | None, name: str) -> frozenset[str]:
    if el is None:
        return frozenset()
    for e in el.findall("enum"):
        if e.get("name") == name:
            return frozenset(v.text.strip() for v in e.findall("value") if v.text and v.text.strip())
    return frozenset()


def parse_pci_nodedev(xml: str | bytes) -> PciDeviceInfo:
    """`virsh nodedev-dumpxml pci_0000_e1_00_1` -> PciDeviceInfo (vendor, product, driver, PF if a VF)."""
    root, cap = _node_capability(xml, "node device XML", "pci", "a PCI device", "a pci_* node device")
    address = pci_address(_pci_address_el(cap)) or "?"
    pf = next((c for c in cap.findall("capability") if c.get("type") == "phys_function"), None)
    return PciDeviceInfo(
        address=address,
        vendor_id=attr(cap, "vendor", "id"),
        vendor_name=text(cap, "vendor"),
        product_id=attr(cap, "product", "id"),
        product_name=text(cap, "product"),
        driver=text(root, "driver/name"),
        physical_function=None if pf is None else pci_address(pf.find("address")),
        iommu_group=to_int(attr(cap, "iommuGroup", "number")),
    )


def _node_capability(
    xml: str | bytes, what: str, kind: str, is_a: str, expected: str
) -> tuple[etree._Element, etree._Element]:
    """A node device's document and its `<capability type=kind>`; a device of another kind is refused (the
    caller passed the wrong device's XML), naming what it is not (`is_a`) and what was `expected`."""
    root = parse_xml(xml, what)
    cap = next((c for c in root.findall("capability") if c.get("type") == kind), None)
    if cap is None:
        raise PreflightError(f"node device {text(root, 'name') or '?'} is not {is_a}", f"pass the XML of {expected}")
    return root, cap


def _pci_address_el(cap: etree._Element) -> etree._Element:
    """Build an <address> element from the decimal <domain>/<bus>/<slot>/<function> children."""
    el = etree.Element("address")
    for key in ("domain", "bus", "slot", "function"):
        value = text(cap, key)
        if value is not None:
            el.set(key, value)
    return el


def parse_mdev_nodedev(xml: str | bytes) -> MdevFacts:
    """`virsh nodedev-dumpxml mdev_<uuid>...` -> MdevFacts with the type (e.g. `nvidia-63`) and parent."""
    root, cap = _node_capability(xml, "mediated device XML", "mdev", "a mediated device", "an mdev_* device")
    uuid = text(cap, "uuid") or _uuid_from_name(text(root, "name"))
    return MdevFacts(
        uuid=(uuid or "?").lower(),
        type_id=attr(cap, "type", "id"),
        type_name=text(cap, "type"),
        parent=text(root, "parent"),
    )


def _uuid_from_name(name: str | None) -> str | None:
    """Older libvirt names mdevs `mdev_<uuid with underscores>`; recover the UUID from it."""
    if not name or not name.startswith("mdev_"):
        return None
    parts = name[len("mdev_") :].split("_")
    return "-".join(parts[:5]) if len(parts) >= 5 else None


def cpu_model_of(xml: str | None) -> str | None:
    """The `<model>` of a `<cpu>` document (e.g. the baseline CPU), or None; never raises."""
    if not xml:
        return None
    try:
        root = parse_xml(xml, "CPU XML")
    except PreflightError:
        return None
    cpu = root if root.tag == "cpu" else root.find(".//cpu")
    return text(cpu, "model")


# Cpusets are parsed by checks too; keep the helper importable from here for symmetry with the caps parser.
__all__ = [
    "cpu_model_of",
    "host_cpu_xml",
    "host_model_cpu_xml",
    "parse_capabilities",
    "parse_cpuset",
    "parse_domain_capabilities",
    "parse_mdev_nodedev",
    "parse_pci_nodedev",
]


def host_model_cpu_xml(domain_capabilities_xml: str | bytes) -> str | None:
    """The host-model CPU of domain capabilities as a `<cpu>` document, for baselineHypervisorCPU; None when
    the hypervisor offers no host-model CPU or the XML does not parse.

    This is seed 12.9's input (`virsh domcapabilities`, the `<mode name='host-model'>` section with its
    tags renamed to `<cpu>`): what the hypervisor can give a guest. The `<host><cpu>` of plain capabilities
    describes the physical CPU, which may offer far more than KVM passes on (in the lab, avx512 and 60 other
    features QEMU cannot use), so a baseline computed from it is not runnable on either host.
    """
    try:
        root = parse_xml(domain_capabilities_xml, "domain capabilities XML")
    except PreflightError:
        return None
    mode = root.find("cpu/mode[@name='host-model']")
    if mode is None or not yes(mode.get("supported")) or mode.find("model") is None:
        return None
    cpu = etree.Element("cpu")
    cpu.extend(copy.deepcopy(child) for child in mode if isinstance(child.tag, str))
    return etree.tostring(cpu, encoding="unicode")


def host_cpu_xml(capabilities_xml: str | bytes) -> str | None:
    """The host's `<cpu>` element from capabilities XML, as baselineHypervisorCPU wants it; None if absent."""
    try:
        root = parse_xml(capabilities_xml, "host capabilities XML")
    except PreflightError:
        return None
    cpu = root.find("host/cpu")
    if cpu is None:
        return None
    return etree.tostring(cpu, encoding="unicode")
