"""The core's event sink for Slack: card edits, the throttled progress message, notices and the summary.

One worker task per job does that job's Slack I/O in order, so the progress message is posted before it is
edited and the summary comes last. Progress is coalesced: only the newest sample is kept, and the progress
message is edited at most once per `min_interval_s`, and every edit of every job also passes one shared
EditGate (chat.update is Tier 3 across the whole workspace, handlers/slack_rate.py), so a burst of samples,
many concurrent jobs or a 429 never queue stale edits: each edit renders the newest state when its turn
comes. A progress edit waiting for its turn never holds up the thread: a state change, a notice or the summary
that arrives meanwhile goes out first. The progress message gets its final edit once, when the job ends
(the final state at 100 % or where it stopped, without controls), without waiting for a turn, and is never
edited after that; the sample that says "done" is shown by that final edit, not by one of its own. Notices,
decision replies and the summary are never dropped for a transient error: they are retried with back-off. A
job's summary is posted once even if the core announces it twice. `emit` never raises and never waits for
Slack.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from handlers.blocks.card import card_message
from handlers.blocks.ir import SLACK, Message
from handlers.blocks.progress import notice_message, progress_message, state_change_message
from handlers.blocks.summary import summary_message
from handlers.slack_io import is_transient, post_message, update_message
from handlers.slack_rate import EDITS_PER_MIN, EditGate, edit_client, is_rate_limited, retry_after_s
from migration_core.dispatch.queue import queue_notice_reason
from migration_core.errors import MigrateBotError
from migration_core.events import (
    DecisionMade,
    DrainChanged,
    DrainMoveEnded,
    DrainRollup,
    JobEvent,
    Notice,
    NoticeKind,
    ProgressUpdated,
    StateChanged,
    SummaryReady,
)
from migration_core.models import Decision, Job, JobState, Phase, ProgressSample
from migration_core.service_api import MigrationServiceAPI

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0
SUMMARIES_REMEMBERED = 10_000


@dataclass
class _Op:
    """One ordered piece of Slack work for a job."""

    kind: str  # "state" | "notice" | "summary" | "progress_start" | "progress_final"
    event: JobEvent | None = None
    attempts: int = 0


class Wakeable(Protocol):
    """A message's worker state: woken by events, busy while it has work, finished when it may go."""

    wake: asyncio.Event
    finished: bool

    def busy(self) -> bool: ...


async def run_worker(
    st: Wakeable, work_once: Callable[[], Awaitable[None]], forget: Callable[[], object], what: str
) -> None:
    """One message's worker (a job's progress, a drain's roll-up): work whenever woken, again while busy, and
    forget the state once finished. A bug in one worker is logged and never stops the others'."""
    try:
        while True:
            await st.wake.wait()
            st.wake.clear()
            await work_once()
            if st.busy():
                st.wake.set()
            elif st.finished:
                forget()
                return
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("slack message worker for %s crashed", what)


@dataclass
class _JobState:
    job_id: int
    ops: deque[_Op] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    job: Job | None = None
    sample: ProgressSample | None = None
    decision: Decision | None = None
    progress_ts: str | None = None
    progress_dirty: bool = False
    card_dirty: bool = False
    last_flush: float | None = None
    backoff_s: float = 0.0
    finished: bool = False
    queue_reason: str | None = None  # the last "waiting: ..." reason posted in the thread (without the place)

    def busy(self) -> bool:
        return bool(self.ops) or self.card_dirty or (self.progress_dirty and self.progress_ts is not None)


