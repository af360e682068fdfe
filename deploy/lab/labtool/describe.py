"""The lab's outputs for other programs: lab.json (for tests) and the bot's inventories (unix, ssh, tls)."""

from __future__ import annotations

import json

from . import access
from .config import (
    HOSTS,
    LINK_BRIDGE,
    LINK_MIB_S,
    LINK_SUBNET,
    NBD_EXPORT,
    NBD_PORT,
    NETNS_PREFIX,
    NETNS_STORAGE,
    NETNS_SWITCH,
    ONLY_A_NETWORK,
    STORAGE_IP,
    VM_BRIDGE,
    Paths,
    Settings,
)
from .daemons import daemon_pid, nbd_pid
from .vms import VMS


def toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string for the characters we write


def hosts_toml(paths: Paths, transport: str = "unix") -> str:
    """The inventory in the foundation issue's format. `unix`: the bot reaches each libvirtd over its UNIX
    socket (peers over TCP); `ssh`: over qemu+ssh (peers over TCP); `tls`: over qemu+tls, and the peers
    reach each other over TLS too, with QEMU's migration TLS set up on both (migration_tls)."""
    parts = [
        f"# migrate-bot lab inventory ({transport}): written by deploy/lab/lab up (do not edit; rewritten on every up)",
        "[defaults]",
        "max_inbound = 2",
        "max_outbound = 2",
        "",
    ]
    for h in HOSTS:
        uri = {"unix": paths.uri(h), "ssh": access.ssh_uri(paths, h), "tls": access.tls_uri(paths, h)}[transport]
        peer_uri = access.tls_peer_uri(paths, h) if transport == "tls" else h.peer_uri
        parts += [
            f"[hosts.{h.name}]",
            f"uri = {toml_str(uri)}   # how the bot reaches libvirt (root namespace)",
            f"peer_uri = {toml_str(peer_uri)}   # how the OTHER host's libvirtd reaches this host (P2P dconnuri)",
            f"migration_address = {toml_str(h.ip)}   # data address: migrate_uri = tcp://<addr>",
            f"link_mib_s = {LINK_MIB_S}   # link bandwidth for predictions (measured ~200 MiB/s unshaped)",
            f"memory_reserve_mib = {h.memory_reserve_mib}   # of the {h.free_memory_mib} MiB free its libvirtd reports",
            *(
                ["migration_tls = true   # qemu.conf migrate_tls_x509_cert_dir holds the lab CA's certificates"]
                if transport == "tls"
                else []
            ),
            'labels = ["lab"]',
            "",
        ]
    return "\n".join(parts)


def lab_description(paths: Paths, settings: Settings) -> dict[str, object]:
    """reference/lab.md 4.12, plus the storage server, the VM bridge and the lab VMs."""
    return {
        "version": 1,
        "root": str(paths.root),
        "net": "netns",
        "netns_prefix": NETNS_PREFIX,
        "virt": settings.virt,
        "hosts_toml": str(paths.hosts_toml),
        "hosts_ssh_toml": str(paths.hosts_ssh_toml),
        "hosts_tls_toml": str(paths.hosts_tls_toml),
        "ssh_dir": str(access.ssh_dir(paths)),
        "tls_dir": str(access.tls_dir(paths)),
        "console_dir": str(paths.console),
        "guest_kernel": str(paths.kernel),
        "shared_dir": str(paths.shared),
        "vm_bridge": VM_BRIDGE,
        "link": {
            "subnet": LINK_SUBNET,
            "devices": {h.name: h.link_dev for h in HOSTS},
            "switch_netns": NETNS_SWITCH,
            "bridge": LINK_BRIDGE,
            "switch_ports": {h.name: h.link_port_dev for h in HOSTS},
        },
        "only_a_network": ONLY_A_NETWORK,
        "storage": {
            "netns": NETNS_STORAGE,
            "ip": STORAGE_IP,
            "port": NBD_PORT,
            "export": NBD_EXPORT,
            "nbd_uri": f"nbd://{STORAGE_IP}:{NBD_PORT}/{NBD_EXPORT}",
            "image": str(paths.nbd_image),
            "pid": nbd_pid(paths),
        },
        "hosts": {
            h.name: {
                "uri": paths.uri(h),
                "peer_uri": h.peer_uri,
                "tcp_uri": h.peer_uri,
                "ssh_uri": access.ssh_uri(paths, h),
                "tls_uri": access.tls_uri(paths, h),
                "tls_peer_uri": access.tls_peer_uri(paths, h),
                "server_pki": str(access.host_pki(paths, h)),
                "qemu_pki": str(access.qemu_pki(paths, h)),
                "ip": h.ip,
                "hostname": h.hostname,
                "uuid": h.uuid,
                "netns": h.netns,
                "images": str(paths.host_images(h)),
                "storage_ip": h.storage_ip,
                "link_dev": h.link_dev,
                "link_port_dev": h.link_port_dev,
                "memory_mib": h.memory_mib,
                "free_memory_mib": h.free_memory_mib,
                "memory_reserve_mib": h.memory_reserve_mib,
                "pid": daemon_pid(paths, h),
                "pidfile": str(paths.pidfile(h)),
                "log": str(paths.daemon_log(h)),
            }
            for h in HOSTS
        },
        "vms": {
            v.name: {
                "uuid": v.uuid,
                "home": "hostA",
                "memory_mib": v.memory_mib,
                "cmdline": v.cmdline,
                "running": v.running,
                "disk": v.disk,
                "nic": v.nic,
                "only_a_network": v.only_a_nic,
                "anti_affinity": list(v.anti_affinity),
                "purpose": v.purpose,
                "console": str(paths.console_log(v.name)),
            }
            for v in VMS
        },
    }


def write_outputs(paths: Paths, settings: Settings) -> None:
    tmp = paths.lab_json.with_suffix(".tmp")
    tmp.write_text(json.dumps(lab_description(paths, settings), indent=2) + "\n")
    tmp.replace(paths.lab_json)
    for target, transport in ((paths.hosts_toml, "unix"), (paths.hosts_ssh_toml, "ssh"), (paths.hosts_tls_toml, "tls")):
        tmp = target.with_suffix(".tmp")
        tmp.write_text(hosts_toml(paths, transport))
        tmp.replace(target)
