"""The downtime model (planning/estimate.py) on recorded lab figures: the stop-and-copy against the downtime ramp,
the send backlog and switch-over, auto-converge's raised budget, and how history is learned without one odd run
moving the estimate.

Recorded figures: fixtures/prediction_runs.json (bench/bench_prediction.py, 4 Dec 2026 14:00, 36 migrations),
fixtures/prediction_runs_2.json (a second run at 17:12, 36 migrations, with QEMU's own split of the pause for 29 of
them: `qemu_downtime` = pause to last byte sent, `qemu_downtime_bytes` = RAM sent while paused, `qemu_mbps` =
QEMU's throughput estimate, read from the source's completed `query-migrate` in the libvirtd debug log) and
fixtures/prediction_runs_3.json (17:34, on the rebuilt lab with its extra guests running: a loaded machine) and
fixtures/prediction_runs_4.json (17:52, this round's final run, the model as committed).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from migration_core.limits import downtime_ramp_ms
from migration_core.models import MoveSample
from migration_core.planning.estimate import (
    DEFAULT_SWITCHOVER_MS,
    MIB,
    SEND_BACKLOG_BYTES,
    MoveInputs,
    MoveMode,
    estimate,
    learn_pair,
    mode_of,
    physics,
    sample_from_run,
    to_prediction,
    transferable_from_rss,
)

FIXTURES = Path(__file__).parent / "fixtures"
RUNS_1 = json.loads((FIXTURES / "prediction_runs.json").read_text())
RUNS_2 = json.loads((FIXTURES / "prediction_runs_2.json").read_text())
RUNS_3 = json.loads((FIXTURES / "prediction_runs_3.json").read_text())
RUNS_4 = json.loads((FIXTURES / "prediction_runs_4.json").read_text())
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def inputs_of(run: dict[str, Any]) -> MoveInputs:
    o = run["options"]
    return MoveInputs(
        memory_bytes=run["memory_bytes"],
        dirty_rate_mib_s=run["dirty_rate_mib_s"],
        link_mib_s=run["declared_link_mib_s"],
        transferable_bytes=transferable_from_rss(run["memory_bytes"], run["rss_bytes"]),
        mode=mode_of(
            offline=not run["running"], postcopy=bool(o.get("postcopy")), auto_converge=bool(o.get("auto_converge"))
        ),
        parallel_connections=o.get("parallel_connections"),
        disk_bytes=run["disk_bytes"],
        disk_virtual_bytes=run["disk_virtual_bytes"],
        vm_uuid=run["vm"],
        vm=run["vm"],
        source=run["source"],
        destination=run["destination"],
    )


def within(predicted: float | None, measured: float) -> bool:
    """The issue's downtime target: within +-30 % or +-30 ms, whichever is larger."""
    assert predicted is not None
    return abs(predicted - measured) <= max(0.3 * measured, 30.0)


def runs(scenario: str, data: list[dict[str, Any]] = RUNS_2) -> list[dict[str, Any]]:
    return [r for r in data if r["scenario"] == scenario]


def model_chunk_mib(run: dict[str, Any]) -> float:
    """The RAM the model sends while paused: its downtime minus the switch-over and the backlog's drain."""
    e = estimate(inputs_of(run))
    assert e.model_downtime_ms is not None and e.throughput_mib_s is not None
    return (e.model_downtime_ms - DEFAULT_SWITCHOVER_MS) / 1000 * e.throughput_mib_s - SEND_BACKLOG_BYTES / MIB


def test_busy_guest_pauses_for_the_ramps_first_step_not_the_max() -> None:
    """The controller starts at the ramp's first step (60 ms of 300): QEMU stops mid-pass with about that much
    left. Recorded RAM sent while paused: 9.2-11.7 MiB at 186-192 MiB/s, 5.3-7.3 at 122, 2.8-3.0 at 61."""
    assert downtime_ramp_ms(300)[0] == 60
    for data in (RUNS_2, RUNS_4):
        for scenario in ("busy-200", "busy-128", "busy-64"):
            split = [r for r in runs(scenario, data) if "qemu_downtime_bytes" in r["stats"]]
            recorded = [r["stats"]["qemu_downtime_bytes"] / MIB for r in split]
            budget = 0.060 * statistics.median(r["stats"]["qemu_mbps"] for r in split) / 8.388608  # MiB allowed
            assert max(recorded) <= budget * 1.05, (scenario, recorded, budget)
            # The model: the same regime (tens of ms of data, not the 0.25 s of dirtying the old model sent);
            # one run may stop at a pass boundary with little left (the final run's busy-200 cold: 1.6 MiB).
            model = statistics.median(model_chunk_mib(r) for r in split)
            assert abs(model - statistics.median(recorded)) <= 0.45 * budget, (scenario, model, recorded)
    # A larger max raises the first step, and with it the pause of a guest that converges on the budget.
    busy = inputs_of(runs("busy-128")[0])
    assert (estimate(replace(busy, max_downtime_ms=1000)).downtime_ms or 0) > (estimate(busy).downtime_ms or 0) + 40


