"""In-memory state of the fake Slack workspace: seed data, fake clock and every record it keeps."""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import asdict
from typing import Any

from .records import Ephemeral, Injection, Message, ResponseUrl, Trigger, View, ts_key

# The scopes of deploy/manifest.yaml (slack.md §14) minus the optional chat:write.public.
DEFAULT_SCOPES = ("commands", "chat:write", "users:read", "usergroups:read", "channels:read", "groups:read")
TRIGGER_TTL_S = 3.0
RESPONSE_URL_MAX_USES = 5
RESPONSE_URL_TTL_S = 30 * 60.0
MAX_PUSHED_VIEWS = 2
MAX_TEXT_CHARS = 40_000


def default_bot() -> dict[str, Any]:
    return {"user_id": "U_BOT", "bot_id": "B_BOT", "app_id": "A_FAKE", "name": "migrate-bot",
            "token": "xoxb-fake-bot-token", "app_token": "xapp-fake-app-token"}


class FakeClock:
    """Wall-clock time shifted by an offset that tests set or advance; can be frozen."""

    def __init__(self) -> None:
        self._offset_s = 0.0
        self._frozen_at: float | None = None

    def now(self) -> float:
        return self._frozen_at if self._frozen_at is not None else time.time() + self._offset_s

    def advance(self, seconds: float) -> None:
        if self._frozen_at is not None:
            self._frozen_at += seconds
        else:
            self._offset_s += seconds

    def set(self, epoch_s: float, *, freeze: bool) -> None:
        self._offset_s = epoch_s - time.time()
        self._frozen_at = epoch_s if freeze else None

    def unfreeze(self) -> None:
        if self._frozen_at is not None:
            self._offset_s = self._frozen_at - time.time()
            self._frozen_at = None

    def describe(self) -> dict[str, Any]:
        now = self.now()
        return {"now": now, "offset_s": now - time.time(), "frozen": self._frozen_at is not None}


