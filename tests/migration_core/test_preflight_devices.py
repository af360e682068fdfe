"""Preflight check 8: host devices, Mellanox VF (seed 12.6), vGPU (seed 12.7), vIOMMU, NUMA pinning,
huge pages, and the other configurations libvirt refuses to migrate. All over XML the lab cannot start."""

from __future__ import annotations

from dataclasses import replace

import pytest

from migration_core.facts import domxml
from migration_core.facts.gathered import VmState
from migration_core.facts.host import HugepagePool
from migration_core.facts.vm import HugepageRequest, MemoryBackingFacts, VmFacts
from migration_core.models import CheckStatus
from migration_core.preflight import devices, numa, run_checks
from tests.migration_core.fixtures.build import domcaps, facts, host, named, one, statuses, vm, xml

PASS, WARN, FAIL = CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL
VF = "0000:e1:00.1"


def vf_vm(nodedev: str | None, devlink: bool | None = None) -> VmFacts:
    """nicvm reduced to its VF interface, with the VF's node device (and devlink state) attached."""
    base = vm("dom_nicvm.xml")
    base = replace(base, hostdevs=tuple(h for h in base.hostdevs if h.address == VF))
    pci = {VF: domxml.parse_pci_nodedev(xml(nodedev))} if nodedev else None
    return domxml.attach_host_device_info(
        base, pci=pci, devlink_migratable={VF: devlink} if devlink is not None else None
    )


def gpu_vm(nodedev: str | None = "nodedev_nvidia_mdev.xml", iommu: bool = False) -> VmFacts:
    base = vm("dom_gpuvm.xml")
    mdev = domxml.parse_mdev_nodedev(xml(nodedev)) if nodedev else None
    keep = tuple(m for m in base.mdevs if mdev is None or m.uuid == mdev.uuid)[:1]
    base = replace(base, mdevs=keep, iommu=base.iommu if iommu else None)
    return domxml.attach_host_device_info(base, mdev={mdev.uuid: mdev} if mdev else None)


# --- PCI host devices and Mellanox VFs -------------------------------------------------------------

VF_CASES = [
    # nodedev, devlink migratable, live expected, fragment
    ("nodedev_mlx5_vf_migration_driver.xml", True, WARN, "Technology Preview"),
    ("nodedev_mlx5_vf_migration_driver.xml", None, WARN, "devlink 'migratable' state could not be read"),
    ("nodedev_mlx5_vf_migration_driver.xml", False, FAIL, "'migratable' function disabled"),
    ("nodedev_mlx5_vf_vfio_pci.xml", True, FAIL, "bound to vfio-pci, not mlx5_vfio_pci"),
    ("nodedev_intel_nic.xml", None, FAIL, "assigned (passthrough)"),
    (None, None, FAIL, "its node device could not be read"),
]


@pytest.mark.parametrize(("nodedev", "devlink", "expected", "fragment"), VF_CASES)
def test_vf_interface(nodedev: str | None, devlink: bool | None, expected: CheckStatus, fragment: str) -> None:
    r = one(devices.check_hostdevs(facts(vf_vm(nodedev, devlink))))
    assert r.status is expected and fragment in r.reason
    assert r.fix


def test_migratable_vf_warning_lists_every_seed_limitation() -> None:
    r = one(devices.check_hostdevs(facts(vf_vm("nodedev_mlx5_vf_migration_driver.xml", True))))
    for limit in ("post-copy", "vIOMMU", "dirty-rate figures", "seed 12.6"):
        assert limit in r.reason
    assert r.fix is not None and "hostB must be set up the same way" in r.fix and "migratable enable" in r.fix


def test_vf_not_set_up_gives_the_seed_procedure() -> None:
    r = one(devices.check_hostdevs(facts(vf_vm("nodedev_mlx5_vf_vfio_pci.xml"))))
    assert r.fix is not None and "VF_MIGRATION_MODE=MIGRATION_ENABLED" in r.fix and "switchdev" in r.fix


