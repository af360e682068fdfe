"""Virtual time for the in-memory fleet: an asyncio event loop whose clock jumps to the next timer when idle.

Everything in the core waits with `asyncio.sleep` and measures with `loop.time()` (the executor's poll loop, the
dispatcher's tick, the service's `wait`, leases); datetimes come from injected clocks. Running the core on
`VirtualTimeLoop` therefore puts all of it on virtual time without a change to the code under test: when no
callback is ready and no I/O is pending, the loop does not block, it advances its clock to the next timer.

Worker threads (the store runs its transactions with `asyncio.to_thread`) are real: while one is running the
loop waits for it for real and virtual time stands still, so a slow SQLite commit never looks like seconds of
migration. `VirtualClock.now()` is the wall clock (a UTC datetime) of that virtual time, for the `clock=`
parameters of the service, dispatcher, executor and store.
"""

from __future__ import annotations

import asyncio
import selectors
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, TypeVarTuple, Unpack

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # virtual time 0 (a Monday morning)


class _Selector(selectors.DefaultSelector):
    """Polls real I/O without blocking; when nothing is ready, moves the loop's clock instead of sleeping."""

    loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        loop = self.loop
        if ready or loop is None or (timeout is not None and timeout <= 0):
            return ready
        if loop.pending_threads or timeout is None:
            # A worker thread will wake us (call_soon_threadsafe writes to the self-pipe): wait for it for
            # real, virtual time stands still. With no timer at all there is nothing to jump to either.
            waited: list[tuple[selectors.SelectorKey, int]] = super().select(None if timeout is None else 1.0)
            return waited
        loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on virtual time (see the module docstring). `advance(s)` moves it by hand."""

    latest: VirtualTimeLoop | None = None  # the last one created: what clocks read from worker threads

    def __init__(self, start_s: float = 0.0) -> None:
        selector = _Selector()
        super().__init__(selector)
        selector.loop = self
        self._now = start_s
        self._threads = 0
        self._threads_lock = threading.Lock()
        VirtualTimeLoop.latest = self

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)

    @property
    def pending_threads(self) -> int:
        return self._threads

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[Unpack[Ts]], T], *args: *Ts
    ) -> asyncio.Future[T]:
        with self._threads_lock:
            self._threads += 1
        fut = super().run_in_executor(executor, func, *args)

        def done(_f: asyncio.Future[T]) -> None:
            # Counted down on the loop, after the result arrived: until then virtual time must not move.
            with self._threads_lock:
                self._threads -= 1

        fut.add_done_callback(done)
        return fut


class VirtualClock:
    """The wall clock of a virtual-time loop: `now()` is EPOCH + the loop's time, as an aware UTC datetime."""

    def __init__(self, epoch: datetime = EPOCH) -> None:
        self.epoch = epoch

    def monotonic(self) -> float:
        return self._loop_time()

    def now(self) -> datetime:
        return self.epoch + timedelta(seconds=self._loop_time())

    @staticmethod
    def _loop_time() -> float:
        """The running loop's time; from a worker thread (the store stamps rows there) the latest virtual
        loop's; before any loop exists, 0 (the start of time)."""
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            latest = VirtualTimeLoop.latest
            return latest.time() if latest is not None and not latest.is_closed() else 0.0


def run_virtual(main: Coroutine[Any, Any, T], *, start_s: float = 0.0) -> T:
    """Run `main` to the end on a fresh virtual-time loop (like asyncio.run); returns its result."""
    loop = VirtualTimeLoop(start_s)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
