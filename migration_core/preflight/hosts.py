"""Checks 1-2: both hosts are known, answer and differ; both run QEMU/KVM (the accelerator is reported)."""

from __future__ import annotations

from migration_core.facts.gathered import Endpoint, PreflightFacts
from migration_core.models import CheckResult
from migration_core.preflight._common import dest_name, did_you_mean, failed, join, passed, src_name, warned


def _unknown(end: Endpoint, role: str, known: tuple[str, ...]) -> CheckResult:
    close = did_you_mean(end.name, known)
    hint = f"did you mean {join(close)}? " if close else ""
    listed = f"Known hosts: {join(sorted(known))}." if known else "The hosts file lists no hosts."
    return failed(
        "hosts.known",
        f"the {role} host '{end.name}' is not in the hosts file",
        f"{hint}{listed} Add the host to the hosts file or check the spelling (`/migrate hosts` lists them).",
    )


def check_known(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    bad = [(e, r) for e, r in ((facts.source, "source"), (facts.destination, "destination")) if not e.known]
    if bad:
        return tuple(_unknown(e, r, facts.known_hosts) for e, r in bad)
    return (passed("hosts.known", f"source {src_name(facts)} and destination {dest_name(facts)} are known hosts"),)


def check_reachable(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    out = []
    for end, role in ((facts.source, "source"), (facts.destination, "destination")):
        if end.known and not end.answered:
            where = f" at {end.uri}" if end.uri else ""
            out.append(
                failed(
                    "hosts.reachable",
                    f"the {role} host {end.name}'s libvirt does not answer{where}: {end.error or 'no reason given'}",
                    f"check that libvirtd runs on {end.name} (`systemctl status libvirtd` or the "
                    "virtqemud/virtproxyd sockets), that its port is open from here, then run the plan again",
                )
            )
    if out:
        return tuple(out)
    return (passed("hosts.reachable", f"libvirt answers on {src_name(facts)} and {dest_name(facts)}"),)


def check_distinct(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    src, dst = facts.source_host, facts.destination_host
    fix = "pick another destination: a VM cannot be migrated to the host it runs on"
    if facts.source.name == facts.destination.name:
        return (
            failed(
                "hosts.distinct",
                f"{facts.request.vm} already runs on {facts.source.name}: source and destination are the same host",
                fix,
            ),
        )
    if src is not None and dst is not None:
        if src.uuid and src.uuid == dst.uuid:
            # libvirt compares only the host UUID (lab P1): two names for one host, or cloned host_uuid.
            return (
                failed(
                    "hosts.distinct",
                    f"{src_name(facts)} and {dest_name(facts)} have the same host UUID {src.uuid}: they are "
                    "the same host, or one was cloned (libvirt would refuse: 'Attempt to migrate guest to "
                    "the same host')",
                    f"{fix}; if they really are two machines, set a distinct host_uuid in libvirtd.conf on one",
                ),
            )
        if src.hostname and src.hostname == dst.hostname:
            return (
                warned(
                    "hosts.distinct",
                    f"{src_name(facts)} and {dest_name(facts)} report the same hostname {src.hostname} "
                    "(their host UUIDs differ)",
                    "check the hosts file: both names may point at one machine",
                ),
            )
    return (passed("hosts.distinct", f"{src_name(facts)} and {dest_name(facts)} are different hosts"),)


def check_hypervisor(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    name = "hypervisor"
    qemu_types = {"kvm", "qemu"}
    if facts.vm is None and facts.source_host is None and facts.destination_host is None:
        # The VM was not found, so no host facts were gathered (planning stops early): saying "could not
        # read the capabilities" would be false and would bury the real failure, vm.exists, under noise.
        return ()
    for host, label in ((facts.source_host, src_name(facts)), (facts.destination_host, dest_name(facts))):
        if host is None:
            return (warned(name, f"could not read {label}'s capabilities, so its hypervisor is unchecked"),)
        if not host.domain_types & qemu_types:
            offered = join(sorted(host.domain_types)) or "none"
            return (
                failed(
                    name,
                    f"{label} is not a QEMU/KVM host (its libvirt offers domain types: {offered})",
                    "migrate-bot migrates between QEMU/KVM hosts only; use qemu:///system URIs in the hosts file",
                ),
            )
    vm, dst = facts.vm, facts.destination_host
    if vm is None or dst is None:
        return (passed(name, "both hosts run QEMU/KVM"),)
    if vm.domain_type not in dst.domain_types:
        accel = "KVM (hardware virtualisation)" if vm.domain_type == "kvm" else f"type '{vm.domain_type}'"
        return (
            failed(
                name,
                f"{vm.name} uses {accel}, which {dest_name(facts)} does not offer (it offers "
                f"{join(sorted(dst.domain_types))})",
                f"enable KVM on {dest_name(facts)} (load kvm_intel/kvm_amd, check /dev/kvm) or pick another host",
            ),
        )
    if vm.accelerator == "tcg":
        return (
            passed(
                name,
                f"both hosts run QEMU; {vm.name} uses TCG (software emulation, domain type 'qemu'), not KVM",
            ),
        )
    return (passed(name, f"both hosts run QEMU/KVM; {vm.name} uses KVM acceleration"),)
