"""Network namespaces, the migration network (a switch bridge; shaped with tc tbf, cut with link down), storage and VM
bridges."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import (
    ALL_NETNS,
    HOST_A,
    HOSTS,
    LINK_BRIDGE,
    NETNS_STORAGE,
    NETNS_SWITCH,
    ONLY_A_BRIDGE,
    STORAGE_BRIDGE,
    STORAGE_IP,
    STORAGE_PREFIX,
    VM_BRIDGE,
    VM_SWITCH_BRIDGE,
    HostSpec,
)
from .proc import LabError, run

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z/]*)\s*$")
# Bytes per second for each accepted unit; a bare number is MiB/s (the bot's unit for bandwidth).
_UNITS = {
    "": 2**20,
    "m": 2**20,
    "mib": 2**20,
    "mib/s": 2**20,
    "mb": 10**6,
    "mb/s": 10**6,
    "k": 2**10,
    "kib": 2**10,
    "kib/s": 2**10,
    "kb": 10**3,
    "kb/s": 10**3,
    "g": 2**30,
    "gib": 2**30,
    "gib/s": 2**30,
    "gb": 10**9,
    "gb/s": 10**9,
    "mbit": 10**6 // 8,
    "kbit": 10**3 // 8,
    "gbit": 10**9 // 8,
}


def parse_rate(text: str) -> int:
    """'16MiB' / '16' / '128mbit' / '1.5GiB' -> bytes per second."""
    m = _RATE.match(text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise LabError(f"cannot read the rate {text!r}: use e.g. 16MiB, 16 (MiB/s), 128mbit, 1GiB")
    value = int(float(m.group(1)) * _UNITS[unit])
    if value < 8 * 1024:
        raise LabError(f"rate {text!r} is below 8 KiB/s; use `lab link down` to cut the link")
    return value


def ip(*args: str) -> None:
    run(["ip", *args], timeout_s=20)


def netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


# The management link: the bot (root namespace) reaches the lab network through hostA, the way a real bot
# reaches hypervisors over a management network. Without it, root-namespace traffic to 10.213.7.x would
# follow the default route off the machine; with it, preflight's port probes (and any qemu+tcp client in
# the root namespace) stay inside the lab. Deleting the namespaces removes the veth and its route.
MGMT_DEV = "kvl-mgmt"
MGMT_PEER_DEV = "kvl-mgmt-a"
MGMT_ROOT_IP = "10.213.9.1"
MGMT_LAB_IP = "10.213.9.2"
MGMT_PREFIX = 30
MGMT_NET = "10.213.9.0/30"


def _veth(dev: str, netns: str, peer: str, peer_netns: str) -> None:
    """A veth with each end created directly in its namespace (nothing lands in the root namespace)."""
    ip("link", "add", dev, "netns", netns, "type", "veth", "peer", "name", peer, "netns", peer_netns)


def create_network() -> None:
    """Namespaces, the switch (migration + VM bridges), the storage bridge, each host's VM bridge, the
    management link.

    Every host has one veth into the migration bridge (its migration NIC, `kvl-x`) and one into the VM
    bridge of the switch, so every pair of hosts can talk. The only root-namespace piece is the management
    veth end and its route to the lab subnet (gone with the namespaces)."""
    for ns in ALL_NETNS:
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
    for ns, bridge, addr in (
        (NETNS_SWITCH, LINK_BRIDGE, None),
        (NETNS_SWITCH, VM_SWITCH_BRIDGE, None),
        (NETNS_STORAGE, STORAGE_BRIDGE, f"{STORAGE_IP}/{STORAGE_PREFIX}"),
    ):
        ip("-n", ns, "link", "add", bridge, "type", "bridge")
        if addr:
            ip("-n", ns, "addr", "add", addr, "dev", bridge)
        ip("-n", ns, "link", "set", bridge, "up")
    for h in HOSTS:
        _veth(h.link_dev, h.netns, h.link_port_dev, NETNS_SWITCH)
        ip("-n", NETNS_SWITCH, "link", "set", h.link_port_dev, "master", LINK_BRIDGE, "up")
        ip("-n", h.netns, "addr", "add", f"{h.ip}/24", "dev", h.link_dev)
        ip("-n", h.netns, "link", "set", h.link_dev, "up")
        _veth(h.storage_dev, h.netns, h.storage_peer_dev, NETNS_STORAGE)
        ip("-n", NETNS_STORAGE, "link", "set", h.storage_peer_dev, "master", STORAGE_BRIDGE, "up")
        ip("-n", h.netns, "addr", "add", f"{h.storage_ip}/{STORAGE_PREFIX}", "dev", h.storage_dev)
        ip("-n", h.netns, "link", "set", h.storage_dev, "up")
        _veth(h.vmnet_dev, h.netns, h.vmnet_port_dev, NETNS_SWITCH)
        ip("-n", NETNS_SWITCH, "link", "set", h.vmnet_port_dev, "master", VM_SWITCH_BRIDGE, "up")
        ip("-n", h.netns, "link", "add", VM_BRIDGE, "type", "bridge")
        ip("-n", h.netns, "link", "set", h.vmnet_dev, "master", VM_BRIDGE, "up")
        ip("-n", h.netns, "link", "set", VM_BRIDGE, "up")
    # A VM network only hostA has: a bridge with nothing behind it (the `pinned` VM's NIC).
    ip("-n", HOST_A.netns, "link", "add", ONLY_A_BRIDGE, "type", "bridge")
    ip("-n", HOST_A.netns, "link", "set", ONLY_A_BRIDGE, "up")
    create_management_link()


def _routes_to_management_net() -> None:
    """hostB and hostC answer the bot (root namespace) through hostA, their next hop on the migration network."""
    for h in HOSTS:
        if h is not HOST_A:
            ip("-n", h.netns, "route", "replace", MGMT_NET, "via", HOST_A.ip)


def create_management_link() -> None:
    """Root namespace <-> hostA veth; hostA forwards to the other hosts over the migration network (probes see
    cuts)."""
    a = HOST_A
    if Path(f"/sys/class/net/{MGMT_DEV}").exists():
        run(["ip", "link", "delete", MGMT_DEV], timeout_s=20, check=False)
    ip("link", "add", MGMT_DEV, "type", "veth", "peer", "name", MGMT_PEER_DEV, "netns", a.netns)
    ip("addr", "add", f"{MGMT_ROOT_IP}/{MGMT_PREFIX}", "dev", MGMT_DEV)
    ip("link", "set", MGMT_DEV, "up")
    ip("-n", a.netns, "addr", "add", f"{MGMT_LAB_IP}/{MGMT_PREFIX}", "dev", MGMT_PEER_DEV)
    ip("-n", a.netns, "link", "set", MGMT_PEER_DEV, "up")
    subnet = a.ip.rsplit(".", 1)[0] + ".0/24"
    ip("route", "replace", subnet, "via", MGMT_LAB_IP, "dev", MGMT_DEV)
    run(["ip", "netns", "exec", a.netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], timeout_s=20)
    _routes_to_management_net()


def delete_network() -> None:
    """Delete the namespaces (their veths and bridges go with them). Safe when nothing exists."""
    for ns in ALL_NETNS:
        if netns_exists(ns):
            run(["ip", "netns", "delete", ns], timeout_s=20, check=False)
    # A veth end can only outlive its namespace in the root namespace if a crash left it there.
    if Path(f"/sys/class/net/{MGMT_DEV}").exists():
        run(["ip", "link", "delete", MGMT_DEV], timeout_s=20, check=False)
    for h in HOSTS:
        if Path(f"/sys/class/net/{h.link_dev}").exists():
            run(["ip", "link", "delete", h.link_dev], timeout_s=20, check=False)


def _shaped_ends(h: HostSpec) -> tuple[tuple[str, str], tuple[str, str]]:
    """A host's migration NIC as (namespace, device) pairs: its own end (egress) and the switch port (ingress)."""
    return (h.netns, h.link_dev), (NETNS_SWITCH, h.link_port_dev)


