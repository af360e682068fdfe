"""What every listener needs, in one object that each module's `register(app, deps)` binds to its listeners."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from handlers.blocks.answers import error_message
from handlers.blocks.ir import SLACK
from handlers.blocks.slack import message_payload
from handlers.drain_progress import SlackDrainSink
from handlers.gate import EdgeGate
from handlers.progress import SlackProgressSink
from migration_core.service_api import ApproverCheck, MigrationServiceAPI

log = logging.getLogger(__name__)

# A Bolt listener of this package: a module-level coroutine function taking Bolt's arguments by name
# (ack, body, respond, client...) and `deps` (and any other bound value) keyword-only, bound by register_table.
Listener = Callable[..., Awaitable[None]]
# What a listener is registered under: an action id, callback id, command or event type, or a pattern of them.
Matcher = str | re.Pattern[str]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@runtime_checkable
class RecordsRefusals(Protocol):
    """A service that can record a refused attempt that never reached it (MigrationService does)."""

    async def record_refusal(
        self, job_id: int | None, actor: str, action: str, err: Any, data: dict[str, object] | None = None
    ) -> None: ...


@dataclass
class RecentDeliveries:
    """Slash-command deliveries this process has taken in the last `ttl_s` (by idempotency key): Slack's retry
    of one of them (X-Slack-Retry-Num) must not answer the person a second time. Bounded, oldest first out."""

    ttl_s: float = 600.0
    max_kept: int = 10_000
    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, float] = field(default_factory=dict)

    def first_time(self, key: str) -> bool:
        """True the first time `key` is seen (it is remembered from now on), False for a repeat."""
        now = self.clock()
        while self._seen and (len(self._seen) >= self.max_kept or now - next(iter(self._seen.values())) > self.ttl_s):
            del self._seen[next(iter(self._seen))]
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


class FrontEndSettings(Protocol):
    """The settings the handlers read; bot.settings.Settings has them (the handlers stay below the wiring)."""

    @property
    def approval_ttl_s(self) -> float: ...


@dataclass
class Deps:
    """The service (the only way into the core), settings, the approver check and the progress sink."""

    service: MigrationServiceAPI
    settings: FrontEndSettings
    approver_check: ApproverCheck
    progress: SlackProgressSink | None = None
    drains: SlackDrainSink | None = None  # the drain cards and threads (handlers/drain_progress.py)
    now: Callable[[], datetime] = _utcnow
    gate: EdgeGate | None = None  # channel, people and rate gates of every command and click (handlers.gate)
    on_refusal: Callable[[str, str], None] | None = None  # (action, reason code): the refusals metric
    # One lock per job id: a duplicate delivery of the same command must not post a second card.
    _locks: dict[int, asyncio.Lock] = field(default_factory=dict)
    deliveries: RecentDeliveries = field(default_factory=RecentDeliveries)
    # job id -> when a click last re-rendered its stale card (handlers.actions; bounded there)
    stale_card_refreshes: dict[int, float] = field(default_factory=dict)

    def lock(self, job_id: int) -> asyncio.Lock:
        return self._locks.setdefault(job_id, asyncio.Lock())

    async def refresh_card(self, job_id: int) -> None:
        if self.progress is not None:
            await self.progress.refresh_card(job_id)

    async def refresh_drain_card(self, drain_id: int) -> None:
        if self.drains is not None:
            await self.drains.refresh_card(drain_id)

    def count_refusal(self, action: str, reason: str) -> None:
        if self.on_refusal is not None:
            try:
                self.on_refusal(action, reason)
            except Exception:  # a metric must never turn a refusal into an error
                log.warning("could not count a refused %s", action, exc_info=True)

    async def refused(
        self, job_id: int | None, actor: str, action: str, reason: str, data: Mapping[str, object] | None = None
    ) -> None:
        """Record an attempt the handlers refused before the service saw it (a forged or foreign button)."""
        self.count_refusal(action, str((data or {}).get("code") or "forged"))
        if isinstance(self.service, RecordsRefusals):
            try:
                await self.service.record_refusal(job_id, actor, action, reason, dict(data or {}))
                return
            except Exception as err:  # the person still gets the refusal; the log keeps the attempt
                log.error("could not record a refused %s by %s: %s", action, actor, err)
        log.warning("refused %s by %s: %s %s", action, actor or "?", reason, dict(data or {}))


def ephemeral(text: str) -> dict[str, Any]:
    """Keyword arguments for ack()/respond(): an ephemeral refusal or error."""
    return {"response_type": "ephemeral", **message_payload(error_message(text, SLACK))}


def bug_reference(where: str, exc: BaseException | None = None) -> str:
    """Log the exception (the current one by default) with a short reference; return the user's sentence."""
    ref = f"ERR-{secrets.token_hex(3)}"
    log.error("unexpected error in %s (reference %s)", where, ref, exc_info=exc if exc is not None else True)
    return f"something went wrong on our side (error reference {ref}); the operators can find it in the log"


def bind(listener: Listener, deps: Deps) -> Listener:
    """`listener` with `deps` bound by keyword. Bolt passes only the arguments its signature names before the
    `*` (so never `deps`), and logs a listener by its function's name: update_wrapper keeps both visible."""
    function = listener
    while isinstance(function, functools.partial):  # a table entry may already bind other keywords
        function = function.func
    return functools.update_wrapper(functools.partial(listener, deps=deps), function)


def register_table(
    add: Callable[[Matcher], Callable[[Listener], object]], table: Iterable[tuple[Matcher, Listener]], deps: Deps
) -> None:
    """Register each listener of `table` with `deps` bound (`add`: app.command, app.action, app.view or
    app.event), in the table's order: Bolt tries listeners in registration order, so catch-alls go last."""
    for matcher, listener in table:
        add(matcher)(bind(listener, deps))


def body_user(body: dict[str, Any]) -> str:
    """Who clicked: the interaction payload's user id ("" when the payload has none)."""
    user = body.get("user") or {}
    return str(user.get("id", "")) if isinstance(user, dict) else ""


def body_channel(body: dict[str, Any]) -> str:
    """Where the click happened: the payload's channel, else its container's channel ("" when neither)."""
    channel, container = body.get("channel"), body.get("container")
    if isinstance(channel, dict) and isinstance(channel.get("id"), str):
        return str(channel["id"])
    if isinstance(container, dict) and isinstance(container.get("channel_id"), str):
        return str(container["channel_id"])
    return ""
