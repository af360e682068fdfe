"""Preflight check 6: machine type on the destination, vCPU limits, versions (backward migration warns)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from migration_core.facts.host import HostVersions
from migration_core.models import CheckStatus
from migration_core.preflight import machine
from tests.migration_core.fixtures.build import LIBVIRT_9_0, QEMU_7_2, facts, host, named, one, vm

PASS, WARN, FAIL = CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL


def test_supported_q35_passes() -> None:
    r = one(machine.check_machine(facts("dom_vm42.xml")))
    assert r.status is PASS and "pc-q35-7.2" in r.reason


def test_machine_missing_on_older_destination_names_the_common_one() -> None:
    f = facts("dom_vm42.xml", destination_host=host("caps_numa_intel.xml", name="hostB"))
    r = one(machine.check_machine(f), "machine")
    assert r.status is FAIL
    assert "no machine type pc-q35-7.2 (its newest q35 machine is pc-q35-6.2)" in r.reason
    assert r.fix is not None and "change the VM's machine type to pc-q35-6.2, which both hosts offer" in r.fix


def test_i440fx_warns_q35_recommended() -> None:
    r = one(machine.check_machine(facts("dom_oldpc.xml")))
    assert r.status is WARN and "q35" in r.reason and "seed 12.10" in r.reason


def test_deprecated_machine_warns() -> None:
    v = replace(vm("dom_oldpc.xml"), machine="pc-i440fx-1.4")
    r = one(machine.check_machine(facts(v)))
    assert r.status is WARN and "deprecated" in r.reason


def test_unknown_arch_on_destination_fails() -> None:
    v = replace(vm("dom_vm42.xml"), arch="aarch64", machine="virt-7.2")
    r = one(machine.check_machine(facts(v)))
    assert r.status is FAIL and "offers no aarch64 kvm guests" in r.reason


@pytest.mark.parametrize(
    ("vm_override", "dest", "expected"),
    [({"machine": None}, "caps_debian12.xml", WARN), ({}, None, WARN)],
)
def test_missing_facts_warn(vm_override: dict[str, Any], dest: str | None, expected: CheckStatus) -> None:
    v = replace(vm("dom_vm42.xml"), **vm_override)
    f = facts(v) if dest else facts(v, destination_host=None)
    assert one(machine.check_machine(f)).status is expected


def test_too_many_vcpus_for_destination_domcaps() -> None:
    v = replace(vm("dom_vm42.xml"), max_vcpus=300)
    r = one(machine.check_machine(facts(v)), "machine.vcpus")
    assert r.status is FAIL and "at most 288" in r.reason


VERSIONS = [
    # src libvirt, src qemu, dst libvirt, dst qemu, expected, fragment
    (
        LIBVIRT_9_0,
        QEMU_7_2,
        LIBVIRT_9_0,
        QEMU_7_2,
        PASS,
        "libvirt 9.0.0 / QEMU 7.2.22 on hostA -> libvirt 9.0.0",
    ),
    (LIBVIRT_9_0, QEMU_7_2, 10_000_000, 8_002_000, PASS, "QEMU 8.2.0 on hostB"),
    (LIBVIRT_9_0, 8_002_000, LIBVIRT_9_0, QEMU_7_2, WARN, "backward migration: hostB runs an older QEMU"),
    (10_000_000, QEMU_7_2, LIBVIRT_9_0, QEMU_7_2, WARN, "older libvirt"),
    (LIBVIRT_9_0, None, LIBVIRT_9_0, QEMU_7_2, WARN, "some versions are unknown"),
]


@pytest.mark.parametrize(("sl", "sq", "dl", "dq", "expected", "fragment"), VERSIONS)
def test_versions(sl: int, sq: int | None, dl: int, dq: int, expected: CheckStatus, fragment: str) -> None:
    f = facts(
        source_host=host(name="hostA", versions=None if sq is None else HostVersions(sl, sq, "QEMU")),
        destination_host=host(name="hostB", versions=HostVersions(dl, dq, "QEMU")),
    )
    r = one(machine.check_versions(f))
    assert r.status is expected and fragment in r.reason


def test_versions_without_hosts_warn() -> None:
    assert one(machine.check_versions(facts(source_host=None))).status is WARN


def test_no_vm_no_machine_result() -> None:
    assert named(machine.check_machine(facts(None)), "machine") == []
