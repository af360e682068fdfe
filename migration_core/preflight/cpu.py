"""Check 5: the destination can run the VM's CPU, with the missing features named and the seed 12.9 fix."""

from __future__ import annotations

from migration_core.facts.domxml_host import cpu_model_of
from migration_core.facts.gathered import PreflightFacts
from migration_core.facts.vm import VmFacts
from migration_core.models import CheckResult, CheckStatus
from migration_core.preflight._common import blocking, dest_name, join, passed, result, src_name, warned

NAME = "cpu"


def _cpu_label(vm: VmFacts) -> str:
    if vm.cpu.mode in (None, "custom"):
        return f"CPU model {vm.cpu.model}" if vm.cpu.model else "default CPU model"
    return f"{vm.cpu.mode} CPU"


def _baseline_fix(facts: PreflightFacts, vm: VmFacts) -> str:
    cmp = facts.cpu
    how = (
        f"then `virsh edit {vm.name}`, replace its <cpu> with that definition, and shut the VM down and "
        "start it again so the guest sees the new CPU (seed 12.9)"
    )
    if cmp is not None and cmp.baseline_xml:
        name = cmp.baseline_model or cpu_model_of(cmp.baseline_xml)
        model = f" ({name})" if name else ""
        return (
            f"set the VM's CPU to the baseline of both hosts{model}: `virsh edit {vm.name}`, replace its "
            f"<cpu> with\n{cmp.baseline_xml.strip()}\nthen shut the VM down and start it again (seed 12.9)"
        )
    return (
        f"compute the baseline of both hosts: put the host-model CPUs of {src_name(facts)} and "
        f"{dest_name(facts)} (`virsh domcapabilities`, mode host-model) in one file and run `virsh "
        f"hypervisor-cpu-baseline --migratable FILE`, {how}"
    )


def _passthrough(facts: PreflightFacts, vm: VmFacts) -> tuple[CheckResult, ...]:
    """host-passthrough / maximum expose the source CPU as it is: the hosts must be identical (seed 12.3)."""
    src, dst = facts.source_host, facts.destination_host
    if src is None or dst is None:
        return (warned(NAME, f"{vm.name} uses {vm.cpu.mode}; the host CPUs could not be compared"),)
    missing = sorted(src.cpu.features - dst.cpu.features)
    differs = src.cpu.vendor != dst.cpu.vendor or src.cpu.model != dst.cpu.model or missing
    if not differs:
        return (
            passed(
                NAME,
                f"{vm.name} uses {vm.cpu.mode} and both hosts report the same CPU ({src.cpu.vendor} "
                f"{src.cpu.model}, same features); firmware and microcode must match too (seed 12.3)",
            ),
        )
    what = (
        f"{dest_name(facts)} has a different CPU ({dst.cpu.vendor} {dst.cpu.model} vs {src.cpu.vendor} {src.cpu.model})"
    )
    if missing:
        what += f" and lacks {join(missing)}"
    return (
        result(
            NAME,
            blocking(facts),
            f"{vm.name} uses {vm.cpu.mode}, which passes the source CPU through as it is; {what}",
            _baseline_fix(facts, vm),
        ),
    )


def check_cpu(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    vm = facts.vm
    if vm is None:
        return ()
    if vm.cpu.mode in ("host-passthrough", "maximum"):
        return _passthrough(facts, vm)
    cmp = facts.cpu
    if cmp is None or cmp.compatible is None:
        why = cmp.error if cmp is not None and cmp.error else "no comparison was made"
        return (
            warned(
                NAME,
                f"could not compare {vm.name}'s {_cpu_label(vm)} with {dest_name(facts)}'s CPU: {why}",
                f"compare by hand on {dest_name(facts)}: `virsh hypervisor-cpu-compare` with the VM's <cpu> "
                f"from `virsh dumpxml --migratable {vm.name}` (needs a read-write connection)",
            ),
        )
    if cmp.compatible:
        how = f" ({cmp.result})" if cmp.result else ""
        return (passed(NAME, f"{dest_name(facts)} can run {vm.name}'s {_cpu_label(vm)}{how}"),)
    if cmp.missing_features:
        reason = (
            f"{dest_name(facts)} lacks CPU features {join(cmp.missing_features, limit=12)} that {vm.name}'s "
            f"{_cpu_label(vm)} requires"
        )
    else:
        reason = f"{dest_name(facts)} cannot run {vm.name}'s {_cpu_label(vm)}: {cmp.error or 'incompatible'}"
    status = blocking(facts)
    if status is CheckStatus.WARN:
        reason += " (offline migration: the VM will not start there until its CPU is changed)"
    return (result(NAME, status, reason, _baseline_fix(facts, vm)),)
