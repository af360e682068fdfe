"""Preflight check 5: CPU compatibility, missing features named, the seed 12.9 baseline as the fix."""

from __future__ import annotations

from dataclasses import replace

import pytest

from migration_core.facts.gathered import CpuComparison, VmState
from migration_core.facts.host import HostCpu
from migration_core.models import CheckStatus
from migration_core.preflight import cpu
from tests.migration_core.fixtures.build import facts, host, one

PASS, WARN, FAIL = CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL
BASELINE = (
    "<cpu mode='custom' match='exact'>\n  <model fallback='forbid'>IvyBridge-IBRS</model>\n"
    "  <vendor>Intel</vendor>\n"
    "  <feature policy='require' name='pcid'/>\n</cpu>"
)


def test_compatible_passes() -> None:
    r = one(cpu.check_cpu(facts("dom_vm42.xml", cpu=CpuComparison(compatible=True, result="identical"))))
    assert r.status is PASS and "Skylake-Client-IBRS" in r.reason and "identical" in r.reason


def test_missing_features_are_named_and_baseline_offered() -> None:
    cmp = CpuComparison(
        compatible=False,
        result="incompatible",
        missing_features=("avx512f", "pcid"),
        baseline_xml=BASELINE,
        baseline_model="IvyBridge-IBRS",
    )
    r = one(cpu.check_cpu(facts("dom_vm42.xml", cpu=cmp)))
    assert r.status is FAIL
    assert r.reason == "hostB lacks CPU features avx512f, pcid that vm42's CPU model Skylake-Client-IBRS requires"
    assert r.fix is not None
    assert "baseline of both hosts (IvyBridge-IBRS)" in r.fix and "<model fallback='forbid'>IvyBridge-IBRS" in r.fix
    assert "virsh edit vm42" in r.fix and "seed 12.9" in r.fix


def test_incompatible_without_feature_names_uses_libvirt_text_and_manual_baseline() -> None:
    cmp = CpuComparison(compatible=False, error="the CPU is incompatible with host CPU: Host CPU does not provide ...")
    r = one(cpu.check_cpu(facts("dom_vm42.xml", cpu=cmp)))
    assert r.status is FAIL and "Host CPU does not provide" in r.reason
    assert r.fix is not None and "virsh hypervisor-cpu-baseline --migratable" in r.fix


def test_incompatible_offline_is_only_a_warning() -> None:
    cmp = CpuComparison(compatible=False, missing_features=("avx512f",))
    r = one(cpu.check_cpu(facts("dom_vm42.xml", cpu=cmp, state=VmState.SHUTOFF)))
    assert r.status is WARN and "will not start there" in r.reason


@pytest.mark.parametrize(
    ("cmp", "fragment"),
    [
        (None, "no comparison was made"),
        (
            CpuComparison(compatible=None, error="this function is not supported by the connection driver"),
            "not supported",
        ),
    ],
)
def test_not_compared_warns_with_the_manual_command(cmp: CpuComparison | None, fragment: str) -> None:
    r = one(cpu.check_cpu(facts("dom_vm42.xml", cpu=cmp)))
    assert r.status is WARN and fragment in r.reason
    assert r.fix is not None and "virsh hypervisor-cpu-compare" in r.fix and "--migratable vm42" in r.fix


def test_host_passthrough_identical_hosts_pass() -> None:
    r = one(cpu.check_cpu(facts("dom_nicvm.xml")))
    assert r.status is PASS and "host-passthrough" in r.reason and "microcode" in r.reason


def test_host_passthrough_different_hosts_fail_with_missing_features() -> None:
    src = host(name="hostA")
    dst = replace(host(name="hostB"), cpu=HostCpu(model="IvyBridge-IBRS", vendor="Intel", features=frozenset({"pcid"})))
    r = one(cpu.check_cpu(facts("dom_nicvm.xml", source_host=src, destination_host=dst)))
    assert r.status is FAIL and "different CPU (Intel IvyBridge-IBRS vs AMD kvm64)" in r.reason
    # the source's features the destination lacks, sorted, the long tail counted
    assert "lacks 3dnowprefetch, abm, adx" in r.reason and "and 65 more" in r.reason


def test_host_passthrough_without_host_facts_warns() -> None:
    assert one(cpu.check_cpu(facts("dom_nicvm.xml", destination_host=None))).status is WARN


def test_no_vm_no_result() -> None:
    assert cpu.check_cpu(facts(None)) == ()


def test_baseline_model_is_read_from_the_xml_when_not_given() -> None:
    cmp = CpuComparison(compatible=False, missing_features=("avx512f",), baseline_xml=BASELINE)
    r = one(cpu.check_cpu(facts("dom_vm42.xml", cpu=cmp)))
    assert r.fix is not None and "baseline of both hosts (IvyBridge-IBRS)" in r.fix
