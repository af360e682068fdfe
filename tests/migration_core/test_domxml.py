"""domxml: libvirt 9.0 domain / capabilities / node-device XML -> typed facts, over captured fixtures."""

from __future__ import annotations

import pytest
from lxml import etree

from migration_core.errors import PreflightError
from migration_core.facts import domxml
from migration_core.facts.devices import PciDeviceInfo
from migration_core.facts.vm import DiskSourceKind
from migration_core.facts.xmlutil import parse_cpuset, pci_address, to_bytes
from migration_core.units import GIB, MIB
from tests.migration_core.fixtures.build import vm, xml

# --- domain XML: one row per fixture ------------------------------------------------------------------

DOMAINS = [
    # fixture, name, type, machine, memory, current memory, vcpus, max vcpus, cpu mode, cpu model
    ("dom_vm42.xml", "vm42", "kvm", "pc-q35-7.2", 2 * GIB, 1536 * MIB, 2, 4, "custom", "Skylake-Client-IBRS"),
    ("dom_gpuvm.xml", "gpuvm", "kvm", "pc-q35-7.2", 16 * GIB, 16 * GIB, 8, 8, "host-model", None),
    ("dom_nicvm.xml", "nicvm", "kvm", "pc-q35-7.2", 4 * GIB, 4 * GIB, 2, 2, "host-passthrough", None),
    ("dom_numavm.xml", "numavm", "kvm", "pc-q35-7.2", 8 * GIB, 8 * GIB, 4, 4, "host-model", None),
    ("dom_oldpc.xml", "oldpc", "kvm", "pc-i440fx-7.2", GIB, GIB, 1, 1, "custom", "qemu64"),
    ("dom_tcgvm.xml", "tcgvm", "qemu", "pc-q35-7.2", 256 * MIB, 256 * MIB, 1, 1, "custom", "qemu64"),
]


@pytest.mark.parametrize(
    ("fixture", "name", "dtype", "machine", "memory", "current", "vcpus", "max_vcpus", "mode", "model"),
    DOMAINS,
)
def test_domain_basics(
    fixture: str,
    name: str,
    dtype: str,
    machine: str,
    memory: int,
    current: int,
    vcpus: int,
    max_vcpus: int,
    mode: str,
    model: str | None,
) -> None:
    v = vm(fixture)
    assert (v.name, v.domain_type, v.machine, v.arch) == (name, dtype, machine, "x86_64")
    assert (v.memory_bytes, v.current_memory_bytes) == (memory, current)
    assert (v.vcpus, v.max_vcpus) == (vcpus, max_vcpus)
    assert (v.cpu.mode, v.cpu.model) == (mode, model)
    assert v.emulator == "/usr/bin/qemu-system-x86_64"
    assert v.uuid.startswith("6c61622d-766d-4000-8000-")


def test_running_lab_vm_with_an_nbd_disk() -> None:
    v = vm("dom_lab_nbd_running.xml")
    assert (v.name, v.domain_type, v.memory_bytes, v.cpu.model) == ("shared", "kvm", 64 * MIB, "qemu64")
    (disk,) = v.disks
    assert (disk.source.kind, disk.source.protocol, disk.source.name, disk.cache) == (
        DiskSourceKind.NETWORK,
        "nbd",
        "shared",
        "none",
    )
    assert disk.label == "vda (nbd shared on 10.213.8.3:10809)" and not disk.copyable
    assert [f.name for f in v.cpu.features if f.policy == "disable"] == ["pni", "svm"]


def test_tcg_guest_reports_tcg_accelerator() -> None:
    assert vm("dom_tcgvm.xml").accelerator == "tcg"
    assert vm("dom_vm42.xml").accelerator == "kvm"


