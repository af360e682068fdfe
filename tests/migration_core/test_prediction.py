"""The convergence prediction: the iterative pre-copy model, post-copy, auto-converge, unit helpers."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migration_core import units
from migration_core.errors import PreflightError, RequestError
from migration_core.planning import advice, prediction
from migration_core.planning.advice import parallel_connections_for
from migration_core.planning.prediction import (
    AutoConverge,
    predict_postcopy,
    predict_precopy,
)
from migration_core.units import GIB, MIB, bytes_s_to_mib_s, mb_s_to_mib_s, mib_s_to_mb_s, pages_s_to_mib_s


def test_worked_examples_in_docstrings_hold() -> None:
    results = [doctest.testmod(m) for m in (prediction, units, advice)]  # the model, its units, the channels
    assert sum(r.attempted for r in results) >= 10
    assert sum(r.failed for r in results) == 0


@pytest.mark.parametrize(
    ("value", "convert", "expected"),
    [
        (100.0, mb_s_to_mib_s, 95.367),  # domstats --dirtyrate says MB/s
        (1.0, mb_s_to_mib_s, 0.954),
        (16.0, mib_s_to_mb_s, 16.777),
        (8000, pages_s_to_mib_s, 31.25),  # the lab's busy guest: 8000 pages/s of 4 KiB
        (5000, pages_s_to_mib_s, 19.531),  # lab §6.4: "5000 pages/s = 19.5 MiB/s"
        (16 * MIB, bytes_s_to_mib_s, 16.0),  # memory_bps is bytes/s
    ],
)
def test_unit_conversions(value: float, convert: object, expected: float) -> None:
    assert callable(convert)
    assert convert(value) == pytest.approx(expected, abs=1e-3)


def test_pages_with_huge_pages_use_the_page_size() -> None:
    assert pages_s_to_mib_s(10, page_size_bytes=2 * MIB) == 20.0


def test_mb_and_mib_round_trip() -> None:
    assert mib_s_to_mb_s(mb_s_to_mib_s(123.0)) == pytest.approx(123.0)


@pytest.mark.parametrize(
    ("link_mib_s", "channels"),
    [
        (0, 2),  # unknown link: libvirt's default
        (200, 2),  # the lab's veth
        (1192, 2),  # 10 Gbit/s: one channel, but never fewer than 2
        (2384, 2),  # 20 Gbit/s
        (2981, 3),  # 25 Gbit/s
        (4768, 4),  # 40 Gbit/s, as the seed's example uses 4
        (4770, 4),  # 40 Gbit/s configured a little generously
        (11921, 10),  # 100 Gbit/s
        (10_000_000, 255),  # QEMU's multifd-channels is a uint8
    ],
)
def test_parallel_connections_one_per_10_gbit(link_mib_s: float, channels: int) -> None:
    assert parallel_connections_for(link_mib_s) == channels


# (name, memory, dirty MiB/s, link MiB/s, max downtime, working set, converges, passes, verdict starts with)
PRECOPY_CASES = [
    ("idle lab guest, 200 MiB/s veth", 256 * MIB, 7.8, 200.0, 300, None, True, 2, "converges in ~2.3 s"),
    ("idle guest, tight 20 ms downtime", 256 * MIB, 7.8, 200.0, 20, None, True, 3, "converges in ~2.3 s"),
    ("idle guest, nothing dirtied", 1 * GIB, 0.0, 100.0, 300, None, True, 2, "converges in ~11 s"),
    (
        "busy lab guest, 16 MiB/s cap",
        256 * MIB,
        31.2,
        16.0,
        300,
        128 * MIB,
        False,
        30,
        "will not converge: dirty",
    ),
    ("dirty rate equal to the link", 4 * GIB, 100.0, 100.0, 500, None, False, 30, "will not converge: dirty"),
    (
        "dirty rate 99 % of the link",
        4 * GIB,
        99.0,
        100.0,
        300,
        None,
        False,
        30,
        "will not converge within 30",
    ),
    ("slow but converging, 50 % of the link", 4 * GIB, 50.0, 100.0, 300, None, True, 9, "converges in ~83 s"),
    (
        "tiny working set fits even when hot",
        1 * GIB,
        500.0,
        100.0,
        300,
        1 * MIB,
        True,
        2,
        "converges in ~11 s",
    ),
    ("VM smaller than one downtime window", 16 * MIB, 10.0, 200.0, 300, None, True, 1, "converges in ~1.1 s"),
]


@pytest.mark.parametrize(
    ("name", "memory", "dirty", "link", "downtime", "ws", "converges", "passes", "verdict"),
    PRECOPY_CASES,
    ids=[c[0] for c in PRECOPY_CASES],
)
def test_predict_precopy(
    name: str,
    memory: int,
    dirty: float,
    link: float,
    downtime: int,
    ws: int | None,
    converges: bool,
    passes: int,
    verdict: str,
) -> None:
    p = predict_precopy(memory, dirty, link, downtime, working_set_bytes=ws)
    assert p.converges is converges
    assert p.passes == passes
    assert p.verdict.startswith(verdict), p.verdict
    assert p.dirty_rate_mib_s == dirty and p.bandwidth_mib_s == link
    if converges:
        assert p.total_s is not None and p.downtime_ms is not None
        assert p.downtime_ms <= downtime + prediction.PRECOPY_SWITCHOVER_MS
        assert f"({passes} passes)" in p.verdict
    else:
        assert p.total_s is None and p.downtime_ms is None


def test_idle_guest_numbers_follow_the_iterative_model() -> None:
    # Pass 1: 256 MiB at 200 MiB/s = 1.28 s; 7.8 x 1.28 = 10 MiB dirtied; 10 MiB / 200 MiB/s = 50 ms.
    p = predict_precopy(256 * MIB, 7.8, 200.0, 300, setup_s=0.0, switchover_ms=0.0)
    assert p.downtime_ms == pytest.approx(49.9, abs=0.1)
    assert p.total_s == pytest.approx(1.3, abs=0.05)


def test_busy_guest_verdict_names_both_rates_and_the_downtime_it_would_need() -> None:
    p = predict_precopy(256 * MIB, 31.2, 16.0, 300, working_set_bytes=128 * MIB)
    assert p.verdict == (
        "will not converge: dirty rate 31.2 MiB/s >= link 16.0 MiB/s "
        "(each pass leaves ~128 MiB: ~8000 ms of downtime, max 300 ms)"
    )


def test_a_larger_max_downtime_can_make_it_converge() -> None:
    # The busy guest's 128 MiB working set goes in 8 s at 16 MiB/s: a 10 s max downtime converges.
    assert predict_precopy(256 * MIB, 31.2, 16.0, 300, working_set_bytes=128 * MIB).converges is False
    assert predict_precopy(256 * MIB, 31.2, 16.0, 10_000, working_set_bytes=128 * MIB).converges is True


def test_no_dirty_rate_cannot_predict_but_says_how_long_the_first_pass_takes() -> None:
    p = predict_precopy(1 * GIB, None, 100.0, 300)
    assert p.converges is None and p.passes is None
    assert "not measured" in p.verdict and "~11 s" in p.verdict


@pytest.mark.parametrize("link", [0.0, -5.0])
def test_unknown_link_cannot_predict_and_says_where_to_set_it(link: float) -> None:
    p = predict_precopy(1 * GIB, 10.0, link, 300)
    assert p.converges is None
    assert "hosts file" in p.verdict


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"memory_bytes": 0}, PreflightError),
        ({"dirty_rate_mib_s": -1.0}, PreflightError),
        ({"dirty_rate_mib_s": float("nan")}, PreflightError),
        ({"max_downtime_ms": 0}, RequestError),
        ({"max_passes": 1}, RequestError),
    ],
)
def test_bad_input_is_a_clear_error(kwargs: dict[str, float], error: type[Exception]) -> None:
    args: dict[str, float] = {"memory_bytes": GIB, "dirty_rate_mib_s": 10.0, "bandwidth_mib_s": 100.0}
    args["max_downtime_ms"] = 300
    args.update(kwargs)
    with pytest.raises(error) as info:
        predict_precopy(**args)  # type: ignore[arg-type]
    assert info.value.hint  # the operator is told what to do


def test_postcopy_completes_where_precopy_does_not() -> None:
    pre = predict_precopy(256 * MIB, 31.2, 16.0, 300, working_set_bytes=128 * MIB)
    post = predict_postcopy(256 * MIB, 31.2, 16.0, working_set_bytes=128 * MIB)
    assert pre.converges is False
    assert post.converges is True
    # 1 s setup + 256 MiB / 16 + 128 MiB / 16 (the re-dirtied working set pulled after the switch)
    assert post.total_s == pytest.approx(25.0, abs=0.1)
    assert post.downtime_ms is not None and post.downtime_ms < 10  # lab: 3-7 ms
    assert post.verdict.startswith("post-copy completes in ~25 s")


def test_postcopy_uses_its_own_bandwidth_after_the_switch() -> None:
    slow = predict_postcopy(256 * MIB, 31.2, 16.0, working_set_bytes=128 * MIB)
    fast = predict_postcopy(256 * MIB, 31.2, 16.0, working_set_bytes=128 * MIB, postcopy_bandwidth_mib_s=128.0)
    assert fast.total_s is not None and slow.total_s is not None
    assert fast.total_s == pytest.approx(slow.total_s - 8.0 + 1.0, abs=0.1)


def test_postcopy_without_dirty_rate_assumes_the_worst() -> None:
    p = predict_postcopy(1 * GIB, None, 100.0)
    assert p.converges is True
    assert p.total_s == pytest.approx(1 + 10.24 + 10.24, abs=0.1)  # all of RAM, twice
    assert "assumed" in p.verdict


def test_auto_converge_rescues_the_busy_guest_and_a_bigger_step_is_faster() -> None:
    gentle = predict_precopy(256 * MIB, 31.2, 16.0, 300, working_set_bytes=128 * MIB, auto_converge=AutoConverge())
    strong = predict_precopy(
        256 * MIB, 31.2, 16.0, 300, working_set_bytes=128 * MIB, auto_converge=AutoConverge(50, 25)
    )
    assert gentle.converges is True and strong.converges is True
    assert strong.total_s is not None and gentle.total_s is not None
    assert strong.total_s < gentle.total_s
    assert strong.passes is not None and gentle.passes is not None and strong.passes < gentle.passes
    assert "vCPUs throttled up to 99 %" in strong.verdict


def test_auto_converge_does_not_throttle_a_guest_that_converges_anyway() -> None:
    p = predict_precopy(256 * MIB, 7.8, 200.0, 300, auto_converge=AutoConverge())
    assert p.verdict == predict_precopy(256 * MIB, 7.8, 200.0, 300).verdict.replace(
        "converges", "auto-converge: converges", 1
    )


def test_auto_converge_capped_low_can_still_fail() -> None:
    p = predict_precopy(4 * GIB, 300.0, 100.0, 300, auto_converge=AutoConverge(10, 5, max_pct=50))
    assert p.converges is False
    assert "even with auto-converge" in p.verdict


@given(
    memory_mib=st.integers(min_value=64, max_value=64 * 1024),
    dirty=st.floats(min_value=0.0, max_value=2000.0),
    link=st.floats(min_value=1.0, max_value=5000.0),
    extra_link=st.floats(min_value=0.0, max_value=5000.0),
    downtime=st.integers(min_value=10, max_value=5000),
)
def test_more_bandwidth_never_turns_convergence_into_divergence(
    memory_mib: int, dirty: float, link: float, extra_link: float, downtime: int
) -> None:
    slow = predict_precopy(memory_mib * MIB, dirty, link, downtime)
    fast = predict_precopy(memory_mib * MIB, dirty, link + extra_link, downtime)
    if slow.converges:
        assert fast.converges is True
        assert fast.total_s is not None and slow.total_s is not None
        assert fast.total_s <= slow.total_s + 0.1
