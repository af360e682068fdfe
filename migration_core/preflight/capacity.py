"""Check 10: the destination has the memory for the VM (plus headroom) and vCPU overcommit is reported."""

from __future__ import annotations

from migration_core.facts.gathered import PreflightFacts
from migration_core.models import CheckResult
from migration_core.preflight._common import blocking, dest_name, human_bytes, passed, result, warned


def check_memory(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    vm, dst, name = facts.vm, facts.destination_host, "capacity.memory"
    if vm is None:
        return ()
    if vm.memory_backing.uses_hugepages:
        return (passed(name, f"{vm.name}'s memory comes from huge pages (see devices.hugepages), not free memory"),)
    free = None if dst is None else dst.free_memory_bytes
    need = vm.memory_bytes
    if free is None:
        return (warned(name, f"could not read {dest_name(facts)}'s free memory; {vm.name} needs {human_bytes(need)}"),)
    # the hosts file's memory_reserve is never given to a VM: the same rule for a single move and a drain's plan
    reserve = facts.destination.memory_reserve_bytes
    free = max(0, free - reserve)
    headroom = facts.settings.memory_headroom_for(need)
    kept = f" after its memory_reserve of {human_bytes(reserve)}" if reserve else ""
    have = f"{vm.name} needs {human_bytes(need)}; {dest_name(facts)} has {human_bytes(free)} available{kept}"
    fix = f"free memory on {dest_name(facts)} (move or stop other VMs) or pick another destination"
    if free < need:
        return (result(name, blocking(facts), f"{have}: not enough", fix),)
    if free < need + headroom:
        return (
            warned(
                name,
                f"{have}, leaving less than the {human_bytes(headroom)} headroom the host itself needs",
                fix,
            ),
        )
    return (passed(name, f"{have} ({human_bytes(free - need)} left after the move)"),)


def check_vcpus(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    vm, dst, name = facts.vm, facts.destination_host, "capacity.vcpus"
    if vm is None:
        return ()
    cpus = None if dst is None else dst.cpus
    if dst is None or cpus is None:
        return (warned(name, f"could not read {dest_name(facts)}'s CPU count; {vm.name} has {vm.vcpus} vCPUs"),)
    if vm.vcpus > cpus:
        return (
            warned(
                name,
                f"{vm.name} has {vm.vcpus} vCPUs but {dest_name(facts)} has only {cpus} CPUs: it will run slower",
                "pick a bigger host, or lower the VM's vCPUs at the next restart",
            ),
        )
    if dst.running_vcpus is None:
        return (passed(name, f"{dest_name(facts)} has {cpus} CPUs for {vm.name}'s {vm.vcpus} vCPUs"),)
    total = dst.running_vcpus + vm.vcpus
    ratio = total / cpus
    shape = f"{dest_name(facts)} would run {total} vCPUs on {cpus} CPUs ({ratio:.1f}:1)"
    if ratio > facts.settings.vcpu_overcommit_ratio:
        return (warned(name, f"{shape}: overcommitted, guests compete for CPU time"),)
    return (passed(name, shape),)