def test_vm42_disks_cover_every_source_kind() -> None:
    disks = {d.target: d for d in vm("dom_vm42.xml").disks}
    vda, vdb, vdc, vdd, sda = (disks[t] for t in ("vda", "vdb", "vdc", "vdd", "sda"))
    assert (vda.source.kind, vda.source.path, vda.format, vda.cache, vda.bus) == (
        DiskSourceKind.FILE,
        "/var/lib/libvirt/images/vm42.qcow2",
        "qcow2",
        "none",
        "virtio",
    )
    assert [(b.source.path, b.format) for b in vda.backing_chain] == [
        ("/var/lib/libvirt/images/base-debian12.qcow2", "qcow2")
    ]
    assert (vdb.source.kind, vdb.source.protocol, vdb.source.name, [str(h) for h in vdb.source.hosts]) == (
        DiskSourceKind.NETWORK,
        "rbd",
        "vms/vm42-data",
        ["10.0.0.11:6789", "10.0.0.12:6789"],
    )
    assert (vdc.source.kind, vdc.source.path, vdc.shareable, vdc.copyable) == (
        DiskSourceKind.BLOCK,
        "/dev/mapper/mpatha",
        True,
        False,
    )
    assert (vdd.source.kind, vdd.source.pool, vdd.source.volume, vdd.cache) == (
        DiskSourceKind.VOLUME,
        "default",
        "vm42-scratch.qcow2",
        None,
    )
    assert (sda.device, sda.readonly, sda.empty, sda.writable) == ("cdrom", True, True, False)
    # One DiskSource reading per kind, and the report text it gives each disk.
    assert [d.label for d in (vda, vdb, vdc, vdd, sda)] == [
        "vda (/var/lib/libvirt/images/vm42.qcow2)",
        "vdb (rbd vms/vm42-data on 10.0.0.11:6789, 10.0.0.12:6789)",
        "vdc (/dev/mapper/mpatha)",
        "vdd (volume default/vm42-scratch.qcow2)",
        "sda (no medium)",
    ]
    assert vda.backing_chain[0].source.kind is DiskSourceKind.FILE
    assert vda.copyable and not vdb.copyable


def test_vm42_interfaces() -> None:
    nics = vm("dom_vm42.xml").interfaces
    assert [(i.type, i.source_network or i.source_bridge or i.source_dev, i.model) for i in nics] == [
        ("network", "default", "virtio"),
        ("bridge", "br-prod", "virtio"),
        ("direct", "eno2", "e1000e"),
        ("user", None, "virtio"),
    ]
    assert nics[0].mac == "52:54:00:aa:00:42"
    assert nics[0].label == "network default (52:54:00:aa:00:42)"


def test_cpu_xml_is_the_element_alone_and_reparses() -> None:
    cpu = vm("dom_vm42.xml").cpu
    root = etree.fromstring(cpu.xml)
    assert root.tag == "cpu" and root.findtext("model") == "Skylake-Client-IBRS"
    assert cpu.required_features == ("ss", "pcid")
    assert [(f.name, f.policy) for f in cpu.features if f.policy == "disable"] == [
        ("hle", "disable"),
        ("rtm", "disable"),
    ]


def test_host_passthrough_migratable_attribute() -> None:
    assert vm("dom_nicvm.xml").cpu.migratable is True
    assert vm("dom_vm42.xml").cpu.migratable is None


def test_hostdevs_vf_interface_pci_and_usb() -> None:
    devs = {h.address: h for h in vm("dom_nicvm.xml").hostdevs}
    assert set(devs) == {"0000:3b:00.0", "usb 0781:5567", "0000:e1:00.1"}
    vf = devs["0000:e1:00.1"]
    assert (vf.type, vf.via_interface, vf.managed, vf.mac) == ("pci", True, True, "52:54:00:56:8c:f7")
    nic = devs["0000:3b:00.0"]
    assert (nic.type, nic.driver, nic.via_interface) == ("pci", "vfio", False)
    assert devs["usb 0781:5567"].type == "usb"
    # Without node-device info nothing marks the VF as a Mellanox one.
    assert not vf.is_mellanox_vf and vm("dom_nicvm.xml").migratable_vfs == ()
    # <interface type='hostdev'> is a hostdev, not a NIC that needs a bridge.
    assert vm("dom_nicvm.xml").interfaces == ()


