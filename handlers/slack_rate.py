"""Workspace-wide pacing of message edits: chat.update is Tier 3 (~50/min) for ALL the bot's messages at once.

Per-message throttling alone (one edit per ~2 s) exceeds that budget as soon as a few migrations run together,
and Slack then answers 429 with a Retry-After of up to a minute. The gate below spaces every edit the progress
sink makes (card and progress messages of all jobs) to `per_min`, so the budget is shared round-robin between
the jobs, and a 429 pauses every edit until its Retry-After has passed. Edits are sent without the client's own
429 retry (which would sleep and then send the stale payload): the sink re-renders the newest state instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

EDITS_PER_MIN = 45.0  # Tier 3 is "50+ per minute"
EDIT_BURST = 4  # 4 + 45 < 50 in any minute, and a card edit right before a progress edit does not wait
DEFAULT_RETRY_AFTER_S = 1.0  # what slack-sdk assumes when a 429 comes without the header


class EditGate:
    """Paces edits to `per_min` for the whole workspace, allowing a burst of `burst` (a GCRA token bucket:
    in any 60 s, at most burst + per_min edits go out); `penalize` holds them all for a Retry-After."""

    def __init__(
        self,
        per_min: float = EDITS_PER_MIN,
        *,
        burst: int = EDIT_BURST,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._interval_s = 60.0 / per_min
        self._tolerance_s = (max(1, burst) - 1) * self._interval_s
        self._clock = clock
        self._sleep = sleep
        self._tat_s = float("-inf")  # "theoretical arrival time" of the next edit
        self._blocked_until_s = float("-inf")

    def reserve(self, *, priority: bool = False) -> float:
        """Take the next slot; returns how long to wait for it. A priority edit (a card changing state) does
        not queue behind progress edits, but still uses up budget and respects a 429 pause."""
        now = self._clock()
        tat = max(self._tat_s, now)
        start = max(now, self._blocked_until_s) if priority else max(now, tat - self._tolerance_s,
                                                                     self._blocked_until_s)
        self._tat_s = max(tat, start) + self._interval_s
        return start - now

    async def wait(self, *, priority: bool = False) -> None:
        wait_s = self.reserve(priority=priority)
        if wait_s > 0:
            await self._sleep(wait_s)

    def penalize(self, retry_after_s: float | None) -> None:
        """Slack answered 429: no edit goes out before Retry-After has passed."""
        pause_s = retry_after_s if retry_after_s is not None and retry_after_s > 0 else DEFAULT_RETRY_AFTER_S
        self._blocked_until_s = max(self._blocked_until_s, self._clock() + pause_s)


def retry_after_s(err: Exception) -> float | None:
    """The Retry-After (seconds) of a 429 SlackApiError; None when it is not a 429 or has no header."""
    response = getattr(err, "response", None)
    if getattr(response, "status_code", None) != 429:
        return None
    headers: Any = getattr(response, "headers", None) or {}
    for key in list(headers.keys()):
        if str(key).lower() == "retry-after":
            value = headers[key]
            value = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None


def is_rate_limited(err: Exception) -> bool:
    return getattr(getattr(err, "response", None), "status_code", None) == 429


def edit_client(client: Any) -> Any:
    """The same client without its 429 retry handler (other retries kept), for edits paced by EditGate.
    Anything that is not a real AsyncWebClient (a test double) is used as it is."""
    if not isinstance(client, AsyncWebClient):
        return client
    handlers = [h for h in client.retry_handlers if not isinstance(h, AsyncRateLimitErrorRetryHandler)]
    return AsyncWebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=client.timeout,
        ssl=client.ssl,
        proxy=client.proxy,
        session=client.session,
        trust_env_in_session=client.trust_env_in_session,
        headers=dict(client.headers),
        retry_handlers=handlers,
    )
