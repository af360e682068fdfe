"""Job stats -> typed readings -> progress samples: units, phases, monotonic %, throughput, ETA, stall."""

from __future__ import annotations

import doctest
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migration_core.errors import HypervisorError
from migration_core.execution import progress
from migration_core.execution.convergence import ConvergenceController, Observation
from migration_core.execution.progress import (
    AnnouncedEta,
    JobStatsReading,
    JobType,
    ProgressTracker,
    detect_phase,
    parse_job_stats,
    raw_percent,
    reading_from_job_stats,
)
from migration_core.hypervisor import jobstats
from migration_core.hypervisor.types import JobStats
from migration_core.models import ControlAction, ConvergencePolicy, Phase

from .guest_model import GuestModel, MiB, at, drive
from .recorded_stats import IDLE_P2P, STORAGE_COPY

BUSY = {
    "ram_mib": 256,
    "working_set_mib": 128,
    "dirty_mib_s": 31.25,
    "link_mib_s": 16,
    "max_downtime_ms": 300,
}
SLOW = {"ram_mib": 256, "working_set_mib": 256, "dirty_mib_s": 14, "link_mib_s": 16, "max_downtime_ms": 300}


def replay(seq: list[tuple[float, dict[str, Any]]], tracker: ProgressTracker | None = None) -> list[Any]:
    tracker = tracker or ProgressTracker(42)
    samples = []
    for t, raw in seq:
        reading = parse_job_stats(raw)
        if reading is not None:
            samples.append(tracker.update(reading, at(t)))
    return samples


def test_worked_examples_in_docstrings_hold() -> None:
    for module in (jobstats, progress):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


# ----- parsing and units --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field", "expected"),
    [
        ({"time_elapsed": 1500}, "elapsed_s", 1.5),  # ms -> s
        ({"setup_time": 120}, "setup_s", 0.12),
        ({"memory_bps": 16 * MiB}, "memory_bytes_s", 16 * MiB),  # bytes/s, not MiB/s
        ({"memory_dirty_rate": 8000}, "dirty_rate_mib_s", 31.25),  # pages/s x 4096 (default page size)
        ({"memory_dirty_rate": 4000, "memory_page_size": 4096}, "dirty_rate_mib_s", 15.625),
        ({"memory_dirty_rate": 10, "memory_page_size": 2 * MiB}, "dirty_rate_mib_s", 20.0),  # huge pages
        ({"memory_dirty_rate": 100, "memory_page_size": 0}, "dirty_rate_mib_s", 100 * 4096 / MiB),
        ({}, "dirty_rate_mib_s", None),
        ({"downtime": 45}, "downtime_ms", 45),
        ({"memory_postcopy_requests": 141}, "postcopy_requests", 141),
        ({"auto_converge_throttle": 75}, "auto_converge_throttle_pct", 75),
        ({"memory_iteration": 6}, "memory_iteration", 6),
        ({"data_total": 5, "data_processed": 7, "data_remaining": 2}, "processed_bytes", 7),
        ({"disk_processed": 3, "memory_processed": 4}, "processed_bytes", 7),  # data_* missing: sum the parts
        ({"memory_constant": 10, "memory_normal": 2, "data_processed": 9000}, "handled_bytes", 12 * 4096),
        ({"errmsg": "broken pipe", "success": False}, "errmsg", "broken pipe"),
    ],
)
def test_parse_units(raw: dict[str, Any], field: str, expected: object) -> None:
    reading = parse_job_stats({"type": 2, **raw})
    assert reading is not None
    assert getattr(reading, field) == expected


def test_type_none_is_ignored() -> None:
    assert parse_job_stats({"type": 0, "time_elapsed": 5}) is None
    assert parse_job_stats({}) is None


def test_event_parameters_without_a_type_can_be_read_as_completed() -> None:
    reading = parse_job_stats({"downtime": 35, "success": True}, default_type=JobType.COMPLETED)
    assert reading is not None and reading.job_type is JobType.COMPLETED and reading.downtime_ms == 35


def test_reading_from_the_adapters_job_stats() -> None:
    reading = reading_from_job_stats(JobStats(JobType.UNBOUNDED, {"memory_dirty_rate": 8000, "time_elapsed": 10}))
    assert reading is not None and reading.dirty_rate_mib_s == 31.25 and reading.elapsed_s == 0.01
    assert reading_from_job_stats(JobStats(JobType.NONE, {})) is None