@pytest.mark.parametrize(
    ("nodedev", "mellanox", "migration_driver"),
    [
        ("nodedev_mlx5_vf_migration_driver.xml", True, True),
        ("nodedev_mlx5_vf_vfio_pci.xml", True, False),
        ("nodedev_intel_nic.xml", False, False),
    ],
)
def test_attach_pci_nodedev_marks_mellanox_vf(nodedev: str, mellanox: bool, migration_driver: bool) -> None:
    info = domxml.parse_pci_nodedev(xml(nodedev))
    merged = domxml.attach_host_device_info(vm("dom_nicvm.xml"), pci={"0000:e1:00.1": info})
    vf = next(h for h in merged.hostdevs if h.address == "0000:e1:00.1")
    assert vf.host == info
    assert (vf.is_mellanox_vf, vf.has_migration_driver) == (mellanox, migration_driver)
    assert (len(merged.migratable_vfs) == 1) == (mellanox and migration_driver)


def test_attach_devlink_state_and_ignores_unknown_keys() -> None:
    merged = domxml.attach_host_device_info(
        vm("dom_nicvm.xml"), devlink_migratable={"0000:e1:00.1": False, "0000:ff:00.0": True}
    )
    states = {h.address: h.devlink_migratable for h in merged.hostdevs}
    assert states == {"0000:3b:00.0": None, "usb 0781:5567": None, "0000:e1:00.1": False}


def test_pci_nodedev_fields() -> None:
    info = domxml.parse_pci_nodedev(xml("nodedev_mlx5_vf_migration_driver.xml"))
    assert info == PciDeviceInfo(
        address="0000:e1:00.1",
        vendor_id="0x15b3",
        vendor_name="Mellanox Technologies",
        product_id="0x101e",
        product_name="ConnectX Family mlx5Gen Virtual Function",
        driver="mlx5_vfio_pci",
        physical_function="0000:e1:00.0",
        iommu_group=45,
    )
    assert info.is_virtual_function
    assert not domxml.parse_pci_nodedev(xml("nodedev_intel_nic.xml")).is_virtual_function


def test_mdevs_and_viommu() -> None:
    g = vm("dom_gpuvm.xml")
    assert [(m.uuid, m.model, m.display) for m in g.mdevs] == [
        ("c2177883-f1bb-47f0-914d-32a22e3a8804", "vfio-pci", False),
        ("a8c2d8b1-3b0f-4a36-9a84-6d3b2c1f0e77", "vfio-pci", False),
    ]
    assert all(m.is_nvidia is None for m in g.mdevs)  # the type is only in the node-device XML
    assert g.iommu is not None and (g.iommu.model, g.iommu.intremap, g.iommu.caching_mode) == (
        "intel",
        True,
        True,
    )
    assert g.hostdevs == ()


@pytest.mark.parametrize(
    ("nodedev", "uuid", "type_id", "nvidia"),
    [
        ("nodedev_nvidia_mdev.xml", "c2177883-f1bb-47f0-914d-32a22e3a8804", "nvidia-63", True),
        # older naming: the UUID only in the device name
        ("nodedev_gvt_mdev.xml", "a8c2d8b1-3b0f-4a36-9a84-6d3b2c1f0e77", "i915-GVTg_V5_4", False),
    ],
)
def test_mdev_nodedev(nodedev: str, uuid: str, type_id: str, nvidia: bool) -> None:
    info = domxml.parse_mdev_nodedev(xml(nodedev))
    assert (info.uuid, info.type_id, info.is_nvidia) == (uuid, type_id, nvidia)
    merged = domxml.attach_host_device_info(vm("dom_gpuvm.xml"), mdev={uuid: info})
    m = next(x for x in merged.mdevs if x.uuid == uuid)
    assert (m.type_id, m.is_nvidia, m.model) == (type_id, nvidia, "vfio-pci")


