"""Check 8: devices that block or limit migration: PCI host devices, Mellanox VFs (seed 12.6), vGPUs
(seed 12.7), vIOMMU, and the other blockers libvirt 9.0 refuses (virtiofs, SEV, invtsc, ...)."""

from __future__ import annotations

from migration_core.facts.devices import HostdevFacts
from migration_core.facts.gathered import PreflightFacts
from migration_core.facts.vm import DiskSourceKind, VmFacts
from migration_core.models import CheckResult, MigrationMode
from migration_core.preflight._common import (
    blocking,
    dest_name,
    join,
    mode_of,
    passed,
    result,
    src_name,
    warned,
)

VF_LIMITS = (
    "live migration of a Mellanox VF is a Technology Preview (unsupported); post-copy and a vIOMMU cannot "
    "be used, and the dirty-rate figures count only guest RAM, not the VF's state (seed 12.6)"
)
VGPU_LIMITS = (
    "the NVIDIA vGPU driver must be the same version on both hosts; post-copy and a vIOMMU cannot be used; "
    "the dirty-rate figures count only guest RAM, not the vGPU's vRAM (seed 12.7)"
)
VF_SETUP = (
    "on both hosts (seed 12.6): a ConnectX-7 with firmware >= 28.36.1010 and "
    "VF_MIGRATION_MODE=MIGRATION_ENABLED (`mstconfig`), the PF in switchdev mode, `devlink port function "
    "set pci/<PF>/<n> migratable enable`, the VF bound to mlx5_vfio_pci (libvirt does this itself on RHEL "
    "9.4+), and the VF in an OVS bridge"
)
_LOCAL_LISTEN = frozenset({"0.0.0.0", "::", "127.0.0.1", "::1", "localhost"})


def _hostdev(facts: PreflightFacts, h: HostdevFacts) -> CheckResult:
    name, vm, dest, bad = "devices.hostdev", facts.request.vm, dest_name(facts), blocking(facts)
    if h.type == "usb":
        return warned(
            name,
            f"{vm} has the USB device {h.address} passed through; libvirt carries it over only if {dest} "
            "has the same device plugged in",
            f"plug the same device into {dest}, or detach it first (`virsh detach-device {vm} FILE --live`)",
        )
    if h.type != "pci":
        return result(
            name,
            bad,
            f"{vm} has {h.label}: libvirt cannot migrate a domain with this kind of host device",
            f"detach it before migrating (`virsh detach-device {vm} FILE --live`) and re-attach afterwards",
        )
    if h.unplugged_for_migration:
        return warned(
            name,
            f"{h.label} is a transient failover (teaming) device: QEMU unplugs it for the migration and the "
            "guest keeps networking through its virtio NIC",
            f"expect the VF to be gone after the move unless {dest} plugs in its own",
        )
    if h.is_mellanox_vf:
        return _mellanox_vf(facts, h)
    unread = (
        " If it is a Mellanox CX-7 VF on mlx5_vfio_pci it can migrate (seed 12.6), but its node device "
        "could not be read."
        if h.via_interface and h.host is None
        else ""
    )
    return result(
        name,
        bad,
        f"{vm} has the PCI device {h.label} assigned (passthrough); its state cannot be migrated.{unread}",
        f"detach it before migrating (`virsh detach-device {vm} FILE --live`) and attach an equivalent "
        f"device on {dest} afterwards, or shut the VM down and migrate it offline",
    )


