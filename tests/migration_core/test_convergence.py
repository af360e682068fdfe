"""The convergence controller and the stall definition it shares with the progress tracker.

Closed-loop cases drive the controller over stats sequences shaped like the lab's guests (guest_model.py);
unit cases feed it hand-made observations. The clock is the observations' `now_s`: nothing sleeps.
"""

from __future__ import annotations

import doctest
import itertools

import pytest

from migration_core.errors import RequestError
from migration_core.execution import stall
from migration_core.execution.convergence import ControllerState, ConvergenceController, Observation
from migration_core.execution.stall import StallWatch
from migration_core.hypervisor.jobstats import JobStatsReading, JobType
from migration_core.models import ControlAction, ConvergencePolicy, Phase
from migration_core.planning import planner
from migration_core.planning.planner import downtime_ramp_ms

from .guest_model import GuestModel, MiB, drive

BUSY = {
    "ram_mib": 256,
    "working_set_mib": 128,
    "dirty_mib_s": 31.25,
    "link_mib_s": 16,
    "max_downtime_ms": 300,
}
IDLE = {"ram_mib": 256, "working_set_mib": 64, "dirty_mib_s": 7.8, "link_mib_s": 200, "max_downtime_ms": 300}
SLOW = {"ram_mib": 256, "working_set_mib": 256, "dirty_mib_s": 14, "link_mib_s": 16, "max_downtime_ms": 300}
HALVING = {"ram_mib": 256, "working_set_mib": 256, "dirty_mib_s": 8, "link_mib_s": 16, "max_downtime_ms": 300}
RAMP = downtime_ramp_ms(300)  # (60, 120, 180, 240, 300): the planner's ramp, the only one


def policy(**kw: object) -> ConvergencePolicy:
    base: dict[str, object] = {"max_downtime_ms": 300, "downtime_ramp_ms": RAMP, "stall_timeout_s": 60.0}
    base.update(kw)
    return ConvergencePolicy(**base)  # type: ignore[arg-type]


def obs(
    now: float,
    rem_mib: float,
    *,
    phase: Phase = Phase.PRECOPY,
    it: int = 2,
    elapsed: float | None = None,
    bps_mib: float = 16.0,
) -> Observation:
    reading = JobStatsReading(
        JobType.UNBOUNDED,
        elapsed_s=now if elapsed is None else elapsed,
        memory_iteration=it,
        data_remaining_bytes=int(rem_mib * MiB),
        memory_bytes_s=int(bps_mib * MiB),
    )
    return Observation(now, phase, reading)


def feed(ctl: ConvergenceController, observations: list[Observation], state: ControllerState | None = None):
    state = state or ctl.initial_state()
    out = []
    for o in observations:
        state, decision = ctl.decide(state, o)
        out.append((o, state, decision))
    return out


def test_worked_examples_in_docstrings_hold() -> None:
    # The controller's ramp is the planner's (downtime_ramp_ms, the only ramp formula): its examples count here.
    for module in (planner, stall):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


# ----- the downtime ramp ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ramp", "max_ms", "expected_ramp"),
    [
        ((), 300, (300,)),  # no ramp: the max from the start
        ((50, 100, 900), 300, (50, 100, 300)),  # never above the approved max
        ((200, 100, 100), 300, (100, 200)),  # sorted, no duplicates
    ],
)
def test_ramp_from_policy(ramp: tuple[int, ...], max_ms: int, expected_ramp: tuple[int, ...]) -> None:
    ctl = ConvergenceController(policy(downtime_ramp_ms=ramp, max_downtime_ms=max_ms))
    assert ctl.ramp_ms == expected_ramp
    assert ctl.initial_downtime_ms == expected_ramp[0]
    assert ctl.initial_state().downtime_ms == expected_ramp[0]


