"""The per-host state tree and configuration files (libvirtd.conf, qemu.conf, hosts, default pool, memory view)."""

from __future__ import annotations

import re
from pathlib import Path

from . import access
from .config import (
    HOSTS,
    LIBVIRT_TCP_PORT,
    MIGRATION_PORT_MAX,
    MIGRATION_PORT_MIN,
    STORAGE_IP,
    HostSpec,
    Paths,
)

HOST_SUBDIRS = (
    "etc/qemu",
    "etc/storage/autostart",
    "run",
    "lib/images",
    "log/qemu",
    "cache/qemu/capabilities",
)


def libvirtd_conf(paths: Paths, host: HostSpec) -> str:
    # reference/lab.md 4.6; every line is needed (P1: host_uuid, P11: listen_tcp with --listen). The TLS
    # listener (qemu+tls) takes clients whose certificate the lab CA signed and whose name is the bot's or
    # the hosts' peer identity: the permission the bot needs, and no one else gets in.
    pki = access.host_pki(paths, host)
    return f"""# migrate-bot lab {host.name}: written by deploy/lab/lab up
listen_tls = 1
tls_port = "{access.LIBVIRT_TLS_PORT}"
auth_tls = "none"
key_file = "{pki / "serverkey.pem"}"
cert_file = "{pki / "servercert.pem"}"
ca_file = "{pki / "cacert.pem"}"
tls_allowed_dn_list = ["O={access.ORG},CN={access.BOT_CN}", "O={access.ORG},CN={access.PEER_CN}"]
listen_tcp = 1
listen_addr = "{host.ip}"
tcp_port = "{LIBVIRT_TCP_PORT}"
auth_tcp = "none"
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_rw_perms = "0770"
host_uuid = "{host.uuid}"
log_filters = "1:qemu.qemu_migration 1:qemu.qemu_capabilities 1:util.filecache 1:qemu.qemu_monitor_json \
3:rpc 3:util 3:conf 3:security"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log 1:file:/var/log/libvirt/libvirtd-debug.log"
# One test process opens many connections over a lab run (one adapter per test, several per in-process bot);
# at 50 clients new connections queued and a migration's own connect waited (issue 10 integration run).
max_clients = 1000
max_client_requests = 20
"""


# The keepalive of the source daemon's connection to the destination in a peer-to-peer migration. libvirt's
# default (5 s x 5) lets a silently cut link go unnoticed for ~30 s; the lab notices in ~8 s so that the
# fault-injection tests stay short. Production hosts keep their own setting (docs/reliability.md).
P2P_KEEPALIVE_INTERVAL_S = 2
P2P_KEEPALIVE_COUNT = 4


def qemu_conf(paths: Paths, host: HostSpec) -> str:
    # reference/lab.md 4.8: no chown of shared files, no security driver, QEMU stays in the daemon's mount
    # namespace (teardown finds it there), no cgroups, no virtlogd; migration data on the lab link.
    return f"""# migrate-bot lab {host.name}: written by deploy/lab/lab up
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
stdio_handler = "file"
migration_address = "{host.ip}"
migration_host = "{host.ip}"
migration_port_min = {MIGRATION_PORT_MIN}
migration_port_max = {MIGRATION_PORT_MAX}
keepalive_interval = {P2P_KEEPALIVE_INTERVAL_S}
keepalive_count = {P2P_KEEPALIVE_COUNT}
migrate_tls_x509_cert_dir = "{access.qemu_pki(paths, host)}"
migrate_tls_x509_verify = 1
"""


def etc_hosts() -> str:
    lines = ["127.0.0.1 localhost"] + [f"{h.ip} {h.hostname}" for h in HOSTS] + [f"{STORAGE_IP} lab-storage"]
    return "\n".join(lines) + "\n"


POOL_XML = """<pool type='dir'>
  <name>default</name>
  <target><path>/var/lib/libvirt/images</path></target>
</pool>
"""