class Workspace:
    """Everything the fake knows. Mutated only from the server's event loop, so no locking is needed."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._last_epoch = 0
        self.reset()

    # ---- life cycle -------------------------------------------------------------------------------
    def reset(self) -> None:
        self.team: dict[str, Any] = {"id": "T_FAKE", "domain": "fake-workspace", "name": "Fake Workspace"}
        self.plan = "paid"
        self.bot = default_bot()
        self.scopes: list[str] = list(DEFAULT_SCOPES)
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, dict[str, Any]] = {}
        self.messages: list[Message] = []
        self.ephemerals: list[Ephemeral] = []
        self.views: dict[str, View] = {}
        self.home_views: dict[str, dict[str, Any]] = {}
        self.home_publishes: dict[str, int] = {}
        self.triggers: dict[str, Trigger] = {}
        self.response_urls: dict[str, ResponseUrl] = {}
        self.response_posts: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.injections: list[Injection] = []
        self.acks: list[dict[str, Any]] = []
        self.ack_failures: list[dict[str, Any]] = []
        self.envelopes: list[dict[str, Any]] = []
        self.connections: list[dict[str, Any]] = []
        self.tickets: dict[str, dict[str, Any]] = {}
        self.rate_limits_enabled = False
        self.rate_limit_overrides: dict[str, int] = {}
        self.clock = FakeClock()
        self.bot_user_record()

    def bot_user_record(self) -> None:
        self.users[self.bot["user_id"]] = {"id": self.bot["user_id"], "name": self.bot["name"],
                                           "real_name": self.bot["name"], "is_bot": True, "deleted": False}

    def seed(self, data: dict[str, Any]) -> None:
        """Replace each part of the workspace definition given in `data` (messages are kept)."""
        if "team" in data:
            self.team.update(data["team"])
        if "plan" in data:
            if data["plan"] not in ("free", "paid"):
                raise ValueError(f"plan must be 'free' or 'paid', got {data['plan']!r}")
            self.plan = data["plan"]
        if "bot" in data:
            self.bot.update(data["bot"])
        if "scopes" in data:
            self.scopes = list(data["scopes"])
        if "users" in data:
            self.users = {}
            for user in data["users"]:
                self.users[user["id"]] = {"name": user["id"].lower(), "is_bot": False, "deleted": False,
                                          "real_name": user.get("name", user["id"]), "tz": "UTC", **user}
            self.bot_user_record()
        if "channels" in data:
            self.channels = {}
            for channel in data["channels"]:
                self.channels[channel["id"]] = {"is_private": False, "bot_member": True,
                                                "members": list(self.users), **channel}
        if "usergroups" in data:
            self.usergroups = {
                g["id"]: {"disabled": False, "users": [], "name": g.get("handle", g["id"]), **g}
                for g in data["usergroups"]}

    # ---- identifiers ------------------------------------------------------------------------------
    def next_ts(self) -> str:
        """Monotonic, workspace-unique message ts: '<epoch>.<seq:06d>' (slack.md §19.3)."""
        self._last_epoch = max(self._last_epoch, int(self.clock.now()))
        return f"{self._last_epoch}.{next(self._seq) % 1_000_000:06d}"

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}{secrets.token_hex(2).upper()}"

    # ---- lookups ----------------------------------------------------------------------------------
    def find_message(self, channel: str, ts: str) -> Message | None:
        for message in self.messages:
            if message.channel == channel and message.ts == ts and not message.deleted:
                return message
        return None

    def find_ephemeral(self, channel: str | None, ts: str) -> Ephemeral | None:
        for eph in self.ephemerals:
            if eph.ts == ts and (channel is None or eph.channel == channel) and not eph.deleted:
                return eph
        return None

    def thread(self, channel: str, ts: str) -> list[Message]:
        items = [m for m in self.messages if m.channel == channel and not m.deleted
                 and (m.ts == ts or m.thread_ts == ts)]
        return sorted(items, key=ts_key)

    def timeline(self, channel: str) -> list[Message]:
        """What a person sees in the channel: top-level messages and broadcast replies, oldest first."""
        return [m for m in self.messages if m.channel == channel and not m.deleted
                and (m.thread_ts is None or m.reply_broadcast)]

    # ---- minting ----------------------------------------------------------------------------------
    def mint_trigger(self, user: str | None = None, view_id: str | None = None) -> Trigger:
        trigger = Trigger(f"{next(self._ids)}.{secrets.token_hex(4)}.{secrets.token_hex(8)}",
                          self.clock.now(), user, view_id)
        self.triggers[trigger.trigger_id] = trigger
        return trigger

    def mint_response_url(self, channel: str | None, user: str | None, message_ts: str | None,
                          is_ephemeral: bool) -> ResponseUrl:
        url = ResponseUrl(secrets.token_urlsafe(12), channel, user, message_ts, is_ephemeral,
                          self.clock.now())
        self.response_urls[url.key] = url
        return url

    # ---- state ------------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        threads: dict[str, list[str]] = {}
        for m in self.messages:
            if m.thread_ts and not m.deleted:
                threads.setdefault(f"{m.channel}:{m.thread_ts}", []).append(m.ts)
        return {
            "clock": self.clock.describe(),
            "team": self.team, "plan": self.plan,
            "bot": {k: v for k, v in self.bot.items() if "token" not in k},
            "scopes": self.scopes, "users": list(self.users.values()),
            "channels": list(self.channels.values()),
            "usergroups": list(self.usergroups.values()),
            "calls": self.calls,
            "messages": [m.to_json() for m in self.messages],
            "threads": threads,
            "ephemerals": [asdict(e) for e in self.ephemerals],
            "response_urls": [asdict(r) for r in self.response_urls.values()],
            "response_posts": self.response_posts,
            "views": [asdict(v) for v in self.views.values()],
            "home_views": self.home_views, "home_publishes": self.home_publishes,
            "triggers": [asdict(t) for t in self.triggers.values()],
            "injections": [asdict(i) for i in self.injections],
            "envelopes": self.envelopes, "acks": self.acks, "ack_failures": self.ack_failures,
            "connections": self.connections,
            "rate_limits_enabled": self.rate_limits_enabled,
        }