def test_numa_pinning_and_hugepages() -> None:
    n = vm("dom_numavm.xml")
    pin = n.pinning
    assert (pin.vcpu_placement, pin.vcpu_cpuset, pin.emulatorpin) == ("static", "0-7", "0-1")
    assert [(p.vcpu, p.cpuset) for p in pin.vcpupins] == [(0, "2"), (1, "3"), (2, "10"), (3, "11")]
    assert (pin.numatune_mode, pin.numatune_nodeset) == ("strict", "0-1")
    assert [(m.cellid, m.mode, m.nodeset) for m in pin.memnodes] == [(0, "strict", "0"), (1, "strict", "1")]
    assert pin.cpus_pinned and pin.memory_pinned
    assert [(c.id, c.cpus, c.memory_bytes) for c in n.cpu.numa_cells] == [
        (0, "0-1", 4 * GIB),
        (1, "2-3", 4 * GIB),
    ]
    assert [(h.size_kib, h.nodeset) for h in n.memory_backing.hugepages] == [(2048, "0-1")]
    assert n.memory_backing.locked
    assert [(t.model, t.backend, t.version) for t in n.tpms] == [("tpm-crb", "emulator", "2.0")]
    assert [(g.type, g.listen_addresses) for g in n.graphics] == [("spice", ("192.0.2.10",))]


def test_unpinned_vm_has_no_pinning() -> None:
    p = vm("dom_vm42.xml").pinning
    assert not p.cpus_pinned and not p.memory_pinned


def test_virtiofs_and_unsafe_cache() -> None:
    o = vm("dom_oldpc.xml")
    assert [(f.driver, f.source, f.target) for f in o.filesystems] == [("virtiofs", "/srv/share", "share")]
    assert [d.cache for d in o.disks] == ["unsafe"]
    assert o.memory_backing.access_mode == "shared" and not o.memory_backing.uses_hugepages


HAND_WRITTEN = [
    # a bare <hugepages/> means the host's default page size
    (
        "<memoryBacking><hugepages/></memoryBacking>",
        lambda v: [h.size_kib for h in v.memory_backing.hugepages] == [None],
    ),
    (
        "<clock offset='utc'><timer name='tsc' frequency='2095078000'/></clock>",
        lambda v: v.tsc_frequency_hz == 2095078000,
    ),
    ("<launchSecurity type='sev'/>", lambda v: v.launch_security == "sev"),
    (
        "<devices><disk type='file' device='disk'><source file='/x.img'/><target dev='vda'/><transient/>"
        "</disk></devices>",
        lambda v: v.disks[0].transient,
    ),
    (
        "<devices><interface type='hostdev'><source>"
        "<address type='pci' domain='0x0000' bus='0x05' slot='0x10'"
        " function='0x2'/></source><teaming type='transient'/></interface></devices>",
        lambda v: v.hostdevs[0].address == "0000:05:10.2" and v.hostdevs[0].unplugged_for_migration,
    ),
    (
        "<devices><shmem name='ivshmem0' role='peer'/></devices>",
        lambda v: [(s.name, s.role) for s in v.shmems] == [("ivshmem0", "peer")],
    ),
    ("<maxMemory slots='16' unit='GiB'>64</maxMemory>", lambda v: v.max_memory_bytes == 64 * GIB),
]


@pytest.mark.parametrize(("extra", "check"), HAND_WRITTEN)
def test_hand_written_domain_fragments(extra: str, check: object) -> None:
    v = domxml.parse_domain(f"<domain type='kvm'><name>x</name><memory>1024</memory>{extra}</domain>")
    assert callable(check) and check(v)


def test_minimal_domain_gets_defaults_not_errors() -> None:
    v = domxml.parse_domain("<domain><name>bare</name></domain>")
    assert (v.name, v.uuid, v.domain_type, v.memory_bytes, v.vcpus, v.machine) == (
        "bare",
        "",
        "kvm",
        0,
        1,
        None,
    )
    assert v.cpu.xml == "" and v.disks == () and v.iommu is None


def test_unknown_disk_type_and_odd_units_do_not_raise() -> None:
    v = domxml.parse_domain(
        "<domain><name>o</name><memory unit='parsecs'>3</memory><vcpu>lots</vcpu>"
        "<devices><disk type='weird'><source file='/a'/><target dev='vdz'/></disk></devices></domain>"
    )
    assert v.memory_bytes == 0 and v.vcpus == 1
    assert v.disks[0].source.kind is DiskSourceKind.OTHER


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("<domain><name>x</name>", "could not parse the domain XML"),
        ("", "could not parse the domain XML"),
        ("<capabilities/>", "expected a <domain> document"),
        ("<domain type='kvm'/>", "has no <name>"),
        (
            "<!DOCTYPE d [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><domain><name>&e;</name></domain>",
            "no <name>",
        ),
    ],
)
def test_bad_domain_xml_raises_preflight_error(text: str, fragment: str) -> None:
    with pytest.raises(PreflightError) as err:
        domxml.parse_domain(text)
    assert fragment in str(err.value)


