"""The per-host state tree and configuration files (libvirtd.conf, qemu.conf, hosts, default pool)."""

from __future__ import annotations

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