def test_generic_pci_hostdev_fails_live_and_warns_offline() -> None:
    v = vm("dom_nicvm.xml")
    pci_only = replace(v, hostdevs=tuple(h for h in v.hostdevs if h.address == "0000:3b:00.0"))
    assert one(devices.check_hostdevs(facts(pci_only))).status is FAIL
    assert one(devices.check_hostdevs(facts(pci_only, state=VmState.SHUTOFF))).status is WARN


def test_usb_hostdev_warns_same_device_needed() -> None:
    v = vm("dom_nicvm.xml")
    usb = replace(v, hostdevs=tuple(h for h in v.hostdevs if h.type == "usb"))
    r = one(devices.check_hostdevs(facts(usb)))
    assert r.status is WARN and "usb 0781:5567" in r.reason


def test_transient_teaming_vf_warns_not_fails() -> None:
    v = domxml.parse_domain(
        "<domain type='kvm'><name>t</name><devices><interface type='hostdev'><source><address type='pci'"
        " domain='0x0000' bus='0x05' slot='0x10' function='0x2'/></source><teaming type='transient'/>"
        "</interface></devices></domain>"
    )
    r = one(devices.check_hostdevs(facts(v)))
    assert r.status is WARN and "failover" in r.reason


def test_scsi_hostdev_fails() -> None:
    v = domxml.parse_domain(
        "<domain type='kvm'><name>s</name><devices><hostdev mode='subsystem' type='scsi'><source>"
        "<adapter name='scsi_host0'/><address bus='0' target='0' unit='0'/></source></hostdev></devices>"
        "</domain>"
    )
    r = one(devices.check_hostdevs(facts(v)))
    assert r.status is FAIL and "scsi scsi_host0" in r.reason


# --- vGPU -------------------------------------------------------------------------------------------


def test_nvidia_vgpu_warns_with_every_seed_limitation() -> None:
    r = one(devices.check_vgpu(facts(gpu_vm())))
    assert r.status is WARN and "(nvidia-63)" in r.reason
    for limit in ("same version on both hosts", "post-copy", "vIOMMU", "only guest RAM", "seed 12.7"):
        assert limit in r.reason


def test_vgpu_driver_versions_differ_fails() -> None:
    f = facts(
        gpu_vm(),
        source_host=host(name="hostA", nvidia_vgpu_driver="550.54.16"),
        destination_host=host(name="hostB", nvidia_vgpu_driver="535.161.05"),
    )
    r = one(devices.check_vgpu(f))
    assert r.status is FAIL and "550.54.16 on hostA, 535.161.05 on hostB" in r.reason


def test_vgpu_same_driver_versions_still_warns_without_fix() -> None:
    f = facts(
        gpu_vm(),
        source_host=host(name="hostA", nvidia_vgpu_driver="550.54.16"),
        destination_host=host(name="hostB", nvidia_vgpu_driver="550.54.16"),
    )
    r = one(devices.check_vgpu(f))
    assert r.status is WARN and "driver 550.54.16" in r.reason and r.fix is None


def test_vgpu_type_missing_on_destination_fails() -> None:
    f = facts(gpu_vm(), destination_host=host(name="hostB", mdev_types=frozenset({"nvidia-64"})))
    r = one(devices.check_vgpu(f))
    assert r.status is FAIL and "no vGPU of type nvidia-63" in r.reason


def test_non_nvidia_mdev_fails() -> None:
    r = one(devices.check_vgpu(facts(gpu_vm("nodedev_gvt_mdev.xml"))))
    assert r.status is FAIL and "i915-GVTg_V5_4" in r.reason and "only NVIDIA vGPUs" in r.reason


def test_mdev_of_unknown_type_warns() -> None:
    r = one(devices.check_vgpu(facts(gpu_vm(None))))
    assert r.status is WARN and "the vGPU type could not be read" in r.reason


