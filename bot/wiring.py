"""Builds the core from settings: inventory, store, hypervisor adapter, planning, executor, service."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from bot.settings import Settings
from migration_core.events import EventSink
from migration_core.execution.executor import Executor
from migration_core.hypervisor.libvirt_adapter import Hypervisor
from migration_core.hypervisor.port import HypervisorPort
from migration_core.inventory.hosts import Inventory, load_inventory
from migration_core.inventory.policy_file import Policy, load_policy
from migration_core.models import MoveSample
from migration_core.preflight.runner import PreflightRunner
from migration_core.service import MigrationService, ServiceConfig
from migration_core.service_api import ApproverCheck, GroupCheck
from migration_core.store import Journal, Store


@dataclass
class Core:
    """The long-lived pieces every front end shares; `close()` releases them."""

    settings: Settings
    inventory: Inventory
    store: Store
    hypervisor: HypervisorPort
    planning: PreflightRunner
    policy: Policy = field(default_factory=Policy.default)

    async def close(self) -> None:
        await self.hypervisor.close()
        await self.store.close()


async def open_core(settings: Settings) -> Core:
    """Load the inventory (bad file -> InventoryError), open the store (schema created), name the hosts."""
    inventory = load_inventory(settings.hosts_file)
    policy = load_policy(settings.policy_file)  # a bad policy file stops the start, like a bad hosts file
    store = await Store.open(settings.database_url)
    hypervisor = Hypervisor({h.name: h.uri for h in inventory})
    for host in inventory:
        hypervisor.add_host(host.name, host.uri, host.peer_uri)

    async def history(vm_uuid: str, source: str, destination: str) -> list[MoveSample]:
        return await store.move_samples(vm_uuid=vm_uuid, source=source, destination=destination)

    planning = PreflightRunner(inventory, hypervisor, dirty_rate_window_s=settings.dirty_rate_window_s, history=history)
    return Core(settings, inventory, store, hypervisor, planning, policy)


def make_service(
    core: Core, sink: EventSink, approver_check: ApproverCheck, group_check: GroupCheck | None = None
) -> MigrationService:
    """The service on top of the core; call `await service.start()` to recover and dispatch jobs. Without
    `group_check` the policy file's [groups] lists say who is in an owners' group."""
    s = core.settings
    # The executor reports through the journal: the front end hears at once, the store gets the record in the
    # background, so a database outage never stalls a running migration's controller (store/journal.py).
    journal = Journal(core.store, sink)
    executor = Executor(core.hypervisor, core.inventory, journal, record_progress=journal.record_progress)
    config = ServiceConfig(
        approval_ttl_s=s.approval_ttl_s,
        requesters=s.requesters,
        channels=s.channels,
        requests_per_user_per_hour=s.requests_per_user_per_hour,
        # Stable across restarts of the same process on the same machine, so a restarted bot resumes its jobs.
        replica_id=s.replica_id or socket.gethostname(),
        lease_s=s.lease_s,
    )
    return MigrationService(
        store=core.store,
        inventory=core.inventory,
        planner=core.planning,
        executor=executor,
        sink=sink,
        approver_check=approver_check,
        group_check=group_check,
        config=config,
        rules=core.policy,
        journal=journal,
    )
