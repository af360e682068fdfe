"""lab up (idempotent: check, repair or build) and lab down (stop exactly what up started)."""

from __future__ import annotations

import concurrent.futures
import shutil
import subprocess
from pathlib import Path

from . import access, daemons, net
from .config import (
    ALL_NETNS,
    HOST_A,
    HOSTS,
    LINK_SUBNET,
    SOCKET_PATH_MAX,
    STORAGE_IP,
    HostSpec,
    Paths,
    Settings,
)
from .describe import write_outputs
from .guest import ensure_guest
from .hostconf import conf_changed, write_host_tree
from .install import check_machine, ensure_packages
from .proc import LabError, run, say, terminate, warn
from .vms import VMS, ensure_networks, ensure_vms, make_disk, place

FORBIDDEN_ROOTS = (
    "/run",
    "/root",
    "/etc/libvirt",
    "/var/lib/libvirt",
    "/var/log/libvirt",
    "/var/cache/libvirt",
    "/etc/hosts",
)


def check_root(paths: Paths) -> None:
    """$LAB_ROOT must be visible unchanged from the root and both host namespaces (reference/lab.md 4.2)."""
    root = str(paths.root)
    if root == "/" or any(root == f or root.startswith(f + "/") for f in FORBIDDEN_ROOTS):
        raise LabError(
            f"LAB_ROOT={root} lies under a path the lab hosts replace ({', '.join(FORBIDDEN_ROOTS)});"
            " pick another, e.g. /var/tmp/migrate-bot-lab"
        )
    if any(c in root for c in " '\"\\;?&"):
        raise LabError(f"LAB_ROOT={root!r} contains a space, quote or URI character; pick a plain path")
    if len(str(paths.socket(HOST_A))) > SOCKET_PATH_MAX:
        raise LabError(
            f"LAB_ROOT={root} is too long: the libvirt socket path would exceed "
            f"{SOCKET_PATH_MAX} bytes; pick a shorter one"
        )


def health(paths: Paths) -> list[str]:
    """What is wrong with the running lab ([] = healthy). Cheap: pidfiles, namespaces, one virsh per host."""
    if not paths.marker.exists() or not paths.lab_json.exists():
        return ["no lab state"]
    problems = []
    mode = paths.net_mode.read_text().strip() if paths.net_mode.exists() else ""
    if mode != "netns":
        problems.append(f"net-mode is {mode or 'missing'}, not netns")
    problems += [f"network namespace {ns} missing" for ns in ALL_NETNS if not net.netns_exists(ns)]
    if daemons.nbd_pid(paths) is None:
        problems.append("the shared-storage NBD server is not running")
    for h in HOSTS:
        if daemons.daemon_pid(paths, h) is None:
            problems.append(f"daemon:{h.name}")
    return problems


def _answering(paths: Paths) -> list[str]:
    def ask(h: HostSpec) -> str | None:
        out = run(["virsh", "-q", "-c", paths.uri(h), "hostname"], timeout_s=20, check=False)
        return None if out.stdout.strip() == h.hostname else f"{h.name} does not answer on its socket"

    with concurrent.futures.ThreadPoolExecutor(len(HOSTS)) as pool:
        return [p for p in pool.map(ask, HOSTS) if p]


def start_daemons(paths: Paths, hosts: tuple[HostSpec, ...]) -> None:
    """Start (or restart) libvirtds, re-entering the namespaces of surviving QEMUs when there are any.

    With a kept capabilities cache all start at once; without one, host A probes QEMU first (~8 s,
    pinned to CPU 0) and the others start from A's fresh cache instead of probing again."""
    cached = paths.capcache.exists() and any(paths.capcache.glob("*.xml"))

    def spawn(h: HostSpec) -> subprocess.Popen[bytes]:
        keeper = daemons.survivor(paths, h)
        if keeper is not None:
            say(f"restarting libvirtd of {h.name} inside the namespaces of its running QEMU (pid {keeper})")
            return daemons.spawn_daemon_in(paths, h, keeper)
        daemons.seed_capcache(paths, h)
        return daemons.spawn_daemon(paths, h)

    if not cached and len(hosts) > 1:
        say("no QEMU capabilities cache yet: the first start probes QEMU (about 10 s, once per machine)")
        first = spawn(hosts[0])
        daemons.wait_daemon(paths, hosts[0], first)
        # The daemon answers while its driver still probes QEMU in the background; asking for the host
        # capabilities waits for that probe, after which the cache files are complete.
        daemons.virsh(paths, hosts[0], "capabilities", timeout_s=120)
        daemons.save_capcache(paths, hosts[0])
        rest: tuple[HostSpec, ...] = hosts[1:]
    else:
        rest = hosts
    spawned = {h.name: spawn(h) for h in rest}
    for h in rest:
        daemons.wait_daemon(paths, h, spawned[h.name])
    for h in hosts:
        daemons.check_identity(paths, h)
    daemons.save_capcache(paths, hosts[0])