@pytest.mark.parametrize(
    "raw",
    [
        {"type": 2, "data_total": "lots"},
        {"type": 2, "data_remaining": -1},
        {"type": 2, "memory_bps": True},
        {"type": 2, "time_elapsed": float("nan")},
        {"type": 9},
        {"type": "two"},
    ],
)
def test_nonsense_stats_are_a_clear_hypervisor_error(raw: dict[str, Any]) -> None:
    with pytest.raises(HypervisorError) as info:
        parse_job_stats(raw)
    assert "virsh domjobinfo" in info.value.hint


# ----- phases -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "postcopy", "phase"),
    [
        ({"type": 2}, False, Phase.SETUP),
        ({"type": 2, "disk_total": 64, "disk_processed": 10, "disk_remaining": 54}, False, Phase.STORAGE),
        (
            {
                "type": 2,
                "memory_iteration": 1,
                "memory_processed": 10,
                "data_processed": 10,
                "data_remaining": 9,
            },
            False,
            Phase.PRECOPY,
        ),
        (
            {
                "type": 2,
                "memory_iteration": 1,
                "memory_processed": 10,
                "data_processed": 10,
                "data_remaining": 9,
            },
            True,
            Phase.POSTCOPY,
        ),
        (
            {
                "type": 2,
                "memory_iteration": 4,
                "memory_processed": 10,
                "data_processed": 10,
                "data_remaining": 0,
            },
            False,
            Phase.COMPLETING,
        ),
        ({"type": 3, "memory_iteration": 4, "data_processed": 10}, False, Phase.COMPLETING),
    ],
)
def test_detect_phase(raw: dict[str, Any], postcopy: bool, phase: Phase) -> None:
    reading = parse_job_stats(raw)
    assert reading is not None
    assert detect_phase(reading, postcopy) is phase


# ----- percent ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "redirtied", "expected"),
    [
        ({}, 0, 0.0),  # nothing yet
        (
            {
                "data_total_bytes": 256,
                "data_processed_bytes": 384,
                "data_remaining_bytes": 128,
                "memory_iteration": 3,
            },
            0,
            75.0,
        ),  # data_total < processed + remaining (re-sent pages)
        (
            {
                "data_total_bytes": 256,
                "data_processed_bytes": 248,
                "data_remaining_bytes": 8,
                "memory_iteration": 1,
            },
            124,
            65.3,
        ),  # the pass's re-dirtied pages still have to go
        (
            {
                "data_total_bytes": 320,
                "disk_total_bytes": 64,
                "data_processed_bytes": 32,
                "disk_processed_bytes": 32,
                "data_remaining_bytes": 32,
            },
            0,
            10.0,
        ),  # storage copy: the memory still to come counts
        (
            {
                "data_total_bytes": 100,
                "data_processed_bytes": 10,
                "data_remaining_bytes": 20,
                "memory_iteration": 1,
                "memory_constant_pages": 10,
                "page_size_bytes": 8,
            },
            0,
            80.0,
        ),  # zero pages count as done
    ],
)
def test_raw_percent(fields: dict[str, int], redirtied: int, expected: float) -> None:
    assert raw_percent(JobStatsReading(JobType.UNBOUNDED, **fields), redirtied) == expected


def test_idle_guest_recorded_run() -> None:
    tracker = ProgressTracker(42)
    samples = replay(IDLE_P2P, tracker)
    assert [s.phase for s in samples] == [Phase.SETUP, Phase.PRECOPY, Phase.PRECOPY, Phase.COMPLETING]
    # 33072 pages of 4 KiB handled (mostly zero pages) against 127 MiB still to send.
    assert [s.percent for s in samples] == [0.0, 50.4, 96.5, 99.0]
    assert samples[1].dirty_rate_mib_s == pytest.approx(3.906, abs=1e-3)  # 1000 pages/s, not 1000 MiB/s
    assert samples[1].throughput_mib_s == 200.0
    assert samples[1].eta_s == pytest.approx(127 / (200 - 3.906), abs=0.05)
    assert samples[1].expected_downtime_ms == 635
    assert samples[0].eta_s is None  # nothing to estimate from in setup
    assert [s.iteration for s in samples] == [0, 1, 2, 3]
    assert not any(s.stalled for s in samples)
    done = tracker.finish(at(1.1), parse_job_stats(IDLE_P2P[-1][1]))
    assert (done.phase, done.percent, done.expected_downtime_ms, done.eta_s) == (Phase.DONE, 100.0, 35, 0.0)
    assert done.data_processed_bytes == 40265318 and done.elapsed_s == pytest.approx(0.797)
    assert tracker.last is done


