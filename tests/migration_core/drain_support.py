"""Synthetic fleets for pure drain-planning tests: hosts with memory, reserves, slots and CPU families, VMs
with sizes, dirty rates and anti-affinity groups, turned into the (VM, host) candidacies the runner would give."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from migration_core.facts.gathered import CpuComparison, DirtyRateSample, Endpoint, VmState
from migration_core.models import MigrationOptions, MigrationRequest
from migration_core.planning.drain import DrainSource, DrainVm, options_for
from migration_core.planning.placement import Candidacy, Destination, evaluate
from migration_core.units import GIB
from tests.migration_core.fixtures.build import facts, host, vm

MIB = 2**20
_DEFAULT = MigrationOptions()


@dataclass(frozen=True)
class SynHost:
    name: str
    free_gib: float = 16.0
    reserve_gib: float = 0.0
    max_inbound: int = 2
    link_mib_s: float = 1000.0
    cpu_family: str = "new"  # a VM of family "new" cannot run on an "old" host
    residents: tuple[tuple[str, str], ...] = ()  # (group, vm) already on the host


@dataclass(frozen=True)
class SynVm:
    name: str
    memory_gib: float = 1.0
    dirty_mib_s: float = 2.0
    groups: tuple[str, ...] = ()
    cpu_family: str = "old"
    state: VmState = VmState.RUNNING


@dataclass
class SynFleet:
    source: str = "h00"
    source_link_mib_s: float = 1000.0
    max_outbound: int = 2
    hosts: list[SynHost] = field(default_factory=list)
    vms: list[SynVm] = field(default_factory=list)

    def drain_source(self) -> DrainSource:
        return DrainSource(self.source, self.source_link_mib_s, self.max_outbound)

    def drain_vms(self) -> list[DrainVm]:
        return [DrainVm(v.name, v.state, int(v.memory_gib * GIB), v.groups, v.dirty_mib_s) for v in self.vms]

    def destinations(self) -> list[Destination]:
        return [
            Destination(
                h.name,
                reserve_bytes=int(h.reserve_gib * GIB),
                max_inbound=h.max_inbound,
                link_mib_s=h.link_mib_s,
                peer_uri=f"qemu+tcp://{h.name}/system",
                migration_address=f"10.0.0.{i + 2}",
                resident_groups=h.residents,
            )
            for i, h in enumerate(self.hosts)
        ]

    def candidacy(self, options: MigrationOptions = _DEFAULT) -> dict[tuple[str, str], Candidacy]:
        out = {}
        names = (self.source, *(h.name for h in self.hosts))
        for v in self.vms:
            mem = int(v.memory_gib * GIB)
            the_vm = replace(vm(), name=v.name, uuid=f"uuid-{v.name}", memory_bytes=mem, current_memory_bytes=mem)
            for h in self.hosts:
                ok = not (v.cpu_family == "new" and h.cpu_family == "old")
                cpu = (
                    CpuComparison(compatible=True, result="superset")
                    if ok
                    else CpuComparison(compatible=False, result="incompatible", missing_features=("avx512f",))
                )
                f = facts(
                    the_vm,
                    state=v.state,
                    request=MigrationRequest(v.name, h.name, options_for(options, v.state)),
                    source=Endpoint(self.source, uri=f"qemu+tcp://{self.source}/system"),
                    destination=Endpoint(h.name, uri=f"qemu+tcp://{h.name}/system"),
                    known_hosts=names,
                    destination_host=host(name=h.name, free_memory_bytes=int(h.free_gib * GIB), cpu_count=64),
                    cpu=cpu,
                    dirty_rate=DirtyRateSample(v.dirty_mib_s, 3, "page-sampling")
                    if v.state is VmState.RUNNING
                    else None,
                )
                out[(v.name, h.name)] = evaluate(f)
        return out
