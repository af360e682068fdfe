"""Checks 3-4: the VM exists on the source, its state fits the mode, nothing clashes on the destination."""

from __future__ import annotations

from migration_core.facts.gathered import PreflightFacts, VmState
from migration_core.models import CheckResult, MigrationMode
from migration_core.preflight._common import (
    dest_name,
    did_you_mean,
    failed,
    join,
    mode_of,
    passed,
    src_name,
    warned,
)


def check_exists(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    if facts.vm is not None:
        return (passed("vm.exists", f"{facts.vm.name} ({facts.vm.uuid}) is defined on {src_name(facts)}"),)
    wanted = facts.request.vm
    close = did_you_mean(wanted, facts.known_vms)
    if close:
        fix = f"did you mean {join(close)}?"
    elif facts.known_vms:
        fix = f"VMs on {src_name(facts)}: {join(sorted(facts.known_vms))}"
    else:
        fix = f"{src_name(facts)} has no VMs; check which host the VM is on (`virsh list --all` there)"
    return (failed("vm.exists", f"no VM named '{wanted}' on {src_name(facts)}", fix),)


def check_state(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    name, vm = "vm.state", facts.request.vm
    state, requested = facts.vm_state, facts.request.options.mode
    if state is None:
        return (warned(name, f"could not read the state of {vm}; the mode is assumed to be {mode_of(facts)}"),)
    if state is VmState.RUNNING:
        if requested is MigrationMode.OFFLINE:
            return (
                failed(
                    name,
                    f"{vm} is running, but --offline moves only its definition: it would keep running on "
                    f"{src_name(facts)} while a second definition appears on {dest_name(facts)}",
                    f"drop --offline for a live migration, or shut {vm} down first (`virsh shutdown {vm}`)",
                ),
            )
        return (passed(name, f"{vm} is running: live migration"),)
    if state is VmState.SHUTOFF:
        if requested is MigrationMode.LIVE:
            return (
                failed(
                    name,
                    f"{vm} is shut off, so it cannot be live-migrated",
                    f"drop --live (an offline migration moves the definition), or start {vm} first",
                ),
            )
        if facts.vm_persistent is False:
            return (failed(name, f"{vm} is shut off and not persistent: there is nothing to migrate"),)
        return (passed(name, f"{vm} is shut off: offline migration (the definition moves, the disks do not)"),)
    reasons = {
        VmState.PAUSED: (
            f"{vm} is paused",
            f"resume it (`virsh resume {vm}`) for a live migration, or shut it down for an offline one",
        ),
        VmState.CRASHED: (
            f"{vm} has crashed",
            f"look at its log on {src_name(facts)}, then destroy and restart it or shut it down before migrating",
        ),
        VmState.PMSUSPENDED: (
            f"{vm} is suspended by the guest (S3/S4)",
            f"wake it (`virsh dompmwakeup {vm}`) or shut it down first",
        ),
        VmState.OTHER: (
            f"{vm} is in a transitional state (starting, shutting down or no state)",
            "wait until it is running or shut off, then plan again",
        ),
    }
    reason, fix = reasons[state]
    return (failed(name, f"{reason}: migrate-bot only migrates running or shut-off VMs", fix),)


def check_name_clash(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    name, vm, dest = "vm.name_clash", facts.vm, dest_name(facts)
    if vm is None:
        return ()
    if facts.destination_domains is None:
        return (warned(name, f"could not list the domains on {dest}, so a name or UUID clash is unchecked"),)
    out: list[CheckResult] = []
    for d in facts.destination_domains:
        same_name, same_uuid = d.name == vm.name, d.uuid.lower() == vm.uuid
        if not (same_name or same_uuid):
            continue
        if same_name and not same_uuid:
            out.append(
                failed(
                    name,
                    f"{dest} already has a different VM named {d.name} (UUID {d.uuid}, "
                    f"{'running' if d.active else 'defined'}); libvirt refuses a second domain with that "
                    "name",
                    f"rename or undefine {d.name} on {dest} (`virsh undefine {d.name}` if it is a stale copy)",
                )
            )
        elif same_uuid and not same_name:
            out.append(
                failed(
                    name,
                    f"{dest} has a domain {d.name} with the same UUID {vm.uuid} under another name",
                    f"undefine the stale {d.name} on {dest} (`virsh undefine {d.name}`) after checking it is unused",
                )
            )
        elif d.active:
            out.append(
                failed(
                    name,
                    f"{vm.name} is already running on {dest} (same name and UUID): a split-brain risk",
                    "find out which copy is authoritative; destroy the other before migrating",
                )
            )
        elif facts.request.options.persistent:
            out.append(
                warned(
                    name,
                    f"{dest} already has an inactive definition of {vm.name}; --persistent will replace it",
                    f"compare both definitions (`virsh dumpxml {vm.name}` on each host) if it may differ",
                )
            )
        else:
            out.append(warned(name, f"{dest} has an inactive definition of {vm.name}; it stays defined there"))
    return tuple(out) or (passed(name, f"no domain named {vm.name} or with its UUID on {dest}"),)


def check_snapshots(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    vm, count = facts.request.vm, facts.vm_snapshots
    if count is None or count == 0:
        return ()
    return (
        failed(
            "vm.snapshots",
            f"{vm} has {count} snapshot(s) recorded in libvirt; libvirt refuses to migrate a domain with snapshots",
            f"delete them first (`virsh snapshot-list {vm}`, then `virsh snapshot-delete {vm} NAME`; add "
            "`--metadata` to keep the snapshot's data and drop only libvirt's record)",
        ),
    )
