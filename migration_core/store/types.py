"""Plain types and pure helpers of the job store: event records, host load, errors, URL masking, retries.

Kept apart from store.py so that callers (service, front ends, tests) can use them without touching the
database layer, and so the retry/masking logic can be tested as pure functions.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from migration_core.models import JobState

T = TypeVar("T")


class EventKind(StrEnum):
    """What an event-log row records. The log is append-only: rows are never changed or deleted."""

    STATE = "state"  # a persisted state transition (old_state -> new_state)
    CLICK = "click"  # a person pressed a button / ran a command on the job
    CONTROL = "control"  # an operator control was applied (abort, post-copy, downtime, bandwidth)
    REFUSED = "refused"  # an attempt that policy or the state machine refused
    DECISION = "decision"  # the convergence controller acted
    NOTICE = "notice"  # a human-readable notice (stall, queue position, failure)
    APPROVAL = "approval"  # an approval or denial was recorded
    PLAN = "plan"  # the job's plan was set or replaced
    LEASE = "lease"  # a replica claimed or took over the job
    DRAIN = "drain"  # a drain's state change, approval or control (job_id NULL; data names the drain)


@dataclass(frozen=True)
class EventRecord:
    """One row of the event log. `detail` is for people; `data` is structured (JSON) for tools."""

    id: int
    job_id: int | None
    at: datetime
    kind: EventKind
    actor: str | None
    detail: str
    old_state: JobState | None = None
    new_state: JobState | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HostLimit:
    """The inventory's concurrency limits for one host (0 = no migrations in that direction)."""

    max_inbound: int
    max_outbound: int


@dataclass(frozen=True)
class HostLoad:
    """Jobs holding a host's migration slots right now, oldest first (the card quotes them: "#41, #43")."""

    host: str
    inbound_job_ids: tuple[int, ...] = ()
    outbound_job_ids: tuple[int, ...] = ()

    @property
    def inbound(self) -> int:
        return len(self.inbound_job_ids)

    @property
    def outbound(self) -> int:
        return len(self.outbound_job_ids)


_URL_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^\s]*)@")
_PASSWORD_PARAM = re.compile(r"(?P<head>\bpassword=)[^\s&'\"]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***` (safe to log or show).

    >>> mask_url("postgresql+psycopg://bot:s3cret@db.example/migratebot")
    'postgresql+psycopg://bot:***@db.example/migratebot'
    """
    return mask_secrets(url, url)


def _password_of(url: str) -> str | None:
    scheme_end = url.find("://")
    if scheme_end < 0:
        return None
    netloc = url[scheme_end + 3 :].split("/", 1)[0]
    userinfo, at, _host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return None
    password = userinfo.split(":", 1)[1]
    return password or None


def mask_secrets(text: str, url: str | None = None) -> str:
    """Remove credentials from any text: `user:pw@` in URLs, `password=...`, and `url`'s password verbatim.

    The verbatim pass matters because drivers sometimes echo the connection string in their errors.
    """
    out = text
    if url is not None:
        password = _password_of(url)
        if password:
            out = out.replace(password, "***")
    # A password may contain '@' (percent-encoded or not): mask up to the last '@' before the host.
    out = _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}***@", out)
    return _PASSWORD_PARAM.sub(lambda m: f"{m.group('head')}***", out)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff for transient database errors (a PostgreSQL restart takes a few seconds).

    With the defaults the delays are 0.1, 0.2, 0.4, ... capped at 5 s, and the sum of all delays never
    passes `budget_s` (30 s): long enough to ride out a server restart, short enough to report an outage.
    """

    base_delay_s: float = 0.1
    max_delay_s: float = 5.0
    budget_s: float = 30.0

    def delays_s(self) -> Iterator[float]:
        """The waits between attempts, in order; ends when the budget is spent."""
        if self.base_delay_s <= 0 or self.budget_s <= 0:
            return
        spent_s = 0.0
        delay_s = self.base_delay_s
        while spent_s + delay_s <= self.budget_s + 1e-9:
            yield delay_s
            spent_s += delay_s
            delay_s = min(delay_s * 2, self.max_delay_s)
        remainder_s = self.budget_s - spent_s
        if remainder_s > 1e-3:
            yield remainder_s


NO_RETRY = RetryPolicy(base_delay_s=0.0, max_delay_s=0.0, budget_s=0.0)


async def retry_async(
    op: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    is_transient: Callable[[BaseException], bool],
    on_retry: Callable[[BaseException, float, int], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `op(attempt)` until it succeeds, retrying transient failures along `policy`'s delays.

    `attempt` counts from 0 so the operation can tell a first try from a retry (a retried write may have
    committed before the connection died). The last failure is re-raised when the budget is spent.
    """
    delays = policy.delays_s()
    attempt = 0
    while True:
        try:
            return await op(attempt)
        except Exception as err:
            if not is_transient(err):
                raise
            delay_s = next(delays, None)
            if delay_s is None or delay_s <= 0:
                raise
            if on_retry is not None:
                on_retry(err, delay_s, attempt + 1)
            await sleep(delay_s)
            attempt += 1


async def poll_until(
    read: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout_s: float | None, interval_s: float
) -> T:
    """Read until `done(value)` or until `timeout_s` has passed (None: no limit); the last value read.

    Waiting by reading the store (not on local tasks) works for a job or a drain that another replica runs.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    while True:
        value = await read()
        if done(value) or (deadline is not None and loop.time() >= deadline):
            return value
        await asyncio.sleep(interval_s)
