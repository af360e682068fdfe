"""lab status: the daemons, the storage server, the link, and where each lab VM is."""

from __future__ import annotations

import json
from typing import Any

from . import access, daemons, net
from .config import HOSTS, NETNS_STORAGE, NETNS_SWITCH, STORAGE_BRIDGE, Paths
from .proc import LabError
from .vms import VMS, list_domains


def collect(paths: Paths) -> dict[str, Any]:
    hosts: dict[str, Any] = {}
    domains: dict[str, dict[str, str]] = {}
    for h in HOSTS:
        pid = daemons.daemon_pid(paths, h)
        hosts[h.name] = {
            "pid": pid,
            "running": pid is not None,
            "netns": net.netns_exists(h.netns),
            "uri": paths.uri(h),
            "sshd_pid": access.sshd_pid(paths, h),
        }
        if pid is not None:
            try:
                domains[h.name] = list_domains(paths, h)
            except LabError as exc:
                hosts[h.name]["error"] = str(exc)
        if net.netns_exists(h.netns):
            hosts[h.name]["link"] = net.link_state(h.netns, h.link_dev).__dict__
        if net.netns_exists(NETNS_SWITCH):  # the switch's port towards the host: shaped = the host's ingress
            hosts[h.name]["link_ingress"] = net.link_state(NETNS_SWITCH, h.link_port_dev).__dict__
    vms: dict[str, dict[str, str]] = {}
    for name in [v.name for v in VMS] + sorted({n for d in domains.values() for n in d} - {v.name for v in VMS}):
        vms[name] = {h: d[name] for h, d in domains.items() if name in d}
    return {
        "root": str(paths.root),
        "up": paths.marker.exists(),
        "hosts": hosts,
        "storage": {
            "pid": daemons.nbd_pid(paths),
            "netns": net.netns_exists(NETNS_STORAGE),
            "bridge": STORAGE_BRIDGE,
        },
        "switch": {"netns": net.netns_exists(NETNS_SWITCH)},
        "vms": vms,
    }


def render(info: dict[str, Any]) -> str:
    if not info["up"] and not any(h["netns"] for h in info["hosts"].values()):
        return f"lab is down (no state in {info['root']})"
    lines = [f"lab state: {info['root']}"]
    for name, h in info["hosts"].items():
        daemon = f"libvirtd pid {h['pid']}" if h["running"] else "libvirtd NOT RUNNING"
        daemon += f", sshd pid {h['sshd_pid']}" if h.get("sshd_pid") else ", no sshd"
        link = h.get("link")
        link_text = net.LinkState(**link).describe() if link else "no namespace"
        ingress = h.get("link_ingress")
        if ingress and ingress.get("rate_bytes_s"):
            link_text += f" (in: {net.LinkState(**ingress).describe()})"
        lines.append(f"  {name}: {daemon}; link {link_text}" + (f"; {h['error']}" if "error" in h else ""))
    s = info["storage"]
    lines.append(f"  storage: qemu-nbd {'pid ' + str(s['pid']) if s['pid'] else 'NOT RUNNING'}")
    lines.append("  VMs:")
    for vm, where in info["vms"].items():
        text = ", ".join(f"{h}: {st}" for h, st in where.items()) or "defined nowhere"
        lines.append(f"    {vm:<10} {text}")
    return "\n".join(lines)


def status(paths: Paths, as_json: bool) -> str:
    info = collect(paths)
    return json.dumps(info, indent=2) if as_json else render(info)