def test_storage_copy_recorded_run() -> None:
    samples = replay(STORAGE_COPY)
    assert [s.phase for s in samples] == [Phase.STORAGE] * 3 + [Phase.PRECOPY] * 3
    assert [s.percent for s in samples] == [5.0, 15.0, 20.0, 34.2, 67.1, 93.8]
    assert samples[0].throughput_mib_s == 100.0  # disk_bps counts while disks are copied
    # Memory starting to move makes the remaining data jump: a new phase, not a stall.
    assert samples[3].stalled_for_s == 0.0
    assert all(s.stalled_for_s <= 1.0 for s in samples)  # healthy: progress at least every other poll


def test_percent_is_monotonic_and_capped_while_the_busy_guest_oscillates() -> None:
    run = drive(GuestModel(**BUSY), until_s=120)
    percents = [s.sample.percent for s in run.steps]
    remaining = [s.sample.data_remaining_bytes for s in run.steps]
    assert any(b > a for a, b in itertools.pairwise(remaining))  # the sawtooth went up ...
    assert all(b >= a for a, b in itertools.pairwise(percents))  # ... the percentage never did
    assert max(percents) <= 99.0
    # A migration that never converges must not look nearly done after its first pass.
    assert next(s.sample.percent for s in run.steps if s.now_s == 60.0) < 90.0


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=64 * MiB),  # bytes sent since the last poll
            st.integers(min_value=0, max_value=512 * MiB),  # remaining
            st.booleans(),  # new pass
            st.booleans(),  # post-copy
            st.integers(min_value=0, max_value=100_000),  # dirty pages/s
        ),
        min_size=1,
        max_size=40,
    )
)
def test_percent_never_goes_backwards_and_stays_below_100_until_done(
    polls: list[tuple[int, int, bool, bool, int]],
) -> None:
    tracker, processed, iteration, last = ProgressTracker(1), 0, 0, 0.0
    for i, (sent, remaining, new_pass, postcopy, dirty) in enumerate(polls):
        processed += sent
        iteration += int(new_pass)
        reading = parse_job_stats(
            {
                "type": 2,
                "time_elapsed": 500 * (i + 1),
                "data_total": 256 * MiB,
                "data_processed": processed,
                "data_remaining": remaining,
                "memory_processed": processed,
                "memory_remaining": remaining,
                "memory_total": 256 * MiB,
                "memory_iteration": iteration,
                "memory_dirty_rate": dirty,
                "memory_bps": 16 * MiB,
            }
        )
        assert reading is not None
        sample = tracker.update(reading, at(0.5 * (i + 1)), postcopy_active=postcopy)
        assert sample is not None
        assert last <= sample.percent <= 99.0
        last = sample.percent
    assert tracker.finish(at(100)).percent == 100.0


# ----- stall, throughput, ETA ---------------------------------------------------------------------------


def test_stalled_signal_on_the_busy_guest() -> None:
    model = GuestModel(**BUSY)
    run = drive(model, until_s=90, stall_after_s=15.0)
    flagged = [s for s in run.steps if s.sample.stalled]
    first = flagged[0]
    end_of_pass_2 = model.sync_times[1]  # the last pass that started lower than the one before
    assert end_of_pass_2 - 1.5 + 15 <= first.now_s <= end_of_pass_2 + 15 + 0.5
    assert all(s.sample.stalled for s in run.steps if s.now_s >= first.now_s)  # it stays stalled
    assert all(s.sample.eta_s is None for s in flagged)  # no ETA for a migration that is not moving
    assert first.sample.stalled_for_s >= 15.0
    assert run.steps[-1].sample.stalled_for_s == pytest.approx(90 - (first.now_s - first.sample.stalled_for_s))


