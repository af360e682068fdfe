"""The core's drain events in Slack: the drain's card, ONE roll-up message edited in place, a line per VM, the summary.

A drain's moves are ordinary jobs, but their cards and progress messages are NOT posted (40 cards for a 40-VM
drain would bury the channel): handlers/progress.py skips every job with a `drain_id`, and this sink folds them
into the drain's thread instead. One worker task per drain does that drain's Slack I/O in order:

- every DrainChanged edits the card (approvals, state) and, except for the request itself and the end, says
  what happened in the thread ("approved by …", the cancel report: which moves never start, which were
  aborted, which finish in post-copy);
- the first DrainChanged to running posts the roll-up message in the thread and stores its ts with
  `set_drain_refs(progress=…)`, so a restarted bot edits the same message; every DrainRollup (the core sends
  one every `drain_rollup_s`, 5 s) edits it in place, at most once per `min_interval_s` and through the
  workspace-wide EditGate shared with the job sink (handlers/slack_rate.py: chat.update is Tier 3);
- every DrainMoveEnded posts one line (the VM, where it went, how long, its downtime, or why it was parked);
- the end edits the roll-up one last time and posts the summary with reply_broadcast, once;
- a move whose re-check before its start found different facts waits for a new approval of that move alone
  (the drain waits for it): its own job card is posted in the channel, with the job's buttons, and the drain's
  thread says so. From then on that job is an ordinary Slack job (card edits, progress, summary in its thread).

A transient Slack error (429, 5xx, network) is retried with back-off; a 429 pauses every edit for its
Retry-After. `emit` never raises and never waits for Slack.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from slack_sdk.web.async_client import AsyncWebClient

from handlers.blocks.card import card_message
from handlers.blocks.drain_card import (
    DRAIN_ICON,
    drain_card_message,
    drain_move_message,
    drain_rollup_message,
    drain_summary_message,
)
from handlers.blocks.ir import SLACK, Message, Text
from handlers.progress import run_worker
from handlers.slack_io import is_transient, post_message, update_message
from handlers.slack_rate import EditGate, edit_client, is_rate_limited, retry_after_s
from migration_core.drains import Drain, DrainState, DrainStatus, MoveStatus
from migration_core.errors import MigrateBotError
from migration_core.events import DrainChanged, DrainMoveEnded, DrainRollup, JobEvent
from migration_core.models import JobState
from migration_core.service_api import MigrationServiceAPI

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0
FINISHED_REMEMBERED = 1000


@dataclass
class _Op:
    kind: str  # "changed" | "move" | "reapprove"
    event: DrainChanged | DrainMoveEnded | DrainRollup
    attempts: int = 0
    job_id: int = 0  # "reapprove": the move's job


@dataclass
class _DrainState:
    drain_id: int
    ops: deque[_Op] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    status: DrainStatus | None = None  # the newest status the core sent (the roll-up renders it)
    rollup_ts: str | None = None
    rollup_dirty: bool = False
    card_dirty: bool = False
    last_edit: float | None = None
    backoff_s: float = 0.0
    finished: bool = False
    asked: set[int] = field(default_factory=set)  # move jobs whose own card was posted for a new approval

    def busy(self) -> bool:
        return bool(self.ops) or self.card_dirty or (self.rollup_dirty and self.rollup_ts is not None)


def needs_new_approval(m: MoveStatus) -> bool:
    """The move's job waits for an approval of a plan that is not the drain's (its re-check found different
    facts), and it has no card of its own yet."""
    job = m.job
    return (
        job is not None
        and job.state is JobState.AWAITING_APPROVAL
        and job.plan is not None
        and job.plan.hash != m.planned.plan.hash
        and not job.chat.thread
    )


class SlackDrainSink:
    """EventSink for drain events (every other event is ignored here; see the module docstring)."""

    def __init__(
        self,
        client: AsyncWebClient,
        service: MigrationServiceAPI,
        *,
        gate: EditGate | None = None,
        ttl_s: float = 1800.0,
        min_interval_s: float = 2.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_permanent_attempts: int = 2,
    ) -> None:
        self._client = client
        self._edit_client = edit_client(client)
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._gate = gate or EditGate(clock=self._clock, sleep=sleep)
        self._service = service
        self._ttl_s = ttl_s
        self._interval_s = min_interval_s
        self._sleep = sleep
        self._now = now
        self._max_permanent = max_permanent_attempts
        self._drains: dict[int, _DrainState] = {}
        self._summarized: dict[int, None] = {}  # drains whose summary is posted (bounded, oldest out)

    # ---- EventSink -------------------------------------------------------------------------------------
    async def emit(self, event: JobEvent) -> None:
        try:
            self._record(event)
        except Exception:  # never into the core
            log.exception("slack drain sink could not record %s", type(event).__name__)

    def _record(self, event: JobEvent) -> None:
        if not isinstance(event, DrainChanged | DrainRollup | DrainMoveEnded):
            return  # job events: handlers/progress.py
        st = self._state(event.status.drain.id)
        if st.finished and isinstance(event, DrainRollup | DrainMoveEnded):
            return  # a late roll-up after the end changes nothing
        st.status = event.status
        if isinstance(event, DrainChanged):
            st.ops.append(_Op("changed", event))
            st.card_dirty = True
        elif isinstance(event, DrainMoveEnded):
            st.ops.append(_Op("move", event))
            st.rollup_dirty = True
        else:
            st.rollup_dirty = True
        for m in event.status.moves:
            if m.job is not None and m.job.id not in st.asked and needs_new_approval(m):
                st.asked.add(m.job.id)
                st.ops.append(_Op("reapprove", event, job_id=m.job.id))
        self._kick(st)

    async def refresh_card(self, drain_id: int) -> None:
        """Re-render the drain's card from the store (after a click, a restart...)."""
        st = self._state(drain_id)
        st.card_dirty = True
        self._kick(st)

    def pending(self) -> bool:
        return any(st.busy() for st in self._drains.values())

    async def aclose(self) -> None:
        for st in self._drains.values():
            if st.task is not None:
                st.task.cancel()
        self._drains.clear()

    # ---- workers ---------------------------------------------------------------------------------------
    def _state(self, drain_id: int) -> _DrainState:
        st = self._drains.get(drain_id)
        if st is None:
            st = self._drains[drain_id] = _DrainState(drain_id)
            st.finished = drain_id in self._summarized
        return st

    def _kick(self, st: _DrainState) -> None:
        st.wake.set()
        if st.task is None or st.task.done():
            st.task = asyncio.create_task(self._worker(st), name=f"slack-drain-{st.drain_id}")

    async def _worker(self, st: _DrainState) -> None:
        await run_worker(
            st, lambda: self._work_once(st), lambda: self._drains.pop(st.drain_id, None), f"D{st.drain_id}"
        )

    async def _work_once(self, st: _DrainState) -> None:
        while st.ops:
            op = st.ops[0]
            if not await self._attempt(st, op, self._run_op):
                return
            st.ops.popleft()
        if st.card_dirty:
            st.card_dirty = False
            if not await self._attempt(st, None, self._edit_card):
                st.card_dirty = True
                return
        if st.rollup_dirty and st.rollup_ts is not None and not st.finished:
            due = st.last_edit is None or self._clock() - st.last_edit >= self._interval_s
            st.rollup_dirty = False
            if due and not await self._attempt(st, None, self._edit_rollup):
                st.rollup_dirty = True
            # not due: the next roll-up (every few seconds) or the final edit shows the newest state

    async def _attempt(
        self, st: _DrainState, op: _Op | None, call: Callable[[_DrainState, _Op | None], Awaitable[None]]
    ) -> bool:
        """One Slack step. True = done (or given up on a permanent error); False = retry later."""
        try:
            await call(st, op)
            st.backoff_s = 0.0
            return True
        except Exception as err:
            if is_rate_limited(err):
                self._gate.penalize(retry_after_s(err))
                if op is None:
                    return False  # an edit: the gate paces the retry, which renders the newest state
            if op is not None:
                op.attempts += 1
            if not is_transient(err) and (op is None or op.attempts >= self._max_permanent):
                log.error("slack: giving up on D%s %s: %s", st.drain_id, op.kind if op else "edit", err)
                return True
            st.backoff_s = min(MAX_BACKOFF_S, st.backoff_s * 2 if st.backoff_s else self._interval_s)
            log.warning("slack: D%s call failed (%s); retrying in %.0f s", st.drain_id, err, st.backoff_s)
            await self._sleep(st.backoff_s)
            return False

    async def _drain(self, st: _DrainState) -> Drain | None:
        try:
            drain = await self._service.get_drain(st.drain_id)
        except MigrateBotError as err:
            log.warning("slack: D%s cannot be read: %s", st.drain_id, err)
            return None
        if st.rollup_ts is None and drain.chat.progress:
            st.rollup_ts = drain.chat.progress  # after a restart: keep editing the same message
        return drain if drain.chat.channel and drain.chat.thread else None

    # ---- the Slack calls -------------------------------------------------------------------------------
    async def _reply(self, drain: Drain, msg: Message, *, broadcast: bool = False) -> str:
        assert drain.chat.channel and drain.chat.thread
        return await post_message(
            self._client, drain.chat.channel, msg, thread_ts=drain.chat.thread, broadcast=broadcast
        )

    async def _run_op(self, st: _DrainState, op: _Op | None) -> None:
        assert op is not None
        drain = await self._drain(st)
        if drain is None:
            return  # not a Slack drain (console, CLI), or its card is not posted yet
        ev = op.event
        if op.kind == "reapprove":
            await self._ask_again(drain, op.job_id)
            return
        if isinstance(ev, DrainRollup):
            return
        if isinstance(ev, DrainMoveEnded):
            await self._reply(drain, drain_move_message(ev.move, SLACK))
            return
        new = ev.status.drain.state
        if new in (DrainState.RUNNING, DrainState.CANCELLING) and st.rollup_ts is None:
            st.rollup_ts = await self._reply(drain, drain_rollup_message(ev.status, SLACK))
            st.last_edit = self._clock()
            try:
                await self._service.set_drain_refs(drain.id, progress=st.rollup_ts)
            except MigrateBotError as err:  # the message exists; only a restart would lose track of it
                log.error("D%s: could not store the roll-up message ts: %s", drain.id, err)
        if new.finished:
            await self._finish(st, drain, ev.status)
        elif ev.detail and ev.detail != "requested":
            icon = "👍" if new is DrainState.AWAITING_APPROVAL else DRAIN_ICON[new]
            text = f"{icon} {SLACK.esc(ev.detail)}"
            await self._reply(drain, Message(text, (Text(text[:2900]),)))

    async def _ask_again(self, drain: Drain, job_id: int) -> None:
        """The move's own card in the channel (its Approve/Deny), and a line in the drain's thread."""
        job = await self._service.get_job(job_id)
        if job.state is not JobState.AWAITING_APPROVAL or job.chat.thread or not drain.chat.channel:
            return  # decided meanwhile, or its card is out already (a retry of this step)
        card = card_message(job, SLACK, ttl_s=self._ttl_s, now=self._now())
        ts = await post_message(self._client, drain.chat.channel, card)
        await self._service.set_chat_refs(job.id, channel=drain.chat.channel, thread=ts)
        text = (
            f"⏳ {SLACK.esc(job.vm)} needs a new approval: the re-check before its start found different facts. "
            f"Approve or deny job #{job.id} on its own card; {drain.ref} waits for it."
        )
        await self._reply(drain, Message(text, (Text(text),)))

    async def _finish(self, st: _DrainState, drain: Drain, status: DrainStatus) -> None:
        if st.finished:
            return
        if st.rollup_ts is not None:  # the final edit, without waiting for a turn; never edited after it
            await update_message(
                self._edit_client, drain.chat.channel or "", st.rollup_ts, drain_rollup_message(status, SLACK)
            )
        st.rollup_dirty = False
        ran = st.rollup_ts is not None or any(m.job is not None for m in status.moves)
        if ran:  # the end of a drain that moved (or tried to): the channel sees it
            await self._reply(drain, drain_summary_message(status, SLACK), broadcast=True)
        else:  # denied, expired or withdrawn before it started: the card says it, the thread gets a line
            text = f"{DRAIN_ICON[status.drain.state]} {SLACK.esc(status.drain.detail or status.drain.state.value)}"
            await self._reply(drain, Message(text, (Text(text[:2900]),)))
        st.finished = True
        self._summarized[drain.id] = None
        while len(self._summarized) > FINISHED_REMEMBERED:
            del self._summarized[next(iter(self._summarized))]

    async def _edit_card(self, st: _DrainState, _op: _Op | None) -> None:
        drain = await self._drain(st)
        if drain is None:
            return
        status = await self._service.drain_status(drain.id)
        await self._gate.wait(priority=True)  # a state change: not behind progress edits
        assert drain.chat.channel and drain.chat.thread
        await update_message(
            self._edit_client, drain.chat.channel, drain.chat.thread, drain_card_message(status, SLACK, now=self._now())
        )

    async def _edit_rollup(self, st: _DrainState, _op: _Op | None) -> None:
        drain = await self._drain(st)
        if drain is None or st.rollup_ts is None or st.status is None:
            return
        await self._gate.wait()
        if st.finished:
            return  # it ended while this edit waited: the final edit has shown the end, once
        st.last_edit = self._clock()
        assert drain.chat.channel
        await update_message(
            self._edit_client, drain.chat.channel, st.rollup_ts, drain_rollup_message(st.status, SLACK)
        )
