"""Typed facts about a VM's devices (NICs, assigned host devices, vGPUs, vIOMMU, TPM ...); see facts/vm.py.

Fields marked "(adapter)" are not in the domain XML: the libvirt adapter fills them from node-device XML,
devlink or SSH (see `domxml.attach_host_device_info`).
"""

from __future__ import annotations

from dataclasses import dataclass

# Vendor id of Mellanox/NVIDIA networking (ConnectX); the CX-7 VF is the one migratable VF in seed 12.6.
MELLANOX_VENDOR_ID = "0x15b3"
# The variant VFIO driver that gives a Mellanox VF its migration support (seed 12.6).
MLX5_MIGRATION_DRIVER = "mlx5_vfio_pci"


@dataclass(frozen=True)
class InterfaceFacts:
    """One `<interface>`: how the NIC reaches a network (bridge / network / direct / user / hostdev ...)."""

    type: str
    mac: str | None = None
    model: str | None = None
    source_bridge: str | None = None
    source_network: str | None = None
    source_dev: str | None = None
    source_mode: str | None = None
    portgroup: str | None = None
    virtualport: str | None = None
    teaming: str | None = None

    @property
    def label(self) -> str:
        src = self.source_bridge or self.source_network or self.source_dev or ""
        base = f"{self.type} {src}".strip()
        return f"{base} ({self.mac})" if self.mac else base


@dataclass(frozen=True)
class PciDeviceInfo:
    """A host PCI device as its node-device XML describes it (adapter: `domxml.parse_pci_nodedev`)."""

    address: str
    vendor_id: str | None = None
    vendor_name: str | None = None
    product_id: str | None = None
    product_name: str | None = None
    driver: str | None = None
    physical_function: str | None = None
    iommu_group: int | None = None

    @property
    def is_virtual_function(self) -> bool:
        return self.physical_function is not None


@dataclass(frozen=True)
class HostdevFacts:
    """One assigned host device: `<hostdev>` or `<interface type='hostdev'>` (then `via_interface`).

    `address` is canonical: `0000:e1:00.1` for PCI, `usb 0781:5567` / `usb bus 1 device 4` for USB,
    the adapter name for SCSI. `host` and `devlink_migratable` come from the adapter (node-device XML and
    `devlink port function show ... migratable`); they stay None when unknown.
    """

    type: str
    address: str
    managed: bool = False
    driver: str | None = None
    driver_model: str | None = None
    via_interface: bool = False
    mac: str | None = None
    teaming: str | None = None
    host: PciDeviceInfo | None = None
    devlink_migratable: bool | None = None

    @property
    def is_mellanox_vf(self) -> bool:
        if self.driver_model == MLX5_MIGRATION_DRIVER:
            return True
        if self.host is None:
            return False
        return self.host.driver == MLX5_MIGRATION_DRIVER or (
            (self.host.vendor_id or "").lower() == MELLANOX_VENDOR_ID and self.host.is_virtual_function
        )

    @property
    def has_migration_driver(self) -> bool:
        """Bound to the variant driver that implements VFIO migration for the VF (seed 12.6)."""
        return self.driver_model == MLX5_MIGRATION_DRIVER or (
            self.host is not None and self.host.driver == MLX5_MIGRATION_DRIVER
        )

    @property
    def unplugged_for_migration(self) -> bool:
        """`<teaming type='transient'>`: QEMU unplugs it for the migration (virtio failover): no blocker."""
        return self.teaming == "transient"

    @property
    def label(self) -> str:
        what = "interface type='hostdev'" if self.via_interface else f"hostdev type='{self.type}'"
        name = f" {self.host.product_name}" if self.host and self.host.product_name else ""
        return f"{what} {self.address}{name}"


@dataclass(frozen=True)
class MdevFacts:
    """One mediated device (`<hostdev type='mdev'>`), e.g. an NVIDIA vGPU.

    `type_id` (e.g. `nvidia-63`), `type_name` and `parent` come from the mdev node-device XML (adapter).
    """

    uuid: str
    model: str | None = None
    display: bool = False
    type_id: str | None = None
    type_name: str | None = None
    parent: str | None = None

    @property
    def is_nvidia(self) -> bool | None:
        """True for NVIDIA vGPU types, False for another vendor's, None when the type is not known."""
        if self.type_id is None:
            return None
        return self.type_id.lower().startswith("nvidia-")


@dataclass(frozen=True)
class IommuFacts:
    """A virtual IOMMU (`<iommu model='intel'>` ...)."""

    model: str
    intremap: bool = False
    caching_mode: bool = False


@dataclass(frozen=True)
class TpmFacts:
    model: str | None
    backend: str | None
    version: str | None = None


@dataclass(frozen=True)
class GraphicsFacts:
    type: str
    listen_addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class FilesystemFacts:
    driver: str | None
    source: str | None
    target: str | None


@dataclass(frozen=True)
class ShmemFacts:
    name: str
    role: str | None = None
