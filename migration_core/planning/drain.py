"""A drain plan: every VM of a host placed (placement.py), ordered and grouped into waves from the prediction.

Pure. Input: the facts the runner gathered once per (VM, candidate) pair, the inventory's limits, the options.

**Order and concurrency: longest-processing-time-first, first-fit into waves.** Each move is first timed
alone at the full link (`MoveEstimator`). Moves are then taken longest first and each joins the first wave
where (1) the source's `max_outbound` and each destination's `max_inbound` still hold (hard limits), (2) every
move of the wave, on its share of the link (the source's link split over the wave, each destination's over
what it receives), is still predicted to meet its downtime target, and (3) the wave with it ends no later
than the wave without it plus the move alone, i.e. sharing beats running it afterwards. Otherwise it opens
a new wave. Waves run one after the other, so the ETA is the sum of the waves' longest moves plus each wave's
fixed cost (`WAVE_OVERHEAD_S`: re-check, verification, hand-over), which also counts against opening a new wave.

Why this rule: on a shared link concurrency does not add bandwidth; it saves the fixed cost of each move
(connection setup, the final switch-over, the destination starting the guest), and it costs convergence,
because a VM's dirty rate is compared with its share of the link, not the whole link. So small, quiet VMs go
together and busy ones go alone, which a fixed count (Nova 1, oVirt 2, KubeVirt 2) cannot do. Longest
first puts the long moves into the first waves, so the short ones fill the slots beside them instead of
trailing at the end (Graham's LPT bound: within 4/3 of the optimal makespan for list scheduling). Waves
rather than a rolling queue keep the ETA honest: it is a sum of predictions the operator can read.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from migration_core.errors import PreflightError
from migration_core.facts.gathered import VmState
from migration_core.models import CheckResult, MigrationMode, MigrationOptions, Plan, options_from_json
from migration_core.planning.estimate import DEFAULT_FIXED_S
from migration_core.planning.estimates import MoveEstimate, MoveEstimator, MoveLoad
from migration_core.planning.placement import Candidacy, Choice, Destination, LeftBehind, VmToPlace, place_all
from migration_core.planning.planner import make_plan
from migration_core.preflight import copy_sizes

# What a wave costs beyond its longest migration: the re-check before each move starts (every fact read again
# from libvirt), the verification after it (the guest's vCPU time sampled for 1 s, both hosts asked), and the
# hand-over to the next wave. Measured on the lab (bench_drain --lab, 64 MiB/s): 2.9 s per wave with a 1 s
# conductor poll, so 2.5 s with the 0.25 s poll. (The fleet's simulated verification is cheaper: ~0.9 s.)
WAVE_OVERHEAD_S = 2.5


def options_for(options: MigrationOptions, state: VmState | None) -> MigrationOptions:
    """The options one move of a drain gets: all of them for a live move; for a shut-off VM (moved offline with
    --include-stopped) the live-only ones are dropped, since they tune a memory copy that does not happen, and
    the move is persistent (libvirt requires it offline).

    >>> o = options_for(MigrationOptions(postcopy=True, bandwidth_mib_s=100, tls=True), VmState.SHUTOFF)
    >>> o.postcopy, o.bandwidth_mib_s, o.tls, o.persistent
    (False, None, True, True)
    """
    if state is not VmState.SHUTOFF:
        return options
    return replace(options.without_live_only(), persistent=True)


@dataclass(frozen=True)
class DrainVm:
    """A VM on the host being drained, as the runner found it."""

    name: str
    state: VmState | None
    memory_bytes: int
    groups: tuple[str, ...] = ()
    dirty_rate_mib_s: float | None = None
    transferable_bytes: int | None = None  # what pass 1 really sends (from the guest's RSS), when read


@dataclass(frozen=True)
class DrainSource:
    """The host being drained: its name and the inventory limits that bind the drain."""

    name: str
    link_mib_s: float = 112.0
    max_outbound: int = 1


@dataclass(frozen=True)
class PlannedMove:
    """One move of a drain: where, how, in which wave, how long, and why this host."""

    vm: str
    destination: str
    mode: MigrationMode
    wave: int  # 1-based; moves of one wave run together
    order: int  # 1-based position in the whole plan
    predicted_total_s: float
    predicted_downtime_ms: float
    share_mib_s: float  # the bandwidth this move gets while its wave runs
    meets_target: bool
    why: str
    verdict: str
    plan: Plan

    def to_record(self) -> dict[str, Any]:
        """Everything, for the store (the approved plan of each move is kept whole)."""
        data = {f: getattr(self, f) for f in _MOVE_FIELDS}
        data["mode"] = self.mode.value
        data["plan"] = self.plan.to_json()
        return data

    @staticmethod
    def from_record(data: Mapping[str, Any]) -> PlannedMove:
        values = {f: data[f] for f in _MOVE_FIELDS}
        values["mode"] = MigrationMode(data["mode"])
        return PlannedMove(plan=Plan.from_json(data["plan"]), **values)

    def to_json(self) -> dict[str, Any]:
        return {
            "vm": self.vm,
            "destination": self.destination,
            "mode": self.mode.value,
            "wave": self.wave,
            "order": self.order,
            "predicted_total_s": self.predicted_total_s,
            "predicted_downtime_ms": self.predicted_downtime_ms,
            "bandwidth_share_mib_s": round(self.share_mib_s, 1),
            "meets_downtime_target": self.meets_target,
            "why": self.why,
            "prediction": self.verdict,
            "plan_hash": self.plan.hash,
        }


_MOVE_FIELDS = (
    "vm", "destination", "mode", "wave", "order", "predicted_total_s", "predicted_downtime_ms", "share_mib_s",
    "meets_target", "why", "verdict",
)  # fmt: skip


SCHEDULING_RULE = (
    "longest first, first-fit into waves: a move shares a wave only while every move of it still meets its "
    "downtime target on its share of the link, the in/out slots hold, and the wave ends sooner than running "
    "the move afterwards"
)


@dataclass(frozen=True)
class DrainPlan:
    """The whole dry run of `drain <host>`; `hash` binds an approval as a single plan's hash does."""

    host: str
    options: MigrationOptions
    destinations: tuple[str, ...]
    moves: tuple[PlannedMove, ...]
    left_behind: tuple[LeftBehind, ...]
    eta_s: float
    rule: str = SCHEDULING_RULE
    wave_overhead_s: float = WAVE_OVERHEAD_S  # what each wave costs beyond its longest move, in `eta_s`

    @property
    def moving_s(self) -> float:
        """The ETA without the waves' fixed cost: the time the moves themselves are predicted to take."""
        return max(0.0, self.eta_s - self.waves * self.wave_overhead_s)

    def retimed(self, wave_overhead_s: float) -> DrainPlan:
        """The same plan with its ETA counting `wave_overhead_s` per wave (learned from earlier drains)."""
        eta = round(self.moving_s + self.waves * wave_overhead_s, 1)
        return replace(self, eta_s=eta, wave_overhead_s=round(wave_overhead_s, 2))

    @property
    def executable(self) -> bool:
        """Something can move: left-behind VMs never block the others."""
        return bool(self.moves)

    @property
    def waves(self) -> int:
        return max((m.wave for m in self.moves), default=0)

    @property
    def hash(self) -> str:
        bound = {
            "host": self.host,
            "options": asdict(self.options),
            "moves": [(m.vm, m.destination, m.mode.value, m.wave, m.plan.hash) for m in self.moves],
            "left_behind": sorted(lb.vm for lb in self.left_behind),
        }
        text = json.dumps(bound, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_record(self) -> dict[str, Any]:
        """The whole plan for the store; `from_record` gives back an equal plan (and so the same hash)."""
        return {
            "host": self.host,
            "options": json.loads(json.dumps(asdict(self.options), default=str)),
            "destinations": list(self.destinations),
            "moves": [m.to_record() for m in self.moves],
            "left_behind": [lb.to_json() for lb in self.left_behind],
            "eta_s": self.eta_s,
            "rule": self.rule,
            "wave_overhead_s": self.wave_overhead_s,
        }

    @staticmethod
    def from_record(data: Mapping[str, Any]) -> DrainPlan:
        return DrainPlan(
            host=data["host"],
            options=options_from_json(data["options"]),
            destinations=tuple(data["destinations"]),
            moves=tuple(PlannedMove.from_record(m) for m in data["moves"]),
            left_behind=tuple(LeftBehind(lb["vm"], lb["reason"], lb["fix"]) for lb in data["left_behind"]),
            eta_s=float(data["eta_s"]),
            rule=data.get("rule", SCHEDULING_RULE),
            wave_overhead_s=float(data.get("wave_overhead_s", WAVE_OVERHEAD_S)),
        )

    def to_json(self) -> dict[str, Any]:
        """The `migrate-bot plan drain <host> --json` contract (keys are relied on by other tools)."""
        return {
            "executable": self.executable,
            "host": self.host,
            "destinations": list(self.destinations),
            "moves": [m.to_json() for m in self.moves],
            "left_behind": [lb.to_json() for lb in self.left_behind],
            "waves": self.waves,
            "eta_s": self.eta_s,
            "rule": self.rule,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class DrainRequest:
    """What to plan when draining `host`: the one value passed down from the service to the runner.

    `to`: only these destinations (empty: any host placement allows); `except_vms`: left where they are;
    `include_stopped`: shut-off VMs move too (offline). A return is planned by `plan_return` instead.
    """

    host: str
    options: MigrationOptions
    to: tuple[str, ...] = ()
    except_vms: tuple[str, ...] = ()
    include_stopped: bool = False


@dataclass(frozen=True)
class _Move:
    choice: Choice
    cand: Candidacy
    load: MoveLoad
    dest: Destination
    solo: MoveEstimate


def plan_drain(
    source: DrainSource,
    vms: Sequence[DrainVm],
    destinations: Sequence[Destination],
    candidacy: Mapping[tuple[str, str], Candidacy],
    options: MigrationOptions,
    estimator: MoveEstimator,
    *,
    include_stopped: bool = False,
    except_vms: Sequence[str] = (),
) -> DrainPlan:
    """Place, order and time every VM of `source` (see the module doc for the rule)."""
    left: list[LeftBehind] = []
    to_place: list[VmToPlace] = []
    excepted = {v.lower() for v in except_vms}
    for vm in sorted(vms, key=lambda v: v.name):
        if vm.name.lower() in excepted:
            left.append(LeftBehind(vm.name, "excluded by --except", f"drop {vm.name} from --except to move it"))
        elif vm.state is VmState.SHUTOFF and not include_stopped:
            left.append(
                LeftBehind(vm.name, "shut off: a drain moves running VMs", "add --include-stopped to move it offline")
            )
        elif source.max_outbound <= 0:
            left.append(
                LeftBehind(
                    vm.name,
                    f"{source.name} sends no migrations (max_outbound = 0)",
                    f"raise max_outbound for {source.name} in the hosts file",
                )
            )
        else:
            to_place.append(VmToPlace(vm.name, vm.memory_bytes, vm.groups))
    choices, unplaced = place_all(to_place, destinations, candidacy)
    left += unplaced
    by_name = {v.name: v for v in vms}
    dests = {d.name: d for d in destinations}
    moves = []
    for choice in choices:
        cand = candidacy[(choice.vm, choice.destination)]
        dest = dests[choice.destination]
        load = _load(by_name[choice.vm], cand)
        solo = estimator.estimate(load, _share(source, dest, 1, 1), options)
        moves.append(_Move(choice, cand, load, dest, solo))
    waves = _waves(moves, source, options, estimator)
    planned: list[PlannedMove] = []
    eta = 0.0
    for number, wave in enumerate(waves, start=1):
        timed = _timed(wave, source, options, estimator)
        eta += _wave_time(wave, timed) + WAVE_OVERHEAD_S
        for move, est, share in sorted(timed, key=lambda t: (-t[1].total_s, t[0].choice.vm)):
            plan = make_plan(
                move.cand.facts,
                est.prediction,
                dest_peer_uri=move.dest.peer_uri or "qemu:///unknown-destination",
                migration_address=move.dest.migration_address,
                tls=options.tls,
                checks=_checks_in_report_order(move.cand, move.choice),
            )
            planned.append(
                PlannedMove(
                    vm=move.choice.vm,
                    destination=move.choice.destination,
                    mode=plan.mode,
                    wave=number,
                    order=len(planned) + 1,
                    predicted_total_s=est.total_s,
                    predicted_downtime_ms=round(est.downtime_ms, 1) if est.downtime_ms != float("inf") else -1.0,
                    share_mib_s=share,
                    meets_target=est.meets_target,
                    why=move.choice.why,
                    verdict=est.verdict,
                    plan=plan,
                )
            )
    return DrainPlan(
        host=source.name,
        options=options,
        destinations=tuple(d.name for d in destinations),
        moves=tuple(planned),
        left_behind=tuple(sorted(left, key=lambda lb: lb.vm)),
        eta_s=round(eta, 1),
    )


def _wave_time(wave: Sequence[_Move], timed: Sequence[tuple[_Move, MoveEstimate, float]]) -> float:
    """How long a wave's moves take together. Timing each on an equal share of the link over-states it: a move
    that ends early hands its share to the others (processor sharing), so the link carries the wave's data in
    the sum of the moves' solo transfer times while their fixed costs overlap. Never less than the longest move
    alone, never more than the equal-share figure.

    >>> _wave_time([], [])
    0.0
    """
    if not timed:
        return 0.0
    equal_share = max(e.total_s for _, e, _ in timed)
    solo = [m.solo.total_s for m in wave]
    shared = sum(solo) - (len(solo) - 1) * DEFAULT_FIXED_S
    return max(max(solo), min(equal_share, shared))


def _checks_in_report_order(cand: Candidacy, choice: Choice) -> tuple[CheckResult, ...]:
    """The pair's checks, with the plan-wide capacity checks (memory, vCPUs) where the single move reports them."""
    plan_wide = {c.name: c for c in choice.checks if c.name in ("capacity.memory", "capacity.vcpus")}
    return tuple(plan_wide.pop(c.name, c) if c.name in plan_wide else c for c in cand.checks)


def _load(vm: DrainVm, cand: Candidacy) -> MoveLoad:
    facts = cand.facts
    mode = MigrationMode.OFFLINE if vm.state is VmState.SHUTOFF else MigrationMode.LIVE
    if facts.request.options.mode is not None:
        mode = facts.request.options.mode
    copy, copy_virtual = 0, 0
    if facts.vm is not None and facts.request.options.copy_storage is not None:
        copy, copy_virtual = copy_sizes(facts.vm, facts.disks)
    rate = facts.dirty_rate.rate_mib_s if facts.dirty_rate else vm.dirty_rate_mib_s
    return MoveLoad(
        vm.name,
        vm.memory_bytes,
        rate,
        mode,
        copy,
        transferable_bytes=vm.transferable_bytes,
        source=facts.source.name,
        destination=facts.destination.name,
        vm_uuid=facts.vm.uuid if facts.vm else "",
        copy_virtual_bytes=copy_virtual,
    )


def _share(source: DrainSource, dest: Destination, outgoing: int, incoming: int) -> float:
    return min(source.link_mib_s / max(1, outgoing), dest.link_mib_s / max(1, incoming))


def _timed(
    wave: Sequence[_Move], source: DrainSource, options: MigrationOptions, estimator: MoveEstimator
) -> list[tuple[_Move, MoveEstimate, float]]:
    """Every move of a wave on its share of the links."""
    incoming = Counter(m.dest.name for m in wave)
    out = []
    for m in wave:
        share = _share(source, m.dest, len(wave), incoming[m.dest.name])
        out.append((m, estimator.estimate(m.load, share, options), share))
    return out


def _waves(
    moves: Sequence[_Move], source: DrainSource, options: MigrationOptions, estimator: MoveEstimator
) -> list[list[_Move]]:
    waves: list[list[_Move]] = []
    times: list[float] = []
    for move in sorted(moves, key=lambda m: (-m.solo.total_s, m.choice.vm)):
        for i, wave in enumerate(waves):
            trial = [*wave, move]
            if len(trial) > source.max_outbound:
                continue
            incoming = Counter(m.dest.name for m in trial)
            if any(incoming[m.dest.name] > m.dest.max_inbound for m in trial):
                continue
            timed = _timed(trial, source, options, estimator)
            # a move that cannot meet its target even alone runs alone (the controller gets the whole link)
            if any(not m.solo.meets_target or not e.meets_target for m, e, _ in timed):
                continue
            together = max(e.total_s for _, e, _ in timed)
            if together <= times[i] + move.solo.total_s + WAVE_OVERHEAD_S:
                wave.append(move)
                times[i] = together
                break
        else:
            waves.append([move])
            times.append(move.solo.total_s)
    return waves


@dataclass(frozen=True)
class PlacedPlan:
    """`<vm> to any`: the single move's plan to the chosen host (or, when none can take it, to the host whose
    report shows why), and the placement's explanation."""

    plan: Plan
    destination: str | None
    why: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The single-move plan contract, plus `placement` (chosen host or null, why, fix)."""
        data = self.plan.to_json()
        if self.destination is None:
            data["executable"] = False
        data["placement"] = {"destination": self.destination, "why": self.why, "fix": self.fix}
        return data


def plan_to_any(
    vm: DrainVm,
    source: DrainSource,
    destinations: Sequence[Destination],
    candidacy: Mapping[tuple[str, str], Candidacy],
    options: MigrationOptions,
    estimator: MoveEstimator,
) -> PlacedPlan:
    """Place one VM (the drain's placement with a single VM) and make the single move's plan to that host."""
    choices, unplaced = place_all([VmToPlace(vm.name, vm.memory_bytes, vm.groups)], destinations, candidacy)
    dests = {d.name: d for d in destinations}
    if choices:
        (choice,) = choices
        cand = candidacy[(vm.name, choice.destination)]
        checks = _checks_in_report_order(cand, choice)
        destination: str | None = choice.destination
        why, fix = choice.why, None
    else:
        (miss,) = unplaced
        reachable = [(vm.name, d.name) for d in destinations if (vm.name, d.name) in candidacy]
        if not reachable:
            raise PreflightError(f"no host can take {vm.name}: {miss.reason}", miss.fix)
        # the host with the fewest failing checks: its report is the clearest account of what stands in the way
        key = min(reachable, key=lambda k: len(candidacy[k].blockers))
        cand, checks, destination, why, fix = candidacy[key], candidacy[key].checks, None, miss.reason, miss.fix
    dest = dests[cand.facts.destination.name]
    load = _load(vm, cand)
    est = estimator.estimate(load, _share(source, dest, 1, 1), options)
    plan = make_plan(
        cand.facts,
        est.prediction,
        dest_peer_uri=dest.peer_uri or "qemu:///unknown-destination",
        migration_address=dest.migration_address,
        tls=options.tls,
        checks=checks,
    )
    return PlacedPlan(plan, destination, why, fix)
