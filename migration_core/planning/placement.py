"""Which host takes each VM: the single move's preflight per candidate, memory counted across the plan, anti-affinity.

Pure. The runner gathers facts once per (VM, candidate host) pair and the checks run once per pair
(`evaluate`); placement then walks the VMs largest first and, for each, keeps the hosts whose checks pass and
re-runs the same memory and vCPU checks (preflight.capacity) against what is left on the host after its
`memory_reserve` and the moves already placed: capacity is counted across the whole plan, not per VM.

Among the hosts left, one that holds no VM of the VM's anti-affinity groups wins over one that does; a
group is only ever doubled up on a host when no other host can take the VM, and the explanation says so.
Then the most memory left after the move wins (it spreads the load and keeps the biggest gaps for the big
VMs that come next), ties broken by the inventory's order. Every choice carries its reason and the reason
each other host was not chosen: "hostB: most free memory after the moves already placed (3.2 GiB left);
hostC: the destination lacks network `prod`".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from migration_core.facts.gathered import PreflightFacts
from migration_core.models import CheckResult, CheckStatus
from migration_core.preflight import run_checks
from migration_core.preflight._common import human_bytes
from migration_core.preflight.capacity import check_memory, check_vcpus

_RECOMPUTED = ("capacity.memory", "capacity.vcpus")  # re-run per placement with the plan's ledger


@dataclass(frozen=True)
class Destination:
    """A candidate host as placement sees it (from the inventory plus what is on it now)."""

    name: str
    reserve_bytes: int = 0
    max_inbound: int = 1
    link_mib_s: float = 112.0
    peer_uri: str = ""
    migration_address: str | None = None
    # (group, VM) for each VM already on the host that stays there, per anti-affinity group it is in
    resident_groups: tuple[tuple[str, str], ...] = ()
    error: str | None = None  # the host did not answer: it cannot be a destination


@dataclass(frozen=True)
class VmToPlace:
    """A VM to find a host for: its size and the anti-affinity groups it is in (inventory and metadata)."""

    name: str
    memory_bytes: int
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Candidacy:
    """One VM on one candidate host: the gathered facts and the single move's checks, run once."""

    facts: PreflightFacts
    checks: tuple[CheckResult, ...]

    @property
    def blockers(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.status is CheckStatus.FAIL and c.name not in _RECOMPUTED)


def evaluate(facts: PreflightFacts) -> Candidacy:
    """Run the single move's checks once for one (VM, host) pair."""
    return Candidacy(facts, run_checks(facts))


@dataclass(frozen=True)
class Choice:
    """Where one VM goes and why; `checks` are the pair's checks with memory counted across the plan."""

    vm: str
    destination: str
    left_bytes: int | None
    why: str
    checks: tuple[CheckResult, ...]
    shares_group: tuple[str, ...] = ()


@dataclass(frozen=True)
class LeftBehind:
    """A VM the drain does not move (excluded, shut off, or no candidate can take it): why, and what would let
    it move."""

    vm: str
    reason: str
    fix: str

    def to_json(self) -> dict[str, str]:
        return {"vm": self.vm, "reason": self.reason, "fix": self.fix}


@dataclass
class _Ledger:
    placed_bytes: dict[str, int] = field(default_factory=dict)
    placed_vcpus: dict[str, int] = field(default_factory=dict)
    groups: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # host -> group -> VMs there

    def members(self, host: str, groups: Sequence[str]) -> dict[str, list[str]]:
        on_host = self.groups.get(host, {})
        return {g: on_host[g] for g in groups if on_host.get(g)}


