"""The calibrated estimate (planning/estimate.py): physics per mode, calibration from history, guards.

The measured figures come from lab runs recorded by bench/bench_prediction.py (fixtures/prediction_runs.json:
pre-move inputs and completed job stats, one cold A->B, one B->A and one warm A->B run per scenario).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from migration_core.models import (
    CheckResult,
    CheckStatus,
    ConvergencePolicy,
    MigrationOptions,
    MigrationRequest,
    MoveSample,
)
from migration_core.planning.estimate import (
    MoveInputs,
    MoveMode,
    estimate,
    learn_pair,
    mode_of,
    sample_from_run,
    to_prediction,
    transferable_from_rss,
)
from migration_core.planning.planner import postcopy_when_predicted
from migration_core.units import MIB

RUNS = json.loads((Path(__file__).parent / "fixtures" / "prediction_runs.json").read_text())
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


def measured_total(run: dict[str, Any]) -> float:
    elapsed = run["stats"].get("time_elapsed")
    return float(elapsed) / 1000 if elapsed else float(run["wall_s"])


def sample_of(run: dict[str, Any], n: int, history: list[MoveSample]) -> MoveSample:
    inputs = inputs_of(run)
    est = estimate(inputs, history)
    sample = sample_from_run(
        to_prediction(est, inputs),
        vm_uuid=run["vm"],
        vm=run["vm"],
        source=run["source"],
        destination=run["destination"],
        finished_at=T0 + timedelta(minutes=n),
        succeeded=run["outcome"] == "succeeded",
        total_s=measured_total(run),
        downtime_ms=run["stats"].get("downtime"),
        stats=run["stats"],
        postcopy=run["postcopy"],
    )
    assert sample is not None
    return sample


def error(predicted: float | None, measured: float) -> float:
    """The issue's error: |p - m| / m, with 0.3 s absolute tolerance for moves shorter than 2 s."""
    assert predicted is not None
    if measured < 2.0 and abs(predicted - measured) <= 0.3:
        return 0.0
    return abs(predicted - measured) / measured


SCENARIOS = sorted({r["scenario"] for r in RUNS})


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_second_prediction_of_a_move_is_closer_or_already_close(scenario: str) -> None:
    cold, back, warm = (r for r in RUNS if r["scenario"] == scenario)
    first = estimate(inputs_of(cold))
    history = [sample_of(cold, 0, [])]
    history.append(sample_of(back, 1, history))
    second = estimate(inputs_of(warm), history, now=T0 + timedelta(hours=1))
    assert first.basis == "model only: no history"
    assert second.basis.startswith("from ") and second.samples >= 1
    assert second.total_s != first.total_s
    cold_err = error(first.total_s, measured_total(warm))
    warm_err = error(second.total_s, measured_total(warm))
    assert warm_err < cold_err or warm_err <= 0.1, (first.total_s, second.total_s, measured_total(warm))