@pytest.mark.parametrize(
    "kw",
    [{"max_downtime_ms": 0}, {"downtime_ramp_ms": (0, 100)}, {"stall_timeout_s": 0.0}, {"timeout_s": -1.0}],
)
def test_invalid_policy_is_refused_with_a_hint(kw: dict[str, object]) -> None:
    with pytest.raises(RequestError) as info:
        ConvergenceController(policy(**kw))
    assert info.value.hint


def test_ramp_raises_at_stalling_iteration_boundaries_with_a_cooldown() -> None:
    run = drive(GuestModel(**BUSY), controller=ConvergenceController(policy(stall_timeout_s=1000.0)), until_s=120)
    raises = run.decisions(ControlAction.RAISE_DOWNTIME)
    assert [s.decision.downtime_ms for s in raises] == list(RAMP[1:])  # type: ignore[union-attr]
    for i, step in enumerate(run.steps):
        if step in raises:
            before = run.steps[i - 1].reading.memory_iteration
            assert step.reading.memory_iteration > before  # only at a new pass
            assert step.reading.memory_iteration >= 3  # not during the bulk pass or the first re-send
            assert "not 10 % less than the pass before" in step.decision.reason  # type: ignore[union-attr]
    times = [s.now_s for s in raises]
    assert all(b - a >= 10.0 for a, b in itertools.pairwise(times))
    assert run.outcome == "running"  # stall timeout out of reach, no budget: it just keeps trying


def test_no_raise_while_each_pass_starts_clearly_lower() -> None:
    run = drive(GuestModel(**HALVING), poll_s=0.25, controller=ConvergenceController(policy()))
    assert run.outcome == "completed"
    assert run.decisions(ControlAction.RAISE_DOWNTIME) == []
    assert max(s.reading.memory_iteration for s in run.steps) >= 4


def test_operator_downtime_moves_the_ramp_on() -> None:
    ctl = ConvergenceController(policy())
    state = ctl.note_downtime(ctl.initial_state(), 200)
    assert state.downtime_ms == 200
    steps = feed(ctl, [obs(0, 100, it=2), obs(20, 100, it=3)], state)
    assert steps[-1][2].action is ControlAction.RAISE_DOWNTIME
    assert steps[-1][2].downtime_ms == 240  # the next step of RAMP above the operator's 200 ms


# ----- stall, post-copy, abort, budget (closed loop over lab-like sequences) ----------------------------


def test_busy_guest_without_postcopy_is_aborted_one_stall_timeout_after_its_last_progress() -> None:
    model = GuestModel(**BUSY)
    run = drive(model, controller=ConvergenceController(policy()))
    assert run.outcome == "aborted"
    abort = run.steps[-1]
    assert abort.decision is not None and abort.decision.action is ControlAction.ABORT
    # The last progress is the end of pass 2 (the first pass that did not start lower than the one before).
    end_of_pass_2 = model.sync_times[1]
    assert end_of_pass_2 - 1.5 + 60 <= abort.now_s <= end_of_pass_2 + 60 + 0.5
    assert abort.decision.reason.startswith("stalled for 60 s at ")
    assert "post-copy is not allowed by the plan; aborting" in abort.decision.reason
    assert run.decisions(ControlAction.SWITCH_POSTCOPY) == []


def test_busy_guest_with_postcopy_switches_instead_and_completes() -> None:
    model = GuestModel(**BUSY)
    run = drive(model, controller=ConvergenceController(policy(allow_postcopy=True)))
    assert run.outcome == "completed"
    switches = run.decisions(ControlAction.SWITCH_POSTCOPY)
    assert len(switches) == 1
    assert model.sync_times[1] - 1.5 + 60 <= switches[0].now_s <= model.sync_times[1] + 60 + 0.5
    assert "stalled for 60 s" in switches[0].decision.reason  # type: ignore[union-attr]
    assert switches[0].decision.reason.endswith("switching to post-copy")  # type: ignore[union-attr]
    assert run.decisions(ControlAction.ABORT) == []
    after = [s for s in run.steps if s.now_s > switches[0].now_s and s.decision is not None]
    assert after and all(s.decision.action is ControlAction.CONTINUE for s in after)  # type: ignore[union-attr]


