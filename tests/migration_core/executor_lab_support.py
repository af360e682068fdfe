"""Shared helpers for the executor / hypervisor / verification lab tests and bench/bench_executor.py.

Tests work on their own copies of the lab VMs ("xt-..." clones of `deploy/lab/lab xml TEMPLATE`, own UUID,
MAC, console file and disk), so they never disturb the lab's vm42/busy/disky/stopped that other suites use,
and they remove them when done. Plans are built with the planner's own functions.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import subprocess
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

from migration_core.facts.domxml import parse_domain
from migration_core.facts.gathered import DiskVisibility, VmState
from migration_core.hypervisor.libvirt_adapter import Hypervisor
from migration_core.inventory.hosts import Inventory, load_inventory
from migration_core.models import (
    CheckResult,
    CheckStatus,
    ConvergencePolicy,
    MigrationOptions,
    MigrationRequest,
    Plan,
)
from migration_core.planning.planner import assemble_plan, build_flags_and_params, choose_mode, convergence_policy
from tests.labkit import ConsoleStatus, LabInfo, link_reset, link_up, run_lab, wait_console_line

A, B = "hostA", "hostB"
DISK_DIR = "/var/lib/libvirt/xt-disks"  # as the lab hosts see it; in no storage pool


def _disk_on(lab: LabInfo, host: str, name: str) -> Path:
    """Where a host's private /var/lib/libvirt/xt-disks/NAME.qcow2 lives, seen from the root namespace."""
    return lab.host(host).images_dir.parent / "xt-disks" / f"{name}.qcow2"


@dataclass(frozen=True)
class Guest:
    """A test VM cloned from a lab template."""

    name: str
    uuid: str
    template: str
    console: Path
    disk: Path | None  # hostA's copy of its private disk (disky clones)
    running: bool


def clone_xml(
    lab: LabInfo,
    template: str,
    name: str,
    uuid: str,
    *,
    cmdline: str | None = None,
    memory_mib: int | None = None,
    disk_file: str | None = None,
) -> str:
    """The template's XML with a new name, UUID, MAC, console file (and cmdline / memory / disk path)."""
    xml = run_lab(lab, "xml", template)
    xml = re.sub(r"<name>[^<]+</name>", f"<name>{name}</name>", xml, count=1)
    xml = re.sub(r"<uuid>[^<]+</uuid>", f"<uuid>{uuid}</uuid>", xml, count=1)
    xml = re.sub(r"<title>[^<]*</title>\s*", "", xml)
    xml = re.sub(r"console/[^'\"]+\.log", f"console/{name}.log", xml)
    mac = hashlib.sha256(name.encode()).hexdigest()
    xml = re.sub(r"<mac address='[^']+'/>", f"<mac address='52:54:00:{mac[0:2]}:{mac[2:4]}:{mac[4:6]}'/>", xml)
    if cmdline is not None:
        xml = re.sub(r"<cmdline>[^<]*</cmdline>", f"<cmdline>{cmdline}</cmdline>", xml)
    if memory_mib is not None:
        xml = re.sub(r"<memory unit='MiB'>\d+</memory>", f"<memory unit='MiB'>{memory_mib}</memory>", xml)
    if disk_file is not None:
        xml = re.sub(r"<source file='/var/lib/libvirt/images/[^']+'/>", f"<source file='{disk_file}'/>", xml)
    return xml


async def remove_everywhere(hv: Hypervisor, lab: LabInfo, name: str) -> None:
    """Destroy and undefine a test VM on both hosts (by name); no error when it is not there."""
    for host in (A, B):
        uri = lab.host(host).uri
        info = await hv.domain(uri, name)
        if info.active:
            await hv.destroy(uri, name)
        if (await hv.domain(uri, name)).present:
            await hv.undefine(uri, name)


async def forget_on(hv: Hypervisor, lab: LabInfo, guest: Guest, host: str) -> None:
    """Remove an inactive definition of the guest that an earlier migration left on `host`."""
    info = await hv.domain(lab.host(host).uri, guest.uuid)
    if info.present and not info.active:
        await hv.undefine(lab.host(host).uri, guest.uuid)