def test_idle_guest_pauses_for_what_it_dirtied_plus_the_backlog() -> None:
    """An idle guest ends at the bulk pass's end: 0.6-1.2 MiB of RAM while paused (recorded), far under the budget;
    the slower link pauses longer for the same pages because ~2 MiB of queued data drains first."""
    for scenario in ("idle-200", "idle-100"):
        for run in runs(scenario):
            assert model_chunk_mib(run) < 2.5, (scenario, model_chunk_mib(run))
    fast = estimate(inputs_of(runs("idle-200")[0])).model_downtime_ms
    slow = estimate(inputs_of(runs("idle-32")[0])).model_downtime_ms
    assert fast is not None and slow is not None and slow > 2 * fast


def test_auto_converge_stops_at_a_raised_budget() -> None:
    """27-29 s of stalled passes: the controller raised the max downtime twice; recorded pauses 189-273 ms."""
    for run in runs("busy-autoconverge-32", RUNS_1) + runs("busy-autoconverge-32"):
        e = estimate(inputs_of(run))
        assert e.downtime_ms is not None and 150 <= e.downtime_ms <= 330, e.downtime_ms
        assert e.total_s is not None and 20 <= e.total_s <= 40, e.total_s


def test_cold_downtime_model_on_both_recorded_runs() -> None:
    """Without history the model is within +-30 %/30 ms on most recorded pre-copy runs (the old one: 8 of 22 of
    these cold and warm runs)."""
    live = [r for r in RUNS_1 + RUNS_2 if r["running"] and r["phase"] != "back" and not r["options"].get("postcopy")]
    hits = sum(within(estimate(inputs_of(r)).downtime_ms, r["stats"]["downtime"]) for r in live)
    assert hits >= 0.7 * len(live), (hits, len(live))


def _sample(down: float, *, vm: str = "u1", at: int = 0, model: float = 40.0, link: float = 100.0) -> MoveSample:
    return MoveSample(
        vm,
        "vm42",
        "hostA",
        "hostB",
        "pre-copy",
        T0 + timedelta(minutes=at),
        True,
        0.8,
        model,
        0.8,
        model,
        0.8,
        down,
        memory_bytes_sent=34 * MIB,
        throughput_mib_s=90.0,
        link_mib_s=link,
    )


IDLE_100 = MoveInputs(
    64 * MIB, 4.0, 100.0, transferable_bytes=33 * MIB, vm_uuid="u1", vm="vm42", source="hostA", destination="hostB"
)


def test_one_odd_run_moves_the_warm_downtime_less_than_the_median_would() -> None:
    """Recorded: idle at 100 MiB/s paused 98 and 121 ms, then 63 ms: the VM's median (110 ms) missed. Shrunk
    towards today's model, which weighs as one run, two high runs move the estimate by two thirds of their
    excess, not all of it (the pair's offset, learned from these same runs here, does not count twice)."""
    history = [_sample(98, at=0), _sample(121, at=1)]
    phys = physics(IDLE_100, learn_pair("hostA", "hostB", history))
    assert phys is not None
    warm = estimate(IDLE_100, history)
    assert warm.downtime_ms is not None
    assert warm.downtime_ms == pytest.approx((98 + 121 + phys.downtime_ms) / 3, abs=0.2)
    assert phys.downtime_ms < warm.downtime_ms < statistics.median([98, 121])
    assert warm.downtime_p10_ms is not None and warm.downtime_p90_ms is not None
    assert warm.downtime_p10_ms < warm.downtime_ms < warm.downtime_p90_ms


def test_many_runs_of_the_vm_outweigh_the_model_and_drop_an_outlier() -> None:
    runs_ = [_sample(90 + i % 3, at=i) for i in range(8)] + [_sample(400, at=9)]
    e = estimate(IDLE_100, runs_)
    assert e.downtime_ms is not None and 80 < e.downtime_ms < 95  # the 400 ms run is dropped (3 MADs)
    assert e.downtime_p90_ms is not None and e.downtime_p90_ms < 150


