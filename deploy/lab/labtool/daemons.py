"""Starting, checking and stopping the lab's libvirtds (each in its own namespaces) and the NBD server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

from .config import NBD_EXPORT, NBD_MAX_CLIENTS, NBD_PORT, NETNS_STORAGE, STORAGE_IP, HostSpec, Paths
from .hostconf import meminfo_files
from .proc import (
    LabError,
    alive,
    netns_id,
    ns_id,
    pids_in_namespace,
    proc_comm,
    read_int,
    run,
    terminate,
    wait_gone,
)

LIBVIRTD = "/usr/sbin/libvirtd"
# libvirtd starts pinned to CPU 0 (P9: its capabilities cache stamp includes a CPUID leaf that differs
# between CPUs, so an unpinned daemon throws the cache away half the time, 8-16 s per start).
DAEMON_CMD = f"exec taskset -c 0 {LIBVIRTD} --daemon --listen --pid-file /run/libvirt/libvirtd.pid"
DAEMON_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "HOME": "/root"}


def _namespace_script(paths: Paths, host: HostSpec) -> str:
    """Runs inside fresh mount + UTS namespaces (reference/lab.md 4.4): private /run, bind mounts, daemon."""
    h = paths.host(host)
    binds = [
        ("run", "/run/libvirt"),
        ("etc", "/etc/libvirt"),
        ("lib", "/var/lib/libvirt"),
        ("log", "/var/log/libvirt"),
        ("cache", "/var/cache/libvirt"),
        ("hosts", "/etc/hosts"),
    ]
    lines = [
        f"hostname {host.hostname}",
        "mount -t tmpfs -o mode=755,size=64m labrun /run",
        # A sysfs of this network namespace: libvirt lists host interfaces (bridges, macvtap parents) from
        # /sys/class/net, which otherwise shows the root namespace's devices instead of this host's.
        "mount -t sysfs labsys /sys",
        # This host's own memory size (hostconf.write_meminfo): libvirt reads these for the node's memory.
        *(f"mount --bind '{mine}' '{real}'" for mine, real in meminfo_files(paths, host)),
        "mkdir -p /run/libvirt /run/lock",
        *(f"mount --bind '{h / src}' {dst}" for src, dst in binds),
        "mount -t tmpfs -o mode=700,size=16m labroot /root",
        DAEMON_CMD,
    ]
    return "\n".join(lines)


def spawn_daemon(paths: Paths, host: HostSpec) -> subprocess.Popen[bytes]:
    """Start libvirtd in new mount/UTS namespaces inside the host's network namespace (no wait)."""
    for target in ("/etc/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt"):
        os.makedirs(target, exist_ok=True)  # the packages create them; bind mounts need them to exist
    log = open(paths.host(host) / "log" / "start.log", "ab")  # noqa: SIM115 - handed to the child
    with log:
        return subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{host.netns}",
                "unshare",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-ec",
                _namespace_script(paths, host),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=DAEMON_ENV,
            start_new_session=True,
        )


def spawn_daemon_in(paths: Paths, host: HostSpec, pid: int) -> subprocess.Popen[bytes]:
    """Restart libvirtd inside the existing namespaces of a surviving lab process (a QEMU)."""
    log = open(paths.host(host) / "log" / "start.log", "ab")  # noqa: SIM115 - handed to the child
    with log:
        return subprocess.Popen(
            ["nsenter", "-t", str(pid), "-m", "-u", "-n", "--", "/bin/sh", "-ec", DAEMON_CMD],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=DAEMON_ENV,
            start_new_session=True,
        )


def daemon_pid(paths: Paths, host: HostSpec) -> int | None:
    """The running libvirtd of this host, or None. Checked by name and by namespace, never trusted blindly."""
    pid = read_int(paths.pidfile(host))
    if pid is None or not alive(pid) or proc_comm(pid) != "libvirtd":
        return None
    if ns_id(pid, "net") != netns_id(host.netns):
        return None
    return pid


