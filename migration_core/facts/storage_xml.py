"""Storage-pool, volume, host-interface and network node-device XML -> small typed facts (lxml, no regexes).

The libvirt adapter's storage part hands libvirt's XML here; what comes back is what the port reports
(hypervisor.types.PoolInfo, VolumeInfo, InterfaceInfo). Pure, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from migration_core.facts.xmlutil import attr, parse_xml, text


@dataclass(frozen=True)
class PoolXml:
    """What a `<pool>` document says about where the pool keeps its volumes."""

    pool_type: str  # "dir", "netfs", "logical", ... ("unknown" when the document has none)
    target_path: str | None


def parse_pool(xml: str | bytes) -> PoolXml:
    """`virsh pool-dumpxml`: <pool type='dir'>...<target><path>/var/lib/libvirt/images</path></target></pool>."""
    root = parse_xml(xml, "storage pool XML")
    path = text(root, "target/path")
    return PoolXml(root.get("type") or "unknown", path.strip() if path else None)


def volume_format(xml: str | bytes) -> str | None:
    """`virsh vol-dumpxml`: the image format (<target><format type='qcow2'/>), None when not stated."""
    return attr(parse_xml(xml, "storage volume XML"), "target/format", "type")


def volume_ctime(xml: str | bytes) -> float | None:
    """`virsh vol-dumpxml` of a file volume: <timestamps><ctime>1796398883.623909015</ctime> (the HOST's clock,
    seconds since the epoch; mtime when ctime is absent). None when the pool type gives no timestamps."""
    root = parse_xml(xml, "storage volume XML")
    for tag in ("ctime", "mtime"):
        value = text(root, f"target/timestamps/{tag}")
        if value:
            try:
                seconds = float(value)
            except ValueError:
                continue
            if seconds > 0:
                return seconds
    return None


def interface_kind(xml: str | bytes) -> str:
    """`virsh iface-dumpxml`: the interface's type (ethernet, bridge, bond, vlan), "unknown" when absent."""
    return parse_xml(xml, "host interface XML").get("type") or "unknown"


def nodedev_interface(xml: str | bytes) -> str | None:
    """`virsh nodedev-dumpxml` of a net device: the kernel interface name (<capability type='net'>)."""
    root = parse_xml(xml, "node device XML")
    for cap in root.findall("capability"):
        if cap.get("type") == "net":
            name = text(cap, "interface")
            return name.strip() if name else None
    return None