def test_cold_model_beats_the_old_one_on_recorded_runs() -> None:
    """The old model sent all RAM at the declared link (about 2x too slow); the new one is within 30 % median."""
    errors = sorted(error(estimate(inputs_of(r)).total_s, measured_total(r)) for r in RUNS if r["running"])
    assert errors[len(errors) // 2] <= 0.3, errors


def test_postcopy_is_predicted_not_refused() -> None:
    busy = MoveInputs(256 * MIB, 31.0, 16.0, transferable_bytes=140 * MIB, mode=MoveMode.POSTCOPY)
    pre = estimate(replace(busy, mode=MoveMode.PRECOPY))
    post = estimate(busy)
    assert pre.converges is False and "will not converge" in pre.verdict
    assert post.converges is True and "will not converge" not in post.verdict
    assert post.postcopy_switch_s is not None and post.total_s is not None
    assert post.total_s > post.postcopy_switch_s
    assert post.downtime_ms is not None and post.downtime_ms < 20
    assert f"switches to post-copy after {post.postcopy_switch_s:g} s" in post.verdict


def test_postcopy_that_converges_in_precopy_needs_no_switch() -> None:
    idle = estimate(MoveInputs(64 * MIB, 2.0, 200.0, transferable_bytes=33 * MIB, mode=MoveMode.POSTCOPY))
    assert idle.converges is True and idle.postcopy_switch_s is None


def test_auto_converge_converges_where_precopy_does_not() -> None:
    busy = MoveInputs(256 * MIB, 31.0, 32.0, transferable_bytes=140 * MIB)
    assert estimate(busy).converges is False
    ac = estimate(replace(busy, mode=MoveMode.AUTO_CONVERGE))
    assert ac.converges is True and ac.total_s is not None and ac.total_s > 140 / 32


def test_copy_storage_costs_the_allocation_not_the_virtual_size() -> None:
    base = MoveInputs(64 * MIB, 2.0, 100.0, transferable_bytes=33 * MIB)
    small = estimate(replace(base, disk_bytes=48 * MIB, disk_virtual_bytes=1024 * MIB))
    big = estimate(replace(base, disk_bytes=480 * MIB, disk_virtual_bytes=1024 * MIB))
    assert small.total_s is not None and big.total_s is not None and estimate(base).total_s is not None
    assert small.total_s < big.total_s
    # 432 MiB more allocation at ~85 MiB/s of throughput: ~5 s more, not 10x.
    assert 4.0 < big.total_s - small.total_s < 6.0


def test_offline_has_no_downtime_and_parallel_costs_setup() -> None:
    off = estimate(MoveInputs(64 * MIB, None, None, mode=MoveMode.OFFLINE))
    assert off.converges is True and off.downtime_ms is None and off.total_s is not None
    one = estimate(MoveInputs(64 * MIB, 2.0, 200.0, transferable_bytes=33 * MIB))
    four = estimate(MoveInputs(64 * MIB, 2.0, 200.0, transferable_bytes=33 * MIB, parallel_connections=4))
    assert four.total_s is not None and one.total_s is not None and four.total_s > one.total_s


def test_unknown_link_is_said_not_guessed() -> None:
    e = estimate(MoveInputs(64 * MIB, 2.0, None))
    assert e.converges is None and e.total_s is None and "link_mib_s" in e.verdict


def _sample(total: float, *, at: datetime = T0, ok: bool = True, vm: str = "u1", down: float = 40.0) -> MoveSample:
    return MoveSample(
        vm,
        "vm42",
        "hostA",
        "hostB",
        "pre-copy",
        at,
        ok,
        0.5,
        37.0,
        0.5,
        37.0,
        total,
        down,
        memory_bytes_sent=34 * MIB,
        throughput_mib_s=170.0,
        link_mib_s=200.0,
    )


def test_guards_failed_old_and_outlier_samples_are_not_learned() -> None:
    inputs = MoveInputs(
        64 * MIB, 2.0, 200.0, transferable_bytes=33 * MIB, vm_uuid="u1", vm="vm42", source="hostA", destination="hostB"
    )
    now = T0 + timedelta(days=1)
    good = [_sample(0.6, at=T0 + timedelta(minutes=i)) for i in range(4)]
    base = estimate(inputs, good, now=now)
    assert base.total_s == pytest.approx(0.6, abs=0.01) and base.samples == 4
    failed = estimate(inputs, [*good, _sample(30.0, ok=False, at=T0 + timedelta(hours=1))], now=now)
    old = estimate(inputs, [*good, _sample(30.0, at=T0 - timedelta(days=60))], now=now)
    odd = estimate(inputs, [*good, _sample(30.0, at=T0 + timedelta(hours=1))], now=now)
    assert failed.total_s == old.total_s == odd.total_s == base.total_s
    assert odd.samples == 4  # the 30 s run was dropped as an outlier


def test_basis_says_where_the_figures_come_from() -> None:
    inputs = MoveInputs(
        64 * MIB, 2.0, 200.0, transferable_bytes=33 * MIB, vm_uuid="u2", vm="other", source="hostA", destination="hostB"
    )
    pair_only = estimate(inputs, [_sample(0.6, at=T0 + timedelta(minutes=i)) for i in range(3)])
    assert pair_only.basis == "model with throughput and fixed cost from 3 earlier migrations hostA→hostB"
    mine = estimate(replace(inputs, vm_uuid="u1", vm="vm42"), [_sample(0.6)])
    assert mine.basis == "from 1 earlier migration of vm42 hostA→hostB"
    assert "from 1 earlier migration of vm42 hostA→hostB" in mine.verdict


def test_pair_learning_uses_throughput_and_fixed_cost() -> None:
    pair = learn_pair("hostA", "hostB", [_sample(0.6, at=T0 + timedelta(minutes=i)) for i in range(3)])
    assert pair.samples == 3 and pair.efficiency == pytest.approx(0.85)
    # Three runs against the defaults' weight of two: (3 x 0.36 + 2 x 0.3) / 5.
    assert pair.fixed_s == pytest.approx((3 * (0.6 - 34 / 170 - 0.04) + 2 * 0.3) / 5, abs=0.01)
    assert learn_pair("hostB", "hostA", [_sample(0.6)]).samples == 0


def test_sample_needs_model_figures() -> None:
    from migration_core.models import Prediction

    legacy = Prediction(True, 1.0, 30.0, 2.0, 200.0, 2, "converges in ~1 s")
    kw: dict[str, Any] = dict(
        vm_uuid="u",
        vm="v",
        source="A",
        destination="B",
        finished_at=T0,
        succeeded=True,
        total_s=1.0,
        downtime_ms=30.0,
        stats={},
        postcopy=False,
    )
    assert sample_from_run(legacy, **kw) is None
    est = estimate(MoveInputs(64 * MIB, 2.0, 200.0))
    assert sample_from_run(to_prediction(est, MoveInputs(64 * MIB, 2.0, 200.0)), **kw) is not None


def test_planner_switches_postcopy_when_the_estimate_says() -> None:
    from migration_core.facts.vm import VmFacts

    inputs = MoveInputs(256 * MIB, 31.0, 16.0, transferable_bytes=140 * MIB, mode=MoveMode.POSTCOPY)
    prediction = to_prediction(estimate(inputs), inputs)
    vm = VmFacts("busy", "u", memory_bytes=256 * MIB)
    policy = postcopy_when_predicted(ConvergencePolicy(allow_postcopy=True), prediction, vm)
    assert policy.postcopy_after_s == prediction.postcopy_switch_s is not None
    _ = (CheckResult, CheckStatus, MigrationOptions, MigrationRequest)
