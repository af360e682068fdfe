"""The lab's fixed topology (namespaces, addresses, names) and its state paths, from the environment."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# Network namespaces: one per libvirt host plus one for the shared-storage server. Their names are the
# lab's only machine-wide names (addresses and devices live inside them), so a second lab can run beside
# the default one with another LAB_NETNS_PREFIX and LAB_ROOT.
NETNS_PREFIX = os.environ.get("LAB_NETNS_PREFIX", "kvmlab").strip() or "kvmlab"
if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,30}", NETNS_PREFIX):
    raise SystemExit(f"lab: error: LAB_NETNS_PREFIX={NETNS_PREFIX!r}: use letters, digits, - and _ only")
NETNS_STORAGE = f"{NETNS_PREFIX}-S"
# The lab's switch: a namespace holding the bridge of the migration network and the bridge of the VM
# network, with one veth per host plugged into each (every pair of hosts can talk, as on a real switch).
NETNS_SWITCH = f"{NETNS_PREFIX}-N"
# The migration network (each host's end is shaped and cut by `lab link`; the switch side is its ingress).
LINK_SUBNET = "10.213.7.0/24"
LINK_BRIDGE = "labmig0"
VM_SWITCH_BRIDGE = "labvms0"  # in the switch namespace: joins every host's VM bridge
# The storage network: a bridge in the storage namespace with one veth per host, so both hosts reach
# the NBD server at the same address. It is separate from the migration link on purpose (like a SAN):
# shaping or cutting the migration link never takes a running VM's disk away.
STORAGE_BRIDGE = "labsto0"
STORAGE_IP = "10.213.8.3"
STORAGE_PREFIX = 24
NBD_PORT = 10809
NBD_EXPORT = "shared"
NBD_MAX_CLIENTS = 8  # source QEMU + destination QEMU during a migration + probes from tests
# The VM network: a bridge of this name in every host (joined by a veth to the switch), for VM NICs and preflight.
VM_BRIDGE = "labbr0"
# A VM network only hostA has (bridge + libvirt network `labonly`): the `pinned` VM is attached to it, so no
# other host can take that VM (a drain leaves it behind with the reason, like a host-local device).
ONLY_A_BRIDGE = "labonly0"
ONLY_A_NETWORK = "labonly"
LIBVIRT_TCP_PORT = 16509
MIGRATION_PORT_MIN = 49152
MIGRATION_PORT_MAX = 49215
# Link bandwidth the bot assumes for predictions: an unshaped veth moved ~200 MiB/s (reference/lab.md 6.4).
LINK_MIB_S = 200
SOCKET_PATH_MAX = 107  # sun_path limit for the libvirt UNIX socket


@dataclass(frozen=True)
class HostSpec:
    """One lab libvirt host: its namespaces, addresses and identity (fixed; tests and docs rely on them)."""

    name: str  # inventory name: hostA / hostB / hostC
    letter: str  # state sub-directory: A / B / C
    netns: str
    hostname: str
    ip: str
    uuid: str  # distinct host_uuid: libvirt's "same host" check compares only this (P1)
    link_dev: str  # this host's end of its migration veth (the migration NIC: shaped and cut by `lab link`)
    link_port_dev: str  # the switch's end of it, a port of the migration bridge (shaped: the host's ingress)
    storage_dev: str  # this host's end of its storage veth
    storage_peer_dev: str  # the storage namespace's end, enslaved to the storage bridge
    storage_ip: str
    vmnet_dev: str  # this host's end of the veth joining its VM bridge to the switch
    vmnet_port_dev: str  # the switch's end of it
    # The host's memory as its libvirtd reports it (getMemoryStats / getFreeMemory). The lab hosts share one
    # machine, so each libvirtd is shown a fixed memory size of its own (a /proc/meminfo and NUMA-node meminfo
    # bind-mounted in its mount namespace): placement sees hosts of known sizes, the same on every machine,
    # instead of the whole machine's free memory three times over. Fixed: it does not fall as VMs land; the
    # plan's ledger and the inventory's reserves do that counting.
    memory_mib: int
    free_memory_mib: int
    memory_reserve_mib: int  # the inventory's memory_reserve_mib for this host (hosts.toml)

    @property
    def peer_uri(self) -> str:
        """How the other host's libvirtd dials this one (the P2P dconnuri); only valid inside the lab."""
        return f"qemu+tcp://{self.ip}:{LIBVIRT_TCP_PORT}/system"


