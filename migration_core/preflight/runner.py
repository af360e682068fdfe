"""Preflight as a whole: gather facts from both hosts concurrently, run the pure checks, predict, plan.

This is where the libvirt adapter (hypervisor.py) meets the pure half (domxml, preflight/, prediction,
planner): every fact is fetched once, in parallel where it can be, and a fact that cannot be fetched becomes
`None` (the checks then say what they could not check) rather than an exception. Only "no host answers at
all" raises (HostUnreachable), so the CLI can tell "the plan says no" from "nothing could be asked".
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import urlsplit

from migration_core.errors import HostUnreachable, MigrateBotError, PreflightError, RequestError
from migration_core.facts.domxml import parse_domain
from migration_core.facts.domxml_host import (
    cpu_model_of,
    host_model_cpu_xml,
    parse_capabilities,
    parse_domain_capabilities,
)
from migration_core.facts.gathered import (
    CpuComparison,
    DirtyRateSample,
    DiskVisibility,
    Endpoint,
    PortProbe,
    PreflightFacts,
    PreflightSettings,
    VmState,
)
from migration_core.facts.host import DomainCapsFacts, HostFacts
from migration_core.facts.vm import DiskFacts, DiskSourceKind, VmFacts
from migration_core.hypervisor.port import HypervisorPort
from migration_core.hypervisor.types import DomainInfo, EmulatorTarget, NetworkInfo
from migration_core.inventory.hosts import HostConfig, Inventory
from migration_core.models import (
    CheckResult,
    CheckStatus,
    MigrationMode,
    MigrationOptions,
    MigrationRequest,
    MoveSample,
    Plan,
    Prediction,
)
from migration_core.planning.drain import (
    DrainPlan,
    DrainRequest,
    DrainSource,
    DrainVm,
    PlacedPlan,
    options_for,
    plan_drain,
    plan_to_any,
)
from migration_core.planning.estimate import estimate, to_prediction, transferable_from_rss
from migration_core.planning.estimates import CalibratedEstimator, MoveEstimator, MoveLoad, move_inputs
from migration_core.planning.placement import Candidacy, Destination, evaluate
from migration_core.planning.planner import choose_mode, make_plan
from migration_core.preflight import copy_sizes
from migration_core.units import mb_s_to_mib_s

log = logging.getLogger(__name__)
T = TypeVar("T")
P = TypeVar("P")  # typed facts parsed from a libvirt XML document
# (vm_uuid, source, destination) -> earlier migrations of that VM or host pair (Store.move_samples).
HistorySource = Callable[[str, str, str], Awaitable[Sequence[MoveSample]]]

# Pool types whose storage every host of the cluster sees (libvirt treats them as shared).
_SHARED_POOL_TYPES = frozenset({"netfs", "gluster", "rbd", "iscsi", "iscsi-direct", "mpath", "vstorage"})
_DEFAULT_PORTS = {"qemu+tcp": 16509, "qemu+tls": 16514, "qemu+ssh": 22, "qemu+libssh2": 22, "qemu+libssh": 22}
_MIGRATION_PORT = 49152
_DIRTY_RATES_KEPT = 1024  # measurements remembered (one per VM and source host; the oldest go first)


async def _maybe(what: str, aw: Awaitable[T]) -> tuple[T | None, str | None]:
    """Await a fact; an expected failure becomes (None, message) so one missing fact never sinks a plan."""
    try:
        return await aw, None
    except MigrateBotError as err:
        log.info("preflight: could not %s: %s", what, err)
        return None, str(err)


def _target(vm: VmFacts) -> EmulatorTarget:
    """The emulator, arch, machine and virt type the VM runs with: what CPU questions are asked about."""
    return EmulatorTarget(vm.emulator, vm.arch, vm.machine, vm.domain_type)


def _uses_netdev(vm: VmFacts) -> bool:
    """Whether a NIC is a macvtap on a host interface (type='direct'), which the destination must have too."""
    return any(i.type == "direct" and i.source_dev for i in vm.interfaces)


def _bridges_found(
    vm: VmFacts, networks: Sequence[NetworkInfo] | None, interfaces: frozenset[str] | None
) -> frozenset[str] | None:
    """The VM's bridges that the destination has: a libvirt network's bridge or a host interface of that name.
    None when that cannot be told (the networks, or the interfaces a bridge would be looked up in, unread)."""
    found = set()
    for bridge in sorted({i.source_bridge for i in vm.interfaces if i.source_bridge}):
        if networks is None:
            return None
        if any(n.bridge == bridge for n in networks):
            found.add(bridge)
        elif interfaces is None:
            return None
        elif bridge in interfaces:
            found.add(bridge)
    return frozenset(found)


# A TCP port probe from where the bot runs: (open?, detail); None when it cannot be told.
Prober = Callable[[str, int, float], Awaitable[tuple[bool | None, str]]]


async def _parsed(what: str, read: Awaitable[str], parse: Callable[[str], P]) -> tuple[P | None, str | None]:
    """A libvirt XML document read and parsed once: its typed facts, or None and why (unreadable, or XML that
    does not parse): a fact preflight lacks is a WARN of its check, never a crash."""
    xml, error = await _maybe(what, read)
    if xml is None:
        return None, error
    try:
        return parse(xml), None
    except MigrateBotError as err:
        return None, str(err)


async def _vm_facts(hyp: HypervisorPort, uri: str, name: str, *, migratable: bool) -> tuple[VmFacts | None, str | None]:
    """A VM's XML (`migratable`: as the destination would get it, else as defined) -> VmFacts, or None and why."""
    return await _parsed("read the VM's XML", hyp.domain_xml(uri, name, migratable=migratable), parse_domain)


