"""Test helpers for the three-host KVM lab (deploy/lab): lab description, VM reset, console, link, faults."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAB_TOOL = REPO / "deploy" / "lab" / "lab"
UP_TIMEOUT_S = 900  # a fresh machine installs libvirt + QEMU from apt first (about a minute)

_STATUS = re.compile(r"^t=(\d+) pass=(\d+) rate=(\d+) total=(\d+) err=(\d+)\s*$")


class LabCommandError(RuntimeError):
    """A lab command failed; the message carries its output so the failure explains itself."""


@dataclass(frozen=True)
class LabHost:
    name: str  # hostA / hostB / hostC (the inventory name)
    uri: str  # client URI from the root namespace (UNIX socket)
    peer_uri: str  # qemu+tcp://<ip>:16509/system: how the other lab host dials this one (P2P dconnuri)
    ip: str  # migration-link address
    hostname: str
    uuid: str
    netns: str
    images_dir: Path  # host-private storage, seen by the host as /var/lib/libvirt/images
    link_dev: str  # this host's end of its migration veth (its migration NIC)
    pidfile: Path
    log: Path
    link_port_dev: str = ""  # the switch's end of that veth (in LabInfo.switch_netns): shaped = the host's ingress
    memory_mib: int = 0  # the memory size its libvirtd reports (a lab host's own, not the machine's)
    free_memory_mib: int = 0
    memory_reserve_mib: int = 0  # what hosts.toml reserves on it

    def daemon_pid(self) -> int | None:
        """The host's libvirtd PID if it runs (it changes after kill_daemon/start_daemon)."""
        try:
            pid = int(self.pidfile.read_text().strip())
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError):
            return None
        return pid if comm == "libvirtd" else None


@dataclass(frozen=True)
class LabStorage:
    netns: str
    ip: str
    port: int
    export: str
    nbd_uri: str  # nbd://10.213.8.3:10809/shared, reachable from inside every host
    image: Path


@dataclass(frozen=True)
class LabInfo:
    """What `deploy/lab/lab up` built (parsed from $LAB_ROOT/lab.json)."""

    root: Path
    hosts_toml: Path
    console_dir: Path
    guest_kernel: Path
    shared_dir: Path
    virt: str
    vm_bridge: str
    netns_prefix: str
    hosts: dict[str, LabHost]
    storage: LabStorage
    vms: tuple[str, ...]
    switch_netns: str = ""  # the namespace of the migration and VM bridges (the switch)

    def host(self, name: str) -> LabHost:
        return self.hosts[name]

    def console_path(self, vm: str) -> Path:
        return self.console_dir / f"{vm}.log"

    @staticmethod
    def load(lab_json: Path) -> LabInfo:
        d = json.loads(lab_json.read_text())
        hosts = {
            name: LabHost(
                name,
                h["uri"],
                h["peer_uri"],
                h["ip"],
                h["hostname"],
                h["uuid"],
                h["netns"],
                Path(h["images"]),
                h["link_dev"],
                Path(h["pidfile"]),
                Path(h["log"]),
                h.get("link_port_dev", ""),
                int(h.get("memory_mib", 0)),
                int(h.get("free_memory_mib", 0)),
                int(h.get("memory_reserve_mib", 0)),
            )
            for name, h in d["hosts"].items()
        }
        s = d["storage"]
        storage = LabStorage(s["netns"], s["ip"], int(s["port"]), s["export"], s["nbd_uri"], Path(s["image"]))
        return LabInfo(
            Path(d["root"]),
            Path(d["hosts_toml"]),
            Path(d["console_dir"]),
            Path(d["guest_kernel"]),
            Path(d["shared_dir"]),
            d["virt"],
            d["vm_bridge"],
            d["netns_prefix"],
            hosts,
            storage,
            tuple(d["vms"]),
            d["link"].get("switch_netns", ""),
        )


@dataclass(frozen=True)
class ConsoleStatus:
    """The test guest's last status line, and whether it ever reported lost memory or a CPU fault."""

    t_s: int
    passes: int
    rate_pages_s: int
    total_pages: int
    errors: int
    corrupt: bool
    fault: bool
    corrupt_lines: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.errors == 0 and not self.corrupt and not self.fault


def parse_console(text: str) -> ConsoleStatus | None:
    """Pure: the last `t=` line of a console text (None if there is none yet)."""
    last = None
    corrupt: list[str] = []
    fault = False
    for line in text.splitlines():
        if "CORRUPT" in line:
            corrupt.append(line.strip())
        if "FAULT" in line:
            fault = True
        m = _STATUS.match(line)
        if m:
            last = m
    if last is None:
        return None
    t, passes, rate, total, err = (int(g) for g in last.groups())
    return ConsoleStatus(t, passes, rate, total, err, bool(corrupt), fault, tuple(corrupt))


def _lab_env(lab: LabInfo | None) -> dict[str, str]:
    env = dict(os.environ)
    if lab is not None:
        env["LAB_ROOT"] = str(lab.root)
        env["LAB_NETNS_PREFIX"] = lab.netns_prefix
    return env