def place_all(
    vms: Sequence[VmToPlace],
    destinations: Sequence[Destination],
    candidacy: Mapping[tuple[str, str], Candidacy],
) -> tuple[tuple[Choice, ...], tuple[LeftBehind, ...]]:
    """Place every VM (largest first, then by name); returns the choices and the VMs no host can take."""
    ledger = _Ledger()
    for d in destinations:
        for group, resident in d.resident_groups:
            ledger.groups.setdefault(d.name, {}).setdefault(group, []).append(resident)
    choices: list[Choice] = []
    unplaced: list[LeftBehind] = []
    for vm in sorted(vms, key=lambda v: (-v.memory_bytes, v.name)):
        outcome = _place_one(vm, destinations, candidacy, ledger)
        if isinstance(outcome, LeftBehind):
            unplaced.append(outcome)
            continue
        choices.append(outcome)
        ledger.placed_bytes[outcome.destination] = ledger.placed_bytes.get(outcome.destination, 0) + vm.memory_bytes
        facts = candidacy[(vm.name, outcome.destination)].facts
        vcpus = facts.vm.vcpus if facts.vm is not None else 0
        ledger.placed_vcpus[outcome.destination] = ledger.placed_vcpus.get(outcome.destination, 0) + vcpus
        for group in vm.groups:
            ledger.groups.setdefault(outcome.destination, {}).setdefault(group, []).append(vm.name)
    dests = {d.name: d for d in destinations}
    return tuple(_as_if_last(c, candidacy, dests[c.destination], ledger) for c in choices), tuple(unplaced)


def _as_if_last(
    choice: Choice, candidacy: Mapping[tuple[str, str], Candidacy], dest: Destination, ledger: _Ledger
) -> Choice:
    """The choice's capacity checks as if its VM arrived last on its host (every other VM placed there already
    moved in). The waves run in another order than the placement, and an approval must cover whichever comes
    first: checked against the host's final load, the re-check before the move starts can only find it as good
    or better, never a new warning."""
    facts = candidacy[(choice.vm, choice.destination)].facts
    vm_bytes = facts.vm.memory_bytes if facts.vm is not None else 0
    vm_vcpus = facts.vm.vcpus if facts.vm is not None else 0
    memory, _left = _memory_check(facts, dest, ledger.placed_bytes.get(dest.name, 0) - vm_bytes)
    vcpus = _vcpu_check(facts, ledger.placed_vcpus.get(dest.name, 0) - vm_vcpus)
    final = {c.name: c for c in (memory, vcpus) if c is not None}
    return replace(choice, checks=tuple(final.pop(c.name, c) if c.name in final else c for c in choice.checks))


@dataclass(frozen=True)
class _Eligible:
    host: Destination
    left_bytes: int | None
    checks: tuple[CheckResult, ...]
    conflicts: dict[str, list[str]]


def _place_one(
    vm: VmToPlace,
    destinations: Sequence[Destination],
    candidacy: Mapping[tuple[str, str], Candidacy],
    ledger: _Ledger,
) -> Choice | LeftBehind:
    eligible: list[_Eligible] = []
    rejected: list[str] = []
    failed: list[CheckResult] = []
    for dest in destinations:
        cand = candidacy.get((vm.name, dest.name))
        if dest.error is not None:
            rejected.append(f"{dest.name}: did not answer ({dest.error})")
            continue
        if dest.max_inbound <= 0:
            rejected.append(f"{dest.name}: takes no migrations (max_inbound = 0)")
            continue
        if cand is None:
            rejected.append(f"{dest.name}: its facts could not be gathered")
            continue
        if cand.blockers:
            first = cand.blockers[0]
            rejected.append(f"{dest.name}: {first.reason}")
            failed.extend(cand.blockers)
            continue
        memory, left = _memory_check(cand.facts, dest, ledger.placed_bytes.get(dest.name, 0))
        if memory is not None and memory.status is CheckStatus.FAIL:
            rejected.append(f"{dest.name}: {memory.reason} (after its reserve and the moves already placed)")
            failed.append(memory)
            continue
        vcpus = _vcpu_check(cand.facts, ledger.placed_vcpus.get(dest.name, 0))
        again = tuple(c for c in (memory, vcpus) if c is not None)
        checks = tuple(c for c in cand.checks if c.name not in _RECOMPUTED) + again
        eligible.append(_Eligible(dest, left, checks, ledger.members(dest.name, vm.groups)))
    if not eligible:
        return LeftBehind(vm.name, _reason(rejected), _fix(failed, rejected))
    clean = [e for e in eligible if not e.conflicts]
    pool = clean or eligible
    # most memory left first (unknown free memory last), then inventory order (stable sort)
    best = sorted(pool, key=lambda e: -(e.left_bytes if e.left_bytes is not None else -1))[0]
    others = [e for e in eligible if e is not best]
    notes = []
    for e in others:
        if e.conflicts and clean:
            notes.append(f"{e.host.name}: {_conflict_text(e.conflicts)} (anti-affinity)")
        else:
            notes.append(f"{e.host.name}: {human_bytes(e.left_bytes)} left, less than {best.host.name}")
    if best.left_bytes is None:
        head = f"{best.host.name}: passes every check (its free memory could not be read)"
    elif clean and len(clean) < len(eligible):
        head = (
            f"{best.host.name}: most free memory after the moves already placed ({human_bytes(best.left_bytes)} "
            f"left) among the hosts without another VM of its anti-affinity group"
        )
    elif len(eligible) == 1:
        head = f"{best.host.name}: the only host that can take it ({human_bytes(best.left_bytes)} left after it)"
    else:
        head = (
            f"{best.host.name}: most free memory after the moves already placed ({human_bytes(best.left_bytes)} left)"
        )
    if best.conflicts:
        head += f"; shares anti-affinity {_conflict_text(best.conflicts)} because no other host can take {vm.name}"
    why = "; ".join([head, *notes, *rejected])
    return Choice(vm.name, best.host.name, best.left_bytes, why, best.checks, tuple(sorted(best.conflicts)))


