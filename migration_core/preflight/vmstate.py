"""Checks 3-4: the VM exists on the source, its state fits the mode, nothing clashes on the destination, and
no other host holds a definition of the same VM (one owner per VM: a second definition of the same disks,
started by mistake, corrupts them)."""

from __future__ import annotations

from migration_core.facts.gathered import PreflightFacts, VmState
from migration_core.models import CheckResult, MigrationMode
from migration_core.preflight._common import (
    dest_name,
    did_you_mean,
    failed,
    join,
    mode_of,
    noted,
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
    # A state that cannot do the requested mode: why, and the fix.
    clashes: dict[tuple[VmState, MigrationMode | None], tuple[str, str]] = {
        (VmState.RUNNING, MigrationMode.OFFLINE): (
            f"{vm} is running, but --offline moves only its definition: it would keep running on "
            f"{src_name(facts)} while a second definition appears on {dest_name(facts)}",
            f"drop --offline for a live migration, or shut {vm} down first (`virsh shutdown {vm}`)",
        ),
        (VmState.SHUTOFF, MigrationMode.LIVE): (
            f"{vm} is shut off, so it cannot be live-migrated",
            f"drop --live (an offline migration moves the definition), or start {vm} first",
        ),
    }
    clash = clashes.get((state, requested))
    if clash is not None:
        return (failed(name, *clash),)
    if state is VmState.RUNNING:
        return (passed(name, f"{vm} is running: live migration"),)
    if state is VmState.SHUTOFF:
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
        elif facts.request.options.persistent or mode_of(facts) is MigrationMode.OFFLINE:
            # Same name and UUID, shut off: this VM's own old copy (e.g. left by an earlier move with
            # --keep-source). Defining the VM there replaces it: information, not a risk.
            out.append(
                noted(
                    name,
                    f"{dest} holds an old, shut-off definition of {vm.name} (same UUID {vm.uuid}): this VM's own "
                    "copy; the migration replaces it with the current definition",
                )
            )
        else:
            out.append(
                warned(
                    name,
                    f"{dest} has an old, shut-off definition of {vm.name} (same UUID); with --transient it stays "
                    "defined there, so the VM would run on top of a stale definition",
                    f"drop --transient to replace it, or undefine it on {dest} first (`virsh undefine {vm.name}`)",
                )
            )
    return tuple(out) or (passed(name, f"no domain named {vm.name} or with its UUID on {dest}"),)


def check_other_definitions(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    """Definitions of the VM's UUID on hosts other than the source and the destination (the destination's own
    copy is check_name_clash's). Each one is a second owner of the same disks: the split-brain hazard."""
    name, vm = "vm.other_definitions", facts.vm
    if vm is None or facts.definitions_elsewhere is None:
        return ()
    dest = dest_name(facts)
    others = [d for d in facts.definitions_elsewhere if d.host != dest]
    unasked = [h for h in facts.hosts_unanswered if h != dest]
    if others:
        ordered = sorted(others, key=lambda d: d.host)
        listed = join(f"{d.host} ({d.name}, {'running' if d.active else 'shut off'})" for d in ordered)
        return (
            warned(
                name,
                f"{vm.name} (UUID {vm.uuid}) is also defined on {listed}: a split-brain hazard — started there "
                "while it runs elsewhere, it writes to the same disks",
                f"undefine the stale copies (`virsh undefine {vm.name}` on each host named, after checking they are "
                "not in use)",
            ),
        )
    where = f" (not asked: {join(unasked)} did not answer)" if unasked else ""
    return (passed(name, f"no other host of the inventory defines {vm.name}{where}"),)


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


def check_one_owner(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    """Say, in the plan the approver signs, what happens to the source's definition after the move."""
    opts, vm = facts.request.options, facts.vm
    if vm is None or not opts.persistent or opts.undefine_source or facts.vm_persistent is False:
        return ()
    src = src_name(facts)
    copied = " and the disk images copied from it" if opts.copy_storage is not None else ""
    if opts.keep_source:
        return (noted("vm.one_owner", f"--keep-source: {src} keeps its shut-off definition of {vm.name}{copied}"),)
    return (
        noted(
            "vm.one_owner",
            f"once the move is verified, {src}'s definition of {vm.name}{copied} is removed, so the VM has one "
            "owner (--keep-source keeps them)",
        ),
    )