def _vcpus_of(running: Sequence[DomainInfo], residents: Mapping[str, VmFacts | None]) -> int | None:
    """The vCPUs the running VMs hold; None when one of them could not be read (the total would be a guess)."""
    total = 0
    for d in running:
        vm = residents.get(d.name)
        if vm is None:
            return None
        total += vm.vcpus
    return total


async def _given(listed: tuple[DomainInfo, ...]) -> tuple[tuple[DomainInfo, ...], None]:
    return listed, None


async def _none() -> tuple[None, None]:
    return None, None


async def probe_tcp(host: str, port: int, timeout_s: float) -> tuple[bool | None, str]:
    """Can this process open a TCP connection to host:port? (True/False, or None when not routable from here).

    A refused connection proves the host answers (nothing listens there right now): for the migration port
    range that is the expected answer outside a migration, so the caller decides what "refused" means.
    """
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except ConnectionRefusedError:
        return False, "connection refused"
    except TimeoutError:
        return False, f"no answer within {timeout_s:g} s (filtered by a firewall?)"
    except OSError as err:
        if err.errno in (101, 113):  # ENETUNREACH, EHOSTUNREACH: no route from where the bot runs
            return None, f"no route from the bot to {host} ({err.strerror})"
        return False, err.strerror or str(err)
    writer.close()
    return True, "open"