def test_switch_to_postcopy_after_postcopy_after_s_in_precopy() -> None:
    run = drive(GuestModel(**BUSY), controller=ConvergenceController(policy(allow_postcopy=True, postcopy_after_s=30)))
    switch = run.decisions(ControlAction.SWITCH_POSTCOPY)
    assert len(switch) == 1
    # Pre-copy is first seen at the 0.5 s poll; 30 s later is the 30.5 s poll.
    assert switch[0].now_s == 30.5
    assert switch[0].decision.reason.startswith("30 s in pre-copy (limit 30 s)")  # type: ignore[union-attr]
    assert run.outcome == "completed"


def test_postcopy_after_s_is_ignored_when_the_plan_does_not_allow_postcopy() -> None:
    ctl = ConvergenceController(policy(allow_postcopy=False, postcopy_after_s=5, stall_timeout_s=1000.0))
    decisions = [d for _, _, d in feed(ctl, [obs(t, 100 - t, it=1) for t in range(0, 40)])]
    assert all(d.action is ControlAction.CONTINUE for d in decisions)


@pytest.mark.parametrize(
    ("allow_postcopy", "action", "reason_end"),
    [
        (False, ControlAction.ABORT, "post-copy is not allowed by the plan; aborting"),
        (True, ControlAction.SWITCH_POSTCOPY, "switching to post-copy"),
    ],
)
def test_time_budget(allow_postcopy: bool, action: ControlAction, reason_end: str) -> None:
    ctl = ConvergenceController(
        policy(allow_postcopy=allow_postcopy, timeout_s=150.0, stall_timeout_s=1000.0),
        memory_bytes=1024 * MiB,
    )
    run = drive(GuestModel(**BUSY), controller=ctl)
    acted = [s for s in run.steps if s.decision is not None and s.decision.action is action]
    assert acted and acted[0].reading.elapsed_s >= 150.0
    assert all(s.reading.elapsed_s < 150.0 for s in run.steps if s.now_s < acted[0].now_s)
    reason = acted[0].decision.reason  # type: ignore[union-attr]
    assert reason.startswith("over the time budget of 150 s (1 GiB of memory × 150 s/GiB) at ")
    assert reason.endswith(reason_end)


def test_idle_guest_just_continues() -> None:
    run = drive(GuestModel(**IDLE), poll_s=0.25, controller=ConvergenceController(policy(timeout_s=30.0)))
    assert run.outcome == "completed"
    assert {s.decision.action for s in run.steps if s.decision} == {ControlAction.CONTINUE}


def test_slowly_converging_guest_is_not_called_stalled() -> None:
    # 14 of 16 MiB/s dirtied: every pass only ~12 % smaller, ~30 passes, ~2 minutes; it does converge.
    run = drive(GuestModel(**SLOW), controller=ConvergenceController(policy(stall_timeout_s=30.0)))
    assert run.outcome == "completed"
    assert run.decisions(ControlAction.ABORT) == []
    assert max(s.sample.stalled_for_s for s in run.steps) < 10


def test_tracker_and_controller_agree_on_the_stall() -> None:
    run = drive(GuestModel(**BUSY), controller=ConvergenceController(policy(stall_timeout_s=1000.0)), until_s=90)
    for s in run.steps:
        assert s.state is not None
        assert s.sample.stalled_for_s == pytest.approx(s.state.stall.stalled_for_s(s.now_s), abs=0.06)


# ----- never abort in post-copy ---------------------------------------------------------------------