HOST_A = HostSpec(
    name="hostA",
    letter="A",
    netns=f"{NETNS_PREFIX}-A",
    hostname="lab-a",
    ip="10.213.7.1",
    uuid="6c61622d-0000-4000-8000-00000000000a",
    link_dev="kvl-a",
    link_port_dev="kvl-sa",
    storage_dev="kvs-a",
    storage_peer_dev="kvs-sa",
    storage_ip="10.213.8.1",
    vmnet_dev="kvn-a",
    vmnet_port_dev="kvn-sa",
    memory_mib=4096,
    free_memory_mib=3072,
    memory_reserve_mib=512,  # 2.5 GiB to give: every VM of a drain can come home
)
HOST_B = HostSpec(
    name="hostB",
    letter="B",
    netns=f"{NETNS_PREFIX}-B",
    hostname="lab-b",
    ip="10.213.7.2",
    uuid="6c61622d-0000-4000-8000-00000000000b",
    link_dev="kvl-b",
    link_port_dev="kvl-sb",
    storage_dev="kvs-b",
    storage_peer_dev="kvs-sb",
    storage_ip="10.213.8.2",
    vmnet_dev="kvn-b",
    vmnet_port_dev="kvn-sb",
    memory_mib=2048,
    free_memory_mib=1536,
    memory_reserve_mib=768,  # 768 MiB to give: less than hostA's running VMs, so a drain cannot use hostB alone
)
HOST_C = HostSpec(
    name="hostC",
    letter="C",
    netns=f"{NETNS_PREFIX}-C",
    hostname="lab-c",
    ip="10.213.7.3",
    uuid="6c61622d-0000-4000-8000-00000000000c",
    link_dev="kvl-c",
    link_port_dev="kvl-sc",
    storage_dev="kvs-c",
    storage_peer_dev="kvs-sc",
    storage_ip="10.213.8.4",  # .3 is the NBD server
    vmnet_dev="kvn-c",
    vmnet_port_dev="kvn-sc",
    memory_mib=2048,
    free_memory_mib=1536,
    memory_reserve_mib=1024,  # the larger reserve: 512 MiB to give, so placement has to spread over B and C
)
HOSTS = (HOST_A, HOST_B, HOST_C)
HOST_NETNS = tuple(h.netns for h in HOSTS)
ALL_NETNS = (*HOST_NETNS, NETNS_STORAGE, NETNS_SWITCH)


def host_by_name(name: str) -> HostSpec:
    """hostA/hostB/hostC (also accepts A/B/C, a/b/c, lab-a...): the operator types these on the command line."""
    for host in HOSTS:
        if name in (host.name, host.letter, host.letter.lower(), host.hostname):
            return host
    raise ValueError(f"unknown lab host {name!r}: use {', '.join(h.name for h in HOSTS)}")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "yes", "true", "on")


@dataclass(frozen=True)
class Settings:
    """Everything the environment may change (LAB_* knobs, see deploy/lab/README.md)."""

    root: Path
    capcache: Path
    virt: str  # domain type of the lab VMs: kvm (default) or qemu (TCG; loses writes, P8)
    install: bool  # install missing apt packages
    keep: bool  # down: keep $LAB_ROOT (logs, consoles)
    purge: bool  # down: also drop the capabilities and guest-build cache

    @staticmethod
    def from_env() -> Settings:
        root = Path(os.environ.get("LAB_ROOT", "/var/tmp/migrate-bot-lab")).absolute()
        capcache = Path(os.environ.get("LAB_CAPCACHE", "/var/tmp/migrate-bot-capcache")).absolute()
        virt = os.environ.get("LAB_VIRT", "kvm").strip() or "kvm"
        if virt not in ("kvm", "qemu"):
            raise ValueError(f"LAB_VIRT={virt!r}: use kvm (default) or qemu (TCG)")
        install = os.environ.get("LAB_INSTALL", "1").strip().lower() not in ("0", "no", "false", "off")
        return Settings(root, capcache, virt, install, _env_flag("LAB_KEEP"), _env_flag("LAB_PURGE"))


@dataclass(frozen=True)
class Paths:
    """The state directory layout of reference/lab.md 4.2 (plus storage/ for the NBD server)."""

    root: Path
    capcache: Path

    @property
    def marker(self) -> Path:
        # Teardown deletes $LAB_ROOT only when this file proves it is a lab directory.
        return self.root / ".migrate-bot-lab"

    @property
    def lab_json(self) -> Path:
        return self.root / "lab.json"

    @property
    def hosts_toml(self) -> Path:
        return self.root / "hosts.toml"

    @property
    def hosts_ssh_toml(self) -> Path:
        return self.root / "hosts-ssh.toml"

    @property
    def hosts_tls_toml(self) -> Path:
        return self.root / "hosts-tls.toml"

    @property
    def net_mode(self) -> Path:
        return self.root / "net-mode"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def kernel(self) -> Path:
        return self.images / "dirtier.elf"

    @property
    def console(self) -> Path:
        return self.root / "console"

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def nbd_image(self) -> Path:
        return self.shared / "shared.qcow2"

    @property
    def nbd_pidfile(self) -> Path:
        return self.storage / "qemu-nbd.pid"

    def console_log(self, vm: str) -> Path:
        return self.console / f"{vm}.log"

    def host(self, host: HostSpec) -> Path:
        return self.root / host.letter

    def socket(self, host: HostSpec) -> Path:
        return self.host(host) / "run" / "libvirt-sock"

    def pidfile(self, host: HostSpec) -> Path:
        return self.host(host) / "run" / "libvirtd.pid"

    def mntns_file(self, host: HostSpec) -> Path:
        return self.host(host) / "mntns"

    def host_images(self, host: HostSpec) -> Path:
        """Host-private (non-shared) storage: the host sees it as /var/lib/libvirt/images."""
        return self.host(host) / "lib" / "images"

    def daemon_log(self, host: HostSpec) -> Path:
        return self.host(host) / "log" / "libvirtd.log"

    def uri(self, host: HostSpec) -> str:
        """The client URI from the root namespace (the bot, pytest, virsh)."""
        return f"qemu+unix:///system?socket={self.socket(host)}"
