"""What the hosts say about whether a job's migration ever started (restart recovery, issue 11).

A bot that dies between marking a job running and libvirt starting the migration leaves a job that looks
like a failed migration (no job on the source, VM still active there). The dispatcher may start such a move
again, but only when the hosts prove nothing happened: the VM is on the source with the plan's UUID and
active, the source runs no migration job, and the destination has no domain of that name or UUID. A host
that does not answer proves nothing. (The other half of the proof, no progress sample ever recorded, is
the store's: dispatch/restart.py.)
"""

from __future__ import annotations

from dataclasses import dataclass

from migration_core.errors import MigrateBotError
from migration_core.execution.prep import Route, route
from migration_core.hypervisor.port import HypervisorPort
from migration_core.hypervisor.types import JobType
from migration_core.inventory.hosts import Inventory
from migration_core.models import Plan


@dataclass(frozen=True)
class StartEvidence:
    """The hosts' answer: `untouched` only when every check proves the migration never started; `why`
    names the proof, or the first thing that was unknown or said otherwise (for the log and the notice)."""

    untouched: bool
    why: str


async def start_evidence(hypervisor: HypervisorPort, inventory: Inventory, plan: Plan) -> StartEvidence:
    """Ask both hosts whether `plan`'s migration ever started; never raises for a host that is away or gone
    from the inventory."""
    try:
        return await _ask(hypervisor, plan, route(plan, inventory, hypervisor))
    except MigrateBotError as err:  # unknown host, unreachable, or an unreadable answer: unknown is not "never"
        return StartEvidence(False, f"could not read the hosts ({err.message})")


async def _ask(hv: HypervisorPort, plan: Plan, r: Route) -> StartEvidence:
    vm, src, dst = r.vm, r.source, r.destination
    uuid = plan.vm_uuid.lower()
    if not uuid:
        return StartEvidence(False, "the plan records no VM UUID to compare with")
    on_src = await hv.domain(src.uri, vm)
    if not on_src.present or on_src.uuid.lower() != uuid:
        return StartEvidence(False, f"{vm} with UUID {uuid} is not on {src.name}")
    if not on_src.active:
        return StartEvidence(False, f"{vm} is not active on {src.name} ({on_src.state.value})")
    stats = await hv.job_stats(src.uri, vm)
    if stats.job_type is not JobType.NONE:
        return StartEvidence(False, f"{src.name} has a job for {vm} ({stats.job_type.name.lower()})")
    on_dst = await hv.domain(dst.uri, vm)
    if on_dst.present:
        return StartEvidence(False, f"{dst.name} has a domain named {vm}")
    if any(d.uuid.lower() == uuid for d in await hv.list_domains(dst.uri)):
        return StartEvidence(False, f"{dst.name} has a domain with UUID {uuid}")
    return StartEvidence(
        True, f"{vm} is active on {src.name} with no migration job, and {dst.name} has no domain of it"
    )