# --- vIOMMU -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("the_vm", "expected"),
    [
        (lambda: gpu_vm(iommu=True), FAIL),
        (
            lambda: replace(vf_vm("nodedev_mlx5_vf_migration_driver.xml", True), iommu=vm("dom_gpuvm.xml").iommu),
            FAIL,
        ),
        (lambda: replace(vm("dom_vm42.xml"), iommu=vm("dom_gpuvm.xml").iommu), PASS),
        (lambda: vm("dom_vm42.xml"), None),
    ],
)
def test_viommu(the_vm: object, expected: CheckStatus | None) -> None:
    assert callable(the_vm)
    results = devices.check_viommu(facts(the_vm()))
    assert (one(results).status if results else None) is expected


# --- NUMA pinning and huge pages ---------------------------------------------------------------------

NUMA_HOST = host("caps_numa_intel.xml", name="hostB")


def test_pinning_that_fits_warns_about_topology() -> None:
    f = facts("dom_numavm.xml", source_host=host("caps_numa_intel.xml", name="hostA"), destination_host=NUMA_HOST)
    r = one(numa.check_numa(f))
    assert r.status is WARN and "seed 12.3" in r.reason and "2 NUMA node(s) and 16 CPUs" in r.reason
    assert r.fix is None  # same topology on both ends


def test_pinning_to_cpus_and_nodes_the_destination_lacks_fails() -> None:
    r = one(numa.check_numa(facts("dom_numavm.xml")))  # the 2-CPU, 1-node capture host
    assert r.status is FAIL
    assert "host CPUs 2, 3, 4, 5, 6, 7, 10, 11, which hostB lacks" in r.reason
    assert "NUMA node(s) 1, which hostB lacks" in r.reason


def test_pinning_onto_a_different_topology_suggests_a_same_shaped_host() -> None:
    f = facts("dom_numavm.xml", destination_host=NUMA_HOST)  # source: 1 node, 2 CPUs
    r = one(numa.check_numa(f))
    assert r.status is WARN and "hostA has 1 and 2" in r.reason and r.fix


def test_unpinned_vm_has_no_numa_result() -> None:
    assert numa.check_numa(facts("dom_vm42.xml")) == ()


def _with_free(h: object, free: int | None) -> object:
    assert hasattr(h, "cells")
    cells = tuple(replace(c, pages=tuple(replace(p, free_pages=free) for p in c.pages)) for c in h.cells)  # type: ignore[attr-defined]
    return replace(h, cells=cells)  # type: ignore[type-var]


@pytest.mark.parametrize(
    ("free_per_cell", "expected", "fragment"),
    [
        (4096, PASS, "4096 x 2 MiB huge pages (8.0 GiB); hostB has 8192 free"),
        (1000, FAIL, "hostB has 2000 free of 8192"),
        (None, WARN, "how many are free is unknown"),
    ],
)
def test_hugepages_on_the_destination(free_per_cell: int | None, expected: CheckStatus, fragment: str) -> None:
    r = one(numa.check_hugepages(facts("dom_numavm.xml", destination_host=_with_free(NUMA_HOST, free_per_cell))))
    assert r.status is expected and fragment in r.reason


def test_hugepages_none_reserved_fails() -> None:
    r = one(numa.check_hugepages(facts("dom_numavm.xml")))
    assert r.status is FAIL and "only 0 reserved" in r.reason and "nr_hugepages" in (r.fix or "")


def test_hugepage_size_the_destination_lacks_fails() -> None:
    v = replace(vm("dom_numavm.xml"), memory_backing=MemoryBackingFacts(hugepages=(HugepageRequest(size_kib=16384),)))
    r = one(numa.check_hugepages(facts(v, destination_host=NUMA_HOST)))
    assert r.status is FAIL and "does not support 16 MiB huge pages" in r.reason


def test_default_hugepage_size_is_2mib() -> None:
    v = replace(vm("dom_vm42.xml"), memory_backing=MemoryBackingFacts(hugepages=(HugepageRequest(),)))
    r = one(numa.check_hugepages(facts(v, destination_host=_with_free(NUMA_HOST, 4096))))
    assert r.status is PASS and "1024 x 2 MiB" in r.reason


