"""Pure drain planning: placement with the single move's checks, plan-wide capacity and reserves,
anti-affinity, left-behind VMs with reason and fix, waves from the prediction under hard slot limits, the hash."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migration_core.facts.gathered import GIB, VmState
from migration_core.models import CopyStorage, MigrationOptions
from migration_core.planning.drain import WAVE_OVERHEAD_S, DrainPlan, plan_drain
from migration_core.planning.estimates import ModelEstimator
from tests.migration_core.drain_support import SynFleet, SynHost, SynVm

EST = ModelEstimator()
DEFAULT = MigrationOptions()


def drain(fleet: SynFleet, options: MigrationOptions = DEFAULT, **kw: object) -> DrainPlan:
    return plan_drain(
        fleet.drain_source(),
        fleet.drain_vms(),
        fleet.destinations(),
        fleet.candidacy(options),
        options,
        EST,
        **kw,  # type: ignore[arg-type]
    )


def where(plan: DrainPlan) -> dict[str, str]:
    return {m.vm: m.destination for m in plan.moves}


# ----- placement -------------------------------------------------------------------------------------------

PLACEMENT_CASES: list[tuple[str, SynFleet, dict[str, str], set[str]]] = [
    (
        "most free memory wins, counted across the plan",
        SynFleet(hosts=[SynHost("hB", free_gib=10), SynHost("hC", free_gib=7)],
                 vms=[SynVm("a", 4), SynVm("b", 4), SynVm("c", 1)]),
        # a -> hB (6 GiB left vs 3); b: hB would keep 2, hC 3 -> hC; c: hB keeps 5, hC 2 -> hB
        {"a": "hB", "b": "hC", "c": "hB"},
        set(),
    ),
    (
        "the memory reserve is never counted as free",
        SynFleet(hosts=[SynHost("hB", free_gib=10, reserve_gib=8), SynHost("hC", free_gib=5)],
                 vms=[SynVm("a", 3)]),
        {"a": "hC"},
        set(),
    ),
    (
        "a VM too big for every host is left behind, the others still move",
        SynFleet(hosts=[SynHost("hB", free_gib=4)], vms=[SynVm("big", 32), SynVm("small", 1)]),
        {"small": "hB"},
        {"big"},
    ),
    (
        "an incompatible CPU rules a host out",
        SynFleet(hosts=[SynHost("old1", free_gib=64, cpu_family="old"), SynHost("new1", free_gib=4)],
                 vms=[SynVm("modern", 2, cpu_family="new"), SynVm("plain", 2)]),
        {"modern": "new1", "plain": "old1"},
        set(),
    ),
    (
        "anti-affinity beats free memory",
        SynFleet(hosts=[SynHost("hB", free_gib=64), SynHost("hC", free_gib=8)],
                 vms=[SynVm("db1", 2, groups=("db",)), SynVm("db2", 2, groups=("db",))]),
        {"db1": "hB", "db2": "hC"},
        set(),
    ),
    (
        "a group member already on a host counts",
        SynFleet(hosts=[SynHost("hB", free_gib=64, residents=(("db", "db9"),)), SynHost("hC", free_gib=8)],
                 vms=[SynVm("db1", 2, groups=("db",))]),
        {"db1": "hC"},
        set(),
    ),
    (
        "with one host the group shares it rather than staying behind",
        SynFleet(hosts=[SynHost("hB", free_gib=64)],
                 vms=[SynVm("db1", 2, groups=("db",)), SynVm("db2", 2, groups=("db",))]),
        {"db1": "hB", "db2": "hB"},
        set(),
    ),
    (
        "a host with max_inbound = 0 takes nothing",
        SynFleet(hosts=[SynHost("hB", free_gib=64, max_inbound=0), SynHost("hC", free_gib=8)], vms=[SynVm("a")]),
        {"a": "hC"},
        set(),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("label", "fleet", "expected", "behind"), PLACEMENT_CASES, ids=[c[0] for c in PLACEMENT_CASES])
def test_placement(label: str, fleet: SynFleet, expected: dict[str, str], behind: set[str]) -> None:
    plan = drain(fleet)
    assert where(plan) == expected, [m.why for m in plan.moves]
    assert {lb.vm for lb in plan.left_behind} == behind


def test_every_choice_explains_itself_and_the_hosts_not_chosen() -> None:
    fleet = SynFleet(
        hosts=[
            SynHost("old1", free_gib=64, cpu_family="old"),
            SynHost("new1", free_gib=8),
            SynHost("new2", free_gib=4),
        ],
        vms=[SynVm("modern", 2, cpu_family="new")],
    )
    (move,) = drain(fleet).moves
    assert move.destination == "new1"
    assert move.why.startswith("new1: most free memory after the moves already placed (6.0 GiB left)")
    assert "new2: 2.0 GiB left, less than new1" in move.why
    assert "old1: " in move.why and "avx512f" in move.why


def test_shared_group_is_said_out_loud() -> None:
    fleet = SynFleet(hosts=[SynHost("hB")], vms=[SynVm("db1", 2, groups=("db",)), SynVm("db2", 1, groups=("db",))])
    moves = {m.vm: m for m in drain(fleet).moves}
    assert "shares anti-affinity group `db` with db1 because no other host can take db2" in moves["db2"].why


def test_left_behind_has_the_reason_per_host_and_the_fix() -> None:
    fleet = SynFleet(
        hosts=[SynHost("old1", cpu_family="old"), SynHost("old2", cpu_family="old")],
        vms=[SynVm("modern", 2, cpu_family="new"), SynVm("off", state=VmState.SHUTOFF), SynVm("keep")],
    )
    plan = drain(fleet, except_vms=("keep",))
    behind = {lb.vm: lb for lb in plan.left_behind}
    assert set(behind) == {"modern", "off", "keep"}
    assert behind["modern"].reason.startswith("no host can take it: old1: ") and "old2: " in behind["modern"].reason
    assert "baseline" in behind["modern"].fix or "CPU" in behind["modern"].fix
    assert behind["off"].fix == "add --include-stopped to move it offline"
    assert behind["keep"].reason == "excluded by --except"
    assert not plan.moves and not plan.executable


def test_include_stopped_moves_shut_off_vms_offline() -> None:
    fleet = SynFleet(hosts=[SynHost("hB")], vms=[SynVm("off", state=VmState.SHUTOFF)])
    (move,) = drain(fleet, include_stopped=True).moves
    assert (move.vm, move.mode.value, move.predicted_downtime_ms) == ("off", "offline", 0.0)


def test_live_only_options_do_not_stop_a_shut_off_vm_from_moving_offline() -> None:
    fleet = SynFleet(hosts=[SynHost("hB")], vms=[SynVm("off", state=VmState.SHUTOFF), SynVm("on")])
    plan = drain(fleet, MigrationOptions(postcopy=True, copy_storage=CopyStorage.ALL), include_stopped=True)
    moves = {m.vm: m for m in plan.moves}
    assert moves["off"].mode.value == "offline" and moves["off"].plan.request.options.copy_storage is None
    assert moves["on"].plan.request.options.postcopy and not plan.left_behind


def test_capacity_failure_fix_names_the_reserve() -> None:
    fleet = SynFleet(hosts=[SynHost("hB", free_gib=4, reserve_gib=2)], vms=[SynVm("a", 3)])
    (lb,) = drain(fleet).left_behind
    assert "after its reserve and the moves already placed" in lb.reason
    assert "memory_reserve_mib" in lb.fix


# ----- order and concurrency -------------------------------------------------------------------------------


def test_quiet_small_vms_share_a_wave_and_a_busy_one_runs_alone() -> None:
    fleet = SynFleet(
        source_link_mib_s=100.0,
        max_outbound=4,
        hosts=[SynHost("hB", link_mib_s=100.0, max_inbound=4)],
        vms=[SynVm("q1", 0.25, 0.5), SynVm("q2", 0.25, 0.5), SynVm("busy", 0.5, 40.0)],
    )
    plan = drain(fleet)
    waves = defaultdict(set)
    for m in plan.moves:
        waves[m.wave].add(m.vm)
    assert {"q1", "q2"} in waves.values() and {"busy"} in waves.values()
    assert plan.moves[0].vm == "busy"  # longest first
    assert all(m.meets_target for m in plan.moves)
    # each wave: its longest move plus the wave's fixed cost (re-check, verification, hand-over)
    assert plan.eta_s == pytest.approx(
        sum(max(m.predicted_total_s for m in plan.moves if m.wave == w) + WAVE_OVERHEAD_S for w in waves), abs=0.11
    )


def test_one_slot_means_one_move_at_a_time() -> None:
    fleet = SynFleet(max_outbound=1, hosts=[SynHost("hB", max_inbound=8)], vms=[SynVm(f"v{i}", 0.25) for i in range(4)])
    plan = drain(fleet)
    assert sorted(m.wave for m in plan.moves) == [1, 2, 3, 4]
    assert [m.order for m in plan.moves] == [1, 2, 3, 4]


def test_a_vm_that_cannot_meet_its_target_is_planned_alone_and_flagged() -> None:
    fleet = SynFleet(
        source_link_mib_s=16.0, max_outbound=4, hosts=[SynHost("hB", link_mib_s=16.0, max_inbound=4)],
        vms=[SynVm("busy", 0.25, 31.2), SynVm("idle", 0.25, 0.1)],
    )  # fmt: skip
    plan = drain(fleet)
    busy = next(m for m in plan.moves if m.vm == "busy")
    assert not busy.meets_target and "will not converge" in busy.verdict
    assert [m.vm for m in plan.moves if m.wave == busy.wave] == ["busy"]
    post = drain(fleet, MigrationOptions(postcopy=True))
    assert all(m.meets_target for m in post.moves)


def test_copy_storage_options_reach_every_moves_plan() -> None:
    fleet = SynFleet(hosts=[SynHost("hB")], vms=[SynVm("a"), SynVm("b")])
    plan = drain(fleet, MigrationOptions(copy_storage=CopyStorage.ALL, postcopy=True))
    for m in plan.moves:
        assert m.plan.request.options.copy_storage is CopyStorage.ALL
        assert "VIR_MIGRATE_POSTCOPY" in m.plan.flags and m.plan.destination == "hB"


# ----- the contract and the hash ---------------------------------------------------------------------------


def test_json_contract_and_stable_hash() -> None:
    fleet = SynFleet(hosts=[SynHost("hB"), SynHost("hC")], vms=[SynVm("a"), SynVm("big", 64)])
    plan = drain(fleet)
    data = plan.to_json()
    assert {"executable", "host", "moves", "left_behind", "eta_s", "hash"} <= set(data)
    assert data["host"] == "h00" and data["executable"] is True
    for m in data["moves"]:
        assert {
            "vm",
            "destination",
            "mode",
            "wave",
            "order",
            "predicted_total_s",
            "predicted_downtime_ms",
            "why",
        } <= set(m)
    assert data["left_behind"] == [
        {"vm": "big", "reason": data["left_behind"][0]["reason"], "fix": data["left_behind"][0]["fix"]}
    ]
    assert drain(fleet).hash == plan.hash
    other = SynFleet(hosts=[SynHost("hC"), SynHost("hB", free_gib=1)], vms=[SynVm("a"), SynVm("big", 64)])
    assert drain(other).hash != plan.hash
    assert drain(fleet, MigrationOptions(postcopy=True)).hash != plan.hash


# ----- 20 synthetic hosts ----------------------------------------------------------------------------------


def twenty_hosts() -> SynFleet:
    hosts = [
        SynHost(f"h{i:02d}", free_gib=8 + (i * 7) % 24, reserve_gib=(i % 3) * 2, max_inbound=1 + i % 3,
                cpu_family="old" if i % 4 == 0 else "new")
        for i in range(1, 21)
    ]  # fmt: skip
    vms = [
        SynVm(f"vm{j:02d}", memory_gib=[1, 2, 4, 8, 16][j % 5], dirty_mib_s=[0.5, 5, 30, 2][j % 4],
              groups=("db",) if j % 10 == 0 else ("web",) if j % 7 == 0 else (),
              cpu_family="new" if j % 3 == 0 else "old")
        for j in range(40)
    ]  # fmt: skip
    vms.append(SynVm("huge", memory_gib=512))
    return SynFleet(source="h00", source_link_mib_s=1190.0, max_outbound=3, hosts=hosts, vms=vms)


def check_invariants(fleet: SynFleet, plan: DrainPlan) -> None:
    hosts = {h.name: h for h in fleet.hosts}
    vms = {v.name: v for v in fleet.vms}
    used = Counter[str]()
    for m in plan.moves:
        used[m.destination] += int(vms[m.vm].memory_gib * GIB)
        assert not (vms[m.vm].cpu_family == "new" and hosts[m.destination].cpu_family == "old")
    for name, total in used.items():
        assert total <= (hosts[name].free_gib - hosts[name].reserve_gib) * GIB, name
    for wave in {m.wave for m in plan.moves}:
        members = [m for m in plan.moves if m.wave == wave]
        assert len(members) <= fleet.max_outbound
        for dest, n in Counter(m.destination for m in members).items():
            assert n <= hosts[dest].max_inbound
    assert {m.vm for m in plan.moves} | {lb.vm for lb in plan.left_behind} == set(vms)
    assert not {m.vm for m in plan.moves} & {lb.vm for lb in plan.left_behind}
    assert sorted(m.order for m in plan.moves) == list(range(1, len(plan.moves) + 1))


def test_twenty_hosts_with_capacities_anti_affinity_and_cpu_models() -> None:
    fleet = twenty_hosts()
    plan = drain(fleet)
    check_invariants(fleet, plan)
    assert [lb.vm for lb in plan.left_behind] == ["huge"]
    # the group members are spread: 20 hosts are plenty
    for group in ("db", "web"):
        dests = [m.destination for m in plan.moves if group in next(v for v in fleet.vms if v.name == m.vm).groups]
        assert len(dests) == len(set(dests)), (group, dests)
    assert plan.waves < len(plan.moves)  # some moves share a wave
    assert plan.eta_s > 0


@st.composite
def fleets(draw: st.DrawFn) -> SynFleet:
    n_hosts = draw(st.integers(1, 5))
    hosts = [
        SynHost(
            f"h{i}",
            free_gib=draw(st.sampled_from([1, 2, 4, 8, 16])),
            reserve_gib=draw(st.sampled_from([0, 0, 1, 2])),
            max_inbound=draw(st.integers(0, 3)),
            link_mib_s=draw(st.sampled_from([50.0, 200.0, 1000.0])),
            cpu_family=draw(st.sampled_from(["old", "new"])),
        )
        for i in range(1, n_hosts + 1)
    ]
    vms = [
        SynVm(
            f"v{j}",
            memory_gib=draw(st.sampled_from([0.25, 0.5, 1, 2, 4])),
            dirty_mib_s=draw(st.sampled_from([0.1, 5.0, 60.0])),
            groups=draw(st.sampled_from([(), ("g1",), ("g2",), ("g1", "g2")])),
            cpu_family=draw(st.sampled_from(["old", "new"])),
        )
        for j in range(draw(st.integers(0, 10)))
    ]
    return SynFleet(max_outbound=draw(st.integers(1, 4)), source_link_mib_s=200.0, hosts=hosts, vms=vms)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets(), st.booleans())
def test_capacity_slots_and_anti_affinity_are_never_violated(fleet: SynFleet, postcopy: bool) -> None:
    plan = drain(fleet, MigrationOptions(postcopy=postcopy))
    check_invariants(fleet, plan)
    hosts = {h.name: h for h in fleet.hosts}
    by_vm = {v.name: v for v in fleet.vms}
    # anti-affinity: two members of a group share a host only if, when the later one was placed, no other
    # host that passes its checks had room: replay the plan's own placement order (largest first, by name).
    placed: dict[str, list[str]] = defaultdict(list)
    left: dict[str, float] = {h.name: (h.free_gib - h.reserve_gib) * GIB for h in fleet.hosts}
    moved = {m.vm: m.destination for m in plan.moves}
    for v in sorted(fleet.vms, key=lambda v: (-v.memory_gib, v.name)):
        if v.name not in moved:
            continue
        dest = moved[v.name]
        if any(by_vm[o].groups and set(by_vm[o].groups) & set(v.groups) for o in placed[dest]):
            for h in fleet.hosts:
                if h.name == dest or h.max_inbound == 0 or (v.cpu_family == "new" and h.cpu_family == "old"):
                    continue
                fits = left[h.name] >= v.memory_gib * GIB
                clean = not any(set(by_vm[o].groups) & set(v.groups) for o in placed[h.name])
                assert not (fits and clean), (v.name, dest, h.name, hosts[h.name])
        placed[dest].append(v.name)
        left[dest] -= v.memory_gib * GIB


def test_worked_examples_in_docstrings_hold() -> None:
    import doctest

    from migration_core.planning import drain, estimates

    for module in (drain, estimates):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


def test_the_calibrated_prediction_plugs_into_the_same_seam() -> None:
    from migration_core.planning.estimates import CalibratedEstimator

    fleet = twenty_hosts()
    plan = plan_drain(
        fleet.drain_source(), fleet.drain_vms(), fleet.destinations(), fleet.candidacy(), DEFAULT,
        CalibratedEstimator(),
    )  # fmt: skip
    check_invariants(fleet, plan)
    assert plan.eta_s > 0 and all(m.predicted_total_s > 0 for m in plan.moves)
    assert all("model only: no history" in m.verdict for m in plan.moves)
    assert plan.moves[0].plan.prediction is not None and plan.moves[0].plan.prediction.basis
