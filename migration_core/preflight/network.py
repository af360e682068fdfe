"""Check 9: the networks and bridges the VM's NICs use exist on the destination; its ports are reachable."""

from __future__ import annotations

from migration_core.facts.devices import InterfaceFacts
from migration_core.facts.gathered import PortProbe, PreflightFacts
from migration_core.models import CheckResult, MigrationMode
from migration_core.preflight._common import (
    blocking,
    dest_name,
    failed,
    join,
    mode_of,
    passed,
    result,
    warned,
)

# How to open each port. The seed's prerequisites list 16509 as TLS and 16514 as TCP; libvirt's defaults
# are the other way round (16509 plain TCP, 16514 TLS), which is what is written here.
_PORT_FIX = {
    "migration": "open TCP 49152-49215 on {host} for the source host: QEMU sends memory and disks there (seed 12.4)",
    "libvirt-tcp": "open TCP 16509 on {host} and make libvirt listen on it (virtproxyd-tcp.socket, or "
    "libvirtd --listen)",
    "libvirt-tls": "open TCP 16514 on {host} and enable virtproxyd-tls.socket (or libvirtd --listen with TLS)",
    "ssh": "open TCP 22 on {host} and run sshd there (the qemu+ssh:// transport)",
}


def _source_of(i: InterfaceFacts, facts: PreflightFacts) -> tuple[str, str | None] | None:
    """(what, problem) for one NIC: problem is None when fine, "?" when it could not be checked."""
    if i.type == "bridge" and i.source_bridge:
        what = f"bridge {i.source_bridge}"
        if facts.destination_bridges is None:
            return what, "?"
        return what, None if i.source_bridge in facts.destination_bridges else "missing"
    if i.type == "network" and i.source_network:
        what = f"network {i.source_network}"
        if facts.destination_networks is None:
            return what, "?"
        net = next((n for n in facts.destination_networks if n.name == i.source_network), None)
        if net is None:
            return what, "missing"
        return what, None if net.active else "inactive"
    if i.type == "direct" and i.source_dev:
        what = f"host interface {i.source_dev} (macvtap)"
        if facts.destination_netdevs is None:
            return what, "?"
        return what, None if i.source_dev in facts.destination_netdevs else "missing"
    return None


def check_sources(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    vm, name, dest = facts.vm, "network", dest_name(facts)
    if vm is None:
        return ()
    if not vm.interfaces:
        return (passed(name, f"{vm.name} has no network interfaces to reconnect"),)
    found = [s for i in vm.interfaces if (s := _source_of(i, facts)) is not None]
    missing = [w for w, p in found if p == "missing"]
    inactive = [w for w, p in found if p == "inactive"]
    unknown = [w for w, p in found if p == "?"]
    out: list[CheckResult] = []
    if missing:
        out.append(
            result(
                name,
                blocking(facts),
                f"{dest} lacks {join(missing)}, used by {vm.name}'s NICs: they would have nothing to plug into",
                f"create {'it' if len(missing) == 1 else 'them'} on {dest} with the same name(s), attached "
                "to the same network segment as the source (a bridged VM needs both hosts on one network, "
                "seed 12.4)",
            )
        )
    if inactive:
        nets = [w.removeprefix("network ") for w in inactive]
        out.append(
            result(
                name,
                blocking(facts),
                f"{join(inactive)} {'is' if len(inactive) == 1 else 'are'} defined on {dest} but not active",
                f"on {dest}: {'; '.join(f'virsh net-start {n} && virsh net-autostart {n}' for n in nets)}",
            )
        )
    if unknown:
        out.append(warned(name, f"could not list {dest}'s networks and bridges; unchecked: {join(unknown)}"))
    if not out:
        used = [w for w, _ in found] or ["no bridges or libvirt networks"]
        out.append(
            passed(
                name,
                f"{dest} has {join(used)}; bridged NICs must reach the same network segment there (seed 12.4)",
            )
        )
    return tuple(out)


def _describe(p: PortProbe) -> str:
    ports = "49152-49215" if p.what == "migration" else str(p.port)
    return f"{p.what} port {ports} on {p.host} (from {p.origin}{': ' + p.detail if p.detail else ''})"


def check_ports(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    name = "network.ports"
    live = mode_of(facts) is MigrationMode.LIVE
    probes = [p for p in facts.probes if live or p.what != "migration"]
    if not probes:
        return (
            warned(
                name,
                f"no port probes ran, so reachability of {dest_name(facts)}'s libvirt and migration ports is unchecked",
                "configure an SSH target for the source host so the bot can probe from there",
            ),
        )
    out: list[CheckResult] = []
    for p in probes:
        if p.ok is False:
            fix = _PORT_FIX.get(p.what, "open the port on {host}").format(host=p.host)
            out.append(failed(name, f"cannot reach {_describe(p)}", fix))
    untested = [p for p in probes if p.ok is None]
    if untested:
        out.append(warned(name, f"not probed: {join(_describe(p) for p in untested)}"))
    if not out:
        out.append(passed(name, f"reachable: {join(_describe(p) for p in probes)}"))
    return tuple(out)