class PreflightRunner:
    """Makes plans for one inventory through one hypervisor adapter (`service.PlanMaker`)."""

    def __init__(
        self,
        inventory: Inventory,
        hypervisor: HypervisorPort,
        *,
        dirty_rate_window_s: float = 3.0,
        probe_timeout_s: float = 2.0,
        settings: PreflightSettings | None = None,
        history: HistorySource | None = None,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        prober: Prober | None = None,
    ) -> None:
        self.inventory = inventory
        self.history = history  # the store's move_samples for (vm_uuid, source, destination); None: model only
        self.clock = clock or (lambda: datetime.now(UTC))
        self.hypervisor = hypervisor
        self.dirty_rate_window_s = dirty_rate_window_s
        self.probe_timeout_s = probe_timeout_s
        self.prober: Prober = prober or probe_tcp  # the fleet answers for its simulated hosts
        self.settings = settings or PreflightSettings()
        # how long a move takes on a share of the link (drains): None = the calibrated prediction with history
        self.estimator: MoveEstimator | None = None
        # hosts under maintenance (being drained or drained) -> why; the service sets it (issue 11)
        self.maintenance: Callable[[], Awaitable[Mapping[str, str]]] | None = None
        self._monotonic = monotonic
        # (source URI, VM UUID) -> (when measured, the measurement): what a re-check may reuse.
        self._dirty_rates: dict[tuple[str, str], tuple[float, DirtyRateSample]] = {}
        self.dirty_rates_measured = 0  # how many measurements were taken (tests and benchmarks read it)

    # ----- the service's entry points ---------------------------------------------------------------------

    async def host_status(self, name: str) -> tuple[bool, str, int | None]:
        """(answers, detail, running VM count) for `migrate-bot hosts`."""
        host = self.inventory.get(name)
        try:
            hostname = await self.hypervisor.ping(host.uri)
            domains = await self.hypervisor.list_domains(host.uri)
            versions = await self.hypervisor.versions(host.uri)
        except MigrateBotError as err:
            return False, str(err), None
        running = sum(1 for d in domains if d.active)
        return True, f"{hostname}: libvirt {versions.libvirt_text}, QEMU {versions.hypervisor_text}", running

    async def make_plan(self, request: MigrationRequest, *, reuse_dirty_rate_s: float = 0.0) -> Plan:
        """Gather every fact, predict, plan. `reuse_dirty_rate_s` > 0 (the re-check before start): a dirty-rate
        measurement of the same VM on the same source host younger than that is reused instead of measuring
        again; every other fact is read anew."""
        facts = await self.gather(request, reuse_dirty_rate_s=reuse_dirty_rate_s)
        prediction = await self._predict(facts)
        dest = self.inventory.find(request.destination)
        plan = make_plan(
            facts,
            prediction,
            dest_peer_uri=(dest.peer_uri if dest else "") or "qemu:///unknown-destination",
            migration_address=dest.migration_address if dest else None,
            tls=request.options.tls,
        )
        why = (await self._maintenance()).get(plan.destination)
        if why is None:
            return plan
        warning = CheckResult(
            "host.maintenance",
            CheckStatus.WARN,
            why,
            f"pick another host (or `/migrate {request.vm} to any`), or `/migrate return {plan.destination}` first",
        )
        return replace(plan, checks=(*plan.checks, warning))

    async def _maintenance(self) -> Mapping[str, str]:
        """Hosts being drained or drained, with the reason (empty when the service has no drains)."""
        if self.maintenance is None:
            return {}
        marks, _error = await _maybe("read the hosts under maintenance", self.maintenance())
        return marks or {}

    # ----- prediction -------------------------------------------------------------------------------------

    async def _predict(self, facts: PreflightFacts) -> Prediction | None:
        """The calibrated estimate (planning/estimate.py): inputs from the facts, the VM's RSS (transferable
        memory) and the history of this VM and host pair; a fact that cannot be read leaves the model to its
        defaults rather than failing the plan."""
        vm = facts.vm
        if vm is None:
            return None
        mode = choose_mode(facts.request, facts.vm_state)
        opts = facts.request.options
        links = [
            h.link_mib_s
            for h in (self.inventory.find(facts.source.name), self.inventory.find(facts.destination.name))
            if h is not None
        ]
        if opts.bandwidth_mib_s:
            links.append(float(opts.bandwidth_mib_s))
        bandwidth = min(links) if links else None
        if bandwidth is None and mode is MigrationMode.LIVE:
            return None
        rss = None
        if mode is MigrationMode.LIVE and facts.source.uri:
            rss, _ = await _maybe(
                "read the VM's memory stats", self.hypervisor.memory_rss_bytes(facts.source.uri, vm.name)
            )
        copy, copy_virtual = copy_sizes(vm, facts.disks) if opts.copy_storage is not None else (0, 0)
        load = MoveLoad(
            vm.name,
            vm.memory_bytes,
            facts.dirty_rate.rate_mib_s if facts.dirty_rate else None,
            mode,
            copy,
            transferable_bytes=transferable_from_rss(vm.memory_bytes, rss),
            source=facts.source.name,
            destination=facts.destination.name,
            vm_uuid=vm.uuid,
            copy_virtual_bytes=copy_virtual,
        )
        inputs = move_inputs(load, bandwidth, opts)
        history: Sequence[MoveSample] = ()
        if self.history is not None:
            found, _ = await _maybe(
                "read the migration history", self.history(vm.uuid, facts.source.name, facts.destination.name)
            )
            history = found or ()
        return to_prediction(estimate(inputs, history, now=self.clock()), inputs)

    # ----- facts ------------------------------------------------------------------------------------------

    async def _locate(
        self, vm: str
    ) -> tuple[HostConfig | None, DomainInfo | None, dict[str, str], list[str], dict[str, tuple[DomainInfo, ...]]]:
        """Which host has the VM (running first, else defined); unreachable hosts; every VM name seen; and every
        host's domain list (for the definitions of the same UUID elsewhere)."""
        hosts = list(self.inventory)
        answers = await asyncio.gather(*(_maybe("list VMs", self.hypervisor.list_domains(h.uri)) for h in hosts))
        errors: dict[str, str] = {}
        names: set[str] = set()
        found: list[tuple[HostConfig, DomainInfo]] = []
        listing: dict[str, tuple[DomainInfo, ...]] = {}
        for host, (domains, error) in zip(hosts, answers, strict=True):
            if domains is None:
                errors[host.name] = error or "no answer"
                continue
            listing[host.name] = tuple(domains)
            for d in domains:
                names.add(d.name)
                if d.name == vm or d.uuid == vm:
                    found.append((host, d))
        found.sort(key=lambda hd: (not hd[1].active, hd[0].name))
        if found:
            return found[0][0], found[0][1], errors, sorted(names), listing
        return None, None, errors, sorted(names), listing

    async def gather(self, request: MigrationRequest, *, reuse_dirty_rate_s: float = 0.0) -> PreflightFacts:
        dest_cfg = self.inventory.find(request.destination)
        src_cfg, dom, errors, names, listing = await self._locate(request.vm)
        if len(errors) == len(self.inventory) and len(self.inventory) > 0:
            listed = "; ".join(f"{h}: {e}" for h, e in errors.items())
            raise HostUnreachable(
                f"no host in {self.inventory.path} answers ({listed})",
                "check that libvirtd runs on the hosts and that the URIs in the hosts file are right",
            )
        known = tuple(self.inventory.names())
        destination = Endpoint(
            name=dest_cfg.name if dest_cfg else request.destination,
            known=dest_cfg is not None,
            answered=dest_cfg is not None and dest_cfg.name not in errors,
            error=errors.get(dest_cfg.name) if dest_cfg else None,
            uri=dest_cfg.uri if dest_cfg else None,
            peer_uri=dest_cfg.peer_uri if dest_cfg else None,
            migration_tls=dest_cfg.migration_tls if dest_cfg else False,
            memory_reserve_bytes=dest_cfg.memory_reserve_bytes if dest_cfg else 0,
        )
        if src_cfg is None:
            searched = ", ".join(h for h in known if h not in errors) or "any host"
            unanswered = f" ({', '.join(errors)} did not answer)" if errors else ""
            source = Endpoint(name=searched + unanswered, known=True, answered=True)
            return PreflightFacts(
                request=request,
                source=source,
                destination=destination,
                known_hosts=known,
                known_vms=tuple(names),
                settings=self.settings,
            )
        assert dom is not None
        source = Endpoint(
            name=src_cfg.name, uri=src_cfg.uri, peer_uri=src_cfg.peer_uri, migration_tls=src_cfg.migration_tls
        )
        base = PreflightFacts(
            request=request,
            source=source,
            destination=destination,
            known_hosts=known,
            known_vms=tuple(names),
            vm_state=VmState.of(dom.state),
            vm_persistent=dom.persistent,
            settings=self.settings,
            definitions_elsewhere=tuple(
                replace(d, host=host)
                for host, domains in sorted(listing.items())
                if host != src_cfg.name
                for d in domains
                if dom.uuid and d.uuid.lower() == dom.uuid.lower()
            ),
            hosts_unanswered=tuple(sorted(errors)),
        )
        if dest_cfg is None or not destination.answered or dest_cfg.name == src_cfg.name:
            return base  # the host checks fail first; the rest would only repeat the root cause
        return await self._gather_both(base, request, src_cfg, dest_cfg, dom, listing, reuse_dirty_rate_s)

    async def _host(
        self,
        cfg: HostConfig,
        listed: Sequence[DomainInfo] | None = None,
        residents: Mapping[str, VmFacts | None] | None = None,
    ) -> HostFacts | None:
        """The host's facts. `listed`: its VMs when already listed (else listed here); `residents`: their facts
        when already read (else the running ones' XML is read here), so no VM's XML is read twice."""
        hyp = self.hypervisor
        listing = _given(tuple(listed)) if listed is not None else _maybe("list VMs", hyp.list_domains(cfg.uri))
        (caps, _e1), (hostname, _e2), (versions, _e3), (memory, _e4), (domains, _e5) = await asyncio.gather(
            _maybe("read capabilities", hyp.capabilities(cfg.uri)),
            _maybe("read the hostname", hyp.hostname(cfg.uri)),
            _maybe("read versions", hyp.versions(cfg.uri)),
            _maybe("read memory", hyp.node_memory(cfg.uri)),
            listing,
        )
        if caps is None:
            return None
        try:
            facts = parse_capabilities(caps)
        except MigrateBotError as err:
            log.warning("preflight: %s's capabilities do not parse: %s", cfg.name, err)
            return None
        running_vcpus = None
        if domains is not None:
            running = [d for d in domains if d.active]
            if residents is None:
                residents = await self._residents(cfg, running)
            running_vcpus = _vcpus_of(running, residents)
        return replace(
            facts,
            name=cfg.name,
            hostname=hostname,
            versions=versions,
            free_memory_bytes=memory.available_bytes if memory else None,
            total_memory_bytes=memory.total_bytes if memory else facts.total_memory_bytes,
            running_vcpus=running_vcpus,
        )

    async def _residents(self, cfg: HostConfig, domains: Sequence[DomainInfo]) -> dict[str, VmFacts | None]:
        """The facts of VMs on `cfg` by name (their XML as defined, read and parsed once; None: unreadable)."""
        found = await asyncio.gather(*(_vm_facts(self.hypervisor, cfg.uri, d.name, migratable=False) for d in domains))
        return {d.name: vm for d, (vm, _err) in zip(domains, found, strict=True)}

    async def _gather_both(
        self,
        base: PreflightFacts,
        request: MigrationRequest,
        src: HostConfig,
        dst: HostConfig,
        dom: DomainInfo,
        listing: Mapping[str, tuple[DomainInfo, ...]],
        reuse_dirty_rate_s: float = 0.0,
    ) -> PreflightFacts:
        """The facts that need both hosts; `listing` is every host's VMs as `_locate` just listed them (not
        asked again)."""
        hyp = self.hypervisor
        vm, xml_error = await _vm_facts(hyp, src.uri, dom.name, migratable=True)
        if vm is None:
            log.warning("preflight: no usable XML for %s: %s", request.vm, xml_error)
            return replace(base, vm=None)
        live = choose_mode(request, base.vm_state) is MigrationMode.LIVE
        # Everything below is independent: ask both hosts at once (the dirty-rate window dominates).
        async with asyncio.TaskGroup() as tg:
            t_src = tg.create_task(self._host(src, listing.get(src.name)))
            t_dst = tg.create_task(self._host(dst, listing.get(dst.name)))
            t_domcaps = tg.create_task(self._domcaps(dst, vm))
            t_networks = tg.create_task(_maybe("list the destination's networks", hyp.networks(dst.uri)))
            t_interfaces = tg.create_task(self._interfaces(dst, vm))
            t_snapshots = tg.create_task(_maybe("count the VM's snapshots", hyp.snapshot_count(src.uri, dom.name)))
            t_disks = tg.create_task(self._disks(src, dst, vm))
            t_cpu = tg.create_task(self._cpu(src, dst, vm))
            t_probes = tg.create_task(self._probes(src, dst, live))
            t_dirty = tg.create_task(self._dirty_rate(src, vm, base.vm_state, live, reuse_dirty_rate_s))
        domcaps, domcaps_error = t_domcaps.result()
        dest_domains = listing.get(dst.name)
        networks, _e2 = t_networks.result()
        interfaces = t_interfaces.result()
        return replace(
            base,
            vm=vm,
            source_host=t_src.result(),
            destination_host=t_dst.result(),
            destination_domcaps=domcaps,
            destination_domcaps_error=domcaps_error,
            destination_domains=None if dest_domains is None else tuple(dest_domains),
            destination_networks=None if networks is None else tuple(networks),
            destination_bridges=_bridges_found(vm, networks, interfaces),
            destination_netdevs=interfaces if _uses_netdev(vm) else frozenset(),
            vm_snapshots=t_snapshots.result()[0],
            disks=t_disks.result(),
            cpu=t_cpu.result(),
            probes=t_probes.result(),
            dirty_rate=t_dirty.result(),
        )

    async def _domcaps(self, dst: HostConfig, vm: VmFacts) -> tuple[DomainCapsFacts | None, str | None]:
        return await _parsed(
            "read domain capabilities",
            self.hypervisor.domain_capabilities(dst.uri, _target(vm)),
            parse_domain_capabilities,
        )

    async def _interfaces(self, dst: HostConfig, vm: VmFacts) -> frozenset[str] | None:
        """The destination's host interface names, listed once and only when a NIC sits on a bridge or (macvtap)
        on a host interface; None when they could not be listed."""
        if not (_uses_netdev(vm) or any(i.source_bridge for i in vm.interfaces)):
            return frozenset()
        found, _err = await _maybe("list the destination's interfaces", self.hypervisor.interfaces(dst.uri))
        return None if found is None else frozenset(i.name for i in found)

    async def _disks(self, src: HostConfig, dst: HostConfig, vm: VmFacts) -> tuple[DiskVisibility, ...]:
        return tuple(await asyncio.gather(*(self._disk(src, dst, d) for d in vm.disks if not d.empty)))

    async def _disk(self, src: HostConfig, dst: HostConfig, disk: DiskFacts) -> DiskVisibility:
        if disk.source.kind is DiskSourceKind.NETWORK:
            # Network storage (NBD, RBD, Gluster, iSCSI) is one image that every host reaches: shared.
            return DiskVisibility(disk.target, same_path_exists=True, shared=True, shared_fs=True)
        if disk.source.path is None:
            return DiskVisibility(disk.target, error="the disk has no path the bot can look up")
        hyp = self.hypervisor
        directory = os.path.dirname(disk.source.path)
        (exists, err), (src_vol, _e1), (dst_pool, _e2), (src_pool, _e3) = await asyncio.gather(
            _maybe("look for the disk on the destination", hyp.path_exists(dst.uri, disk.source.path)),
            _maybe("read the disk's size", hyp.volume_by_path(src.uri, disk.source.path)),
            _maybe("find the destination pool", hyp.pool_for_directory(dst.uri, directory)),
            _maybe("find the source pool", hyp.pool_for_directory(src.uri, directory)),
        )
        shared: bool | None = None
        if src_pool is not None and dst_pool is not None:
            both = {src_pool.pool_type, dst_pool.pool_type}
            shared = True if both <= _SHARED_POOL_TYPES else None
        if exists is False:
            shared = False
        elif shared is None:
            # A file at the same path proves nothing (an old copy left by an earlier move looks the same): ask
            # whether the two hosts see one directory, with a probe file (None stays "cannot tell").
            shared, _e4 = await _maybe("probe for shared storage", hyp.same_storage(dst.uri, src.uri, directory))
        allocated = src_vol.allocation_bytes if src_vol else None
        capacity = src_vol.capacity_bytes if src_vol else None
        if src_vol is None:
            allocated, _e5 = await _maybe(
                "read the disk's allocation", hyp.volume_allocation_bytes(src.uri, disk.source.path)
            )
        backing: bool | None = None
        layers = [layer.source.path for layer in disk.backing_chain if layer.source.path]
        if layers:
            seen = await asyncio.gather(
                *(_maybe("look for a backing file", hyp.path_exists(dst.uri, p)) for p in layers)
            )
            backing = all(ok for ok, _ in seen) if all(ok is not None for ok, _ in seen) else None
        return DiskVisibility(
            disk.target,
            same_path_exists=exists,
            shared=shared,
            shared_fs=True if shared and dst_pool is not None and dst_pool.pool_type == "netfs" else None,
            size_bytes=allocated,
            capacity_bytes=capacity,
            destination_free_bytes=dst_pool.available_bytes if dst_pool else None,
            destination_pool=dst_pool.name if dst_pool else None,
            backing_on_destination=backing,
            error=err,
        )

    async def _cpu(self, src: HostConfig, dst: HostConfig, vm: VmFacts) -> CpuComparison | None:
        if not vm.cpu.xml or vm.cpu.mode == "host-passthrough":
            return None  # the check reports what a missing or passthrough CPU definition means
        hyp = self.hypervisor
        target = _target(vm)
        result, err = await _maybe("compare CPUs", hyp.compare_cpu(dst.uri, vm.cpu.xml, target))
        if result is None:
            return CpuComparison(compatible=None, error=err)
        if result.compatible:
            return CpuComparison(compatible=True, result=result.message)
        # The fix of seed 12.9: a CPU model both hosts can run, the baseline of the host-model CPUs of their
        # domain capabilities (what each hypervisor can give a guest; not the physical CPU of `capabilities`,
        # whose baseline the lab proved unrunnable).
        baseline_xml: str | None = None
        src_caps, dst_caps = await asyncio.gather(
            _maybe("read domain capabilities", hyp.domain_capabilities(src.uri, target)),
            _maybe("read domain capabilities", hyp.domain_capabilities(dst.uri, target)),
        )
        cpus = [c for c, _ in (src_caps, dst_caps) if c]
        if len(cpus) == 2:
            host_cpus = [x for x in (host_model_cpu_xml(c) for c in cpus) if x]
            if len(host_cpus) == 2:
                baseline_xml, _ = await _maybe("compute a baseline CPU", hyp.baseline_cpu(dst.uri, host_cpus, target))
        return CpuComparison(
            compatible=False,
            result=result.message,
            missing_features=result.missing_features,
            baseline_xml=baseline_xml,
            baseline_model=cpu_model_of(baseline_xml),
        )

    async def probe_pair(self, src: HostConfig, dst: HostConfig) -> tuple[PortProbe, ...]:
        """The port probes a live migration from `src` to `dst` needs (for `migrate-bot doctor`)."""
        return await self._probes(src, dst, True)

    async def _probes(self, src: HostConfig, dst: HostConfig, live: bool) -> tuple[PortProbe, ...]:
        """The destination's libvirt and migration ports: from the source host over SSH when the hosts file
        gives the source an ssh target (what the migration really needs), otherwise from where the bot runs."""
        targets: list[tuple[str, str, int]] = []
        peer = urlsplit(dst.peer_uri)
        if peer.hostname and peer.scheme in _DEFAULT_PORTS:
            what = {"qemu+tcp": "libvirt-tcp", "qemu+tls": "libvirt-tls"}.get(peer.scheme, "ssh")
            targets.append((what, peer.hostname, peer.port or _DEFAULT_PORTS[peer.scheme]))
        if live and dst.migration_address:
            targets.append(("migration", dst.migration_address, _MIGRATION_PORT))
        via = src.ssh_target
        if via is not None:
            from migration_core.hypervisor.sshprobe import probe_from

            results = await asyncio.gather(*(probe_from(via, h, p, self.probe_timeout_s) for _, h, p in targets))
            origin = "source"
        else:
            results = await asyncio.gather(*(self.prober(h, p, self.probe_timeout_s) for _, h, p in targets))
            origin = "bot"
        probes = []
        for (what, host, port), (ok, detail) in zip(targets, results, strict=True):
            if what == "migration" and ok is False and detail.lower().startswith("connection refused"):
                # Nothing listens on the migration ports between migrations: a refusal proves the host answers
                # and no firewall drops the range.
                ok, detail = True, "host answers (QEMU listens only during a migration)"
            probes.append(PortProbe(what, host, port, ok, detail, origin=origin))
        return tuple(probes)

    async def _dirty_rate(
        self, src: HostConfig, vm: VmFacts, state: VmState | None, live: bool, reuse_s: float = 0.0
    ) -> DirtyRateSample | None:
        if not live or state is not VmState.RUNNING:
            return None
        key = (src.uri, vm.uuid or vm.name)
        kept = self._dirty_rates.get(key)
        if kept is not None and reuse_s > 0:
            age_s = self._monotonic() - kept[0]
            if 0 <= age_s <= reuse_s:
                log.info("preflight: reusing the dirty rate of %s measured %.0f s ago", vm.name, age_s)
                return kept[1]
        seconds = max(1, round(self.dirty_rate_window_s))
        self.dirty_rates_measured += 1
        rate, err = await _maybe(
            "measure the dirty rate", self.hypervisor.dirty_rate(src.uri, vm.name, seconds=seconds)
        )
        if rate is None:
            return DirtyRateSample(None, seconds, None, err)  # a failed measurement is never reused
        sample = DirtyRateSample(mb_s_to_mib_s(rate.megabytes_per_second), rate.period_s, rate.mode)
        self._dirty_rates.pop(key, None)
        self._dirty_rates[key] = (self._monotonic(), sample)
        while len(self._dirty_rates) > _DIRTY_RATES_KEPT:
            del self._dirty_rates[next(iter(self._dirty_rates))]
        return sample

    # ----- many moves at once: drains and `<vm> to any` (issue 11) -----------------------------------------

    async def plan_drain(self, request: DrainRequest) -> DrainPlan:
        """The dry run of draining `request.host`: facts gathered once, then the pure planner (planning/drain.py).
        Hosts under maintenance receive nothing."""
        src = self.inventory.get(request.host)
        options = request.options
        facts = await self.gather_host_moves(src, None, await self._placeable(src, request.to), options)
        return plan_drain(
            DrainSource(src.name, src.link_mib_s, src.max_outbound),
            facts.vms,
            facts.destinations,
            facts.candidacy,
            options,
            await self._estimator_for(facts),
            include_stopped=request.include_stopped,
            except_vms=request.except_vms,
        )

    async def plan_return(
        self, host: str, vms_by_host: Mapping[str, Sequence[str]], options: MigrationOptions
    ) -> DrainPlan:
        """A return: these VMs, wherever they are now, back to `host` (which its maintenance mark does not bar).

        One plan for all of them, so `host`'s memory and vCPUs are counted across every VM coming back (planned
        host by host, the later hosts' moves would not see the earlier ones'). The bottleneck of a return is the
        host they return to: waves share its link and its `max_inbound` slots. VMs no longer on the host named
        are left out here (the caller lists them as left behind).
        """
        dst = self.inventory.get(host)
        parts = []
        for name, vms in sorted(vms_by_host.items()):
            src = self.inventory.get(name)
            listed, error = await _maybe(f"list {src.name}'s VMs", self.hypervisor.list_domains(src.uri))
            if listed is None:
                raise HostUnreachable(f"{src.name} does not answer: {error}", f"check libvirtd on {src.name}")
            wanted = {v.lower() for v in vms}
            only = tuple(d for d in listed if d.name.lower() in wanted)
            if only:
                parts.append(await self.gather_host_moves(src, only, [dst], options))
        facts = HostMoveFacts(
            tuple(v for p in parts for v in p.vms),
            parts[0].destinations if parts else (),
            {k: c for p in parts for k, c in p.candidacy.items()},
        )
        plan = plan_drain(
            DrainSource(", ".join(sorted(vms_by_host)), dst.link_mib_s, dst.max_inbound),
            facts.vms,
            facts.destinations,
            facts.candidacy,
            options,
            await self._estimator_for(facts),
            include_stopped=True,
        )
        return replace(plan, host=dst.name, destinations=(dst.name,))

    async def plan_any(self, vm: str, options: MigrationOptions) -> PlacedPlan:
        """`<vm> to any`: every other host checked as for a single move; the best one's plan, and why."""
        src_cfg, dom, errors, _names, _listing = await self._locate(vm)
        if src_cfg is None or dom is None:
            if len(errors) == len(self.inventory):
                raise HostUnreachable(
                    f"no host in {self.inventory.path} answers", "check that libvirtd runs on the hosts"
                )
            close = difflib.get_close_matches(vm, _names, n=1, cutoff=0.6)
            hint = f"did you mean `{close[0]}`?" if close else "check the VM's name with `virsh list --all`"
            raise PreflightError(f"no host has a VM named `{vm}`", hint)
        facts = await self.gather_host_moves(src_cfg, (dom,), await self._placeable(src_cfg, ()), options)
        return plan_to_any(
            facts.vms[0],
            DrainSource(src_cfg.name, src_cfg.link_mib_s, src_cfg.max_outbound),
            facts.destinations,
            facts.candidacy,
            options,
            await self._estimator_for(facts),
        )

    async def _estimator_for(self, facts: HostMoveFacts) -> MoveEstimator:
        """`self.estimator` if one was set; else the calibrated prediction with each pair's history, read once."""
        if self.estimator is not None:
            return self.estimator
        keys = sorted(
            {(c.facts.vm.uuid, c.facts.source.name, c.facts.destination.name) for c in facts.candidacy.values()
             if c.facts.vm is not None}
        )  # fmt: skip
        history: dict[tuple[str, str, str], Sequence[MoveSample]] = {}
        if self.history is not None and keys:
            found = await asyncio.gather(*(_maybe("read the migration history", self.history(*k)) for k in keys))
            history = {k: samples for k, (samples, _e) in zip(keys, found, strict=True) if samples}
        return CalibratedEstimator(history)

    async def _placeable(self, src: HostConfig, to: Sequence[str]) -> list[HostConfig]:
        """The candidate hosts minus those under maintenance; naming one in `--to` is refused with the reason."""
        marks = await self._maintenance()
        for name in to:
            why = marks.get(self.inventory.get(name).name)
            if why is not None:
                raise RequestError(f"{why}: no VM is placed on it", f"drop {name} from --to")
        return [h for h in self._candidates(src, to) if h.name not in marks]

    def _candidates(self, src: HostConfig, to: Sequence[str]) -> list[HostConfig]:
        if to:
            return [self.inventory.get(name) for name in to if self.inventory.get(name).name != src.name]
        return [h for h in self.inventory if h.name != src.name]

    async def gather_host_moves(
        self,
        src: HostConfig,
        only: Sequence[DomainInfo] | None,
        candidates: Sequence[HostConfig],
        options: MigrationOptions,
    ) -> HostMoveFacts:
        """Facts for moving one source host's VMs (or `only` these) to each candidate, every fact asked once.

        Per VM once: its XML, snapshots, dirty rate (the 3 s sample; all VMs sampled at the same time). Per
        destination once: host facts, its domains (and their anti-affinity groups), networks, interfaces, the
        port probes. Per (VM, destination): storage visibility, the CPU comparison, domain capabilities. Then
        the single move's checks run once per pair (placement.evaluate).
        """
        hyp = self.hypervisor
        if only is None:
            domains, error = await _maybe(f"list {src.name}'s VMs", hyp.list_domains(src.uri))
            if domains is None:
                raise HostUnreachable(
                    f"{src.name} does not answer: {error}",
                    f"check libvirtd on {src.name} and its uri in the hosts file",
                )
        else:
            domains = tuple(only)
        source = Endpoint(name=src.name, uri=src.uri)
        names = tuple(d.name for d in domains)

        async def one_vm(dom: DomainInfo) -> tuple[VmFacts | None, DirtyRateSample | None, int | None, int | None]:
            vm, error = await _vm_facts(hyp, src.uri, dom.name, migratable=True)
            if vm is None:
                log.warning("drain: no usable XML for %s: %s", dom.name, error)
                return None, None, None, None
            state = VmState.of(dom.state)
            live = choose_mode(MigrationRequest(dom.name, "any", options), state) is MigrationMode.LIVE
            (dirty, (snaps, _e), (rss, _e2)) = await asyncio.gather(
                self._dirty_rate(src, vm, state, live),
                _maybe("count the VM's snapshots", hyp.snapshot_count(src.uri, dom.name)),
                _maybe("read the VM's memory stats", hyp.memory_rss_bytes(src.uri, dom.name)) if live else _none(),
            )
            return vm, dirty, snaps, transferable_from_rss(vm.memory_bytes, rss) if rss is not None else None

        async def one_dest(dst: HostConfig) -> _DestFacts:
            answered, err = await _maybe(f"reach {dst.name}", hyp.list_domains(dst.uri))
            if answered is None:
                return _DestFacts(dst, error=err or "no answer")
            # each resident's XML is read once: for the host's running vCPUs and for the anti-affinity groups
            (residents, (networks, _e1), (ifaces, _e2)) = await asyncio.gather(
                self._residents(dst, answered),
                _maybe("list the destination's networks", hyp.networks(dst.uri)),
                _maybe("list the destination's interfaces", hyp.interfaces(dst.uri)),
            )
            host = await self._host(dst, answered, residents)
            interfaces = None if ifaces is None else frozenset(i.name for i in ifaces)
            return _DestFacts(dst, answered, host, networks, interfaces, self._resident_groups(answered, residents))

        vm_results, dest_results, src_host = await asyncio.gather(
            asyncio.gather(*(one_vm(d) for d in domains)),
            asyncio.gather(*(one_dest(h) for h in candidates)),
            self._host(src),
        )
        pairs = [
            (dom, vm_r, dest_r)
            for dom, vm_r in zip(domains, vm_results, strict=True)
            for dest_r in dest_results
            if dest_r.error is None
        ]
        listing = {d.cfg.name: d.domains for d in dest_results if d.error is None}
        unanswered = tuple(sorted(d.cfg.name for d in dest_results if d.error is not None))
        pair_facts = await asyncio.gather(
            *(
                self._pair(source, src, src_host, dom, vm_r, d, options, names, listing, unanswered)
                for dom, vm_r, d in pairs
            )
        )
        candidacy = {(dom.name, d.cfg.name): evaluate(f) for (dom, _v, d), f in zip(pairs, pair_facts, strict=True)}
        vms = tuple(
            DrainVm(
                dom.name,
                VmState.of(dom.state),
                vm.memory_bytes if vm else 0,
                tuple(dict.fromkeys((*self.inventory.groups_of(dom.name), *(vm.anti_affinity_groups if vm else ())))),
                dirty.rate_mib_s if dirty else None,
                transferable,
            )
            for dom, (vm, dirty, _s, transferable) in zip(domains, vm_results, strict=True)
        )
        destinations = tuple(
            Destination(
                d.cfg.name,
                reserve_bytes=d.cfg.memory_reserve_bytes,
                max_inbound=d.cfg.max_inbound,
                link_mib_s=d.cfg.link_mib_s,
                peer_uri=d.cfg.peer_uri,
                migration_address=d.cfg.migration_address,
                resident_groups=d.groups,
                error=d.error,
            )
            for d in dest_results
        )
        return HostMoveFacts(vms, destinations, candidacy)

    def _resident_groups(
        self, domains: Sequence[DomainInfo], residents: Mapping[str, VmFacts | None]
    ) -> tuple[tuple[str, str], ...]:
        """(group, VM) for the VMs on a destination: from the inventory and from each VM's own metadata (an
        unreadable resident only loses its metadata)."""
        found: list[tuple[str, str]] = []
        for d in domains:
            vm = residents.get(d.name)
            groups = [*self.inventory.groups_of(d.name), *(vm.anti_affinity_groups if vm is not None else ())]
            found += [(g, d.name) for g in dict.fromkeys(groups)]
        return tuple(found)

    async def _pair(
        self,
        source: Endpoint,
        src: HostConfig,
        src_host: HostFacts | None,
        dom: DomainInfo,
        vm_r: tuple[VmFacts | None, DirtyRateSample | None, int | None, int | None],
        d: _DestFacts,
        options: MigrationOptions,
        names: tuple[str, ...],
        listing: Mapping[str, Sequence[DomainInfo]],
        unanswered: tuple[str, ...],
    ) -> PreflightFacts:
        vm, dirty, snaps, _transferable = vm_r
        state = VmState.of(dom.state)
        request = MigrationRequest(dom.name, d.cfg.name, options_for(options, state))
        base = PreflightFacts(
            request=request,
            source=source,
            destination=Endpoint(name=d.cfg.name, uri=d.cfg.uri, memory_reserve_bytes=d.cfg.memory_reserve_bytes),
            known_hosts=tuple(self.inventory.names()),
            known_vms=names,
            vm_state=state,
            vm_persistent=dom.persistent,
            settings=self.settings,
            vm=vm,
            # the candidates' listings only: hosts outside --to were not asked
            definitions_elsewhere=tuple(
                replace(x, host=host)
                for host, domains in sorted(listing.items())
                for x in domains
                if dom.uuid and x.uuid.lower() == dom.uuid.lower()
            ),
            hosts_unanswered=unanswered,
        )
        if vm is None:
            return base
        live = choose_mode(request, state) is MigrationMode.LIVE
        (domcaps, domcaps_error), disks, cpu, probes = await asyncio.gather(
            self._domcaps(d.cfg, vm),
            self._disks(src, d.cfg, vm),
            self._cpu(src, d.cfg, vm),
            self._probes(src, d.cfg, live),
        )
        return replace(
            base,
            source_host=src_host,
            destination_host=d.host,
            destination_domcaps=domcaps,
            destination_domcaps_error=domcaps_error,
            destination_domains=d.domains,
            destination_networks=None if d.networks is None else tuple(d.networks),
            destination_bridges=_bridges_found(vm, d.networks, d.interfaces),
            destination_netdevs=d.interfaces if _uses_netdev(vm) else frozenset(),
            vm_snapshots=snaps,
            disks=disks,
            cpu=cpu,
            probes=probes,
            dirty_rate=dirty,
        )


@dataclass(frozen=True)
class _DestFacts:
    cfg: HostConfig
    domains: tuple[DomainInfo, ...] = ()
    host: HostFacts | None = None
    networks: Sequence[NetworkInfo] | None = None
    interfaces: frozenset[str] | None = None
    groups: tuple[tuple[str, str], ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class HostMoveFacts:
    """What `gather_host_moves` found: the source's VMs, the candidates, and each (VM, host) pair's checks."""

    vms: tuple[DrainVm, ...]
    destinations: tuple[Destination, ...]
    candidacy: Mapping[tuple[str, str], Candidacy]
