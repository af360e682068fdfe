"""`Fleet`: the in-memory hypervisor behind the port. Hosts, VMs and migrations in one process, on loop time.

Every call answers from the simulation (no I/O); errors are libvirt-like (code + message) translated by the
same `hypervisor.errors.translate` the libvirt adapter uses, so the executor sees the exceptions it sees in
the lab. A migration is a `MigrationModel` advanced by `migrate()` in ticks of `tick_s` of loop time (on a
`VirtualTimeLoop` those ticks cost no wall time). Faults: `cut_link`, `stop_daemon`, `fail_migration`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from migration_core.errors import HypervisorError
from migration_core.hypervisor.errors import ErrorContext, translate
from migration_core.hypervisor.fleet.migration import MigrationModel, Phase
from migration_core.hypervisor.fleet.model import (
    DomainRecord,
    HostSpec,
    HostState,
    VmSpec,
    capabilities_xml,
    domain_capabilities_xml,
    domain_xml,
    with_defaults,
)
from migration_core.hypervisor.port import HypervisorPort
from migration_core.hypervisor.types import (
    HOST_DEFAULT,
    PAUSED_MIGRATION,
    PAUSED_POSTCOPY,
    PAUSED_POSTCOPY_FAILED,
    RUNNING_POSTCOPY,
    ClockReading,
    CpuComparison,
    DirtyRate,
    DomainInfo,
    DomainState,
    EmulatorTarget,
    HostVersions,
    InterfaceInfo,
    JobStats,
    JobType,
    MigrationCall,
    NetworkInfo,
    NodeMemory,
    PoolInfo,
    VirErr,
    VolumeInfo,
)
from migration_core.inventory.hosts import Inventory
from migration_core.limits import DEFAULT_MAX_DOWNTIME_MS
from migration_core.models import ParamValue
from migration_core.units import GIB, MIB

RUNNING_BOOTED, RUNNING_MIGRATED, RUNNING_MIGRATION_CANCELED = 1, 2, 6
SHUTOFF_MIGRATED, SHUTOFF_DESTROYED = 4, 2
_SHARED_POOLS = frozenset({"netfs", "gluster", "rbd", "iscsi"})


@dataclass
class _Job:
    """A migration in flight between two hosts."""

    vm: str
    source: str
    destination: str
    model: MigrationModel
    flags: frozenset[str]
    done: asyncio.Future[None]
    aborted: bool = False
    broken: bool = False  # post-copy lost its link: both ends sit in "post-copy failed"
    failure: str | None = None  # injected: the next tick fails with this text


@dataclass
class _Vm:
    spec: VmSpec
    home: str  # the host that runs it (or holds its definition)
    max_downtime_ms: int = DEFAULT_MAX_DOWNTIME_MS  # what QEMU starts with
    max_speed_mib_s: int = 0
    postcopy_speed_mib_s: int = 0
    completed: JobStats | None = None
    fail_next: str | None = None


@dataclass
class FleetConfig:
    tick_s: float = 0.1  # simulation step of a running migration (loop time)
    keepalive_s: float = 6.0  # a link that stays down this long breaks the migration (lab: 2 s x 3)


@dataclass
class Fleet:
    """N simulated hosts and their VMs behind the hypervisor port. Build with `Fleet.build(...)`."""

    hosts: dict[str, HostState]
    vms: dict[str, _Vm]
    config: FleetConfig = field(default_factory=FleetConfig)
    _jobs: dict[str, _Job] = field(default_factory=dict)  # vm name -> running migration
    _cut: set[frozenset[str]] = field(default_factory=set)
    _labels: dict[str, str] = field(default_factory=dict)
    migrations_started: int = 0

    @classmethod
    def build(
        cls, *, hosts: Iterable[HostSpec], vms: Iterable[VmSpec] = (), config: FleetConfig | None = None
    ) -> Fleet:
        """A fleet of these hosts with these VMs defined (and running, unless `running=False`) on their hosts."""
        states = {h.name: HostState(h) for h in hosts}
        fleet = cls(states, {}, config or FleetConfig())
        for spec in vms:
            fleet.add_vm(spec)
        return fleet

    def add_vm(self, spec: VmSpec) -> None:
        spec = with_defaults(spec)
        if spec.host not in self.hosts:
            raise ValueError(f"VM {spec.name}: no host {spec.host!r} in the fleet ({', '.join(self.hosts)})")
        if spec.name in self.vms:
            raise ValueError(f"VM {spec.name} is defined twice")
        self.vms[spec.name] = _Vm(spec, spec.host)
        state = DomainState.RUNNING if spec.running else DomainState.SHUTOFF
        self.hosts[spec.host].domains[spec.name] = DomainRecord(state, RUNNING_BOOTED, spec.persistent)

    def inventory(self, path: str = "fleet.toml") -> Inventory:
        """The hosts file the core would load for this fleet (URIs `qemu+fleet://NAME/system`)."""
        return Inventory(path, tuple(h.spec.host_config() for h in self.hosts.values()))

    # ----- what a test asks ---------------------------------------------------------------------------------

    def where(self, vm: str) -> str:
        """The host that runs (or, shut off, holds) the VM now."""
        return self.vms[vm].home

    def state_on(self, host: str, vm: str) -> DomainInfo:
        return self._info(self.hosts[host], vm)

    def job_phase(self, vm: str) -> Phase | None:
        job = self._jobs.get(vm)
        return job.model.phase if job else None

    def set_dirty_rate(self, vm: str, dirty_mib_s: float) -> None:
        """The guest's load changes (also for a running migration)."""
        from dataclasses import replace

        v = self.vms[vm]
        v.spec = replace(v.spec, dirty_mib_s=dirty_mib_s)
        job = self._jobs.get(vm)
        if job:
            job.model.dirty_bytes_s = dirty_mib_s * MIB

    async def probe(self, host: str, port: int, timeout_s: float) -> tuple[bool | None, str]:
        """A TCP probe of a fleet host (PreflightRunner's `prober`): libvirt's port answers while its daemon
        runs; the migration ports answer "refused" between migrations (QEMU listens only during one)."""
        name = self._host_name(f"tcp://{host}")
        if name is None:
            return False, f"{host}: Name or service not known"
        if not self.hosts[name].daemon_up:
            return False, "Connection refused"
        return (True, "open") if port in (16509, 16514, 22) else (False, "Connection refused")

    # ----- faults (the ones the lab can inject) -------------------------------------------------------------

    def cut_link(self, a: str, b: str) -> None:
        """The network between two hosts goes down (the bot still reaches both daemons)."""
        self._cut.add(frozenset((a, b)))

    def restore_link(self, a: str, b: str) -> None:
        self._cut.discard(frozenset((a, b)))

    def stop_daemon(self, host: str) -> None:
        """libvirtd on that host is gone: every call to it fails as unreachable; its migrations break."""
        self.hosts[host].daemon_up = False

    def start_daemon(self, host: str) -> None:
        self.hosts[host].daemon_up = True

    def fail_migration(
        self, vm: str, message: str = "operation failed: migration out job: unexpectedly failed"
    ) -> None:
        """The VM's running migration fails at the next tick (or its next one, when none runs)."""
        job = self._jobs.get(vm)
        if job is not None:
            job.failure = message
        else:
            self.vms[vm].fail_next = message

    # ----- plumbing -----------------------------------------------------------------------------------------

    def label(self, uri: str) -> str:
        return self._labels.get(uri) or self._host_name(uri) or uri

    def add_host(self, name: str, *uris: str | None) -> None:
        for uri in uris:
            if uri:
                self._labels[uri] = name

    async def close(self) -> None:
        """Nothing to release (the libvirt adapter closes connections)."""

    def _host_name(self, uri: str) -> str | None:
        name = urlsplit(uri).hostname
        if name is None:
            return None
        for host in self.hosts:
            if host.lower() == name.lower():
                return host
        return None

    def _host(self, uri: str, op: str, vm: str | None = None) -> HostState:
        name = self._host_name(uri)
        if name is None:
            raise translate(
                VirErr.NO_CONNECT,
                f"unable to connect to server at '{uri}': Name or service not known",
                ErrorContext(uri, uri, op, vm),
            )
        host = self.hosts[name]
        if not host.daemon_up:
            raise translate(
                VirErr.SYSTEM_ERROR,
                f"Failed to connect socket to '{name}:16509': Connection refused",
                ErrorContext(name, uri, op, vm),
            )
        return host

    def _vm(self, host: HostState, vm: str, op: str) -> _Vm:
        found = self._lookup(vm)
        if found is None or found.spec.name not in host.domains:
            raise translate(
                VirErr.NO_DOMAIN,
                f"Domain not found: no domain with matching name '{vm}'",
                ErrorContext(host.spec.name, host.spec.uri, op, vm),
            )
        return found

    def _lookup(self, vm: str) -> _Vm | None:
        if vm in self.vms:
            return self.vms[vm]
        return next((v for v in self.vms.values() if v.spec.uuid == vm), None)

    def _info(self, host: HostState, vm: str) -> DomainInfo:
        found = self._lookup(vm)
        rec = host.domains.get(found.spec.name) if found else None
        if found is None or rec is None:
            return DomainInfo(host=host.spec.uri, name=vm)
        return rec.info(host.spec.uri, found.spec)

    def _linked(self, a: str, b: str) -> bool:
        return frozenset((a, b)) not in self._cut and self.hosts[a].daemon_up and self.hosts[b].daemon_up

    # ----- host facts ---------------------------------------------------------------------------------------

    async def ping(self, uri: str) -> str:
        return await self.hostname(uri)

    async def hostname(self, uri: str) -> str:
        return self._host(uri, "read the hostname").spec.name

    async def capabilities(self, uri: str) -> str:
        return capabilities_xml(self._host(uri, "read the host capabilities").spec)

    async def versions(self, uri: str) -> HostVersions:
        spec = self._host(uri, "read versions").spec
        return HostVersions(spec.libvirt_version, spec.qemu_version, "QEMU")

    async def node_memory(self, uri: str) -> NodeMemory:
        host = self._host(uri, "read free memory")
        used = sum(
            self.vms[name].spec.memory_mib * MIB
            for name, rec in host.domains.items()
            if rec.state is not DomainState.SHUTOFF
        )
        total = host.spec.memory_mib * MIB
        free = max(0, total - used)
        return NodeMemory(total, free, free)

    async def domain_capabilities(self, uri: str, target: EmulatorTarget = HOST_DEFAULT) -> str:
        return domain_capabilities_xml(self._host(uri, "read domain capabilities").spec)

    async def compare_cpu(self, uri: str, cpu_xml: str, target: EmulatorTarget = HOST_DEFAULT) -> CpuComparison:
        from migration_core.facts.domxml_host import cpu_model_of

        spec = self._host(uri, "compare CPUs").spec
        model = cpu_model_of(cpu_xml)
        if model in (None, spec.cpu_model):
            return CpuComparison(True, 2, (), "the host CPU is a superset")
        text = f"the CPU is incompatible with host CPU: Host CPU does not provide required features: {model}"
        return CpuComparison(False, 0, (str(model),), text)

    async def baseline_cpu(self, uri: str, cpu_xmls: Sequence[str], target: EmulatorTarget = HOST_DEFAULT) -> str:
        from migration_core.hypervisor.fleet.model import cpu_xml

        spec = self._host(uri, "compute a baseline CPU").spec
        return cpu_xml(spec.cpu_model, spec.cpu_vendor)

    # ----- domains ------------------------------------------------------------------------------------------

    async def list_domains(self, uri: str) -> tuple[DomainInfo, ...]:
        host = self._host(uri, "list VMs")
        return tuple(sorted((self._info(host, name) for name in host.domains), key=lambda d: d.name))

    async def domain(self, uri: str, vm: str) -> DomainInfo:
        return self._info(self._host(uri, "read the VM's state", vm), vm)

    async def domain_xml(self, uri: str, vm: str, *, migratable: bool = True, inactive: bool = False) -> str:
        host = self._host(uri, "read the VM's XML", vm)
        return domain_xml(self._vm(host, vm, "read the VM's XML").spec, host.spec)

    async def snapshot_count(self, uri: str, vm: str) -> int:
        self._vm(self._host(uri, "count the VM's snapshots", vm), vm, "count the VM's snapshots")
        return 0

    async def dirty_rate(
        self, uri: str, vm: str, *, seconds: int = 3, mode: str = "page-sampling", timeout_s: float | None = None
    ) -> DirtyRate:
        """What the guest dirties, measured over `seconds` of loop time (MB/s, as libvirt reports it)."""
        host = self._host(uri, "start dirty-rate sampling", vm)
        v = self._vm(host, vm, "start dirty-rate sampling")
        await asyncio.sleep(seconds)
        return DirtyRate(int(v.spec.dirty_mib_s * MIB / 1_000_000), mode, seconds)

    async def memory_rss_bytes(self, uri: str, vm: str) -> int | None:
        """Resident memory of the guest's QEMU: its non-zero (transferable) memory."""
        v = self._vm(self._host(uri, "read the VM's memory stats", vm), vm, "read the VM's memory stats")
        return v.spec.transferable_bytes

    async def cpu_time_ns(self, uri: str, vm: str) -> int:
        """vCPU time: advances (10 % of each vCPU) only while the VM runs on that host."""
        host = self._host(uri, "read the VM's CPU time", vm)
        v = self._vm(host, vm, "read the VM's CPU time")
        if host.domains[v.spec.name].state is not DomainState.RUNNING:
            return 0
        return int(asyncio.get_running_loop().time() * 1e9 * v.spec.vcpus * 0.1)

    async def guest_agent_configured(self, uri: str, vm: str) -> bool:
        self._vm(self._host(uri, "read the VM's XML", vm), vm, "read the VM's XML")
        return False

    async def guest_agent_ping(self, uri: str, vm: str) -> str:
        return "did not answer (no guest agent channel)"

    # ----- storage and networks -----------------------------------------------------------------------------

    async def networks(self, uri: str) -> tuple[NetworkInfo, ...]:
        spec = self._host(uri, "list networks").spec
        bridges = list(spec.bridges) + [None] * len(spec.networks)
        return tuple(NetworkInfo(n, True, bridges[i]) for i, n in enumerate(sorted(spec.networks)))

    async def interfaces(self, uri: str) -> tuple[InterfaceInfo, ...]:
        spec = self._host(uri, "list host interfaces").spec
        found = [InterfaceInfo("eth0", True, "ethernet")] + [InterfaceInfo(b, True, "bridge") for b in spec.bridges]
        return tuple(sorted(found, key=lambda i: i.name))

    async def refresh_pools(self, uri: str) -> None:
        self._host(uri, "refresh storage pools")

    async def pools(self, uri: str) -> tuple[PoolInfo, ...]:
        host = self._host(uri, "list storage pools")
        out = []
        for p in host.spec.pools:
            capacity = p.capacity_gib * GIB
            allocation = sum(
                d.allocated_gib * GIB
                for v in self.vms.values()
                for d in v.spec.disks
                if os.path.dirname(d.path) == p.path.rstrip("/")
                and (p.pool_type in _SHARED_POOLS or v.home == host.spec.name)
            )
            out.append(PoolInfo(p.name, True, p.pool_type, p.path, capacity, allocation, capacity - allocation))
        return tuple(sorted(out, key=lambda p: p.name))

    async def volume_by_path(self, uri: str, path: str, *, refresh: bool = True) -> VolumeInfo | None:
        host = self._host(uri, "look up a disk image")
        pool = next((p for p in host.spec.pools if p.path.rstrip("/") == os.path.dirname(path)), None)
        if pool is None:
            return None
        for v in self.vms.values():
            for d in v.spec.disks:
                if d.path == path and (pool.pool_type in _SHARED_POOLS or v.home == host.spec.name):
                    return VolumeInfo(
                        path, pool.name, os.path.basename(path), "qcow2", d.size_gib * GIB, d.allocated_gib * GIB
                    )
        if path in host.volumes:
            return VolumeInfo(path, pool.name, os.path.basename(path), "qcow2", host.volumes[path], 0)
        return None

    async def pool_for_directory(self, uri: str, directory: str) -> PoolInfo | None:
        return next((p for p in await self.pools(uri) if p.covers(directory)), None)

    async def path_exists(self, uri: str, path: str) -> bool | None:
        return await self.volume_by_path(uri, path) is not None

    async def create_volume(self, uri: str, path: str, capacity_bytes: int, fmt: str = "qcow2") -> VolumeInfo:
        host = self._host(uri, f"create disk image {path}")
        host.volumes[path] = capacity_bytes
        return VolumeInfo(path, "", os.path.basename(path), fmt, capacity_bytes, 0)

    async def delete_volume(self, uri: str, path: str) -> bool:
        return self._host(uri, f"delete disk image {path}").volumes.pop(path, None) is not None

    async def same_storage(self, uri: str, other_uri: str, directory: str) -> bool | None:
        """Both hosts see `directory` as one storage when both have a shared-type pool there."""
        mine, theirs = (
            await self.pool_for_directory(uri, directory),
            await self.pool_for_directory(other_uri, directory),
        )
        if mine is None or theirs is None:
            return None
        return mine.pool_type in _SHARED_POOLS and theirs.pool_type in _SHARED_POOLS

    async def clock_reading(self, uri: str) -> ClockReading:
        """The host spec's clock offset, measured exactly (no round trip in memory)."""
        return ClockReading(self._host(uri, "read the host's clock (probe file)").spec.clock_offset_s, 0.0)

    async def volume_allocation_bytes(self, uri: str, path: str) -> int | None:
        vol = await self.volume_by_path(uri, path)
        return vol.allocation_bytes if vol else None

    async def disk_capacity_bytes(self, uri: str, vm: str, disk: str) -> int:
        v = self._vm(self._host(uri, f"read the size of disk {disk}", vm), vm, f"read the size of disk {disk}")
        for d in v.spec.disks:
            if disk in (d.target, d.path):
                return d.size_gib * GIB
        raise HypervisorError(f"{vm} has no disk {disk}", "name a disk target such as vda")

    # ----- lifecycle ----------------------------------------------------------------------------------------

    async def destroy(self, uri: str, vm: str) -> None:
        host = self._host(uri, "destroy the VM", vm)
        rec = host.domains.get(self._vm(host, vm, "destroy the VM").spec.name)
        if rec is not None and rec.state is not DomainState.SHUTOFF:
            if rec.persistent:
                rec.state, rec.reason = DomainState.SHUTOFF, SHUTOFF_DESTROYED
            else:
                host.domains.pop(self.vms[vm].spec.name)

    async def undefine(self, uri: str, vm: str) -> None:
        host = self._host(uri, "undefine the VM", vm)
        name = self._vm(host, vm, "undefine the VM").spec.name
        rec = host.domains[name]
        if rec.state is DomainState.SHUTOFF:
            host.domains.pop(name)
        else:
            rec.persistent = False

    async def undefine_inactive(self, uri: str, vm: str) -> None:
        host = self._host(uri, "undefine the VM", vm)
        name = self._vm(host, vm, "undefine the VM").spec.name
        if host.domains[name].state is not DomainState.SHUTOFF:
            raise translate(
                VirErr.OPERATION_INVALID,
                f"Requested operation is not valid: {vm} is running there; only a shut-off definition is removed",
                ErrorContext(host.spec.name, uri, "undefine the VM", vm),
            )
        host.domains.pop(name)

    async def define(self, uri: str, xml: str) -> str:
        raise HypervisorError("the fleet defines VMs with Fleet.add_vm(VmSpec(...)), not from XML", "use add_vm")

    async def start(self, uri: str, vm: str) -> None:
        host = self._host(uri, "start the VM", vm)
        rec = host.domains[self._vm(host, vm, "start the VM").spec.name]
        rec.state, rec.reason = DomainState.RUNNING, RUNNING_BOOTED
        self.vms[vm].home = host.spec.name

    # ----- migration controls -------------------------------------------------------------------------------

    def _job(self, uri: str, vm: str, op: str) -> _Job:
        host = self._host(uri, op, vm)
        v = self._vm(host, vm, op)
        job = self._jobs.get(v.spec.name)
        if job is None or job.source != host.spec.name:
            raise translate(
                VirErr.OPERATION_INVALID,
                "Requested operation is not valid: no job is active on the domain",
                ErrorContext(host.spec.name, uri, op, vm),
            )
        return job

    async def job_stats(self, uri: str, vm: str) -> JobStats:
        host = self._host(uri, "read job statistics", vm)
        v = self._vm(host, vm, "read job statistics")
        job = self._jobs.get(v.spec.name)
        if job is None or job.source != host.spec.name or job.model.done:
            return JobStats(JobType.NONE, {})
        return JobStats(JobType.UNBOUNDED, job.model.stats())

    async def completed_job_stats(
        self, vm_uuid: str, *, source_uri: str, destination_uri: str, wait_s: float = 1.0
    ) -> JobStats | None:
        v = self._lookup(vm_uuid)
        return v.completed if v else None

    def forget_completed(self, vm_uuid: str) -> None:
        v = self._lookup(vm_uuid)
        if v is not None:
            v.completed = None

    async def abort_job(self, uri: str, vm: str) -> None:
        job = self._job(uri, vm, "abort the migration")
        if job.model.phase is Phase.POSTCOPY:
            raise translate(
                VirErr.OPERATION_INVALID,
                "Requested operation is not valid: cannot abort migration in post-copy mode",
                ErrorContext(job.source, uri, "abort the migration", vm),
            )
        job.aborted = True

    async def pause_postcopy(self, uri: str, vm: str) -> None:
        job = self._job(uri, vm, "pause the post-copy migration")
        if job.model.phase is not Phase.POSTCOPY:
            raise translate(
                VirErr.OPERATION_INVALID,
                "Requested operation is not valid: current job is not in post-copy",
                ErrorContext(job.source, uri, "pause the post-copy migration", vm),
            )
        self._break_postcopy(job)

    async def start_postcopy(self, uri: str, vm: str) -> None:
        job = self._job(uri, vm, "switch to post-copy")
        if "POSTCOPY" not in job.flags:
            raise translate(
                VirErr.OPERATION_INVALID,
                "Requested operation is not valid: switching to post-copy migration requires migration to be "
                "started with VIR_MIGRATE_POSTCOPY flag",
                ErrorContext(job.source, uri, "switch to post-copy", vm),
            )
        if job.model.phase is not Phase.POSTCOPY and not job.model.done:
            job.model.start_postcopy()
            src, dst = self.hosts[job.source].domains[job.vm], self.hosts[job.destination].domains[job.vm]
            src.state, src.reason = DomainState.PAUSED, PAUSED_POSTCOPY
            dst.state, dst.reason = DomainState.RUNNING, RUNNING_POSTCOPY
            self.vms[job.vm].home = job.destination

    async def set_max_downtime(self, uri: str, vm: str, downtime_ms: int) -> None:
        v = self._vm(self._host(uri, "set the maximum downtime", vm), vm, "set the maximum downtime")
        v.max_downtime_ms = int(downtime_ms)
        job = self._jobs.get(v.spec.name)
        if job is not None:
            job.model.max_downtime_ms = int(downtime_ms)

    async def get_max_downtime(self, uri: str, vm: str) -> int:
        return self._vm(
            self._host(uri, "read the maximum downtime", vm), vm, "read the maximum downtime"
        ).max_downtime_ms

    async def set_max_speed(self, uri: str, vm: str, bandwidth_mib_s: int, *, postcopy: bool = False) -> None:
        v = self._vm(self._host(uri, "set the migration bandwidth", vm), vm, "set the migration bandwidth")
        if postcopy:
            v.postcopy_speed_mib_s = int(bandwidth_mib_s)
        else:
            v.max_speed_mib_s = int(bandwidth_mib_s)
        job = self._jobs.get(v.spec.name)
        if job is not None:
            job.model.max_speed_bytes_s = v.max_speed_mib_s * MIB or None
            job.model.postcopy_speed_bytes_s = v.postcopy_speed_mib_s * MIB or None

    async def get_max_speed(self, uri: str, vm: str, *, postcopy: bool = False) -> int:
        v = self._vm(self._host(uri, "read the migration bandwidth", vm), vm, "read the migration bandwidth")
        return v.postcopy_speed_mib_s if postcopy else v.max_speed_mib_s

    # ----- migration ----------------------------------------------------------------------------------------

    async def migrate(self, source_uri: str, vm: str, call: MigrationCall) -> None:
        """Run one migration to its end in loop time; raises what libvirt would (translated)."""
        names, params = call.flag_names, call.params
        src = self._host(source_uri, f"migrate {vm}", vm)
        target = call.peer_uri if "PEER2PEER" in names else call.destination_uri
        dst_name = self._host_name(target or "")
        ctx = ErrorContext(src.spec.name, source_uri, f"migrate {vm}", vm, call.destination or dst_name or "?", target)
        if dst_name is None:
            raise HypervisorError("no destination URI for this migration", "the inventory needs peer_uri or uri")
        v = self._vm(src, vm, f"migrate {vm}")
        if "POSTCOPY_RESUME" in names:
            await self._resume(v, src.spec.name, dst_name, ctx)
            return
        if not self._linked(src.spec.name, dst_name):
            raise translate(
                VirErr.SYSTEM_ERROR, f"unable to connect to server at '{dst_name}:16509': No route to host", ctx
            )
        if v.spec.name in self._jobs:
            raise translate(
                VirErr.OPERATION_TIMEOUT, "Timed out during operation: cannot acquire state change lock", ctx
            )
        rec = src.domains[v.spec.name]
        live = "OFFLINE" not in names
        if live and rec.state is not DomainState.RUNNING:
            raise translate(VirErr.OPERATION_INVALID, "Requested operation is not valid: domain is not running", ctx)
        if (
            v.spec.name in self.hosts[dst_name].domains
            and self.hosts[dst_name].domains[v.spec.name].state is not DomainState.SHUTOFF
        ):
            raise translate(VirErr.OPERATION_FAILED, f"operation failed: domain '{v.spec.name}' is already active", ctx)
        self.migrations_started += 1
        if not live:
            self._finish_offline(v, src, dst_name, names)
            return
        disk_bytes = sum(d.size_gib * GIB for d in v.spec.disks) if names & {"NON_SHARED_DISK", "NON_SHARED_INC"} else 0
        link = min(src.spec.link_mib_s, self.hosts[dst_name].spec.link_mib_s) * MIB
        model = MigrationModel(
            memory_bytes=v.spec.memory_mib * MIB,
            transferable_bytes=v.spec.transferable_bytes,
            working_set_bytes=v.spec.working_set_bytes,
            dirty_bytes_s=v.spec.dirty_mib_s * MIB,
            link_bytes_s=link,
            max_downtime_ms=v.max_downtime_ms,
            disk_bytes=disk_bytes,
            auto_converge="AUTO_CONVERGE" in names,
            postcopy_allowed="POSTCOPY" in names,
            max_speed_bytes_s=_bandwidth(params, "bandwidth", v.max_speed_mib_s),
            postcopy_speed_bytes_s=_bandwidth(params, "bandwidth.postcopy", v.postcopy_speed_mib_s),
        )
        job = _Job(v.spec.name, src.spec.name, dst_name, model, names, asyncio.get_running_loop().create_future())
        job.failure, v.fail_next = v.fail_next, None
        self._jobs[v.spec.name] = job
        self.hosts[dst_name].domains[v.spec.name] = DomainRecord(DomainState.PAUSED, PAUSED_MIGRATION, False)
        await self._drive(job, ctx)

    async def _drive(self, job: _Job, ctx: ErrorContext) -> None:
        """Tick the model until it ends; map the end to libvirt's answer and both hosts' domain states."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        tick = self.config.tick_s
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            dt, last = now - last, now
            model = job.model
            if job.broken:  # paused (abortJobFlags POSTCOPY) while it ran
                raise translate(
                    VirErr.OPERATION_FAILED, "operation failed: job 'migration out' failed in post-copy phase", ctx
                )
            if job.aborted:
                self._end_precopy(job, RUNNING_MIGRATION_CANCELED)
                raise translate(
                    VirErr.OPERATION_ABORTED, "operation aborted: migration out job: canceled by client", ctx
                )
            if job.failure is not None:
                text, job.failure = job.failure, None
                self._break(job)
                raise translate(VirErr.OPERATION_FAILED, text, ctx)
            linked = self._linked(job.source, job.destination)
            model.link_bytes_s = self._share(job)
            model.advance(dt, link_up=linked)
            if model.done:
                self._complete(job)
                return
            if not linked and model.stalled_s >= self.config.keepalive_s:
                self._break(job)
                raise translate(
                    VirErr.OPERATION_FAILED,
                    "operation failed: migration out job: Unable to write to socket: Connection reset by peer",
                    ctx,
                )

    def _share(self, job: _Job) -> float:
        """This migration's part of the links: each host's link is split evenly between the migrations it
        sends or receives at the moment (QEMU streams compete for the same NIC)."""
        src, dst = self.hosts[job.source].spec, self.hosts[job.destination].spec
        out = sum(1 for j in self._jobs.values() if job.source in (j.source, j.destination) and not j.broken)
        into = sum(1 for j in self._jobs.values() if job.destination in (j.source, j.destination) and not j.broken)
        return min(src.link_mib_s / max(out, 1), dst.link_mib_s / max(into, 1)) * MIB

    def _break(self, job: _Job) -> None:
        if job.model.phase is Phase.POSTCOPY:
            self._break_postcopy(job)
        else:
            self._end_precopy(job, RUNNING_MIGRATION_CANCELED)

    def _break_postcopy(self, job: _Job) -> None:
        job.broken = True
        src, dst = self.hosts[job.source].domains[job.vm], self.hosts[job.destination].domains[job.vm]
        src.state, src.reason = DomainState.PAUSED, PAUSED_POSTCOPY_FAILED
        dst.state, dst.reason = DomainState.PAUSED, PAUSED_POSTCOPY_FAILED
        if not job.done.done():
            job.done.set_result(None)

    def _end_precopy(self, job: _Job, reason: int) -> None:
        """A pre-copy migration ended without the guest moving: it runs on the source, the destination is clean."""
        self._jobs.pop(job.vm, None)
        self.hosts[job.destination].domains.pop(job.vm, None)
        rec = self.hosts[job.source].domains[job.vm]
        rec.state, rec.reason = DomainState.RUNNING, reason
        self.vms[job.vm].home = job.source

    def _complete(self, job: _Job) -> None:
        self._jobs.pop(job.vm, None)
        v = self.vms[job.vm]
        src_host, dst_host = self.hosts[job.source], self.hosts[job.destination]
        persistent = src_host.domains[job.vm].persistent
        if "UNDEFINE_SOURCE" in job.flags or not persistent:
            src_host.domains.pop(job.vm, None)
        else:
            src_host.domains[job.vm] = DomainRecord(DomainState.SHUTOFF, SHUTOFF_MIGRATED, True)
        dst_host.domains[job.vm] = DomainRecord(
            DomainState.RUNNING, RUNNING_MIGRATED, "PERSIST_DEST" in job.flags or persistent
        )
        v.home = job.destination
        v.completed = JobStats(JobType.COMPLETED, job.model.stats(completed=True))

    def _finish_offline(self, v: _Vm, src: HostState, dst_name: str, names: frozenset[str]) -> None:
        dst = self.hosts[dst_name]
        dst.domains[v.spec.name] = DomainRecord(DomainState.SHUTOFF, 0, True)
        if "UNDEFINE_SOURCE" in names:
            src.domains.pop(v.spec.name, None)
        v.home = dst_name
        v.completed = JobStats(JobType.COMPLETED, {"operation": 5, "time_elapsed": 50, "success": True})

    async def _resume(self, v: _Vm, source: str, dst_name: str, ctx: ErrorContext) -> None:
        """VIR_MIGRATE_POSTCOPY_RESUME: only a broken post-copy resumes, and only over a working link."""
        job = self._jobs.get(v.spec.name)
        if job is None or job.model.phase is not Phase.POSTCOPY:
            raise translate(
                VirErr.OPERATION_INVALID, "Requested operation is not valid: domain is not in post-copy", ctx
            )
        if not self._linked(source, dst_name):
            raise translate(
                VirErr.SYSTEM_ERROR, f"unable to connect to server at '{dst_name}:16509': No route to host", ctx
            )
        if not job.broken:
            raise translate(VirErr.OPERATION_FAILED, "operation failed: QEMU reports migration is still running", ctx)
        job.broken = False
        job.model.stalled_s = 0.0
        src, dst = self.hosts[job.source].domains[job.vm], self.hosts[job.destination].domains[job.vm]
        src.state, src.reason = DomainState.PAUSED, PAUSED_POSTCOPY
        dst.state, dst.reason = DomainState.RUNNING, RUNNING_POSTCOPY
        job.done = asyncio.get_running_loop().create_future()
        await self._drive(job, ctx)


def _bandwidth(params: Mapping[str, ParamValue], key: str, fallback_mib_s: int) -> float | None:
    value = params.get(key)
    mib = int(value) if isinstance(value, int | float) and not isinstance(value, bool) else fallback_mib_s
    return mib * MIB if mib else None


def _implements_the_port(fleet: Fleet) -> HypervisorPort:
    """mypy proves here that the fleet implements the port (a structural check; never called)."""
    return fleet