def virsh(paths: Paths, host: HostSpec, *args: str, timeout_s: float = 60, check: bool = True) -> str:
    return run(["virsh", "-q", "-c", paths.uri(host), *args], timeout_s=timeout_s, check=check).stdout


def wait_daemon(paths: Paths, host: HostSpec, spawned: subprocess.Popen[bytes] | None) -> int:
    """Bounded wait until the daemon answers on its UNIX socket; then widen it and record its namespace."""
    log = paths.daemon_log(host)
    if spawned is not None:
        try:
            rc = spawned.wait(timeout=60)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"starting libvirtd for {host.name} hung; see {log}") from exc
        if rc != 0:
            start_log = paths.host(host) / "log" / "start.log"
            raise LabError(f"libvirtd for {host.name} failed to start (exit {rc}); see {start_log} and {log}")
    for _ in range(240):
        pid = daemon_pid(paths, host)
        if pid and paths.socket(host).exists():
            out = run(["virsh", "-q", "-c", paths.uri(host), "hostname"], timeout_s=60, check=False)
            if out.returncode == 0 and out.stdout.strip() == host.hostname:
                break
        time.sleep(0.125)
    else:
        raise LabError(f"libvirtd of {host.name} does not answer on {paths.socket(host)} after 30 s; see {log}")
    # Widen every thread to all CPUs (P9 pinned it for the capabilities check); QEMUs inherit this mask.
    widen_affinity(pid)
    paths.mntns_file(host).write_text(ns_id(pid, "mnt") + "\n")
    return pid


def widen_affinity(pid: int) -> None:
    """Let every thread of `pid` run on all CPUs, tolerating threads that come and go meanwhile.

    `taskset -a -p` fails outright when one of libvirtd's worker threads exits between its listing
    and its call (seen in CI: "failed to get pid N's affinity: No such process"), so do it per thread
    and repeat until a pass finds every live thread already widened.
    """
    all_cpus = set(range(os.cpu_count() or 1))
    for _ in range(20):
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except FileNotFoundError as exc:
            raise LabError(f"libvirtd (pid {pid}) exited while the lab was widening its CPU affinity") from exc
        changed = False
        for tid in tids:
            try:
                if os.sched_getaffinity(tid) != all_cpus:
                    os.sched_setaffinity(tid, all_cpus)
                    changed = True
            except ProcessLookupError:
                continue  # the thread ended; nothing to widen
        if not changed:
            return
    raise LabError(f"could not widen the CPU affinity of libvirtd (pid {pid}): its threads kept changing")


def check_identity(paths: Paths, host: HostSpec) -> None:
    caps = virsh(paths, host, "capabilities")
    if f"<uuid>{host.uuid}</uuid>" not in caps:
        raise LabError(
            f"{host.name} reports a host UUID other than {host.uuid} (P1: migrations between the "
            f"two hosts would fail as 'same host'); check {paths.host(host)}/etc/libvirtd.conf"
        )


def check_peer(paths: Paths, host: HostSpec, peer: HostSpec, pid: int) -> None:
    """The way a P2P migration dials: from inside this host's namespaces to the peer's TCP listener."""
    out = run(
        ["nsenter", "-t", str(pid), "-m", "-u", "-n", "--", "virsh", "-q", "-c", peer.peer_uri, "hostname"],
        timeout_s=20,
        check=False,
    )
    if out.returncode != 0 or out.stdout.strip() != peer.hostname:
        raise LabError(
            f"{host.name} cannot reach {peer.name} at {peer.peer_uri} inside the lab "
            f"({(out.stderr or out.stdout).strip()}); is the link down? try `lab link reset`"
        )


def seed_capcache(paths: Paths, host: HostSpec) -> bool:
    """Copy the kept QEMU capabilities into the host's cache (reference/lab.md 11.2); True if any."""
    files = sorted(paths.capcache.glob("*.xml"))
    dest = paths.host(host) / "cache" / "qemu" / "capabilities"
    for f in files:
        shutil.copy2(f, dest / f.name)
    return bool(files)


