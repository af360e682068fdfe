"""Before a migration starts: resolve the hosts, finish the typed params, prepare copy-storage destinations.

Separate from executor.py because it is the only part that reads the domain XML (through domxml.py) and
the only part that writes on the destination before the migration (pre-created images).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from migration_core.facts.domxml import parse_domain
from migration_core.facts.gathered import DiskSourceKind
from migration_core.hypervisor.libvirt_adapter import Hypervisor
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


def route(plan: Plan, inventory: Inventory, hypervisor: Hypervisor) -> Route:
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
    action: str  # "exists", "in pool" (libvirt creates it), "created"


async def prepare_storage(hypervisor: Hypervisor, r: Route) -> tuple[PreparedDisk, ...]:
    """For --copy-storage: make sure every disk to copy can be written at the same path on the destination.

    libvirt pre-creates a missing image only inside a destination storage pool, and trusts its pool cache
    (lab.md P4, P5). So: refresh the destination's pools; an existing image is left alone (libvirt skips
    it); a path in a pool is left to libvirt; anything else is pre-created with the source's virtual size
    and format. Incremental copies (NON_SHARED_INC) need the backing chain already there: not created here.
    """
    if not r.flag_set & {"NON_SHARED_DISK", "NON_SHARED_INC"}:
        return ()
    src, dst = r.source.uri, r.destination.uri
    await hypervisor.refresh_pools(dst)
    facts = parse_domain(await hypervisor.domain_xml(src, r.vm, migratable=False))
    chosen = r.params.get("migrate_disks")
    wanted = set(chosen) if isinstance(chosen, list) else ({chosen} if isinstance(chosen, str) else None)
    done: list[PreparedDisk] = []
    for disk in facts.disks:
        if not disk.copyable or disk.kind not in (DiskSourceKind.FILE, DiskSourceKind.BLOCK) or not disk.path:
            continue
        if wanted is not None and disk.target not in wanted:
            continue
        if await hypervisor.path_exists(dst, disk.path):
            done.append(PreparedDisk(disk.target, disk.path, "exists"))
        elif await hypervisor.pool_for_directory(dst, os.path.dirname(disk.path)) is not None:
            done.append(PreparedDisk(disk.target, disk.path, "in pool"))
        elif "NON_SHARED_DISK" in r.flag_set:
            size = await hypervisor.disk_capacity_bytes(src, r.vm, disk.target)
            await hypervisor.create_volume(dst, disk.path, size, disk.format or "raw")
            done.append(PreparedDisk(disk.target, disk.path, "created"))
    log.info("storage prepared on %s: %s", r.destination.name, done)
    return tuple(done)
