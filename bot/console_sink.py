"""The console's event sink and output: state lines, throttled progress (or a live bar), notices, summary."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console

from bot.console_render import inline, render, render_plain
from handlers.blocks.drain_card import DRAIN_ICON, DRAIN_LABEL
from handlers.blocks.fmt import STATE_ICON, STATE_LABEL
from handlers.blocks.ir import CONSOLE, Message
from handlers.blocks.progress import decision_text, notice_message, progress_line, state_change_message
from handlers.blocks.summary import summary_message
from migration_core.drains import DrainState
from migration_core.errors import MigrateBotError
from migration_core.events import (
    DecisionMade,
    DrainChanged,
    JobEvent,
    Notice,
    ProgressUpdated,
    StateChanged,
    SummaryReady,
)
from migration_core.models import ProgressSample, VerificationSummary
from migration_core.service_api import MigrationServiceAPI

log = logging.getLogger(__name__)


def _job_of(event: JobEvent) -> int | None:
    if isinstance(event, ProgressUpdated):
        return event.sample.job_id
    if isinstance(event, SummaryReady):
        return event.summary.job_id
    if isinstance(event, StateChanged | DecisionMade | Notice):
        return event.job_id
    return None


class ConsoleOut:
    """Where the console writes: rich styling on a terminal, plain lines otherwise (scripts parse them)."""

    def __init__(self, stream: TextIO, *, tty: bool) -> None:
        self.stream = stream
        self.tty = tty
        self.rich = Console(file=stream, highlight=False, soft_wrap=True) if tty else None

    def line(self, text: str) -> None:
        """One line of mrkdwn-ish text."""
        if self.rich is not None:
            self.rich.print(inline(text))
        else:
            self.stream.write(inline(text).plain + "\n")
            self.stream.flush()

    def raw(self, text: str) -> None:
        """A line exactly as given (echoed input)."""
        if self.rich is not None:
            self.rich.print(text, markup=False, emoji=False)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def message(self, msg: Message) -> None:
        if self.rich is not None:
            self.rich.print(render(msg))
        else:
            self.stream.write(render_plain(msg) + "\n")
            self.stream.flush()


class ConsoleSink:
    """EventSink for the terminal. Attach it to an output and the service with `attach` (run_console does).

    Progress lines are printed at most once per `min_interval_s` per job (phase changes and stall changes
    always print), so a script's output stays readable; while `live` is set, samples go to the live bar.
    """

    def __init__(self, *, min_interval_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.out: ConsoleOut | None = None
        self.service: MigrationServiceAPI | None = None
        self._interval_s = min_interval_s
        self._clock = clock
        self._last_print: dict[int, tuple[float, ProgressSample]] = {}
        self.latest: dict[int, ProgressSample] = {}
        self.summaries: dict[int, VerificationSummary] = {}
        self._summary_seen: dict[int, asyncio.Event] = {}
        self.live: dict[int, Callable[[ProgressSample], None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # A drain's moves are jobs too; their lines would bury the drain's roll-up (`wait D7` shows it). While a
        # drain runs, the events of a job not seen before are held until the job is read: a move's are dropped,
        # any other job's are shown in their order.
        self._running_drains: set[int] = set()
        self._moves: set[int] = set()
        self._plain: set[int] = set()
        self._held: dict[int, list[JobEvent]] = {}

    def attach(self, out: ConsoleOut, service: MigrationServiceAPI) -> None:
        self.out = out
        self.service = service

    async def emit(self, event: JobEvent) -> None:
        try:
            self._handle(event)
        except Exception:  # a broken terminal must not break a migration
            log.exception("console sink failed on %s", type(event).__name__)

    def _handle(self, event: JobEvent) -> None:
        if self._fold_into_drain(event):
            return
        out = self.out
        if isinstance(event, ProgressUpdated):
            self._progress(event.sample)
        elif out is None:
            return
        elif isinstance(event, StateChanged):
            msg = state_change_message(event, CONSOLE)
            icon = STATE_ICON[event.new]
            text = msg.text if msg is not None else f"{icon} {STATE_LABEL[event.new]}"
            out.line(f"[job {event.job_id}] {text}")
        elif isinstance(event, DrainChanged):
            # Approvals, the start, the cancel report, the end. The roll-up and each move's outcome are shown
            # by `wait D7` / `wait last` (and at the end of input), not between other commands' output.
            if event.detail != "requested":
                drain = event.status.drain
                out.line(f"[{drain.ref}] {DRAIN_ICON[drain.state]} {DRAIN_LABEL[drain.state]}: {event.detail}")
        elif isinstance(event, DecisionMade):
            out.line(f"[job {event.job_id}] {decision_text(event.decision, CONSOLE)}")
        elif isinstance(event, Notice):
            out.line(f"[job {event.job_id}] {notice_message(event, CONSOLE).text}")
        elif isinstance(event, SummaryReady):
            if event.summary.job_id in self.summaries:
                return  # the core may announce one summary more than once: print it once
            self.summaries[event.summary.job_id] = event.summary
            # Fetch the job outside emit(): the service may be holding its own lock while it emits.
            task = asyncio.create_task(self._print_summary(event.summary))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _fold_into_drain(self, event: JobEvent) -> bool:
        """True when the event is not to be shown now (a drain move's, or held until its job is read)."""
        if isinstance(event, DrainChanged):
            drain = event.status.drain
            if drain.state in (DrainState.RUNNING, DrainState.CANCELLING):
                self._running_drains.add(drain.id)
            else:
                self._running_drains.discard(drain.id)
            self._moves.update(m.job.id for m in event.status.moves if m.job is not None)
            return False
        job_id = _job_of(event)
        if job_id is None or job_id in self._plain:
            return False
        if job_id in self._moves:
            return True
        held = self._held.get(job_id)
        if held is not None:
            held.append(event)
            return True
        if not self._running_drains or self.service is None:
            return False
        self._held[job_id] = [event]
        task = asyncio.create_task(self._classify(job_id))  # outside emit(): the service may hold its lock
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _classify(self, job_id: int) -> None:
        move = False
        try:
            assert self.service is not None
            move = (await self.service.get_job(job_id)).drain_id is not None
        except MigrateBotError as err:
            log.warning("job %s could not be read: %s", job_id, err)
        finally:
            (self._moves if move else self._plain).add(job_id)
            for event in self._held.pop(job_id, []):
                if not move:
                    self._handle(event)

    def _progress(self, sample: ProgressSample) -> None:
        self.latest[sample.job_id] = sample
        live = self.live.get(sample.job_id)
        if live is not None:
            live(sample)
            return
        if self.out is None:
            return
        now = self._clock()
        last = self._last_print.get(sample.job_id)
        changed = last is None or last[1].phase is not sample.phase or last[1].stalled != sample.stalled
        if changed or last is None or now - last[0] >= self._interval_s:
            self._last_print[sample.job_id] = (now, sample)
            self.out.line(f"[job {sample.job_id}] {progress_line(sample)}")

    async def _print_summary(self, summary: VerificationSummary) -> None:
        try:
            if self.out is not None and self.service is not None:
                job = await self.service.get_job(summary.job_id)
                self.out.message(summary_message(summary, job, CONSOLE))
        except MigrateBotError as err:
            log.warning("summary of job %s could not be shown: %s", summary.job_id, err)
        finally:
            self._summary_seen.setdefault(summary.job_id, asyncio.Event()).set()

    async def wait_summary(self, job_id: int, timeout_s: float) -> bool:
        """Wait until the summary of `job_id` has been printed (True) or `timeout_s` passed (False)."""
        ev = self._summary_seen.setdefault(job_id, asyncio.Event())
        try:
            await asyncio.wait_for(ev.wait(), timeout_s)
            return True
        except TimeoutError:
            return False
