"""The calibration history in the store (move_samples), on SQLite and PostgreSQL; older databases gain it."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from migration_core.models import MoveSample
from migration_core.store import Store

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _sample(vm_uuid: str, source: str, destination: str, minutes: int, *, ok: bool = True) -> MoveSample:
    return MoveSample(
        vm_uuid=vm_uuid,
        vm=f"vm-{vm_uuid}",
        source=source,
        destination=destination,
        family="post-copy+parallel",
        finished_at=T0 + timedelta(minutes=minutes),
        succeeded=ok,
        model_total_s=12.5,
        model_downtime_ms=None,
        predicted_total_s=13.0,
        predicted_downtime_ms=5.0,
        measured_total_s=14.2,
        measured_downtime_ms=6.0,
        memory_bytes_sent=5 * 2**30,  # beyond 32 bits
        disk_bytes_sent=0,
        throughput_mib_s=15.2,
        passes=2,
        postcopy=True,
        link_mib_s=16.0,
        disk_bytes=3 * 2**30,
        postcopy_switch_s=11.6,
    )


async def test_samples_round_trip_newest_first_by_pair_or_vm(store: Store) -> None:
    a = _sample("u1", "hostA", "hostB", 0)
    b = _sample("u2", "hostA", "hostB", 5, ok=False)
    c = _sample("u1", "hostB", "hostA", 10)
    d = _sample("u3", "hostB", "hostA", 15)
    for s in (a, b, c, d):
        await store.add_move_sample(s)
    assert await store.move_samples(source="hostA", destination="hostB") == [b, a]
    assert await store.move_samples(vm_uuid="u1") == [c, a]
    assert await store.move_samples(vm_uuid="u1", source="hostA", destination="hostB") == [c, b, a]
    assert await store.move_samples() == [d, c, b, a]
    assert await store.move_samples(limit=1) == [d]


async def test_a_database_from_before_gets_the_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = await Store.open(url)
    job = await store.create_job(vm="vm42", destination="hostB", requester="U1")
    await store.close()
    with sqlite3.connect(tmp_path / "old.db") as conn:  # as a database created before issue 12 looks
        conn.execute("DROP TABLE move_samples")
    reopened = await Store.open(url)
    try:
        assert (await reopened.get_job(job.id)).vm == "vm42"
        await reopened.add_move_sample(_sample("u1", "hostA", "hostB", 0), job.id)
        assert len(await reopened.move_samples(vm_uuid="u1")) == 1
    finally:
        await reopened.close()
