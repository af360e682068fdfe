"""The in-memory fleet: simulated hosts, VMs and migrations behind the hypervisor port, on virtual time.

It adds what the lab cannot hold (tens of hosts, hundreds of VMs, an hour of migrations in well under a
second, faults at exact moments); it never replaces the lab's proof that real migrations work.

Build one (every field but the names has a default; see model.py):

    from migration_core.hypervisor.fleet import Fleet, HostSpec, VmSpec, DiskSpec, PoolSpec, run_virtual

    fleet = Fleet.build(
        hosts=[HostSpec("h1", memory_mib=256 * 1024, cpus=64, link_mib_s=1000),
               HostSpec("h2", cpu_model="Cascadelake-Server")],
        vms=[VmSpec("web1", host="h1", memory_mib=4096, transferable_mib=1500, dirty_mib_s=50),
             VmSpec("db1", host="h1", memory_mib=16384, dirty_mib_s=900, working_set_mib=2048, vcpus=8)],
    )
    inventory = fleet.inventory()          # the hosts file the core would load (URIs qemu+fleet://NAME/system)
    fleet.where("web1")                    # -> "h1"
    fleet.cut_link("h1", "h2"); fleet.restore_link("h1", "h2")
    fleet.stop_daemon("h2"); fleet.start_daemon("h2")
    fleet.fail_migration("web1")           # the running (or next) migration of web1 fails
    fleet.set_dirty_rate("db1", 20)        # the guest's load changes, also mid-migration

`fleet` is what `Executor`, `PreflightRunner`, `verify` take as their hypervisor (it implements
`hypervisor.port.HypervisorPort`); give the runner `prober=fleet.probe` so port probes ask the fleet:

    planner = PreflightRunner(inventory, fleet, prober=fleet.probe)
    executor = Executor(fleet, inventory, sink, clock.now)

Run the core on virtual time with `run_virtual(main())` (a `VirtualTimeLoop`: asyncio.sleep and
loop.time() are virtual, worker threads real) and give the service, dispatcher, executor and store
`VirtualClock().now` as their wall clock. A host's link is shared by the migrations it sends and receives at
once. Used by tests/migration_core/fleet/ (executor, service, dispatcher), tests/bot/fleet_service.py (the
front ends) and bench/bench_fleet.py.

Modules: `model` (specs, per-host state, the XML the parsers read), `migration` (the pre-copy/post-copy model,
pure), `adapter` (`Fleet`: the port's calls, faults), `clock` (virtual time).
May import: migration_core.errors, models, inventory, facts, hypervisor.port/types/errors (never libvirt, never
the libvirt adapter).
"""

from migration_core.hypervisor.fleet.adapter import Fleet, FleetConfig
from migration_core.hypervisor.fleet.clock import EPOCH, VirtualClock, VirtualTimeLoop, run_virtual
from migration_core.hypervisor.fleet.migration import MigrationModel, Phase
from migration_core.hypervisor.fleet.model import DiskSpec, HostSpec, PoolSpec, VmSpec

__all__ = [
    "EPOCH",
    "DiskSpec",
    "Fleet",
    "FleetConfig",
    "HostSpec",
    "MigrationModel",
    "Phase",
    "PoolSpec",
    "VirtualClock",
    "VirtualTimeLoop",
    "VmSpec",
    "run_virtual",
]