async def make_guest(
    hv: Hypervisor,
    lab: LabInfo,
    template: str,
    name: str,
    *,
    start: bool = True,
    cmdline: str | None = None,
    memory_mib: int | None = None,
    disk_mib: int = 64,
) -> Guest:
    """Define (and start) a clone of a lab VM on hostA; waits for its first console line when started.
    A disky clone gets a qcow2 of `disk_mib` virtual MiB with 8 MiB of data (the rest is sparse)."""
    await remove_everywhere(hv, lab, name)
    uid = str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"{name}.migrate-bot.test"))
    console = lab.console_path(name)
    console.write_text("")
    disk_file = None
    disk = None
    if "<disk type='file'" in run_lab(lab, "xml", template):
        # Outside every storage pool: the destination image must be pre-created by the executor (lab.md P4).
        disk_file = f"{DISK_DIR}/{name}.qcow2"
        disk = _disk_on(lab, A, name)
        for host in (A, B):  # a fresh image on A; nothing left over on B
            _disk_on(lab, host, name).unlink(missing_ok=True)
        disk.parent.mkdir(exist_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), f"{disk_mib}M"], check=True)
        subprocess.run(
            ["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 8M", str(disk)], check=True, capture_output=True
        )
        for host in (A, B):
            await hv.refresh_pools(lab.host(host).uri)
    xml = clone_xml(lab, template, name, uid, cmdline=cmdline, memory_mib=memory_mib, disk_file=disk_file)
    await hv.define(lab.host(A).uri, xml)
    if start:
        await hv.start(lab.host(A).uri, name)
        await asyncio.to_thread(wait_console_line, lab, name, None, 90)
    return Guest(name, uid, template, console, disk, start)


async def drop_guest(hv: Hypervisor, lab: LabInfo, guest: Guest) -> None:
    await remove_everywhere(hv, lab, guest.name)
    for host in (A, B):
        _disk_on(lab, host, guest.name).unlink(missing_ok=True)


def healthy_link(lab: LabInfo) -> None:
    """Start from the migration link as `lab up` leaves it: up and unshaped (a failed fault test elsewhere
    may have left it cut or throttled)."""
    link_up(lab)
    link_reset(lab)


def disk_copy(lab: LabInfo, host: str, guest: Guest) -> Path:
    """The guest's private disk image on `host` (root-namespace path)."""
    return _disk_on(lab, host, guest.name)


def allocated_bytes(path: Path) -> int | None:
    """Bytes an image really uses on disk (what `du` reports), None when there is no such file."""
    try:
        return path.stat().st_blocks * 512
    except FileNotFoundError:
        return None


# The lab's inventories: the bot reaches the hosts over their UNIX sockets, over qemu+ssh, or over qemu+tls
# (peers over TLS too, QEMU migration TLS on both hosts); `deploy/lab/lab up` writes all three.
TRANSPORT_FILES = {"unix": "hosts.toml", "ssh": "hosts-ssh.toml", "tls": "hosts-tls.toml"}


def inventory(lab: LabInfo, transport: str = "unix") -> Inventory:
    return load_inventory(lab.hosts_toml.parent / TRANSPORT_FILES[transport])


def hypervisor_for(inv: Inventory) -> Hypervisor:
    """An adapter that reaches every host the way the inventory says (unix, ssh or tls)."""
    return Hypervisor({h.name: h.uri for h in inv})


def plan_for(
    lab: LabInfo,
    guest: Guest,
    vm_xml: str,
    *,
    source: str = A,
    destination: str = B,
    options: MigrationOptions | None = None,
    policy: ConvergencePolicy | None = None,
    local_disks: tuple[str, ...] = (),
    running: bool = True,
    transport: str = "unix",
) -> Plan:
    """A plan as the planner builds it (flags, params, policy), with a passing preflight check."""
    request = MigrationRequest(guest.name, destination, options or MigrationOptions())
    inv = inventory(lab, transport)
    dst = inv.get(destination)
    vm = parse_domain(vm_xml)
    mode = choose_mode(request, VmState.RUNNING if running else VmState.SHUTOFF)
    disks = tuple(DiskVisibility(t, same_path_exists=False, shared=False) for t in local_disks)
    flags, params = build_flags_and_params(
        request, mode, vm, disks, dest_peer_uri=dst.peer_uri, migration_address=dst.migration_address
    )
    checks = (CheckResult("lab", CheckStatus.PASS, "test plan"),)
    pol = policy or convergence_policy(request, vm, checks, mode=mode)
    return assemble_plan(request, source, destination, mode, checks, None, flags, params, pol, None, vm)


async def wait_console_after(lab: LabInfo, guest: Guest, after_t: int | None, timeout_s: float = 60) -> ConsoleStatus:
    return await asyncio.to_thread(wait_console_line, lab, guest.name, after_t, timeout_s)
