"""run_checks: report order, early stops, and never an exception whatever the facts look like."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migration_core import preflight
from migration_core.facts.gathered import (
    CpuComparison,
    DiskVisibility,
    Endpoint,
    PortProbe,
    PreflightFacts,
    VmState,
)
from migration_core.hypervisor.types import DomainInfo, NetworkInfo
from migration_core.models import CheckResult, CheckStatus, CopyStorage, MigrationMode, MigrationOptions
from migration_core.preflight import run_checks
from migration_core.units import GIB
from tests.migration_core.fixtures.build import FIXTURES, facts, host, statuses, vm

PASS, WARN, FAIL = CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL


def test_healthy_lab_guest_passes_everything_in_report_order() -> None:
    results = run_checks(facts())
    assert all(r.status is PASS for r in results if r.name != "vm.one_owner"), [
        r for r in results if r.status is not PASS
    ]
    assert [r.name for r in results] == [
        "hosts.known",
        "hosts.reachable",
        "hosts.distinct",
        "hypervisor",
        "vm.exists",
        "vm.state",
        "vm.name_clash",
        "vm.one_owner",
        "options",
        "cpu",
        "machine",
        "versions",
        "storage",
        "network",
        "network.ports",
        "capacity.memory",
        "capacity.vcpus",
        "devices",
    ]


def test_every_result_has_a_reason_and_failures_have_a_fix() -> None:
    for fixture in ("dom_vm42.xml", "dom_gpuvm.xml", "dom_nicvm.xml", "dom_numavm.xml", "dom_oldpc.xml"):
        for r in run_checks(facts(fixture)):
            assert r.reason
            if r.status is FAIL:
                assert r.fix, r


def test_a_raising_check_becomes_a_warning_and_the_rest_still_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    def check_boom(f: PreflightFacts) -> tuple[CheckResult, ...]:
        raise KeyError("surprise")

    check_boom.__module__ = "migration_core.preflight.cpu"
    monkeypatch.setattr(preflight, "_REST", (check_boom, *preflight._REST))
    results = run_checks(facts())
    boom = [r for r in results if r.name == "cpu.boom"]
    assert len(boom) == 1 and boom[0].status is WARN and "KeyError" in boom[0].reason
    assert statuses(results)["capacity.memory"] is PASS


def test_offline_plan_of_a_shut_off_vm() -> None:
    s = statuses(run_checks(facts("dom_vm42.xml", state=VmState.SHUTOFF)))
    assert s["vm.state"] is PASS and s["storage"] is PASS and "storage.cache" not in s


# --- never raises: random, partial and odd facts ---------------------------------------------------

VMS = [
    None,
    "dom_lab_nbd_running.xml",
    "dom_tcgvm.xml",
    "dom_vm42.xml",
    "dom_gpuvm.xml",
    "dom_nicvm.xml",
    "dom_numavm.xml",
    "dom_oldpc.xml",
]
OPTIONS = st.builds(
    MigrationOptions,
    mode=st.sampled_from([None, MigrationMode.LIVE, MigrationMode.OFFLINE]),
    persistent=st.booleans(),
    undefine_source=st.booleans(),
    postcopy=st.booleans(),
    postcopy_after_s=st.sampled_from([None, 0.0, 30.0]),
    auto_converge=st.booleans(),
    parallel_connections=st.sampled_from([None, 1, 4]),
    max_downtime_ms=st.sampled_from([None, 1, 300]),
    bandwidth_mib_s=st.sampled_from([None, 0, 100]),
    copy_storage=st.sampled_from([None, CopyStorage.ALL, CopyStorage.INC]),
    compressed=st.booleans(),
    tls=st.booleans(),
    timeout_s=st.sampled_from([None, 1.0]),
)
ODD = {
    "state": st.sampled_from([None, *VmState]),
    "source_host": st.sampled_from(
        [None, host(name="hostA"), host("caps_test_driver.xml"), host("caps_numa_intel.xml")]
    ),
    "destination_host": st.sampled_from(
        [
            None,
            host(name="hostB", free_memory_bytes=None, running_vcpus=None, versions=None),
            host("caps_numa_intel.xml", free_memory_bytes=0),
            host("caps_test_driver.xml"),
        ]
    ),
    "destination_domcaps": st.sampled_from([None, replace(facts().destination_domcaps, max_vcpus=None)]),  # type: ignore[type-var]
    "destination_domains": st.sampled_from([None, (), (DomainInfo("hostB", "vm42", "x", active=True),)]),
    "destination_networks": st.sampled_from([None, (), (NetworkInfo("default", False),)]),
    "destination_bridges": st.sampled_from([None, frozenset()]),
    "destination_netdevs": st.sampled_from([None, frozenset()]),
    "disks": st.sampled_from(
        [
            (),
            (DiskVisibility("vda"),),
            (DiskVisibility("vda", shared=False, size_bytes=None, destination_free_bytes=None),),
            (
                DiskVisibility("vda", shared=False, same_path_exists=False, size_bytes=GIB, destination_free_bytes=0),
                DiskVisibility("vdd", shared=True, shared_fs=False),
            ),
        ]
    ),
    "cpu": st.sampled_from([None, CpuComparison(), CpuComparison(compatible=False), CpuComparison(compatible=True)]),
    "probes": st.sampled_from([(), (PortProbe("migration", "hostB", 49152, None),)]),
    "vm_persistent": st.sampled_from([None, True, False]),
    "vm_snapshots": st.sampled_from([None, 0, 3]),
    "destination": st.sampled_from([Endpoint("hostB"), Endpoint("hostA"), Endpoint("x", known=False)]),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vm_fixture=st.sampled_from(VMS), opts=OPTIONS, odd=st.fixed_dictionaries({}, optional=ODD))
def test_run_checks_never_raises_and_no_check_crashes(
    vm_fixture: str | None, opts: MigrationOptions, odd: dict[str, object]
) -> None:
    f = facts(vm_fixture, options=opts, **odd)  # type: ignore[arg-type]
    results = run_checks(f)
    assert results and all(isinstance(r, CheckResult) and r.reason for r in results)
    assert not [r for r in results if "could not run" in r.reason], results


def test_property_test_covers_every_domain_fixture() -> None:
    on_disk = {p.name for p in FIXTURES.glob("dom_*.xml")}
    assert on_disk == {v for v in VMS if v}
    assert all(vm(v).name for v in on_disk)
