"""Small lxml helpers shared by the XML parsers: safe parsing, units, cpusets, PCI addresses."""

from __future__ import annotations

from lxml import etree

from migration_core.errors import PreflightError

# No entity expansion, no network: the XML comes from libvirt, but a parser should not trust it blindly.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)

# libvirt's scaled-integer units (docs: formatdomain "memory" unit attribute). Lower-case keys.
_UNITS = {
    "b": 1,
    "bytes": 1,
    "kb": 1000,
    "k": 1024,
    "kib": 1024,
    "mb": 1000**2,
    "m": 1024**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "g": 1024**3,
    "gib": 1024**3,
    "tb": 1000**4,
    "t": 1024**4,
    "tib": 1024**4,
    "pb": 1000**5,
    "p": 1024**5,
    "pib": 1024**5,
    "eb": 1000**6,
    "e": 1024**6,
    "eib": 1024**6,
}


def parse_xml(xml: str | bytes, what: str, *, root: str | None = None, call: str = "") -> etree._Element:
    """Parse XML text or raise PreflightError naming `what` ("domain XML of vm42"). With `root`, a document whose
    root element is another is refused too, naming the libvirt `call` whose output was expected."""
    data = xml.encode() if isinstance(xml, str) else xml
    try:
        doc = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise PreflightError(
            f"could not parse the {what}: {exc}",
            "this XML comes from libvirt; check the libvirt version and report the XML with the error",
        ) from exc
    if doc is None:
        raise PreflightError(f"the {what} is empty", "check that libvirt answered with a document")
    if root is not None and doc.tag != root:
        raise PreflightError(f"expected a <{root}> document, got <{doc.tag}>", f"pass the output of {call}")
    return doc


def text(el: etree._Element | None, path: str) -> str | None:
    """Stripped text of the first element at `path` under `el`, or None."""
    if el is None:
        return None
    found = el.find(path)
    if found is None or found.text is None:
        return None
    value = found.text.strip()
    return value or None


def attr(el: etree._Element | None, path: str, name: str) -> str | None:
    """Attribute `name` of the first element at `path` under `el` (`path="."` for `el` itself), or None."""
    if el is None:
        return None
    found = el if path == "." else el.find(path)
    if found is None:
        return None
    value = found.get(name)
    return value if value is None else value.strip()


def to_int(value: str | None, default: int | None = None) -> int | None:
    """Integer from decimal or 0x-hex text; `default` when absent or malformed."""
    if value is None:
        return default
    try:
        return int(value, 0) if value.lower().startswith("0x") else int(value)
    except ValueError:
        return default


def to_bytes(value: str | None, unit: str | None, default_unit: str = "KiB") -> int | None:
    """A libvirt scaled integer (`<memory unit='MiB'>256</memory>`) in bytes; None when malformed.

    >>> to_bytes("256", "MiB"), to_bytes("2097152", None)
    (268435456, 2147483648)
    """
    number = to_int(value)
    if number is None:
        return None
    factor = _UNITS.get((unit or default_unit).lower())
    return None if factor is None else number * factor


def yes(value: str | None) -> bool:
    return value is not None and value.lower() in ("yes", "on", "true", "1")


def parse_cpuset(spec: str | None) -> frozenset[int]:
    """libvirt cpuset syntax -> CPU ids; malformed parts are ignored (the check then sees fewer CPUs).

    >>> sorted(parse_cpuset("0-3,^2,8"))
    [0, 1, 3, 8]
    """
    if not spec:
        return frozenset()
    chosen: set[int] = set()
    excluded: set[int] = set()
    for raw in spec.split(","):
        part = raw.strip()
        target = chosen
        if part.startswith("^"):
            target, part = excluded, part[1:]
        lo, sep, hi = part.partition("-")
        try:
            if sep:
                target.update(range(int(lo), int(hi) + 1))
            elif part:
                target.add(int(part))
        except ValueError:
            continue
    return frozenset(chosen - excluded)


def pci_address(el: etree._Element | None) -> str | None:
    """`<address domain='0x0000' bus='0xe1' slot='0x00' function='0x1'/>` -> `0000:e1:00.1`."""
    if el is None:
        return None
    parts = [to_int(el.get(k)) for k in ("domain", "bus", "slot", "function")]
    dom, bus, slot, fn = parts
    if bus is None or slot is None or fn is None:
        return None
    return f"{dom or 0:04x}:{bus:02x}:{slot:02x}.{fn:x}"


def element_xml(el: etree._Element) -> str:
    """An element serialised on its own (used for the raw `<cpu>` that compareHypervisorCPU takes)."""
    return etree.tostring(el, encoding="unicode", with_tail=False)