def test_hugepages_offline_only_warn() -> None:
    r = one(numa.check_hugepages(facts("dom_numavm.xml", state=VmState.SHUTOFF)))
    assert r.status is WARN


# --- other blockers ---------------------------------------------------------------------------------

OTHER = [
    (
        "<devices><filesystem type='mount'><driver type='virtiofs'/><source dir='/s'/><target dir='s'/>"
        "</filesystem></devices>",
        FAIL,
        "virtiofs",
    ),
    (
        "<cpu mode='custom'><model>Haswell</model><feature policy='require' name='invtsc'/></cpu>",
        FAIL,
        "invtsc",
    ),
    (
        "<cpu mode='custom'><model>Haswell</model><feature policy='require' name='invtsc'/></cpu>"
        "<clock><timer name='tsc' frequency='2095078000'/></clock>",
        None,
        "",
    ),
    ("<devices><shmem name='ivshmem0' role='peer'/></devices>", FAIL, "role='master'"),
    (
        "<devices><disk type='file'><source file='/t.img'/><target dev='vda'/><transient/></disk></devices>",
        FAIL,
        "<transient/>",
    ),
    ("<devices><interface type='vdpa'><source dev='/dev/vhost-vdpa-0'/></interface></devices>", FAIL, "vDPA"),
    ("<launchSecurity type='sev'/>", FAIL, "confidential computing (sev)"),
    (
        "<devices><tpm model='tpm-tis'><backend type='passthrough'/></tpm></devices>",
        FAIL,
        "host TPM is passed through",
    ),
    ("<devices><graphics type='vnc' listen='0.0.0.0'/></devices>", None, ""),
]


@pytest.mark.parametrize(("extra", "expected", "fragment"), OTHER)
def test_other_blockers(extra: str, expected: CheckStatus | None, fragment: str) -> None:
    v = domxml.parse_domain(f"<domain type='kvm'><name>o</name><memory>1024</memory>{extra}</domain>")
    results = devices.check_other(facts(v))
    if expected is None:
        assert results == ()
    else:
        r = one(results)
        assert r.status is expected and fragment in r.reason and r.fix


def test_emulated_tpm_needs_swtpm_on_the_destination() -> None:
    v = vm("dom_numavm.xml")
    # the captured domcaps offer only the passthrough backend (no swtpm on that machine)
    assert any("swtpm is not installed" in r.reason for r in devices.check_other(facts(v)))
    with_swtpm = replace(domcaps(), tpm_backends=frozenset({"passthrough", "emulator"}))
    assert not any("TPM" in r.reason for r in devices.check_other(facts(v, destination_domcaps=with_swtpm)))


def test_graphics_on_a_source_address_warns() -> None:
    r = named(devices.check_other(facts("dom_numavm.xml")), "devices.other")
    assert any(x.status is WARN and "192.0.2.10" in x.reason for x in r)


def test_offline_skips_live_only_blockers() -> None:
    assert devices.check_other(facts("dom_oldpc.xml", state=VmState.SHUTOFF)) == ()


# --- the whole family through run_checks ------------------------------------------------------------


def test_clean_vm_gets_one_devices_pass() -> None:
    results = run_checks(facts())
    assert one(results, "devices").status is PASS
    assert not [r for r in results if r.name.startswith("devices.")]


def test_device_findings_replace_the_summary_line() -> None:
    s = statuses(run_checks(facts(gpu_vm(iommu=True))))
    assert s["devices.vgpu"] is WARN and s["devices.viommu"] is FAIL and "devices" not in s


def test_hugepage_pools_with_free_counts_are_used_per_size() -> None:
    pools = NUMA_HOST.hugepage_pools(2048)
    assert pools == (HugepagePool(2048, 4096, cell=0), HugepagePool(2048, 4096, cell=1))
