"""The fleet's migration model (pure): what it must do for the executor's tests to mean anything."""

from __future__ import annotations

import pytest

from migration_core.hypervisor.fleet.migration import MigrationModel, Phase
from migration_core.units import MIB


def model(**kw: object) -> MigrationModel:
    base: dict[str, object] = dict(
        memory_bytes=4096 * MIB,
        transferable_bytes=1024 * MIB,
        working_set_bytes=1024 * MIB,
        dirty_bytes_s=0.0,
        link_bytes_s=100 * MIB,
        max_downtime_ms=300,
    )
    return MigrationModel(**{**base, **kw})  # type: ignore[arg-type]


def run(m: MigrationModel, seconds: float, dt: float = 0.1) -> float:
    t = 0.0
    while t < seconds and not m.done:
        m.advance(dt)
        t += dt
    return t


def test_zero_pages_are_skipped_and_an_idle_guest_needs_one_pass() -> None:
    m = model()
    took = run(m, 60)
    assert m.done and m.iteration == 2  # pass 1, then the final copy
    assert 10 < took < 11.5  # 1 GiB at 100 MiB/s (+ setup), not the guest's 4 GiB
    stats = m.stats(completed=True)
    assert stats["memory_constant"] == 3072 * MIB // 4096  # the zero pages, counted not sent
    assert stats["memory_processed"] == 1024 * MIB and stats["success"] is True


def test_dirtying_faster_than_the_link_never_converges_without_help() -> None:
    m = model(dirty_bytes_s=200 * MIB, working_set_bytes=512 * MIB)
    run(m, 300)
    assert not m.done and m.phase is Phase.PRECOPY and m.iteration > 5
    assert m.stats()["memory_dirty_rate"] == 200 * MIB // 4096


@pytest.mark.parametrize(("downtime_ms", "converges"), [(300, False), (5000, False), (15_000, True)])
def test_max_downtime_is_honoured(downtime_ms: int, converges: bool) -> None:
    # Dirtying at the link's speed: only a max downtime that lets the whole rest go in one stop converges.
    m = model(dirty_bytes_s=100 * MIB, working_set_bytes=512 * MIB, max_downtime_ms=downtime_ms)
    run(m, 120)
    assert m.done is converges
    if converges:
        assert m.downtime_ms <= downtime_ms + 10


def test_bandwidth_cap_slows_the_copy() -> None:
    fast, capped = model(), model(max_speed_bytes_s=25 * MIB)
    assert run(fast, 200) * 3 < run(capped, 200)
    assert capped.done


def test_auto_converge_throttles_until_it_converges() -> None:
    m = model(dirty_bytes_s=150 * MIB, working_set_bytes=512 * MIB, auto_converge=True)
    run(m, 600)
    assert m.done and m.throttle_pct >= 20


def test_postcopy_switch_finishes_what_is_left_with_a_tiny_downtime() -> None:
    m = model(dirty_bytes_s=200 * MIB, working_set_bytes=512 * MIB, postcopy_allowed=True)
    run(m, 30)
    m.start_postcopy()
    run(m, 60)
    assert m.done and m.downtime_ms < 50 and m.postcopy_requests > 0


def test_a_cut_link_sends_nothing_and_counts_the_stall() -> None:
    m = model()
    run(m, 2)
    sent = m.sent_memory
    for _ in range(30):
        m.advance(0.1, link_up=False)
    assert m.sent_memory == sent and m.stalled_s == pytest.approx(3.0)
    assert m.stats()["memory_bps"] == 0