# --- host capabilities ------------------------------------------------------------------------------


def test_capabilities_debian12() -> None:
    h = domxml.parse_capabilities(xml("caps_debian12.xml"))
    assert (h.uuid, h.arch, h.cpu.model, h.cpu.vendor) == (
        "6c61622d-0000-4000-8000-0000000000cf",
        "x86_64",
        "kvm64",
        "AMD",
    )
    assert {"avx512f", "pcid", "invtsc"} <= h.cpu.features
    assert (h.cpu.sockets, h.cpu.cores, h.cpu.threads, h.cpus) == (1, 2, 1, 2)
    assert h.page_sizes_kib == (4, 2048, 1048576)
    assert h.live_migration and h.uri_transports == ("tcp", "rdma")
    assert h.security_models == ("none", "dac") and h.iommu_supported is False
    assert h.domain_types == {"qemu", "kvm"}
    assert h.memory_bytes == 4679884 * 1024
    machines = h.machines("x86_64", "kvm")
    assert machines["q35"].canonical == "pc-q35-7.2" and "pc-q35-7.2" in machines
    assert machines["pc-i440fx-1.4"].deprecated
    assert h.machines("aarch64") == {}
    # adapter-only fields stay unset
    assert (h.versions, h.free_memory_bytes, h.name) == (None, None, "")


def test_capabilities_two_numa_cells_with_hugepages() -> None:
    h = domxml.parse_capabilities(xml("caps_numa_intel.xml"))
    assert [(c.id, len(c.cpu_ids), c.memory_bytes) for c in h.cells] == [(0, 8, 64 * GIB), (1, 8, 64 * GIB)]
    assert h.cpus == 16 and h.cpu_ids == frozenset(range(16))
    assert [(p.cell, p.total_pages) for p in h.hugepage_pools(2048)] == [(0, 4096), (1, 4096)]
    assert "pc-q35-7.2" not in h.machines("x86_64") and "pc-q35-6.2" in h.machines("x86_64")


def test_capabilities_of_the_test_driver_are_odd_but_parse() -> None:
    h = domxml.parse_capabilities(xml("caps_test_driver.xml"))
    assert h.uuid is None and h.arch == "i686" and not h.live_migration
    assert h.domain_types == {"test"} and h.machines("i686") == {}
    assert h.cpus == 16  # listed in the NUMA cells


def test_capabilities_wrong_document() -> None:
    with pytest.raises(PreflightError, match="expected a <capabilities> document"):
        domxml.parse_capabilities("<domain/>")


# --- domain capabilities ----------------------------------------------------------------------------


def test_domain_capabilities_kvm() -> None:
    c = domxml.parse_domain_capabilities(xml("domcaps_kvm_q35.xml"))
    assert (c.path, c.domain_type, c.machine, c.arch, c.max_vcpus) == (
        "/usr/bin/qemu-system-x86_64",
        "kvm",
        "pc-q35-7.2",
        "x86_64",
        288,
    )
    assert c.cpu_modes == {"host-passthrough", "maximum", "host-model", "custom"}
    assert (c.host_model, c.host_model_vendor) == ("kvm64", "AMD")
    assert "pni" not in c.host_model_features and "x2apic" in c.host_model_features  # pni is policy=disable
    assert c.model_usable("pentium3") is True and c.model_usable("Skylake-Client-IBRS") is False
    assert c.model_usable("no-such-model") is None
    assert c.hostdev_supported is True and c.hostdev_subsys_types == {"usb", "pci", "scsi"}
    assert c.iommu_supported is None  # libvirt 9.0 domcaps has no <iommu> element
    assert "virtiofs" in c.filesystem_drivers and c.tpm_backends == {"passthrough"}
    assert "sev" not in c.features and "genid" in c.features