def check_link(paths: Paths) -> None:
    """Every host dials every other one over the migration network, the way a P2P migration does."""
    pids = {h.name: daemons.daemon_pid(paths, h) for h in HOSTS}
    pairs = [(h, peer) for h in HOSTS for peer in HOSTS if peer is not h]
    with concurrent.futures.ThreadPoolExecutor(len(pairs)) as pool:
        futures = [pool.submit(daemons.check_peer, paths, h, peer, pids[h.name] or 0) for h, peer in pairs]
        for f in futures:
            f.result()


def build(paths: Paths, settings: Settings) -> None:
    say(f"building the lab in {paths.root}")
    if paths.root.exists() and not paths.marker.exists() and any(paths.root.iterdir()):
        raise LabError(f"{paths.root} exists, is not empty and is not a lab directory: set LAB_ROOT elsewhere")
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.marker.write_text("state directory of the migrate-bot lab (deploy/lab); `lab down` removes it\n")
    paths.net_mode.write_text("netns\n")
    for d in (paths.console, paths.shared, paths.storage, paths.images):
        d.mkdir(parents=True, exist_ok=True)
    make_credentials(paths)
    for h in HOSTS:
        write_host_tree(paths, h)
    ensure_guest(paths)
    net.create_network()
    say(f"namespaces {' / '.join(ALL_NETNS)}, migration link {LINK_SUBNET}, NBD server at {STORAGE_IP}")
    make_disk(str(paths.nbd_image))
    daemons.start_nbd(paths)
    start_daemons(paths, HOSTS)
    check_link(paths)
    say(", ".join(f"{h.name} ({h.hostname}, {h.ip})" for h in HOSTS) + " answer and reach each other")
    ensure_networks(paths)
    place(list(VMS), paths, settings.virt, {}, fresh_disk=True)
    say("lab VMs: " + ", ".join(f"{v.name} ({'running' if v.running else 'shut off'})" for v in VMS))


def up(settings: Settings) -> Path:
    paths = Paths(settings.root, settings.capcache)
    check_root(paths)
    check_machine(settings.virt)
    ensure_packages(settings.install)
    if paths.marker.exists():
        make_credentials(paths)  # a restarted daemon below reads its certificates
    problems = health(paths)
    dead = [p.split(":", 1)[1] for p in problems if p.startswith("daemon:")]
    if problems and len(dead) == len(problems):
        say(f"libvirtd of {', '.join(dead)} is not running: restarting it")
        start_daemons(paths, tuple(h for h in HOSTS if h.name in dead))
        problems = []
    if not problems:
        problems = _answering(paths)
    if problems:
        if paths.marker.exists() or any(net.netns_exists(ns) for ns in ALL_NETNS):
            say(f"the lab is partial or stale ({'; '.join(problems)}): tearing it down first")
            down(settings, quiet=True, keep=False)
        build(paths, settings)
    else:
        fixed = ensure_vms(paths, settings.virt)
        if not Path(f"/sys/class/net/{net.MGMT_DEV}").exists():
            net.create_management_link()
            fixed.append("the management link")
        say("lab already up and healthy" + (f"; put back {', '.join(fixed)}" if fixed else ""))
        warn_link_changed()
    ensure_access(paths)
    write_outputs(paths, settings)
    return paths.hosts_toml


