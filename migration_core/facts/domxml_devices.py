"""Device parts of the domain XML -> typed facts: NICs, assigned host devices (incl. SR-IOV VFs), mdevs."""

from __future__ import annotations

from lxml import etree

from migration_core.facts.devices import (
    GraphicsFacts,
    HostdevFacts,
    InterfaceFacts,
    IommuFacts,
    MdevFacts,
)
from migration_core.facts.xmlutil import attr, pci_address, yes


def _all(parent: etree._Element | None, tag: str) -> list[etree._Element]:
    return [] if parent is None else parent.findall(tag)


def parse_interface(el: etree._Element) -> InterfaceFacts:
    src = el.find("source")
    return InterfaceFacts(
        type=el.get("type") or "?",
        mac=attr(el, "mac", "address"),
        model=attr(el, "model", "type"),
        source_bridge=None if src is None else src.get("bridge"),
        source_network=None if src is None else src.get("network"),
        source_dev=None if src is None else src.get("dev"),
        source_mode=None if src is None else src.get("mode"),
        portgroup=None if src is None else src.get("portgroup"),
        virtualport=attr(el, "virtualport", "type"),
        teaming=attr(el, "teaming", "type"),
    )


def parse_hostdevs(devices: etree._Element | None) -> tuple[tuple[HostdevFacts, ...], tuple[MdevFacts, ...]]:
    hostdevs: list[HostdevFacts] = []
    mdevs: list[MdevFacts] = []
    for el in _all(devices, "hostdev"):
        kind = el.get("type") or el.get("mode") or "?"
        if kind == "mdev":
            uuid = attr(el, "source/address", "uuid") or "?"
            mdevs.append(MdevFacts(uuid=uuid.lower(), model=el.get("model"), display=yes(el.get("display"))))
            continue
        hostdevs.append(
            HostdevFacts(
                type=kind if el.get("mode", "subsystem") == "subsystem" else f"capabilities/{kind}",
                address=_hostdev_address(kind, el.find("source")),
                managed=yes(el.get("managed")),
                driver=attr(el, "driver", "name"),
                driver_model=attr(el, "driver", "model"),
                teaming=attr(el, "teaming", "type"),
            )
        )
    # <interface type='hostdev'> is an assigned PCI device too (SR-IOV VF as a NIC, seed 12.6).
    for el in _all(devices, "interface"):
        if el.get("type") != "hostdev":
            continue
        hostdevs.append(
            HostdevFacts(
                type="pci",
                address=pci_address(el.find("source/address")) or "?",
                managed=yes(el.get("managed")),
                driver=attr(el, "driver", "name"),
                driver_model=attr(el, "driver", "model"),
                via_interface=True,
                mac=attr(el, "mac", "address"),
                teaming=attr(el, "teaming", "type"),
            )
        )
    return tuple(hostdevs), tuple(mdevs)


def _hostdev_address(kind: str, source: etree._Element | None) -> str:
    if source is None:
        return "?"
    if kind == "pci":
        return pci_address(source.find("address")) or "?"
    if kind == "usb":
        vendor, product = attr(source, "vendor", "id"), attr(source, "product", "id")
        if vendor and product:
            return f"usb {vendor.removeprefix('0x')}:{product.removeprefix('0x')}"
        return f"usb bus {attr(source, 'address', 'bus')} device {attr(source, 'address', 'device')}"
    adapter = attr(source, "adapter", "name") or source.get("wwpn") or "?"
    return f"{kind} {adapter}"


def parse_iommu(devices: etree._Element | None) -> IommuFacts | None:
    el = None if devices is None else devices.find("iommu")
    if el is None:
        return None
    return IommuFacts(
        model=el.get("model") or "?",
        intremap=yes(attr(el, "driver", "intremap")),
        caching_mode=yes(attr(el, "driver", "caching_mode")),
    )


def parse_graphics(el: etree._Element) -> GraphicsFacts:
    addresses = [a.get("address") for a in el.findall("listen") if a.get("address")]
    if not addresses and el.get("listen"):
        addresses = [el.get("listen")]
    return GraphicsFacts(type=el.get("type") or "?", listen_addresses=tuple(a for a in addresses if a))
