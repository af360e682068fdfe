"""Optional Slack-like rate limiter (slack.md §11): per-method tiers and 1 post/s per channel."""

from __future__ import annotations

import math
from collections import deque

WINDOW_S = 60.0
TIER_PER_MIN = {1: 1, 2: 20, 3: 50, 4: 100}
METHOD_TIER = {
    "chat.update": 3, "chat.delete": 3, "reactions.add": 3, "conversations.info": 3,
    "conversations.replies": 3, "conversations.history": 3,
    "chat.postEphemeral": 4, "views.open": 4, "views.publish": 4, "views.update": 4, "views.push": 4,
    "users.info": 4,
    "usergroups.users.list": 2, "usergroups.list": 2,
    "apps.connections.open": 1,
}
SPECIAL_PER_MIN = {"auth.test": 600, "chat.getPermalink": 600, "chat.postMessage": 600}
# chat.postMessage: about one message per second per channel, with short bursts tolerated.
POST_PER_CHANNEL_WINDOW_S = 1.0
POST_PER_CHANNEL_BURST = 3


class RateLimiter:
    """Sliding windows over the fake clock; `check` returns a Retry-After in seconds, or None if allowed."""

    def __init__(self, overrides_per_min: dict[str, int] | None = None) -> None:
        self._calls: dict[str, deque[float]] = {}
        self._overrides = dict(overrides_per_min or {})

    def limit_per_min(self, method: str) -> int | None:
        if method in self._overrides:
            return self._overrides[method]
        if method in SPECIAL_PER_MIN:
            return SPECIAL_PER_MIN[method]
        tier = METHOD_TIER.get(method)
        return TIER_PER_MIN[tier] if tier else None

    def _admit(self, key: str, now: float, window_s: float, limit: int) -> int | None:
        calls = self._calls.setdefault(key, deque())
        while calls and calls[0] <= now - window_s:
            calls.popleft()
        if len(calls) >= limit:
            return max(1, math.ceil(calls[0] + window_s - now))
        calls.append(now)
        return None

    def check(self, method: str, channel: str | None, now: float) -> int | None:
        if method == "chat.postMessage" and channel:
            wait = self._admit(f"post:{channel}", now, POST_PER_CHANNEL_WINDOW_S * POST_PER_CHANNEL_BURST,
                               POST_PER_CHANNEL_BURST)
            if wait is not None:
                return wait
        limit = self.limit_per_min(method)
        if limit is None:
            return None
        return self._admit(method, now, WINDOW_S, limit)