def make_credentials(paths: Paths) -> None:
    """The lab's ssh keys and TLS certificates (once per lab; cached under $LAB_ROOT)."""
    made = [
        what
        for what, fresh in (("ssh keys", access.ensure_ssh(paths)), ("TLS certificates", access.ensure_tls(paths)))
        if fresh
    ]
    if made:
        say(f"made the lab's {' and '.join(made)} in {paths.root}")


def ensure_access(paths: Paths) -> None:
    """ssh keys, the lab CA and certificates, each host's TLS listener, migration TLS and sshd.

    Additive on a running lab: a daemon whose libvirtd.conf/qemu.conf predates them is restarted once
    inside its namespaces (its QEMUs keep running and are reattached); sshd is started where missing."""
    make_credentials(paths)
    access.ensure_ssh_dropin(paths)
    stale = tuple(h for h in HOSTS if conf_changed(paths, h))
    for h in stale:
        pid = daemons.daemon_pid(paths, h)
        if pid:
            say(f"restarting libvirtd of {h.name} to read its new configuration (TLS listener, migration TLS)")
            terminate([pid], grace_s=10)
    if stale:
        start_daemons(paths, stale)
    started = []
    for h in HOSTS:
        pid = daemons.daemon_pid(paths, h)
        if pid is None:
            raise LabError(f"libvirtd of {h.name} is not running; run `deploy/lab/lab start-daemon {h.name}`")
        if access.ensure_sshd(paths, h, pid):
            started.append(h.name)
    if started:
        say(f"sshd started on {', '.join(started)} (key-only, port {access.SSH_PORT} on the lab address)")
    check_remote_access(paths)


def check_remote_access(paths: Paths) -> None:
    """The bot's qemu+ssh and qemu+tls URIs answer from the root namespace (one virsh each, in parallel)."""

    def ask(item: tuple[HostSpec, str]) -> str | None:
        h, uri = item
        out = run(["virsh", "-q", "-c", uri, "hostname"], timeout_s=30, check=False)
        if out.returncode == 0 and out.stdout.strip() == h.hostname:
            return None
        return f"{h.name} does not answer at {uri}: {(out.stderr or out.stdout).strip()}"

    items = [(h, uri) for h in HOSTS for uri in (access.ssh_uri(paths, h), access.tls_uri(paths, h))]
    with concurrent.futures.ThreadPoolExecutor(len(items)) as pool:
        problems = [p for p in pool.map(ask, items) if p]
    if problems:
        link_up = all((st := net.link_state(h.netns, h.link_dev)).admin_up and st.carrier for h in HOSTS)
        if not link_up:  # hostB and hostC are reached through the link: a test may have cut it on purpose
            warn(f"remote access not checked end to end while the migration link is down: {'; '.join(problems)}")
            return
        raise LabError("; ".join(problems))


def warn_link_changed() -> None:
    """A healthy lab's link is left alone (another test session may be shaping it right now); say so."""
    for h in HOSTS:
        state = net.link_state(h.netns, h.link_dev)
        if state.qdisc == "tbf" or not state.admin_up:
            warn(f"migration link left as it is: {state.describe()} (`lab link reset` restores it)")


def down(settings: Settings, quiet: bool = False, keep: bool | None = None) -> None:
    """Stop everything up started (by PID / namespace), delete the namespaces and the state. Safe twice."""
    paths = Paths(settings.root, settings.capcache)
    check_root(paths)
    keep = settings.keep if keep is None else keep
    with concurrent.futures.ThreadPoolExecutor(len(HOSTS)) as pool:
        list(pool.map(lambda h: daemons.stop_host(paths, h), HOSTS))
    daemons.stop_storage(paths)
    net.delete_network()
    access.remove_ssh_dropin(paths)
    if paths.root.exists():
        if not paths.marker.exists() and any(paths.root.iterdir()):
            warn(f"{paths.root} has no lab marker: not deleting it (remove it by hand if it is yours)")
        elif keep:
            say(f"LAB_KEEP: keeping {paths.root} (logs, consoles)")
        else:
            shutil.rmtree(paths.root, ignore_errors=True)
    if settings.purge and paths.capcache.exists():
        shutil.rmtree(paths.capcache, ignore_errors=True)
    if not quiet:
        say("lab is down" + (f"; dropped {paths.capcache}" if settings.purge else ""))
