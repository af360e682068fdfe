"""Before a migration starts: resolve the hosts, finish the typed params, prepare copy-storage destinations.

Separate from executor.py because it is the only part that reads the domain XML (through domxml.py) and
the only part that writes on the destination before the migration (pre-created images).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from migration_core.errors import StateError
from migration_core.facts.domxml import parse_domain
from migration_core.facts.vm import DiskSourceKind
from migration_core.hypervisor.port import HypervisorPort
from migration_core.hypervisor.types import MigrationCall
from migration_core.inventory.hosts import HostConfig, Inventory
from migration_core.models import MigrationMode, ParamValue, Plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """The two ends of one run, resolved from the inventory, and the exact call arguments."""

    source: HostConfig
    destination: HostConfig
    vm: str  # the name: messages read better; the executor checks the UUID against the plan first
    flags: tuple[str, ...]
    params: Mapping[str, ParamValue]

    @property
    def flag_set(self) -> frozenset[str]:
        return frozenset(f.removeprefix("VIR_MIGRATE_") for f in self.flags)

    @property
    def live(self) -> bool:
        return "OFFLINE" not in self.flag_set

    def call(self, *extra_flags: str) -> MigrationCall:
        """The port's migrate arguments for this route (plus e.g. VIR_MIGRATE_POSTCOPY_RESUME)."""
        d = self.destination
        return MigrationCall((*self.flags, *extra_flags), self.params, d.peer_uri, d.uri, d.name)


def route(plan: Plan, inventory: Inventory, hypervisor: HypervisorPort) -> Route:
    """Resolve both hosts (InventoryError if unknown) and complete the params from the inventory.

    The migration data goes to the destination's `migration_address` (`migrate_uri`) unless the plan set
    one already; tunnelled and offline migrations have no data stream of their own, so they get none.
    """
    source, destination = inventory.get(plan.source), inventory.get(plan.destination)
    for host in (source, destination):
        hypervisor.add_host(host.name, host.uri, host.peer_uri)
    params = dict(plan.params)
    flags = frozenset(f.removeprefix("VIR_MIGRATE_") for f in plan.flags)
    wants_uri = plan.mode is MigrationMode.LIVE and not flags & {"TUNNELLED", "OFFLINE"}
    if wants_uri and "migrate_uri" not in params and destination.migrate_uri:
        params["migrate_uri"] = destination.migrate_uri
    return Route(source, destination, plan.request.vm, tuple(plan.flags), params)


@dataclass(frozen=True)
class PreparedDisk:
    """What preparation did for one disk to be copied."""

    target: str
    path: str
    action: str  # "created" (thin, by the bot), "replaced" (a stale image was there), "exists" (inc), "in pool"


async def prepare_storage(hypervisor: HypervisorPort, r: Route) -> tuple[PreparedDisk, ...]:
    """For --copy-storage: make sure every disk to copy can be written at the same path on the destination.

    --copy-storage all: the bot pre-creates every destination image itself, thin (no preallocation, qcow2 v3),
    because libvirt's own pre-creation inside a pool allocates the whole virtual size (lab: a 64 MiB image with
    8 MiB of data arrived with 64 MiB allocated; pre-created by the bot it arrives with 8 MiB), and libvirt
    creates nothing outside a pool (lab.md P4). An image already at that path is a stale copy (e.g. left by an
    earlier move with --keep-source) only if the destination's directory is proven NOT to be the source's
    storage (Nova's probe file, `same_storage`): then it is deleted and re-created. Shared, or undecidable:
    nothing is touched and the run stops, since overwriting a shared image destroys the source's disk.
    --copy-storage inc needs the backing chain already there and copies into what exists: not created here.
    """
    if not r.flag_set & {"NON_SHARED_DISK", "NON_SHARED_INC"}:
        return ()
    src, dst = r.source.uri, r.destination.uri
    await hypervisor.refresh_pools(dst)
    facts = parse_domain(await hypervisor.domain_xml(src, r.vm, migratable=False))
    chosen = r.params.get("migrate_disks")
    wanted = set(chosen) if isinstance(chosen, list) else ({chosen} if isinstance(chosen, str) else None)
    full = "NON_SHARED_DISK" in r.flag_set
    done: list[PreparedDisk] = []
    for disk in facts.disks:
        local = disk.source.kind in (DiskSourceKind.FILE, DiskSourceKind.BLOCK)
        if not disk.copyable or not local or not disk.source.path:
            continue
        if wanted is not None and disk.target not in wanted:
            continue
        exists = await hypervisor.path_exists(dst, disk.source.path)
        if not full:
            action = "exists" if exists else "in pool"
            done.append(PreparedDisk(disk.target, disk.source.path, action))
            continue
        action = "created"
        if exists is not False:
            await _stale_or_stop(hypervisor, r, disk.source.path)
            await hypervisor.delete_volume(dst, disk.source.path)
            action = "replaced"
        size = await hypervisor.disk_capacity_bytes(src, r.vm, disk.target)
        await hypervisor.create_volume(dst, disk.source.path, size, disk.format or "raw")
        done.append(PreparedDisk(disk.target, disk.source.path, action))
    log.info("storage prepared on %s: %s", r.destination.name, done)
    return tuple(done)


async def _stale_or_stop(hypervisor: HypervisorPort, r: Route, path: str) -> None:
    """Raise unless the image at `path` on the destination is provably a separate (stale) copy."""
    dst, where = r.destination.name, os.path.dirname(path)
    shared = await hypervisor.same_storage(r.destination.uri, r.source.uri, where)
    if shared is False:
        return
    if shared is True:
        raise StateError(
            f"{path} on {dst} is the source's own image ({where} is storage both hosts share): copying the disk "
            "onto itself would destroy it; nothing was changed",
            "migrate without --copy-storage (the disk is already shared), and plan again",
        )
    raise StateError(
        f"could not tell whether the image at {path} on {dst} is a stale copy or the source's shared image "
        "(the shared-storage probe could not run there); nothing was changed",
        f"if it is a stale copy, delete it on {dst} (`virsh vol-delete {path}`) and plan again",
    )