class SlackProgressSink:
    """EventSink that mirrors job events into the job's Slack thread (see the module docstring)."""

    def __init__(
        self,
        client: Any,
        service: MigrationServiceAPI,
        *,
        ttl_s: float = 1800.0,
        min_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_permanent_attempts: int = 2,
        edits_per_min: float = EDITS_PER_MIN,
    ) -> None:
        self._client = client
        self._edit_client = edit_client(client)  # 429s come back to us: we re-render instead of resending
        self._gate = EditGate(edits_per_min, clock=clock, sleep=sleep)  # chat.update budget, all jobs together
        self._service = service
        self._ttl_s = ttl_s
        self._interval_s = min_interval_s
        self._clock = clock
        self._sleep = sleep
        self._now = now
        self._max_permanent = max_permanent_attempts
        self._jobs: dict[int, _JobState] = {}
        self._summarized: dict[int, None] = {}  # job ids whose summary is posted (insertion-ordered, bounded)
        self._final_shown: dict[int, None] = {}  # job ids whose progress message got its final edit (bounded)

    @property
    def edit_gate(self) -> EditGate:
        """The workspace's chat.update budget; the drain sink shares it."""
        return self._gate

    # ---- EventSink -------------------------------------------------------------------------------------
    async def emit(self, event: JobEvent) -> None:
        try:
            self._record(event)
        except Exception:  # never into the core
            log.exception("slack sink could not record %s", type(event).__name__)

    def _record(self, event: JobEvent) -> None:
        if isinstance(event, DrainChanged | DrainRollup | DrainMoveEnded):
            return  # drains have their own card and thread
        if isinstance(event, ProgressUpdated | DecisionMade) and self._job_id_of(event) in self._final_shown:
            return  # the progress message shows the end already: a late sample or decision changes nothing
        if isinstance(event, ProgressUpdated):
            st = self._state(event.sample.job_id)
            st.sample = event.sample
            # "done" (100 %) is shown by the final edit when the job ends, so the message says 100 % once.
            st.progress_dirty = event.sample.phase is not Phase.DONE
        elif isinstance(event, DecisionMade):
            st = self._state(event.job_id)
            st.decision = event.decision
            st.progress_dirty = True
        elif isinstance(event, StateChanged):
            st = self._state(event.job_id)
            if event.new is JobState.RUNNING:
                st.ops.append(_Op("progress_start", event))
            st.ops.append(_Op("state", event))
            if event.new.terminal:
                st.ops.append(_Op("progress_final", event))
            st.card_dirty = True
        elif isinstance(event, Notice):
            st = self._state(event.job_id)
            if event.kind is NoticeKind.QUEUED:
                # A long queue moves every waiting job's place often: the card shows the current place, and
                # the thread gets a line only when the reason for waiting changes (not one per step forward).
                st.card_dirty = True
                reason = queue_notice_reason(event.text)
                if reason == st.queue_reason:
                    self._kick(event.job_id)
                    return
                st.queue_reason = reason
            st.ops.append(_Op("notice", event))
        elif isinstance(event, SummaryReady):
            if event.summary.job_id in self._summarized:
                return  # the core may announce one summary more than once; the thread gets it once
            self._summarized[event.summary.job_id] = None
            while len(self._summarized) > SUMMARIES_REMEMBERED:
                del self._summarized[next(iter(self._summarized))]
            self._state(event.summary.job_id).ops.append(_Op("summary", event))
        self._kick(self._job_id_of(event))

    async def refresh_card(self, job_id: int) -> None:
        """Re-render the job's card from the store (after an approval click, a restart...)."""
        self._state(job_id).card_dirty = True
        self._kick(job_id)

    def pending(self) -> bool:
        """True while some job still has Slack work queued (tests and shutdown use it)."""
        return any(st.busy() for st in self._jobs.values())

    async def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait (real time) until every queued piece of work is done; False if it took longer."""
        deadline = time.monotonic() + timeout_s
        while self.pending() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return not self.pending()

    async def aclose(self) -> None:
        for st in self._jobs.values():
            if st.task is not None:
                st.task.cancel()
        self._jobs.clear()

    # ---- workers ---------------------------------------------------------------------------------------
    @staticmethod
    def _job_id_of(event: JobEvent) -> int:
        if isinstance(event, ProgressUpdated):
            return event.sample.job_id
        if isinstance(event, SummaryReady):
            return event.summary.job_id
        assert not isinstance(event, DrainChanged | DrainRollup | DrainMoveEnded)
        return event.job_id

    def _state(self, job_id: int) -> _JobState:
        st = self._jobs.get(job_id)
        if st is None:
            st = self._jobs[job_id] = _JobState(job_id)
        return st

    def _kick(self, job_id: int) -> None:
        st = self._state(job_id)
        st.wake.set()
        if st.task is None or st.task.done():
            st.task = asyncio.create_task(self._worker(st), name=f"slack-progress-{job_id}")

    async def _worker(self, st: _JobState) -> None:
        await run_worker(st, lambda: self._work_once(st), lambda: self._jobs.pop(st.job_id, None), f"job {st.job_id}")

    async def _work_once(self, st: _JobState) -> None:
        while st.ops:
            op = st.ops[0]
            if not await self._attempt(st, functools.partial(self._run_op, st, op), op):
                return
            st.ops.popleft()
        if st.card_dirty:
            st.card_dirty = False
            if not await self._attempt(st, functools.partial(self._edit_card, st), None):
                st.card_dirty = True
                return
        if st.progress_dirty and st.progress_ts is not None:
            if not await self._wait_turn(st):
                return  # something for the thread came in meanwhile: it goes first, the edit after it
            st.progress_dirty = False
            if not await self._attempt(st, functools.partial(self._edit_progress, st), None):
                st.progress_dirty = True

    async def _attempt(self, st: _JobState, call: Callable[[], Awaitable[None]], op: _Op | None) -> bool:
        """Run one Slack call. True = done (or given up on a permanent error); False = retry later."""
        try:
            await call()
            st.backoff_s = 0.0
            return True
        except Exception as err:
            transient = is_transient(err)
            if is_rate_limited(err):
                self._gate.penalize(retry_after_s(err))  # every job's edits wait for the Retry-After
                if op is None:  # an edit: the gate paces the retry, which renders the newest state
                    log.warning("slack: job %s edit rate-limited; retrying after Retry-After", st.job_id)
                    return False
            if op is not None:
                op.attempts += 1
            if not transient and (op is None or op.attempts >= self._max_permanent):
                log.error("slack: giving up on job %s %s: %s", st.job_id, op.kind if op else "edit", err)
                return True
            st.backoff_s = min(MAX_BACKOFF_S, st.backoff_s * 2 if st.backoff_s else self._interval_s)
            log.warning("slack: job %s call failed (%s); retrying in %.0f s", st.job_id, err, st.backoff_s)
            await self._sleep(st.backoff_s)
            return False

    async def _wait_turn(self, st: _JobState) -> bool:
        """Sleep until this job's progress message may be edited again (coalescing happens meanwhile); False
        as soon as other work for the job (a thread reply, a card edit) arrives, which must not wait behind it."""
        while st.last_flush is not None:
            wait_s = st.last_flush + self._interval_s - self._clock()
            if wait_s <= 0:
                break
            if st.ops or st.card_dirty:
                return False
            st.wake.clear()
            sleeper = asyncio.ensure_future(self._sleep(wait_s))
            woken = asyncio.ensure_future(st.wake.wait())
            _done, pending = await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        return not (st.ops or st.card_dirty)  # due, but what came in meanwhile goes first (it may end the job)

    async def _fresh_job(self, st: _JobState) -> Job | None:
        try:
            st.job = await self._service.get_job(st.job_id)
        except MigrateBotError as err:
            log.warning("slack: job %s cannot be read: %s", st.job_id, err)
        if st.job is not None and st.job.chat.progress and st.progress_ts is None:
            st.progress_ts = st.job.chat.progress  # after a restart: keep editing the same message
        return st.job

    # ---- the Slack calls -------------------------------------------------------------------------------
    async def _post(self, job: Job, msg: Message, *, broadcast: bool = False) -> str | None:
        if not (job.chat.channel and job.chat.thread):
            return None
        return await post_message(self._client, job.chat.channel, msg, thread_ts=job.chat.thread, broadcast=broadcast)

    async def _update(self, channel: str, ts: str, msg: Message) -> None:
        await update_message(self._edit_client, channel, ts, msg)

    async def _run_op(self, st: _JobState, op: _Op) -> None:
        job = await self._fresh_job(st)
        if job is None or not (job.chat.channel and job.chat.thread):
            # Not a Slack job (console, CLI), its card is not posted yet, or a move of a drain: those have no
            # card of their own (the drain's thread tells their story, handlers/drain_progress.py) unless a
            # re-check asked for a new approval of that move alone. Nothing to mirror; an ended job's worker
            # may go (a 40-VM drain must not leave 40 idle workers behind).
            st.finished = st.finished or bool(job is not None and job.state.terminal)
            return
        ev = op.event
        if op.kind == "progress_start":
            if st.progress_ts is None:
                msg = progress_message(job, st.sample, st.decision, SLACK, now=self._now())
                st.progress_ts = await self._post(job, msg)
                st.last_flush = self._clock()
                st.progress_dirty = False
                if st.progress_ts:
                    try:
                        await self._service.set_chat_refs(job.id, progress=st.progress_ts)
                    except MigrateBotError as err:  # the message exists; only a restart would lose track of it
                        log.error("job %s: could not store the progress message ts: %s", job.id, err)
        elif op.kind == "progress_final":
            if st.progress_ts is not None and st.job_id not in self._final_shown:
                # The last edit: no per-message turn to wait for (the workspace's edit gate still paces it).
                await self._edit_progress(st, priority=True)
                self._final_shown[st.job_id] = None
                while len(self._final_shown) > SUMMARIES_REMEMBERED:
                    del self._final_shown[next(iter(self._final_shown))]
            st.progress_dirty = False
            st.finished = job.state.terminal
        elif op.kind == "state" and isinstance(ev, StateChanged):
            reply = state_change_message(ev, SLACK)
            if reply is not None:
                await self._post(job, reply)
        elif op.kind == "notice" and isinstance(ev, Notice):
            await self._post(job, notice_message(ev, SLACK))
        elif op.kind == "summary" and isinstance(ev, SummaryReady):
            await self._post(job, summary_message(ev.summary, job, SLACK), broadcast=True)
            st.finished = True

    async def _edit_card(self, st: _JobState) -> None:
        job = await self._fresh_job(st)
        if job is None or not (job.chat.channel and job.chat.thread):
            return
        queue = None
        if job.state is JobState.QUEUED:
            queue = next((q for q in await self._service.queue() if q.job_id == job.id), None)
        await self._gate.wait(priority=True)  # a state change: not behind other jobs' progress edits
        msg = card_message(job, SLACK, ttl_s=self._ttl_s, queue=queue, now=self._now())
        await self._update(job.chat.channel, job.chat.thread, msg)

    async def _edit_progress(self, st: _JobState, *, priority: bool = False) -> None:
        job = st.job or await self._fresh_job(st)
        if job is None or st.progress_ts is None or not job.chat.channel:
            return
        if not priority and (job.state is JobState.VERIFYING or job.state.terminal):
            return  # the migration is over: the final edit shows how it ended, once
        await self._gate.wait(priority=priority)  # the workspace's edit budget; render after waiting for it
        if not priority and st.sample is not None and st.sample.phase is Phase.DONE:
            return  # it ended while this edit waited for the gate: the final edit shows 100 %, once
        now = st.sample.at if st.sample is not None and not job.state.terminal else self._now()
        msg = progress_message(job, st.sample, st.decision, SLACK, now=now)
        st.last_flush = self._clock()
        await self._update(job.chat.channel, st.progress_ts, msg)