def test_never_aborts_in_postcopy_even_stalled_and_over_budget() -> None:
    ctl = ConvergenceController(policy(allow_postcopy=True, timeout_s=60.0, stall_timeout_s=30.0))
    flat = [obs(t, 212, phase=Phase.POSTCOPY, it=4, elapsed=50 + t) for t in range(0, 300, 5)]
    results = feed(ctl, flat)
    assert all(d.action is ControlAction.CONTINUE for _, _, d in results)
    stalled = [d.reason for o, _, d in results if o.now_s >= 30]
    assert stalled[0].startswith("post-copy has not progressed for 30 s at 212 MiB remaining; not aborting")
    assert all("an abort would lose it" in r for r in stalled)
    over = [d.reason for o, _, d in results if o.reading.elapsed_s >= 60 and o.now_s < 30]
    assert over and all(r.startswith("over the time budget of 60 s; not aborting") for r in over)


def test_postcopy_is_remembered_even_if_a_later_sample_looks_like_precopy() -> None:
    ctl = ConvergenceController(policy(timeout_s=10.0))
    results = feed(ctl, [obs(0, 50, phase=Phase.POSTCOPY), obs(20, 50, phase=Phase.PRECOPY, elapsed=20)])
    assert results[-1][1].postcopy_active
    assert results[-1][2].action is ControlAction.CONTINUE


# ----- the rest of the rules, on hand-made observations ---------------------------------------------


