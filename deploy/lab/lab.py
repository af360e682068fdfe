"""Command line of the three-host KVM lab (`deploy/lab/lab --help`); stdlib only, runs on /usr/bin/python3."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from labtool import daemons, lifecycle, net, vms
from labtool.config import HOSTS, Paths, Settings, host_by_name
from labtool.describe import write_outputs
from labtool.proc import LabError, say
from labtool.status import status

DESCRIPTION = """Three real libvirt/QEMU hosts on one machine (hostA = kvmlab-A 10.213.7.1, hostB = kvmlab-B
10.213.7.2, hostC = kvmlab-C 10.213.7.3), joined by a migration network (a bridge in kvmlab-N, one veth per host),
plus an NBD shared-storage namespace (kvmlab-S). Run as root.
Environment: LAB_ROOT (state, default /var/tmp/migrate-bot-lab), LAB_CAPCACHE (kept QEMU capabilities and
guest build, default /var/tmp/migrate-bot-capcache), LAB_VIRT (kvm|qemu), LAB_INSTALL (0 = never apt-get),
LAB_KEEP (down keeps $LAB_ROOT), LAB_PURGE (down also drops $LAB_CAPCACHE). See deploy/lab/README.md."""


LOCKED_COMMANDS = ("up", "down", "reset-vm", "kill-daemon", "start-daemon")
LOCK_WAIT_S = 900  # another `up` may be installing packages


@contextlib.contextmanager
def lab_lock(settings: Settings) -> Iterator[None]:
    """Serialise commands that change the lab: test sessions of several people may share one lab.

    The lock file lives in $LAB_CAPCACHE, which is kept across labs anyway, so it leaves no new trace."""
    settings.capcache.mkdir(parents=True, exist_ok=True)
    with open(settings.capcache / "lock", "w") as fh:
        deadline = time.monotonic() + LOCK_WAIT_S
        told = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(f"another lab command held {fh.name} for {LOCK_WAIT_S} s") from None
                if not told:
                    say("waiting for another lab command to finish")
                    told = True
                time.sleep(0.2)
        yield


def _require_up(paths: Paths) -> None:
    if not paths.marker.exists() or not all(net.netns_exists(h.netns) for h in HOSTS):
        raise LabError(f"the lab is not up (no state in {paths.root}); run `deploy/lab/lab up` first")


def cmd_up(settings: Settings, _: argparse.Namespace) -> None:
    hosts_toml = lifecycle.up(settings)
    print(f"MIGRATE_BOT_HOSTS={hosts_toml}", flush=True)


def cmd_down(settings: Settings, _: argparse.Namespace) -> None:
    lifecycle.down(settings)


def cmd_status(settings: Settings, args: argparse.Namespace) -> None:
    print(status(Paths(settings.root, settings.capcache), args.json))


def cmd_link(settings: Settings, args: argparse.Namespace) -> None:
    _require_up(Paths(settings.root, settings.capcache))
    if args.action == "rate":
        if not args.rate:
            raise LabError("`lab link rate` needs a rate, e.g. `lab link rate 16MiB`")
        rate = net.parse_rate(args.rate)
        net.link_rate(rate)
        say(f"each host's migration NIC shaped to {rate / 2**20:.2f} MiB/s in both directions (tc tbf)")
    elif args.action == "down":
        net.link_set(False)
        say(f"migration link is DOWN ({', '.join(h.link_dev for h in HOSTS)}); the storage network is unaffected")
    elif args.action == "up":
        net.link_set(True)
        say("migration link is up")
    else:
        net.link_unshape()
        net.link_set(True)
        say("migration link is up and unshaped")


def cmd_kill_daemon(settings: Settings, args: argparse.Namespace) -> None:
    paths = Paths(settings.root, settings.capcache)
    _require_up(paths)
    host = host_by_name(args.host)
    pid = daemons.kill_daemon(paths, host)
    say(f"SIGKILLed libvirtd {pid} of {host.name}; its QEMUs keep running. `lab start-daemon {host.name}`")


def cmd_start_daemon(settings: Settings, args: argparse.Namespace) -> None:
    paths = Paths(settings.root, settings.capcache)
    _require_up(paths)
    host = host_by_name(args.host)
    pid = daemons.daemon_pid(paths, host)
    if pid is not None:
        say(f"libvirtd of {host.name} is already running (pid {pid})")
        return
    lifecycle.start_daemons(paths, (host,))
    write_outputs(paths, settings)
    say(f"libvirtd of {host.name} is running again (pid {daemons.daemon_pid(paths, host)})")


def cmd_reset_vm(settings: Settings, args: argparse.Namespace) -> None:
    paths = Paths(settings.root, settings.capcache)
    _require_up(paths)
    spec = vms.vm_spec(args.name)
    vms.remove_everywhere(spec, paths)
    start = spec.running if args.start is None else args.start
    vms.place([spec], paths, settings.virt, {spec.name: start}, fresh_disk=True)
    say(f"{spec.name} is back on hostA, {'running' if start else 'shut off'}, console truncated")


def cmd_xml(settings: Settings, args: argparse.Namespace) -> None:
    print(vms.domain_xml(vms.vm_spec(args.name), Paths(settings.root, settings.capcache), settings.virt), end="")


def cmd_exec(settings: Settings, args: argparse.Namespace) -> None:
    paths = Paths(settings.root, settings.capcache)
    host = host_by_name(args.host)
    pid = daemons.daemon_pid(paths, host) or daemons.survivor(paths, host)
    if pid is None:
        raise LabError(f"nothing runs in {host.name}'s namespaces; `lab up` or `lab start-daemon {host.name}`")
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise LabError("`lab exec HOST -- COMMAND...` needs a command")
    os.execvp("nsenter", ["nsenter", "-t", str(pid), "-m", "-u", "-n", "--", *argv])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lab", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "up",
        help="bring the lab up (idempotent); last line: MIGRATE_BOT_HOSTS=<hosts.toml>",
        description="Install missing packages, start the three hosts, the storage server and the lab "
        "VMs, write lab.json and hosts.toml. A healthy lab is only checked (and missing VMs put "
        "back, the link reset). The last line of output is MIGRATE_BOT_HOSTS=<path>.",
    ).set_defaults(fn=cmd_up)
    sub.add_parser(
        "down",
        help="stop everything up started and remove the state (safe twice)",
        description="Stop the daemons, QEMUs and the NBD server by PID / namespace, delete the "
        "namespaces and $LAB_ROOT (LAB_KEEP=1 keeps it; LAB_PURGE=1 also drops $LAB_CAPCACHE).",
    ).set_defaults(fn=cmd_down)
    s = sub.add_parser(
        "status",
        help="daemons, link state and where each VM is",
        description="Show the daemons, the storage server, the migration link (state, "
        "shaping) and every lab VM's state on each host.",
    )
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(fn=cmd_status)
    s = sub.add_parser(
        "link",
        help="shape, cut or restore the migration link",
        description="rate RATE: every host's migration NIC runs at RATE each way (tc tbf on the host's "
        "veth end and on its switch port; RATE: 16MiB, 16 = MiB/s, 128mbit, 1GiB); down / up: every "
        "host's NIC down / up; reset: no shaping, up. The storage network is never touched.",
    )
    s.add_argument("action", choices=("rate", "down", "up", "reset"))
    s.add_argument("rate", nargs="?", help="for `rate`: e.g. 16MiB")
    s.set_defaults(fn=cmd_link)
    for name, fn, text in (
        ("kill-daemon", cmd_kill_daemon, "SIGKILL a host's libvirtd (its QEMUs keep running)"),
        ("start-daemon", cmd_start_daemon, "restart a host's libvirtd in the same namespaces"),
    ):
        s = sub.add_parser(name, help=text, description=text + " (fault injection).")
        s.add_argument("host", help="hostA, hostB or hostC")
        s.set_defaults(fn=fn)
    s = sub.add_parser(
        "reset-vm",
        help="restore a lab VM: remove it everywhere, redefine it on hostA",
        description="Destroy and undefine the VM on every host, recreate its disk (disky), "
        "truncate its console, define it on hostA and start it if it normally runs.",
    )
    s.add_argument("name", help=", ".join(v.name for v in vms.VMS))
    g = s.add_mutually_exclusive_group()
    g.add_argument("--start", dest="start", action="store_true", default=None, help="start it in any case")
    g.add_argument("--no-start", dest="start", action="store_false", help="leave it shut off")
    s.set_defaults(fn=cmd_reset_vm)
    s = sub.add_parser("xml", help="print a lab VM's domain XML", description="Print the domain XML up uses.")
    s.add_argument("name")
    s.set_defaults(fn=cmd_xml)
    s = sub.add_parser(
        "exec",
        help="run a command inside a lab host's namespaces",
        description="lab exec hostA -- virsh -c qemu+tcp://10.213.7.2/system hostname",
    )
    s.add_argument("host")
    s.add_argument("argv", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_exec)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        with lab_lock(settings) if args.command in LOCKED_COMMANDS else contextlib.nullcontext():
            args.fn(settings, args)
    except (LabError, ValueError) as exc:
        print(f"lab: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