def save_capcache(paths: Paths, host: HostSpec) -> None:
    src = paths.host(host) / "cache" / "qemu" / "capabilities"
    paths.capcache.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.xml"):
        kept = paths.capcache / f.name
        if not kept.exists() or kept.read_bytes() != f.read_bytes():
            shutil.copy2(f, kept)


def host_processes(paths: Paths, host: HostSpec) -> list[int]:
    """Everything the lab runs as this host: its mount namespace (daemon, QEMUs) and its network namespace."""
    recorded = paths.mntns_file(host).read_text().strip() if paths.mntns_file(host).exists() else ""
    pids = set(pids_in_namespace(recorded)) | set(pids_in_namespace(netns_id(host.netns)))
    # Fallback when the namespace id was never recorded: QEMU pidfiles, only if the process is a QEMU.
    for pidfile in (paths.host(host) / "run" / "qemu").glob("*.pid"):
        pid = read_int(pidfile)
        if pid and "qemu" in proc_comm(pid):
            pids.add(pid)
    return sorted(pids)


def stop_host(paths: Paths, host: HostSpec) -> None:
    """Daemon first (so it does not react to its QEMUs dying), then everything left in its namespaces."""
    pid = daemon_pid(paths, host)
    if pid:
        terminate([pid], grace_s=10)
    terminate(host_processes(paths, host), grace_s=5)


def kill_daemon(paths: Paths, host: HostSpec) -> int:
    pid = daemon_pid(paths, host)
    if pid is None:
        raise LabError(f"libvirtd of {host.name} is not running (nothing to kill); `lab start-daemon {host.name}`")
    os.kill(pid, signal.SIGKILL)
    if wait_gone([pid], 10):
        raise LabError(f"libvirtd {pid} of {host.name} survived SIGKILL for 10 s")
    return pid


def survivor(paths: Paths, host: HostSpec) -> int | None:
    """A live process in the host's recorded mount namespace (a QEMU that outlived its daemon)."""
    recorded = paths.mntns_file(host).read_text().strip() if paths.mntns_file(host).exists() else ""
    pids = pids_in_namespace(recorded)
    return pids[0] if pids else None


def start_nbd(paths: Paths) -> int:
    """The shared-storage server: qemu-nbd in the storage namespace, several clients, never exits."""
    paths.storage.mkdir(parents=True, exist_ok=True)
    with open(paths.storage / "qemu-nbd.log", "ab") as log:
        proc = subprocess.run(
            [
                "nsenter",
                f"--net=/run/netns/{NETNS_STORAGE}",
                "qemu-nbd",
                "--fork",
                "--persistent",
                f"--shared={NBD_MAX_CLIENTS}",
                "--bind",
                STORAGE_IP,
                "--port",
                str(NBD_PORT),
                "--export-name",
                NBD_EXPORT,
                "--format",
                "qcow2",
                "--cache",
                "none",
                "--pid-file",
                str(paths.nbd_pidfile),
                str(paths.nbd_image),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            timeout=30,
            check=False,
        )
    pid = nbd_pid(paths)
    if proc.returncode != 0 or pid is None:
        raise LabError(f"qemu-nbd (shared storage) did not start; see {paths.storage / 'qemu-nbd.log'}")
    return pid


def nbd_pid(paths: Paths) -> int | None:
    pid = read_int(paths.nbd_pidfile)
    if pid is None or not alive(pid) or proc_comm(pid) != "qemu-nbd":
        return None
    return pid if ns_id(pid, "net") == netns_id(NETNS_STORAGE) else None


def stop_storage(paths: Paths) -> None:
    pids = set(pids_in_namespace(netns_id(NETNS_STORAGE)))
    pid = nbd_pid(paths)
    if pid:
        pids.add(pid)
    terminate(sorted(pids), grace_s=5)
