"""Preflight check 11: options vs the VM and the mode (post-copy vs devices, offline vs live options)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from migration_core.facts import domxml
from migration_core.facts.gathered import DiskVisibility, VmState
from migration_core.facts.host import HostVersions
from migration_core.models import CheckStatus, CopyStorage, MigrationMode, MigrationOptions
from migration_core.preflight import options, postcopy_blockers
from migration_core.units import GIB
from tests.migration_core.fixtures.build import LIBVIRT_9_0, facts, host, one, statuses, vm, xml

PASS, WARN, FAIL = CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL


def test_defaults_pass_with_a_mode_summary() -> None:
    r = one(options.check_options(facts()))
    assert r.status is PASS
    assert r.reason == (
        "the requested options fit: live migration, defined on the destination, definition kept on the source"
    )


@pytest.mark.parametrize(
    "opts",
    [
        MigrationOptions(postcopy=True),
        MigrationOptions(auto_converge=True, bandwidth_mib_s=100),
        MigrationOptions(parallel_connections=4),
        MigrationOptions(max_downtime_ms=500),
        MigrationOptions(copy_storage=CopyStorage.ALL),
        MigrationOptions(compressed=True),
        MigrationOptions(postcopy_after_s=30.0),
    ],
)
def test_shut_off_vm_with_live_options_fails(opts: MigrationOptions) -> None:
    r = one(options.check_options(facts(state=VmState.SHUTOFF, options=opts)), "options.mode")
    assert r.status is FAIL and "migrated offline (it is shut off)" in r.reason and "only apply to a live" in r.reason


def test_explicit_offline_with_live_options_is_rechecked() -> None:
    opts = MigrationOptions(mode=MigrationMode.OFFLINE, compressed=True)
    r = one(options.check_options(facts(state=VmState.SHUTOFF, options=opts)), "options.mode")
    assert r.status is FAIL and "--offline was asked for" in r.reason and "--compressed" in r.reason


def test_offline_transient_cannot_be_honoured() -> None:
    r = one(options.check_options(facts(state=VmState.SHUTOFF, options=MigrationOptions(persistent=False))))
    assert r.status is FAIL and "--transient" in r.reason


def vgpu_vm() -> object:
    g = vm("dom_gpuvm.xml")
    return replace(g, iommu=None)


def vf_vm() -> object:
    n = vm("dom_nicvm.xml")
    info = domxml.parse_pci_nodedev(xml("nodedev_mlx5_vf_migration_driver.xml"))
    return domxml.attach_host_device_info(n, pci={info.address: info})


POSTCOPY = [
    (lambda: vgpu_vm(), FAIL, "a vGPU (seed 12.7)"),
    (lambda: vf_vm(), FAIL, "a Mellanox VF (seed 12.6)"),
    (lambda: replace(vm("dom_vm42.xml"), iommu=vm("dom_gpuvm.xml").iommu), FAIL, "a vIOMMU (intel)"),
    (lambda: vm("dom_vm42.xml"), WARN, "cannot be aborted"),
]


@pytest.mark.parametrize(("the_vm", "expected", "fragment"), POSTCOPY)
@pytest.mark.parametrize("opts", [MigrationOptions(postcopy=True), MigrationOptions(postcopy_after_s=60.0)])
def test_postcopy_vs_devices(the_vm: object, expected: CheckStatus, fragment: str, opts: MigrationOptions) -> None:
    assert callable(the_vm)
    r = one(options.check_options(facts(the_vm(), options=opts)), "options.postcopy")
    assert r.status is expected and fragment in r.reason
    if expected is FAIL:
        assert r.fix is not None and "--auto-converge" in r.fix


def test_postcopy_blockers_of_a_plain_vm_are_empty() -> None:
    assert postcopy_blockers(vm("dom_vm42.xml")) == () and postcopy_blockers(None) == ()


def test_copy_storage_with_nothing_local_warns() -> None:
    shared = DiskVisibility("vda", same_path_exists=True, shared=True, shared_fs=True)
    v = replace(vm("dom_vm42.xml"), disks=vm("dom_vm42.xml").disks[:2])
    r = one(options.check_options(facts(v, disks=(shared,), options=MigrationOptions(copy_storage=CopyStorage.ALL))))
    assert r.status is WARN and "does nothing" in r.reason


def test_copy_storage_with_a_local_disk_is_fine() -> None:
    local = DiskVisibility("vda", same_path_exists=False, shared=False, size_bytes=GIB, destination_pool="default")
    v = replace(vm("dom_vm42.xml"), disks=vm("dom_vm42.xml").disks[:1])
    r = one(options.check_options(facts(v, disks=(local,), options=MigrationOptions(copy_storage=CopyStorage.ALL))))
    assert r.status is PASS


def test_parallel_with_compression_fails() -> None:
    r = one(options.check_options(facts(options=MigrationOptions(parallel_connections=2, compressed=True))))
    assert r.status is FAIL and "multi-FD (--parallel) with xbzrle" in r.reason


@pytest.mark.parametrize(
    ("qemu", "expected"),
    [(7_002_022, FAIL), (10_001_000, None), (None, WARN)],
)
def test_postcopy_with_parallel_needs_qemu_10_1(qemu: int | None, expected: CheckStatus | None) -> None:
    versions = None if qemu is None else HostVersions(LIBVIRT_9_0, qemu, "QEMU")
    f = facts(
        options=MigrationOptions(postcopy=True, parallel_connections=2),
        source_host=host(name="hostA", versions=versions),
        destination_host=host(name="hostB", versions=versions),
    )
    assert statuses(options.check_options(f)).get("options.combination") is expected


def test_undefine_source_of_a_transient_vm_warns() -> None:
    f = facts(vm_persistent=False, options=MigrationOptions(undefine_source=True))
    r = one(options.check_options(f))
    assert r.status is WARN and "transient on hostA" in r.reason