def _mellanox_vf(facts: PreflightFacts, h: HostdevFacts) -> CheckResult:
    name = "devices.hostdev"
    problems = []
    if not h.has_migration_driver:
        driver = h.host.driver if h.host and h.host.driver else "unknown"
        problems.append(f"it is bound to {driver}, not mlx5_vfio_pci")
    if h.devlink_migratable is False:
        problems.append("devlink reports its 'migratable' function disabled")
    if problems:
        return result(
            name,
            blocking(facts),
            f"the Mellanox VF {h.label} is not set up for live migration: {'; '.join(problems)}",
            f"set it up {VF_SETUP}",
        )
    unconfirmed = h.devlink_migratable is None
    confirm = (
        f"check on {src_name(facts)} that `devlink port function show pci/<PF>/<n>` says migratable enabled; "
        if unconfirmed
        else ""
    )
    return warned(
        name,
        f"{h.label} is a Mellanox VF on the migration driver: {VF_LIMITS}"
        + ("; its devlink 'migratable' state could not be read" if unconfirmed else ""),
        f"{confirm}{dest_name(facts)} must be set up the same way ({VF_SETUP})",
    )


def check_hostdevs(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    vm = facts.vm
    return () if vm is None else tuple(_hostdev(facts, h) for h in vm.hostdevs)


def check_vgpu(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    vm, name, dest = facts.vm, "devices.vgpu", dest_name(facts)
    if vm is None or not vm.mdevs:
        return ()
    bad = blocking(facts)
    others = [m for m in vm.mdevs if m.is_nvidia is False]
    if others:
        types = join(sorted({m.type_id or "?" for m in others}))
        return (
            result(
                name,
                bad,
                f"{vm.name} has mediated devices of type {types}: only NVIDIA vGPUs can be live-migrated (seed 12.7)",
                f"detach them before migrating, or shut {vm.name} down and migrate it offline",
            ),
        )
    out: list[CheckResult] = []
    src_drv = facts.source_host.nvidia_vgpu_driver if facts.source_host else None
    dst_drv = facts.destination_host.nvidia_vgpu_driver if facts.destination_host else None
    if src_drv and dst_drv and src_drv != dst_drv:
        out.append(
            result(
                name,
                bad,
                f"the NVIDIA vGPU driver differs: {src_drv} on {src_name(facts)}, {dst_drv} on {dest}; vGPU "
                "live migration fails when the versions differ (seed 12.7)",
                f"install vGPU driver {src_drv} on {dest} (or upgrade both hosts to one version)",
            )
        )
    wanted = {m.type_id for m in vm.mdevs if m.type_id}
    offered = facts.destination_host.mdev_types if facts.destination_host else None
    if offered is not None and wanted - offered:
        out.append(
            result(
                name,
                bad,
                f"{dest} offers no vGPU of type {join(sorted(wanted - offered))}",
                f"create a matching vGPU type on {dest} (`mdevctl types`), or pick a host with the same GPU",
            )
        )
    if not out:
        versions = f" (driver {src_drv})" if src_drv and src_drv == dst_drv else ""
        unknown = "" if wanted else "; the vGPU type could not be read"
        out.append(
            warned(
                name,
                f"{vm.name} has {len(vm.mdevs)} vGPU(s){' (' + join(sorted(wanted)) + ')' if wanted else ''}"
                f"{versions}: "
                f"{VGPU_LIMITS}{unknown}",
                None if src_drv and src_drv == dst_drv else "check `nvidia-smi` on both hosts: the versions must match",
            )
        )
    return tuple(out)


def check_viommu(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    vm = facts.vm
    if vm is None or vm.iommu is None:
        return ()
    users = (["a Mellanox VF"] if vm.migratable_vfs else []) + (["a vGPU"] if vm.mdevs else [])
    if users:
        return (
            result(
                "devices.viommu",
                blocking(facts),
                f"{vm.name} has a vIOMMU ({vm.iommu.model}) and {' and '.join(users)}: a VM migrating with "
                f"{' or '.join(users)} cannot use a vIOMMU (seeds 12.6, 12.7)",
                f"remove the <iommu> device (`virsh edit {vm.name}`, then restart the VM)",
            ),
        )
    return (
        passed(
            "devices.viommu",
            f"{vm.name}'s vIOMMU ({vm.iommu.model}) migrates with it; post-copy is not offered",
        ),
    )


def check_other(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    vm = facts.vm
    if vm is None:
        return ()
    bad, name = blocking(facts), "devices.other"
    live = mode_of(facts) is MigrationMode.LIVE
    out = [result(name, bad, reason, fix) for reason, fix in _blockers(facts, vm, live)]
    for g in vm.graphics:
        odd = [a for a in g.listen_addresses if a not in _LOCAL_LISTEN]
        if odd and live:
            out.append(
                warned(
                    name,
                    f"{g.type} graphics listen on {join(odd)}, an address of {src_name(facts)}: QEMU on "
                    f"{dest_name(facts)} cannot bind it unless that host has it too",
                    f"listen on 0.0.0.0, or use <listen type='network'> (`virsh edit {vm.name}`)",
                )
            )
    return tuple(out)


def _blockers(facts: PreflightFacts, vm: VmFacts, live: bool) -> list[tuple[str, str]]:
    """(reason, fix) of each configuration libvirt 9.0 refuses to live-migrate (qemuMigrationSrcIsAllowed)."""
    found: list[tuple[str, str]] = []
    edit = f"`virsh edit {vm.name}`, then restart the VM"
    if live:
        for fs in vm.filesystems:
            if fs.driver == "virtiofs":
                found.append(
                    (
                        f"virtiofs share {fs.target}: libvirt cannot migrate a VM with virtiofs",
                        "unmount it in the guest and detach it before migrating, or migrate offline",
                    )
                )
        if vm.cpu.has_feature("invtsc") and vm.tsc_frequency_hz is None:
            found.append(
                (
                    "the CPU has 'invtsc' but no TSC frequency is set; QEMU blocks migration",
                    f"add <clock><timer name='tsc' frequency='HZ'/></clock> with the source's TSC rate ({edit})",
                )
            )
        for s in vm.shmems:
            if s.role not in (None, "master"):
                found.append(
                    (
                        f"shmem device {s.name} has role '{s.role}'; only role='master' can migrate",
                        f"set role='master' or remove it ({edit})",
                    )
                )
        for d in vm.disks:
            if d.transient:
                found.append(
                    (
                        f"disk {d.target} is <transient/>; libvirt cannot migrate transient disks",
                        f"remove <transient/> from it ({edit})",
                    )
                )
            if d.source.kind is DiskSourceKind.NVME:
                found.append(
                    (
                        f"disk {d.target} is a host NVMe device; it cannot be shared or copied",
                        "move the data to shared storage before migrating",
                    )
                )
        if any(i.type == "vdpa" for i in vm.interfaces):
            found.append(("a vDPA interface cannot be migrated", "detach it before migrating"))
    if vm.launch_security:
        found.append(
            (
                f"{vm.name} uses confidential computing ({vm.launch_security}); its memory is encrypted for "
                f"{src_name(facts)} alone",
                "confidential VMs cannot be migrated: recreate it on the destination",
            )
        )
    for t in vm.tpms:
        if t.backend == "passthrough":
            found.append(
                (
                    "a host TPM is passed through; its state stays on the source",
                    f"use an emulated TPM (swtpm) instead ({edit})",
                )
            )
        caps = facts.destination_domcaps
        if t.backend == "emulator" and caps is not None and caps.tpm_backends and "emulator" not in caps.tpm_backends:
            found.append(
                (
                    f"{dest_name(facts)} cannot run an emulated TPM (swtpm is not installed there)",
                    f"install swtpm on {dest_name(facts)}",
                )
            )
    return found


def summary(facts: PreflightFacts, found: tuple[CheckResult, ...]) -> tuple[CheckResult, ...]:
    """One PASS line when no device check had anything to say."""
    vm = facts.vm
    if vm is None or found:
        return ()
    return (
        passed(
            "devices",
            f"{vm.name} has no assigned host devices, vGPUs, vIOMMU or other devices that block migration",
        ),
    )