def test_earlier_runs_at_another_link_are_rescaled() -> None:
    """The part of the pause above the switch-over moves at the throughput: runs at 200 MiB/s say less about a
    move at 50 MiB/s than their raw figure."""
    at_200 = [_sample(50, at=i, link=200.0) for i in range(4)]
    slow = estimate(replace(IDLE_100, link_mib_s=50.0), at_200).downtime_ms
    fast = estimate(replace(IDLE_100, link_mib_s=200.0), at_200).downtime_ms
    assert slow is not None and fast is not None and slow > 1.8 * fast


def test_pair_learns_its_switch_over_offset_for_vms_without_history() -> None:
    """Every migration on the pair paused 20 ms more than modelled: a VM never moved gets the model + most of
    that (shrunk towards 0 while the pair has few runs); the offset is never learned from failed runs."""
    other = [_sample(60.0 + i % 2, vm=f"vm{i}", at=i, model=40.0) for i in range(8)]
    pair = learn_pair("hostA", "hostB", other)
    assert pair.downtime_offset_ms == pytest.approx(20.5 * 8 / 10, abs=0.6)
    fresh = replace(IDLE_100, vm_uuid="new", vm="new")
    phys = physics(fresh, pair)
    learned = estimate(fresh, other).downtime_ms
    assert phys is not None and learned is not None
    assert learned == pytest.approx(phys.downtime_ms + pair.downtime_offset_ms, abs=0.2)
    failed = [replace(s, succeeded=False) for s in other]
    assert learn_pair("hostA", "hostB", failed).downtime_offset_ms == 0.0


def test_postcopy_pause_ignores_the_precopy_pair_offset() -> None:
    busy = MoveInputs(256 * MIB, 31.0, 16.0, transferable_bytes=140 * MIB, mode=MoveMode.POSTCOPY)
    busy = replace(busy, vm_uuid="b", vm="busy", source="hostA", destination="hostB")
    other = [_sample(90.0, vm=f"vm{i}", at=i, model=40.0) for i in range(8)]
    e = estimate(busy, other)
    assert e.downtime_ms is not None and e.downtime_ms < 10


def test_warm_downtime_on_the_recorded_runs() -> None:
    """Replaying each recorded benchmark (cold A->B, back, warm A->B per scenario, history in order), the warm
    downtime is within +-30 %/30 ms on all but the runs that were outliers of their own scenario (disky at 64 MiB/s
    paused 182 ms after 108 and 87; `--parallel 4` 89 ms after 41 and 49 with no RAM left to send: QEMU's own
    pause was 75 ms against 35-38). On the loaded machine of the third run, identical moves paused 108, 300 and
    175 ms: three misses there, each after a much longer earlier pause of the same move (busy at 200 MiB/s 120 ms
    predicted after 192 and 84, measured 89; auto-converge 212 after 263 and 205, measured 163). The final run's
    one miss: busy at 128 MiB/s paused 73, 283 (libvirt's hand-over alone took 203 ms of it), then 91 ms."""
    for data, misses_allowed in ((RUNS_1, 2), (RUNS_2, 2), (RUNS_3, 3), (RUNS_4, 1)):
        history: list[MoveSample] = []
        misses = []
        for i, run in enumerate(data):
            inputs = inputs_of(run)
            e = estimate(inputs, [] if run["phase"] == "cold" else history)
            down = run["stats"].get("downtime") if run["running"] else None
            if run["phase"] == "warm" and down is not None and not within(e.downtime_ms, down):
                misses.append((run["scenario"], e.downtime_ms, down))
            elapsed = run["stats"].get("time_elapsed")
            sample = sample_from_run(
                to_prediction(e, inputs),
                vm_uuid=run["vm"],
                vm=run["vm"],
                source=run["source"],
                destination=run["destination"],
                finished_at=T0 + timedelta(minutes=i),
                succeeded=run["outcome"] == "succeeded",
                total_s=float(elapsed) / 1000 if elapsed else float(run["wall_s"]),
                downtime_ms=down,
                stats=run["stats"],
                postcopy=run["postcopy"],
            )
            if sample is not None:
                history.append(sample)
        assert len(misses) <= misses_allowed, misses


def test_without_a_dirty_rate_the_model_does_not_vote() -> None:
    """Recorded (second benchmark): the dirty-rate reading failed before a post-copy move whose earlier runs paused
    6 and 9 ms; a model without the rate cannot tell post-copy's switch, so the VM's own pauses decide."""
    busy = MoveInputs(256 * MIB, None, 16.0, transferable_bytes=132 * MIB, mode=MoveMode.POSTCOPY)
    busy = replace(busy, vm_uuid="b", vm="busy", source="hostA", destination="hostB")
    mine = [replace(_sample(d, vm="b", at=i, link=16.0), family=busy.family) for i, d in enumerate((6.0, 9.0))]
    e = estimate(busy, mine)
    assert e.downtime_ms == pytest.approx(7.5, abs=0.1)