# --- each host's own memory size ------------------------------------------------------------------------
# The lab hosts share one machine, so without help each libvirtd would report the whole machine's memory and
# every host would look alike (and huge). Each host's daemon instead reads a /proc/meminfo and NUMA-node
# meminfo files written here and bind-mounted over the real ones in its own mount namespace (as lxcfs does
# for containers): getMemoryStats and getFreeMemory give the host's fixed size (config.HostSpec.memory_mib).
NODE_DIR = Path("/sys/devices/system/node")
_MEMINFO_LINE = re.compile(r"^((?:Node \d+ )?)([A-Za-z0-9_()]+):(\s+)(\d+)( kB)?$")
# Left as the machine has them: huge page accounting (not the host's RAM) and kernel address-space sizes.
_KEPT = ("HugePages_", "Hugepagesize", "Hugetlb", "DirectMap", "Vmalloc", "CommitLimit")


def fake_meminfo(real: str, total_kib: int, free_kib: int) -> str:
    """/proc/meminfo (or a node's meminfo) text with MemTotal/MemFree/MemAvailable/MemUsed set to this host's
    size and the page cache and other usage figures zeroed, so free + buffers + cached = MemFree (pure)."""
    values = {"MemTotal": total_kib, "MemFree": free_kib, "MemAvailable": free_kib, "MemUsed": total_kib - free_kib}
    out = []
    for line in real.splitlines():
        m = _MEMINFO_LINE.match(line)
        if m is None or m.group(5) is None or m.group(2).startswith(_KEPT):
            out.append(line)
            continue
        value = values.get(m.group(2), 0)
        width = len(m.group(3)) + len(m.group(4))
        out.append(f"{m.group(1)}{m.group(2)}:{str(value).rjust(width)} kB")
    return "\n".join(out) + "\n"


def meminfo_files(paths: Paths, host: HostSpec) -> list[tuple[Path, Path]]:
    """(file in the host's state dir, the real file it is mounted over) for /proc/meminfo and every NUMA node."""
    base = paths.host(host) / "meminfo"
    files = [(base / "meminfo", Path("/proc/meminfo"))]
    files += [(base / f"{node.name}-meminfo", node / "meminfo") for node in sorted(NODE_DIR.glob("node[0-9]*"))]
    return files


def write_meminfo(paths: Paths, host: HostSpec) -> None:
    """The host's memory view: its whole size, split evenly over the machine's NUMA nodes."""
    files = meminfo_files(paths, host)
    nodes = max(1, len(files) - 1)
    total, free = host.memory_mib * 1024, host.free_memory_mib * 1024
    for mine, real in files:
        share = 1 if real == Path("/proc/meminfo") else nodes
        mine.parent.mkdir(parents=True, exist_ok=True)
        mine.write_text(fake_meminfo(real.read_text(), total // share, free // share))


def write_host_tree(paths: Paths, host: HostSpec) -> None:
    base = paths.host(host)
    for sub in HOST_SUBDIRS:
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "etc" / "libvirtd.conf").write_text(libvirtd_conf(paths, host))
    (base / "etc" / "qemu.conf").write_text(qemu_conf(paths, host))
    (base / "hosts").write_text(etc_hosts())
    (base / "etc" / "storage" / "default.xml").write_text(POOL_XML)
    link = base / "etc" / "storage" / "autostart" / "default.xml"
    if not link.is_symlink():
        link.symlink_to("../default.xml")
    write_meminfo(paths, host)


def conf_changed(paths: Paths, host: HostSpec) -> bool:
    """True when the host's libvirtd.conf or qemu.conf on disk differs from what this lab writes (an older
    lab): the daemon must be restarted to read them. Rewrites both files when they differ."""
    etc = paths.host(host) / "etc"
    changed = False
    for name, text in (("libvirtd.conf", libvirtd_conf(paths, host)), ("qemu.conf", qemu_conf(paths, host))):
        f = etc / name
        if not f.exists() or f.read_text() != text:
            f.write_text(text)
            changed = True
    return changed