def test_last_chance_raise_to_the_max_when_the_final_pass_nearly_fits() -> None:
    # Each pass starts at 6 MiB: 375 ms at 16 MiB/s, within 1.5 x the 300 ms max, while 60 ms is in force.
    ctl = ConvergenceController(policy(stall_timeout_s=20.0), ramp_start_iteration=1000)
    sawtooth = [obs(t, 6 if t % 2 == 0 else 1, it=2 + t // 2) for t in range(0, 60)]
    results = feed(ctl, sawtooth)
    actions = [(o.now_s, d.action) for o, _, d in results if d.action is not ControlAction.CONTINUE]
    first_t, first = actions[0]
    assert first is ControlAction.RAISE_DOWNTIME
    last_chance = next(d for o, _, d in results if o.now_s == first_t)
    assert last_chance.downtime_ms == 300
    assert "the last pass would need ~375 ms" in last_chance.reason and "last chance" in last_chance.reason
    assert actions[1][1] is ControlAction.ABORT  # still stalled at the max: give up
    assert actions[1][0] - first_t >= 20.0


def test_stalled_with_a_final_pass_far_over_the_max_aborts_directly() -> None:
    ctl = ConvergenceController(policy(stall_timeout_s=20.0), ramp_start_iteration=1000)
    sawtooth = [obs(t, 128 if t % 8 == 0 else 8, it=2 + t // 8) for t in range(0, 60)]
    actions = [d for _, _, d in feed(ctl, sawtooth) if d.action is not ControlAction.CONTINUE]
    assert actions[0].action is ControlAction.ABORT


def test_storage_copy_stall_aborts_even_with_postcopy_allowed() -> None:
    ctl = ConvergenceController(policy(allow_postcopy=True, stall_timeout_s=30.0))
    stuck = [obs(t, 40, phase=Phase.STORAGE, it=0, bps_mib=0.0) for t in range(0, 40, 2)]
    decisions = [d for _, _, d in feed(ctl, stuck)]
    assert decisions[-1].action is ControlAction.ABORT
    assert "post-copy cannot help in the storage copy phase" in decisions[-1].reason


def test_postcopy_requested_but_never_started() -> None:
    ctl = ConvergenceController(policy(allow_postcopy=True, timeout_s=100.0), postcopy_grace_s=15.0)
    results = feed(ctl, [obs(t, 100, it=2, elapsed=t) for t in (99, 100, 105, 116)])
    assert [d.action for _, _, d in results] == [
        ControlAction.CONTINUE,
        ControlAction.SWITCH_POSTCOPY,
        ControlAction.CONTINUE,
        ControlAction.ABORT,
    ]
    assert "waiting for libvirt to switch" in results[2][2].reason
    assert "post-copy was requested 16 s ago but never started; aborting" in results[3][2].reason


def test_operator_postcopy_request_is_not_repeated_by_the_controller() -> None:
    ctl = ConvergenceController(policy(allow_postcopy=True, postcopy_after_s=1))
    state = ctl.note_postcopy_requested(ctl.initial_state(), 0.0)
    decisions = [d for _, _, d in feed(ctl, [obs(t, 100, it=1) for t in (1, 5, 10)], state)]
    assert all(d.action is ControlAction.CONTINUE for d in decisions)


@pytest.mark.parametrize("phase", [Phase.SETUP, Phase.COMPLETING])
def test_setup_and_switchover_just_continue(phase: Phase) -> None:
    ctl = ConvergenceController(policy(stall_timeout_s=5.0))
    decisions = [d for _, _, d in feed(ctl, [obs(t, 0, phase=phase, it=0) for t in range(0, 30, 5)])]
    assert all(d.action is ControlAction.CONTINUE for d in decisions)


def test_continue_reason_gives_eta_then_admits_a_stall() -> None:
    ctl = ConvergenceController(policy(stall_timeout_s=60.0))
    first = feed(ctl, [obs(0, 120, it=1)])
    assert first[0][2].reason == "pre-copy pass 1: 120 MiB left at 16.0 MiB/s, ETA ~8 s, max downtime 60 ms"
    flat = feed(ctl, [obs(t, 120, it=1) for t in range(0, 20)])
    assert "no progress for 19 s (acting at 60 s)" in flat[-1][2].reason


# ----- the stall watch itself ---------------------------------------------------------------------------


def watch(seq: list[tuple[float, Phase, int, float]], bps_mib: float = 16.0) -> StallWatch:
    w = StallWatch()
    for now, phase, it, rem in seq:
        w = w.observe(
            now_s=now,
            phase=phase,
            iteration=it,
            remaining_bytes=int(rem * MiB),
            bandwidth_bytes_s=bps_mib * MiB,
        )
    return w


P = Phase.PRECOPY


def sawtooth(shifts_mib: list[float]) -> list[tuple[float, Phase, int, float]]:
    """Pass k starts at 128 + shift MiB at t = 8k and empties at 16 MiB/s; iteration 2 is the first."""
    return [(8 * k + i / 2, P, 2 + k, 128 + shift - 8 * i) for k, shift in enumerate(shifts_mib) for i in range(16)]


@pytest.mark.parametrize(
    ("name", "seq", "now", "stalled_for"),
    [
        ("bulk pass falling steadily", [(t / 2, P, 1, 256 - 8 * t) for t in range(30)], 14.5, 0.5),
        ("flat remaining", [(t, P, 1, 100) for t in range(31)], 30, 30),
        # 8 s passes at 16 MiB/s polled every 0.5 s; each tooth shifted by less than one poll's 8 MiB.
        ("sawtooth, bottoms jitter within one poll of data", sawtooth([3, 4, 5, 3.5]), 31.5, 24.5),
        (
            "each pass starts clearly lower: converging",
            [(0, P, 2, 128), (7.5, P, 2, 5), (8, P, 3, 100), (13.5, P, 3, 5), (14, P, 4, 80)],
            14,
            0,
        ),
        (
            "a long pass of a big VM keeps falling",
            [(0, P, 1, 4096), (100, P, 2, 2048)] + [(100 + t, P, 2, 2048 - 16 * t) for t in range(1, 91)],
            190,
            0,
        ),
        ("new phase starts afresh", [(0, P, 2, 5), (50, P, 2, 5), (51, Phase.POSTCOPY, 2, 100)], 51, 0),
        ("nothing watched in setup", [(0, Phase.SETUP, 0, 0), (100, Phase.SETUP, 0, 0)], 100, 0),
    ],
)
def test_stall_watch(name: str, seq: list[tuple[float, Phase, int, float]], now: float, stalled_for: float) -> None:
    assert watch(seq).stalled_for_s(now) == pytest.approx(stalled_for)