def link_rate(bytes_per_s: int) -> None:
    """Each host's migration NIC runs at `bytes_per_s` each way: a tbf on the host's end of its veth (what it
    sends) and one on the switch's end (what it receives; netem is not in this kernel, tbf is). A drain of
    hostA to hostB and hostC therefore shares hostA's rate, as a real host's NIC would."""
    burst = max(256 * 1024, bytes_per_s // 100)  # tbf needs burst >= rate/HZ; 10 ms of traffic is plenty
    for h in HOSTS:
        for netns, dev in _shaped_ends(h):
            run(
                [
                    "tc", "-n", netns, "qdisc", "replace", "dev", dev, "root",
                    "tbf", "rate", f"{bytes_per_s * 8}bit", "burst", str(burst), "latency", "200ms",
                ],
                timeout_s=20,
            )  # fmt: skip


def link_unshape() -> None:
    for h in HOSTS:
        for netns, dev in _shaped_ends(h):
            if link_state(netns, dev).qdisc == "tbf":
                run(["tc", "-n", netns, "qdisc", "del", "dev", dev, "root"], timeout_s=20)


def link_set(up: bool) -> None:
    for h in HOSTS:
        ip("-n", h.netns, "link", "set", h.link_dev, "up" if up else "down")
    if up:
        # Taking kvl-b (kvl-c) down flushes that host's route back to the management net (its next hop is on
        # that link), so after `link down; link up` the bot's probes to it would time out: put the routes back.
        _routes_to_management_net()


@dataclass(frozen=True)
class LinkState:
    """One end of the migration link: admin state, carrier, root qdisc kind and tbf rate (bytes/s)."""

    dev: str
    admin_up: bool
    carrier: bool
    qdisc: str
    rate_bytes_s: int | None

    def describe(self) -> str:
        state = "up" if self.admin_up and self.carrier else "DOWN" if not self.admin_up else "no carrier"
        shaping = f"tbf {self.rate_bytes_s / 2**20:.1f} MiB/s" if self.rate_bytes_s else "unshaped"
        return f"{self.dev} {state}, {shaping}"


def link_state(netns: str, dev: str) -> LinkState:
    link = json.loads(run(["ip", "-n", netns, "-j", "link", "show", "dev", dev], timeout_s=20).stdout)[0]
    flags = link.get("flags", [])
    qdiscs = json.loads(run(["tc", "-n", netns, "-j", "qdisc", "show", "dev", dev], timeout_s=20).stdout)
    root: dict[str, Any] = next((q for q in qdiscs if q.get("root")), {})
    kind = str(root.get("kind", ""))
    rate = root.get("options", {}).get("rate") if kind == "tbf" else None
    return LinkState(dev, "UP" in flags, "LOWER_UP" in flags, kind, int(rate) if rate is not None else None)