def test_domain_capabilities_tcg_has_no_host_passthrough() -> None:
    c = domxml.parse_domain_capabilities(xml("domcaps_qemu_q35.xml"))
    assert c.domain_type == "qemu" and "host-passthrough" not in c.cpu_modes
    assert c.host_model == "EPYC"


# --- helpers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "ids"),
    [
        ("0-3", {0, 1, 2, 3}),
        ("0-3,^2,8", {0, 1, 3, 8}),
        ("", set()),
        (None, set()),
        ("1,x,3-", {1}),
        ("5", {5}),
    ],
)
def test_parse_cpuset(spec: str | None, ids: set[int]) -> None:
    assert parse_cpuset(spec) == ids


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("1", "KiB", 1024),
        ("2", "G", 2 * GIB),
        ("3", "MB", 3_000_000),
        ("7", None, 7 * 1024),
        ("x", "KiB", None),
        ("1", "furlongs", None),
    ],
)
def test_to_bytes(value: str, unit: str | None, expected: int | None) -> None:
    assert to_bytes(value, unit) == expected


def test_pci_address_needs_bus_slot_function() -> None:
    assert pci_address(etree.fromstring("<address bus='0x3b' slot='0x00' function='0x0'/>")) == "0000:3b:00.0"
    assert pci_address(etree.fromstring("<address domain='0x0000'/>")) is None
    assert pci_address(None) is None


@pytest.mark.parametrize(
    ("text", "model"),
    [
        (
            "<cpu mode='custom' match='exact'><model fallback='forbid'>IvyBridge-IBRS</model></cpu>",
            "IvyBridge-IBRS",
        ),
        ("<cpu><arch>x86_64</arch></cpu>", None),
        ("not xml", None),
        (None, None),
    ],
)
def test_cpu_model_of(text: str | None, model: str | None) -> None:
    assert domxml.cpu_model_of(text) == model


def test_nodedev_of_the_wrong_kind() -> None:
    with pytest.raises(PreflightError, match="not a PCI device"):
        domxml.parse_pci_nodedev(xml("nodedev_nvidia_mdev.xml"))
    with pytest.raises(PreflightError, match="not a mediated device"):
        domxml.parse_mdev_nodedev(xml("nodedev_intel_nic.xml"))


# ----- the bot's placement metadata (issue 11) ------------------------------------------------------------
from migration_core.facts.metadata import parse_placement_metadata  # noqa: E402
from migration_core.facts.xmlutil import parse_xml  # noqa: E402

_META_CASES = [
    ("", (), ()),
    ("<metadata/>", (), ()),
    (
        '<metadata><mb:placement xmlns:mb="urn:migrate-bot:placement:1"><mb:anti-affinity group="db"/>'
        '<mb:anti-affinity group="web"/><mb:anti-affinity group="db"/></mb:placement></metadata>',
        ("db", "web"),
        (),
    ),
    # another tool's element of the same local name is not ours
    ('<metadata><x:anti-affinity xmlns:x="urn:other" group="db"/></metadata>', (), ()),
    (
        '<metadata><mb:placement xmlns:mb="urn:migrate-bot:placement:1"><mb:anti-affinity group="a b"/>'
        "</mb:placement></metadata>",
        (),
        ("metadata anti-affinity group 'a b' ignored: a group name is 1 to 64 characters",),
    ),
]


@pytest.mark.parametrize(("metadata", "groups", "problems"), _META_CASES)
def test_placement_metadata_names_the_anti_affinity_groups(
    metadata: str, groups: tuple[str, ...], problems: tuple[str, ...]
) -> None:
    xml = f"<domain type='kvm'><name>db1</name><uuid>u</uuid>{metadata}</domain>"
    found = parse_placement_metadata(parse_xml(xml, "test"))
    assert found.anti_affinity_groups == groups
    assert [p[: len(q)] for p, q in zip(found.problems, problems, strict=True)] == list(problems)
    assert domxml.parse_domain(xml).anti_affinity_groups == groups