def _vcpu_check(facts: PreflightFacts, placed: int) -> CheckResult | None:
    """The single move's vCPU overcommit check, with the vCPUs of the moves already placed on the host: the plan
    shows the overcommit the host will really have once the drain is done (as the re-check before start sees)."""
    host = facts.destination_host
    if host is not None and host.running_vcpus is not None:
        facts = replace(facts, destination_host=replace(host, running_vcpus=host.running_vcpus + placed))
    found = check_vcpus(facts)
    return found[0] if found else None


def _memory_check(facts: PreflightFacts, dest: Destination, placed: int) -> tuple[CheckResult | None, int | None]:
    """The single move's memory check (which keeps the host's reserve) against what the plan so far left."""
    host = facts.destination_host
    vm = facts.vm
    if host is None or host.free_memory_bytes is None or vm is None:
        found = check_memory(facts)
        return (found[0] if found else None), None
    free = host.free_memory_bytes - placed
    shown = replace(
        facts,
        destination=replace(facts.destination, memory_reserve_bytes=dest.reserve_bytes),
        destination_host=replace(host, free_memory_bytes=max(0, free)),
    )
    found = check_memory(shown)
    return (found[0] if found else None), free - dest.reserve_bytes - vm.memory_bytes


def _conflict_text(conflicts: Mapping[str, list[str]]) -> str:
    return ", ".join(f"group `{g}` with {', '.join(vms)}" for g, vms in sorted(conflicts.items()))


def _reason(rejected: Sequence[str]) -> str:
    if not rejected:
        return "no candidate host: every other host of the inventory is excluded"
    return "no host can take it: " + "; ".join(rejected)


def _fix(failed: Sequence[CheckResult], rejected: Sequence[str]) -> str:
    """The fix of the check that stopped it on most hosts (the likeliest single change that unblocks it)."""
    if not failed:
        if not rejected:
            return "add a host to the inventory, or widen --to"
        return "bring a destination back (it must answer and take migrations), or widen --to"
    counts = Counter(c.name for c in failed)
    top = max(counts, key=lambda name: (counts[name], -[c.name for c in failed].index(name)))
    fixes = [c.fix for c in failed if c.name == top and c.fix]
    if top == "capacity.memory":
        return "free memory on a destination, lower its memory_reserve_mib, or add a host"
    return fixes[0] if fixes else f"see the `{top}` check in `/migrate plan <vm> to <host>`"
