"""Check 6: machine type supported by the destination, vCPU limits, libvirt/QEMU versions (seed 12.10)."""

from __future__ import annotations

import re

from migration_core.facts.gathered import PreflightFacts
from migration_core.facts.host import HostFacts, HostVersions
from migration_core.models import CheckResult
from migration_core.preflight._common import (
    dest_name,
    failed,
    passed,
    src_name,
    warned,
)

_VERSIONED = re.compile(r"^pc-(q35|i440fx)-(\d+(?:\.\d+)*)$")


def _machine_version(name: str) -> tuple[str, tuple[int, ...]] | None:
    """`pc-q35-7.2` -> ("q35", (7, 2)); None for unversioned or other machines."""
    m = _VERSIONED.match(name)
    if m is None:
        return None
    return m.group(1), tuple(int(p) for p in m.group(2).split("."))


def _newest_common(family: str, a: HostFacts | None, b: HostFacts, arch: str | None) -> str | None:
    """The newest versioned machine of `family` that both hosts offer (b alone when a is unknown)."""
    names = set(b.machines(arch))
    if a is not None:
        names &= set(a.machines(arch))
    versions = [(v[1], n) for n in names if (v := _machine_version(n)) and v[0] == family]
    return max(versions)[1] if versions else None


def check_machine(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    vm, dst, name = facts.vm, facts.destination_host, "machine"
    if vm is None:
        return ()
    if vm.machine is None:
        return (warned(name, f"{vm.name}'s XML names no machine type, so its support on the destination is unchecked"),)
    if dst is None:
        return (warned(name, f"could not read {dest_name(facts)}'s capabilities; machine type {vm.machine} unchecked"),)
    machines = dst.machines(vm.arch, vm.domain_type)
    out: list[CheckResult] = []
    if not machines:
        return (
            failed(
                name,
                f"{dest_name(facts)} offers no {vm.arch} {vm.domain_type} guests at all",
                f"install QEMU for {vm.arch} on {dest_name(facts)}, or pick another destination",
            ),
        )
    parsed = _machine_version(vm.machine)
    family = parsed[0] if parsed else ("q35" if "q35" in vm.machine else "i440fx")
    if vm.machine not in machines:
        common = _newest_common(family, facts.source_host, dst, vm.arch)
        newest = _newest_common(family, None, dst, vm.arch)
        have = f" (its newest {family} machine is {newest})" if newest else ""
        change = f", or change the VM's machine type to {common}, which both hosts offer" if common else ""
        out.append(
            failed(
                name,
                f"{dest_name(facts)}'s QEMU has no machine type {vm.machine}{have}; a VM keeps its machine "
                "type when it migrates",
                f"migrate to a host whose QEMU is at least as new as {src_name(facts)}'s{change} (a "
                "machine-type change needs `virsh edit` and a restart of the VM)",
            )
        )
    elif machines[vm.machine].deprecated:
        out.append(
            warned(
                name,
                f"machine type {vm.machine} is deprecated on {dest_name(facts)}",
                "plan a move to a current q35 machine type at the next maintenance window",
            )
        )
    elif family != "q35":
        out.append(
            warned(
                name,
                f"{vm.name} uses machine type {vm.machine}; supported migrations (seed 12.10) use q35",
                "keep it if it works for you; new VMs should use q35",
            )
        )
    else:
        out.append(passed(name, f"{dest_name(facts)} supports machine type {vm.machine}"))
    limit = _vcpu_limit(facts)
    if limit is not None and vm.max_vcpus > limit:
        out.append(
            failed(
                "machine.vcpus",
                f"{vm.name} has up to {vm.max_vcpus} vCPUs but {dest_name(facts)} allows at most {limit} "
                f"for {vm.machine}",
                f"lower the VM's maximum vCPUs to {limit} or pick another destination",
            )
        )
    return tuple(out)


def _vcpu_limit(facts: PreflightFacts) -> int | None:
    vm, dst, caps = facts.vm, facts.destination_host, facts.destination_domcaps
    limits: list[int] = []
    if caps is not None and caps.max_vcpus:
        limits.append(caps.max_vcpus)
    if vm is not None and dst is not None and vm.machine:
        machine = dst.machines(vm.arch, vm.domain_type).get(vm.machine)
        if machine is not None and machine.max_cpus:
            limits.append(machine.max_cpus)
    return min(limits) if limits else None


def check_versions(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    src, dst, name = facts.source_host, facts.destination_host, "versions"
    if src is None or dst is None:
        return (warned(name, "could not read the libvirt and QEMU versions of both hosts"),)

    def show(v: HostVersions | None, label: str) -> str:
        if v is None:
            return f"libvirt unknown / QEMU unknown on {label}"
        return f"libvirt {v.libvirt_text} / QEMU {v.hypervisor_text} on {label}"

    at_src, at_dst = src.versions, dst.versions
    both = f"{show(at_src, src_name(facts))} -> {show(at_dst, dest_name(facts))}"
    if at_src is None or at_dst is None:
        return (warned(name, f"some versions are unknown: {both}"),)
    pairs = (("QEMU", at_src.hypervisor, at_dst.hypervisor), ("libvirt", at_src.libvirt, at_dst.libvirt))
    older = [what for what, a, b in pairs if b < a]
    if older:
        return (
            warned(
                name,
                f"backward migration: {dest_name(facts)} runs an older {' and '.join(older)} ({both}); only "
                "q35 machines between supported minor releases are supported (seed 12.10)",
                "prefer a destination at least as new as the source; if you go ahead, keep the VM on a "
                "machine type the older QEMU offers",
            ),
        )
    return (passed(name, both),)
