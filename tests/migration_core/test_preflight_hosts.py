"""Preflight checks 1-2: hosts known, answering, distinct; hypervisor and accelerator."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from migration_core.facts.gathered import Endpoint
from migration_core.models import CheckStatus
from migration_core.preflight import hosts, run_checks
from tests.migration_core.fixtures.build import facts, host, one, vm

PASS, WARN, FAIL = CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL


def test_known_hosts_pass() -> None:
    assert one(hosts.check_known(facts())).status is PASS


def test_unknown_destination_suggests_close_names() -> None:
    f = facts(destination=Endpoint("hostb", known=False), known_hosts=("hostA", "hostB", "hostC"))
    r = one(hosts.check_known(f))
    assert r.status is FAIL and "'hostb' is not in the hosts file" in r.reason
    assert r.fix is not None and "did you mean hostB" in r.fix and "Known hosts: hostA, hostB, hostC" in r.fix


def test_both_unknown_gives_two_failures() -> None:
    f = facts(source=Endpoint("x1", known=False), destination=Endpoint("x2", known=False), known_hosts=())
    results = hosts.check_known(f)
    assert [r.status for r in results] == [FAIL, FAIL]
    assert "The hosts file lists no hosts" in (results[0].fix or "")


@pytest.mark.parametrize("role", ["source", "destination"])
def test_host_not_answering_fails_with_its_error(role: str) -> None:
    down = Endpoint(
        "hostB" if role == "destination" else "hostA",
        answered=False,
        error="Connection refused",
        uri="qemu+tcp://10.213.7.2/system",
    )
    change: dict[str, Any] = {role: down}
    r = one(hosts.check_reachable(facts(**change)))
    assert r.status is FAIL and "Connection refused" in r.reason and "qemu+tcp://10.213.7.2/system" in r.reason
    assert r.fix is not None and "libvirtd" in r.fix


def test_reachable_passes() -> None:
    assert one(hosts.check_reachable(facts())).status is PASS


def test_same_name_is_the_same_host() -> None:
    r = one(hosts.check_distinct(facts(destination=Endpoint("hostA"))))
    assert r.status is FAIL and "same host" in r.reason


def test_same_host_uuid_fails_like_libvirt_would() -> None:
    same = host(name="hostB", uuid="6c61622d-0000-4000-8000-00000000000a")
    r = one(hosts.check_distinct(facts(destination_host=same)))
    assert r.status is FAIL and "6c61622d-0000-4000-8000-00000000000a" in r.reason
    assert r.fix is not None and "host_uuid" in r.fix


def test_same_hostname_different_uuid_warns() -> None:
    f = facts()
    f = replace(f, destination_host=replace(f.destination_host, hostname="hosta"))  # type: ignore[type-var]
    assert one(hosts.check_distinct(f)).status is WARN


def test_distinct_without_host_facts_still_passes_on_names() -> None:
    assert one(hosts.check_distinct(facts(source_host=None, destination_host=None))).status is PASS


@pytest.mark.parametrize(
    ("fixture", "expected", "fragment"),
    [
        ("dom_tcgvm.xml", PASS, "TCG (software emulation"),
        ("dom_vm42.xml", PASS, "uses KVM acceleration"),
    ],
)
def test_hypervisor_reports_accelerator(fixture: str, expected: CheckStatus, fragment: str) -> None:
    r = one(hosts.check_hypervisor(facts(fixture)))
    assert r.status is expected and fragment in r.reason


def test_kvm_vm_to_host_without_kvm_fails() -> None:
    no_kvm = host()
    no_kvm = replace(no_kvm, guests=tuple(replace(g, domain_types=("qemu",)) for g in no_kvm.guests))
    r = one(hosts.check_hypervisor(facts("dom_vm42.xml", destination_host=no_kvm)))
    assert r.status is FAIL and "does not offer" in r.reason and r.fix is not None and "/dev/kvm" in r.fix


def test_tcg_vm_to_host_without_kvm_passes() -> None:
    no_kvm = host()
    no_kvm = replace(no_kvm, guests=tuple(replace(g, domain_types=("qemu",)) for g in no_kvm.guests))
    assert one(hosts.check_hypervisor(facts("dom_tcgvm.xml", destination_host=no_kvm))).status is PASS


def test_non_qemu_host_fails() -> None:
    r = one(hosts.check_hypervisor(facts(destination_host=host("caps_test_driver.xml"))))
    assert r.status is FAIL and "not a QEMU/KVM host" in r.reason and "test" in r.reason


def test_unknown_capabilities_warn() -> None:
    assert one(hosts.check_hypervisor(facts(destination_host=None))).status is WARN


def test_run_checks_stops_after_host_failures() -> None:
    f = facts(destination=Endpoint("hostB", answered=False, error="timeout"), destination_host=None)
    results = run_checks(f)
    assert [r.name for r in results] == ["hosts.known", "hosts.reachable", "hosts.distinct"]
    assert results[1].status is FAIL


def test_vm_fixture_used_here_is_the_lab_guest() -> None:
    # guards the default of facts(): other tests rely on the healthy default being the TCG lab guest
    assert facts().vm == vm("dom_tcgvm.xml")
