"""The record of running migrations, written without ever making a migration wait for the database.

The executor reports every progress sample, controller decision and notice while it watches a migration. If it
awaited the database for each (the store retries an unreachable server for up to 30 s), a database outage would
freeze the convergence controller in the middle of a migration; if it gave up, the record would have holes.
`Journal` sits between the two: it is the executor's event sink and progress recorder, passes every event on to
the front end at once (Slack and the console do not need the database), and appends decisions and notices to the
event log and samples to the progress table through one background writer, in order. When the database does not
answer, the writer waits and retries until it does: an outage delays the record, it never loses it (only the
process dying with writes still queued does; docs/reliability.md). The outage is reported to the affected jobs'
threads (after `report_after_s`) and so is its end, with how long it lasted and how many writes waited; the end
is appended to the event log too, so the record says there was a gap in time, not in content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from migration_core.errors import MigrateBotError, StoreError
from migration_core.events import DecisionMade, EventSink, JobEvent, Notice, NoticeKind
from migration_core.models import ProgressSample
from migration_core.store.base import utc_now
from migration_core.store.records import RecordOps
from migration_core.store.types import EventKind

log = logging.getLogger("migration_core.store")


@dataclass(frozen=True)
class _Entry:
    job_id: int
    what: str  # for the log: "progress", "decision", "notice"
    write: Callable[[], Awaitable[object]]


class Journal:
    """`Journal(store, sink)`: give it to the executor as `sink=` and `record_progress=journal.record_progress`;
    `await journal.flush(timeout_s)` waits for the queued writes (service shutdown, tests)."""

    def __init__(
        self,
        store: RecordOps,
        sink: EventSink,
        *,
        report_after_s: float = 3.0,
        retry_s: float = 1.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.sink = sink
        self.report_after_s = report_after_s
        self.retry_s = retry_s
        self.clock = clock
        self._queue: asyncio.Queue[_Entry] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._down_since: float | None = None  # monotonic start of the current outage
        self._down_notice: dict[int, Notice] = {}  # what each job's thread was told (recorded once it is back)
        self._told: set[int] = set()  # jobs whose thread heard about the current outage

    # ----- what the executor calls -------------------------------------------------------------------------

    async def emit(self, event: JobEvent) -> None:
        """The front end hears it now; decisions and notices also go to the event log (in the background)."""
        try:
            await self.sink.emit(event)
        except Exception:  # a broken front end must not break a migration, nor the record
            log.exception("event sink failed on %s", type(event).__name__)
        store = self.store
        if isinstance(event, DecisionMade):
            d = event.decision
            data = {"action": d.action.value, "downtime_ms": d.downtime_ms}
            self._put(
                _Entry(
                    event.job_id,
                    "decision",
                    lambda: store.record_event(event.job_id, EventKind.DECISION, "controller", d.reason, data),
                )
            )
        elif isinstance(event, Notice):
            data = {"kind": event.kind.value, "at": event.at.isoformat()}
            self._put(
                _Entry(
                    event.job_id,
                    "notice",
                    lambda: store.record_event(event.job_id, EventKind.NOTICE, None, event.text, data),
                )
            )

    async def record_progress(self, sample: ProgressSample) -> None:
        """Queue one progress sample (never waits for the database)."""
        store = self.store
        self._put(_Entry(sample.job_id, "progress", lambda: store.add_progress(sample)))

    async def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued write is done (True) or `timeout_s` passed (False)."""
        if self._queue is None:
            return True
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
            return True
        except TimeoutError:
            log.warning("%d record writes still waiting for the database", self._queue.qsize())
            return False

    async def aclose(self, timeout_s: float = 10.0) -> None:
        await self.flush(timeout_s)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
            self._queue = None

    @property
    def pending(self) -> int:
        return 0 if self._queue is None else self._queue.qsize()

    # ----- the writer --------------------------------------------------------------------------------------

    def _put(self, entry: _Entry) -> None:
        if self._queue is None or self._writer is None or self._writer.done():
            self._queue = self._queue or asyncio.Queue()
            self._writer = asyncio.get_running_loop().create_task(self._write_all(), name="journal")
        self._queue.put_nowait(entry)

    async def _write_all(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            entry = await queue.get()
            try:
                await self._write(entry)
            finally:
                queue.task_done()

    async def _write(self, entry: _Entry) -> None:
        while True:
            task = asyncio.ensure_future(entry.write())
            done, _ = await asyncio.wait({task}, timeout=self.report_after_s)
            if not done:  # the store is still retrying: the database is not answering
                await self._outage(entry.job_id, f"no answer for {self.report_after_s:g} s")
            try:
                await task
            except StoreError as err:
                await self._outage(entry.job_id, err.message)
                await asyncio.sleep(self.retry_s)
                continue
            except MigrateBotError as err:  # e.g. the job does not exist: retrying cannot help
                log.error("job %s: dropping a %s record that cannot be written: %s", entry.job_id, entry.what, err)
            except Exception:
                log.exception("job %s: writing a %s record failed", entry.job_id, entry.what)
            if self._down_since is not None:
                await self._back()  # a write went through: the database is back
            return

    async def _outage(self, job_id: int, why: str) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("the job database does not answer (%s); keeping the record in memory", why)
        if job_id not in self._told:
            self._told.add(job_id)
            text = (
                f"the job database does not answer ({why}): the migration goes on; its record is kept and "
                "written as soon as the database is back"
            )
            notice = Notice(job_id, NoticeKind.FAILURE, text, self.clock())
            self._down_notice[job_id] = notice
            await self._tell(notice)

    async def _back(self) -> None:
        assert self._down_since is not None
        took_s = time.monotonic() - self._down_since
        text = (
            f"the job database answers again after {took_s:.0f} s; the record is caught up "
            f"({self.pending} more write(s) were waiting behind)"
        )
        log.warning("%s", text)
        told, self._told = sorted(self._told), set()
        self._down_since = None
        for job_id in told:
            await self._tell(Notice(job_id, NoticeKind.INFO, text, self.clock()))
            down = self._down_notice.pop(job_id, None)
            with contextlib.suppress(MigrateBotError):  # the record shows the outage too: when, how long
                if down is not None:
                    data = {"kind": down.kind.value, "at": down.at.isoformat()}
                    await self.store.record_event(job_id, EventKind.NOTICE, None, down.text, data)
                await self.store.record_event(job_id, EventKind.NOTICE, None, text, {"outage_s": round(took_s, 1)})

    async def _tell(self, notice: Notice) -> None:
        try:
            await self.sink.emit(notice)
        except Exception:
            log.exception("event sink failed on a database notice")