def test_no_stall_signal_while_slowly_converging() -> None:
    run = drive(GuestModel(**SLOW), stall_after_s=15.0)
    assert run.outcome == "completed"
    assert not any(s.sample.stalled for s in run.steps)
    assert all(s.sample.eta_s is not None for s in run.steps[1:])


def test_postcopy_phase_and_eta_after_the_switch() -> None:
    ctl = ConvergenceController(ConvergencePolicy(allow_postcopy=True, postcopy_after_s=30))
    run = drive(GuestModel(**BUSY), controller=ctl)
    switched = run.decisions(ControlAction.SWITCH_POSTCOPY)[0].now_s
    post = [s for s in run.steps if s.now_s > switched and s.sample.phase is Phase.POSTCOPY]
    assert post and run.outcome == "completed"
    requests = [s.sample.postcopy_requests for s in post]
    assert requests == sorted(requests) and requests[-1] > 0
    sample = post[len(post) // 2].sample
    # Nothing is re-dirtied any more: remaining / throughput, no dirty-rate correction.
    assert sample.eta_s == pytest.approx(sample.data_remaining_bytes / (16 * MiB), abs=0.1)
    assert run.steps[-1].sample.phase is Phase.DONE and run.steps[-1].sample.percent == 100.0


def test_throughput_is_an_ewma_of_libvirts_bps() -> None:
    tracker = ProgressTracker(1, ewma_alpha=0.4)
    out = []
    for i, bps in enumerate([10, 20, 20, 0]):
        reading = parse_job_stats(
            {
                "type": 2,
                "memory_iteration": 1,
                "memory_processed": 1,
                "data_processed": 1,
                "data_remaining": 100,
                "memory_bps": bps * MiB,
                "time_elapsed": 1000 * i,
            }
        )
        assert reading is not None
        sample = tracker.update(reading, at(i))
        assert sample is not None
        out.append(round(sample.throughput_mib_s, 2))
    assert out == [10.0, 14.0, 16.4, 16.4]  # a 0 reading (nothing reported) keeps the estimate


def test_throughput_from_the_bytes_sent_while_libvirt_reports_no_rate_yet() -> None:
    """Issue 13 §5: the first readings of a migration have memory_bps 0 while data already moves; they showed
    "0.0 MiB/s". Until libvirt reports a rate, the bytes sent between readings over the time between them count."""
    tracker = ProgressTracker(1)
    out = []
    for elapsed_ms, processed_mib, bps_mib in [(100, 0, 0), (600, 30, 0), (1100, 80, 0), (1600, 130, 90)]:
        reading = parse_job_stats(
            {
                "type": 2,
                "memory_iteration": 1,
                "memory_processed": processed_mib * MiB,
                "data_processed": processed_mib * MiB,
                "data_remaining": 200 * MiB,
                "memory_bps": bps_mib * MiB,
                "time_elapsed": elapsed_ms,
            }
        )
        assert reading is not None
        sample = tracker.update(reading, at(elapsed_ms / 1000))
        assert sample is not None
        out.append(round(sample.throughput_mib_s, 1))
    assert out == [0.0, 60.0, 100.0, 90.0]  # nothing moved yet; 30 MiB in 0.5 s; 50 MiB in 0.5 s; libvirt's own


def test_none_samples_do_not_change_anything() -> None:
    tracker = ProgressTracker(1)
    replay(IDLE_P2P[:3], tracker)
    before = tracker.last
    assert tracker.update(JobStatsReading(JobType.NONE), at(5)) is None
    assert tracker.last is before


def test_failed_reading_keeps_the_last_phase_and_elapsed_falls_back_to_the_clock() -> None:
    tracker = ProgressTracker(1)
    first = tracker.update(
        JobStatsReading(
            JobType.UNBOUNDED,
            memory_iteration=1,
            memory_processed_bytes=5,
            data_processed_bytes=5,
            data_remaining_bytes=50,
        ),
        at(10),
    )
    failed = tracker.update(JobStatsReading(JobType.FAILED), at(12.5))
    assert first is not None and failed is not None
    assert first.phase is Phase.PRECOPY and failed.phase is Phase.PRECOPY
    assert failed.elapsed_s == 2.5  # no time_elapsed key: measured from the first reading
    assert failed.percent == first.percent


def test_finish_without_completed_stats_uses_the_last_sample() -> None:
    tracker = ProgressTracker(3)
    replay(IDLE_P2P[:4], tracker)
    done = tracker.finish(at(2))
    assert done.percent == 100.0 and done.phase is Phase.DONE and done.data_remaining_bytes == 0
    assert done.data_processed_bytes == 39 * MiB  # what was sent + what was left for the switch-over
    assert ProgressTracker(4).finish(at(0)).percent == 100.0


def test_observation_for_the_controller_keeps_the_units() -> None:
    reading = parse_job_stats(IDLE_P2P[2][1])
    assert reading is not None
    o = Observation(123.0, Phase.PRECOPY, reading)
    assert (o.now_s, o.reading.elapsed_s, o.reading.memory_iteration) == (123.0, 0.39, 1)
    assert o.reading.remaining_bytes == 127 * MiB and o.reading.transfer_bytes_s == 200 * MiB
    assert o.reading.dirty_rate_pages_s == 1000 and o.reading.page_size_bytes == 4096 and o.reading.downtime_ms == 635


# ----- the ETA seeded by the card's estimate ----------------------------------------------------------


def test_eta_starts_from_the_announced_estimate_and_moves_to_the_live_one() -> None:
    announced = AnnouncedEta(1.0, 0.8, 1.3)
    samples = replay(IDLE_P2P, ProgressTracker(42, announced=announced))
    # In setup the live ETA has nothing to go on; the card's figure has (1.0 s total - 0.14 s elapsed).
    assert samples[0].eta_s == pytest.approx(0.9, abs=0.05)
    live = 127 / (200 - 3.906)
    # 0.39 s into an announced 1 s: 39 % the live ETA, 61 % the announced remainder.
    w, told = samples[1].elapsed_s, 1.0 - samples[1].elapsed_s
    assert samples[1].eta_s == pytest.approx(w * live + (1 - w) * told, abs=0.05)
    assert not any(s.eta_note for s in samples)


def test_eta_improves_as_stats_come_in() -> None:
    model = GuestModel(**SLOW)
    plain = drive(GuestModel(**SLOW), stall_after_s=15.0)
    end = plain.steps[-1].now_s
    # A card that announced 30 % too much: the error of the implied finish shrinks as the run goes on.
    run = drive(model, stall_after_s=15.0, announced=AnnouncedEta(end * 1.3, end * 1.1, end * 1.6))
    errors = [abs(s.sample.elapsed_s + s.sample.eta_s - end) for s in run.steps if s.sample.eta_s is not None]
    quarter = len(errors) // 4
    assert errors[-1] < errors[0] and sum(errors[-quarter:]) < sum(errors[:quarter])
    # ... and it is closer than the live ETA alone, which this slowly converging guest fools.
    alone = [abs(s.sample.elapsed_s + s.sample.eta_s - end) for s in plain.steps if s.sample.eta_s is not None]
    assert sum(errors) < sum(alone)
    assert not any(s.sample.eta_note for s in run.steps)  # it only moved earlier: nothing to explain


def test_eta_moving_later_than_the_announced_range_says_why() -> None:
    # The busy guest on 16 MiB/s never converges; the card announced 20 s (16-25 s).
    run = drive(GuestModel(**BUSY), until_s=60, announced=AnnouncedEta(20.0, 16.0, 25.0))
    finishes = [(s.sample, s.sample.elapsed_s + s.sample.eta_s) for s in run.steps if s.sample.eta_s is not None]
    late = [sample for sample, finish in finishes if finish > 25.0]
    assert late and all(sample.eta_note and "later than announced" in sample.eta_note for sample in late)
    assert any("dirties" in (sample.eta_note or "") or "stalled" in (sample.eta_note or "") for sample in late)
    for (_, before), (sample, after) in itertools.pairwise(finishes):
        if after - before > 9.0:  # more than the range's width
            assert sample.eta_note, (before, after)
    stalled = [s.sample for s in run.steps if s.sample.stalled]
    assert stalled and all(s.eta_s is None and s.eta_note and "stalled" in s.eta_note for s in stalled)