def run_lab(lab: LabInfo | None, *args: str, timeout_s: float = 180) -> str:
    """Run deploy/lab/lab with the lab's own LAB_ROOT; raise LabCommandError with its output on failure."""
    try:
        proc = subprocess.run(
            [str(LAB_TOOL), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=_lab_env(lab),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        raise LabCommandError(f"`lab {' '.join(args)}` did not finish in {timeout_s:g} s:\n{out}") from exc
    if proc.returncode != 0:
        raise LabCommandError(f"`lab {' '.join(args)}` failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def bring_up() -> tuple[LabInfo, str]:
    """`lab up` (idempotent); returns the lab and up's output. Its last line names the hosts file."""
    out = run_lab(None, "up", timeout_s=UP_TIMEOUT_S)
    last = out.strip().splitlines()[-1] if out.strip() else ""
    if not last.startswith("MIGRATE_BOT_HOSTS="):
        raise LabCommandError(f"`lab up` did not end with MIGRATE_BOT_HOSTS=...:\n{out}")
    hosts_toml = Path(last.split("=", 1)[1])
    return LabInfo.load(hosts_toml.parent / "lab.json"), out


def virsh(
    lab: LabInfo, host: str, *args: str, timeout_s: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """virsh against a lab host from the root namespace (its UNIX socket)."""
    proc = subprocess.run(
        ["virsh", "-q", "-c", lab.host(host).uri, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise LabCommandError(f"virsh {' '.join(args)} on {host} failed: {proc.stderr.strip()}")
    return proc


def host_exec(lab: LabInfo, host: str, argv: list[str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command inside a lab host's namespaces (network, mount, UTS), e.g. what its libvirtd sees."""
    pid = lab.host(host).daemon_pid()
    cmd = (
        ["nsenter", "-t", str(pid), "-m", "-u", "-n", "--", *argv]
        if pid
        else [str(LAB_TOOL), "exec", host, "--", *argv]
    )
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout_s, env=_lab_env(lab), stdin=subprocess.DEVNULL
    )


def reset_vm(lab: LabInfo, name: str, *, start: bool | None = None) -> None:
    """Restore a lab VM as `up` made it: removed from every host, redefined (and started unless it is
    `stopped` or start=False) on hostA, fresh local disk, empty console."""
    flag = [] if start is None else ["--start" if start else "--no-start"]
    run_lab(lab, "reset-vm", name, *flag)


def console_status(lab: LabInfo, vm: str) -> ConsoleStatus | None:
    try:
        return parse_console(lab.console_path(vm).read_text(errors="replace"))
    except FileNotFoundError:
        return None


def wait_console_line(lab: LabInfo, vm: str, after_t: int | None = None, timeout_s: float = 60) -> ConsoleStatus:
    """Wait (bounded, polling) for a status line newer than `after_t` (any line if None); never a fixed
    sleep: a KVM guest needs ~5 s of BIOS before its first line, more on a busy machine."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = console_status(lab, vm)
        if status is not None and (after_t is None or status.t_s > after_t):
            return status
        if time.monotonic() > deadline:
            tail = lab.console_path(vm).read_text(errors="replace")[-600:] if lab.console_path(vm).exists() else ""
            raise LabCommandError(
                f"no console line from {vm} after t={after_t} within {timeout_s:g} s; console tail:\n{tail}"
            )
        time.sleep(0.25)


def vm_location(lab: LabInfo, vm: str) -> dict[str, str]:
    """{host: state} for every lab host that knows the VM ('running', 'shut off', 'paused', ...)."""
    where = {}
    for name in lab.hosts:
        proc = virsh(lab, name, "domstate", vm, check=False)
        if proc.returncode == 0:
            where[name] = proc.stdout.strip()
        elif "failed to get domain" not in proc.stderr and "Domain not found" not in proc.stderr:
            raise LabCommandError(f"cannot ask {name} about {vm}: {proc.stderr.strip()}")
    return where


def link_rate(lab: LabInfo, rate: str | float) -> None:
    """Shape every host's migration NIC to `rate` each way (tc tbf); a bare number is MiB/s."""
    run_lab(lab, "link", "rate", str(rate))


def link_down(lab: LabInfo) -> None:
    run_lab(lab, "link", "down")


def link_up(lab: LabInfo) -> None:
    run_lab(lab, "link", "up")


def link_reset(lab: LabInfo) -> None:
    run_lab(lab, "link", "reset")


def kill_daemon(lab: LabInfo, host: str) -> None:
    """SIGKILL the host's libvirtd; its QEMUs keep running."""
    run_lab(lab, "kill-daemon", host)


def start_daemon(lab: LabInfo, host: str) -> None:
    """Restart the host's libvirtd inside the same namespaces (it reattaches to its running QEMUs)."""
    run_lab(lab, "start-daemon", host)
