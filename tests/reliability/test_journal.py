"""The journal's contract with a store that stops answering and comes back (a stand-in store: the real one is
stopped and started in test_faults.py::test_database_stopped_mid_migration_loses_nothing)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from migration_core.errors import StoreError
from migration_core.events import DecisionMade, Notice, NoticeKind, ProgressUpdated, RecordingSink
from migration_core.models import ControlAction, Decision, Phase, ProgressSample
from migration_core.store import EventKind, Journal

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FlakyStore:
    """Writes succeed while `up` is set; otherwise they hang for a moment and fail like an unreachable server."""

    def __init__(self) -> None:
        self.up = asyncio.Event()
        self.up.set()
        self.written: list[tuple[str, Any]] = []

    async def _write(self, what: str, item: Any) -> None:
        if not self.up.is_set():
            await asyncio.sleep(0.05)
            raise StoreError("database at postgresql://db/x is unreachable: connection refused", "check it")
        self.written.append((what, item))

    async def add_progress(self, sample: ProgressSample) -> None:
        await self._write("progress", sample.percent)

    async def record_event(
        self, job_id: int | None, kind: EventKind, actor: str | None, detail: str = "", data: Any = None
    ) -> None:
        await self._write(kind.value, detail)


def sample(percent: float) -> ProgressSample:
    return ProgressSample(
        job_id=7,
        at=T0,
        phase=Phase.PRECOPY,
        percent=percent,
        elapsed_s=1.0,
        data_processed_bytes=1,
        data_remaining_bytes=1,
        data_total_bytes=2,
        throughput_mib_s=1.0,
        dirty_rate_mib_s=None,
        iteration=1,
        expected_downtime_ms=None,
        eta_s=None,
        stalled=False,
    )


async def test_an_outage_delays_the_record_but_loses_nothing_and_is_reported() -> None:
    store, sink = FlakyStore(), RecordingSink()
    journal = Journal(store, sink, report_after_s=0.01, retry_s=0.01)  # type: ignore[arg-type]
    await journal.record_progress(sample(10))
    await journal.emit(Notice(7, NoticeKind.STALLED, "no progress for 15 s", T0))
    assert await journal.flush(5)
    store.up.clear()  # the database goes away
    for pct in (20, 30, 40):
        await journal.record_progress(sample(pct))  # returns at once: the migration never waits
    await journal.emit(DecisionMade(7, Decision(ControlAction.RAISE_DOWNTIME, "raise to 600 ms", 600), T0))
    await asyncio.sleep(0.2)
    assert journal.pending > 0 and len(store.written) == 2
    told = [e.text for e in sink.events if isinstance(e, Notice)]
    assert any(t.startswith("the job database does not answer") for t in told)
    store.up.set()  # it is back
    assert await journal.flush(5)
    progress = [item for what, item in store.written if what == "progress"]
    assert progress == [10, 20, 30, 40]  # all of it, in order
    details = [item for what, item in store.written if what != "progress"]
    assert details[0] == "no progress for 15 s" and "raise to 600 ms" in details
    down = [i for i, d in enumerate(details) if d.startswith("the job database does not answer")]
    back = [i for i, d in enumerate(details) if d.startswith("the job database answers again")]
    assert len(down) == len(back) == 1 and down[0] < back[0]  # the gap is in the record, once
    assert [type(e) for e in sink.events].count(ProgressUpdated) == 0  # progress goes to the recorder only
    await journal.aclose()
