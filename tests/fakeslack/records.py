"""Records the fake Slack keeps: messages, ephemerals, triggers, response URLs, views, fault injections."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any


def ts_key(ts_holder: Any) -> tuple[int, int]:
    """Sort key of a message ts ('<epoch>.<seq>'), numeric so that ordering never depends on string length."""
    ts = ts_holder if isinstance(ts_holder, str) else ts_holder.ts
    epoch, _, seq = ts.partition(".")
    return int(epoch), int(seq or 0)


@dataclass
class Message:
    """A channel message or thread reply, with its edit history (previous versions, oldest first)."""

    channel: str
    ts: str
    text: str
    blocks: list[Any] | None
    user: str
    bot_id: str | None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    attachments: list[Any] | None = None
    metadata: dict[str, Any] | None = None
    edits: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False
    source: str = "api"
    reactions: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False

    def version(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": copy.deepcopy(self.blocks),
                "attachments": copy.deepcopy(self.attachments), "metadata": copy.deepcopy(self.metadata)}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_slack(self, team_id: str, app_id: str) -> dict[str, Any]:
        """The message as Slack shows it to clients (conversations.replies, block_actions `message`)."""
        out: dict[str, Any] = {"type": "message", "ts": self.ts, "text": self.text, "user": self.user,
                               "team": team_id}
        if self.blocks is not None:
            out["blocks"] = copy.deepcopy(self.blocks)
        if self.bot_id:
            out.update(bot_id=self.bot_id, app_id=app_id)
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
            if self.reply_broadcast:
                out["subtype"] = "thread_broadcast"
        if self.attachments:
            out["attachments"] = copy.deepcopy(self.attachments)
        if self.metadata:
            out["metadata"] = copy.deepcopy(self.metadata)
        if self.edits:
            out["edited"] = {"user": self.user, "ts": self.ts}
        return out


@dataclass
class Ephemeral:
    channel: str
    user: str
    ts: str
    text: str
    blocks: list[Any] | None
    thread_ts: str | None = None
    source: str = "api"
    replaced: int = 0
    deleted: bool = False


@dataclass
class Trigger:
    trigger_id: str
    issued_t: float
    user: str | None
    view_id: str | None
    used: bool = False


@dataclass
class ResponseUrl:
    key: str
    channel: str | None
    user: str | None
    message_ts: str | None
    is_ephemeral: bool
    issued_t: float
    uses: int = 0


@dataclass
class View:
    id: str
    user: str | None
    body: dict[str, Any]
    root_view_id: str
    previous_view_id: str | None
    hash: str
    open: bool = True
    updates: int = 0
    errors: dict[str, Any] | None = None

    def to_slack(self, team_id: str, app_id: str, bot_id: str) -> dict[str, Any]:
        out = copy.deepcopy(self.body)
        out.update(id=self.id, team_id=team_id, app_id=app_id, bot_id=bot_id, hash=self.hash,
                   root_view_id=self.root_view_id, previous_view_id=self.previous_view_id,
                   app_installed_team_id=team_id)
        out.setdefault("callback_id", "")
        out.setdefault("private_metadata", "")
        out.setdefault("external_id", "")
        out.setdefault("state", {"values": {}})
        out.setdefault("clear_on_close", False)
        out.setdefault("notify_on_close", False)
        return out


@dataclass
class Injection:
    """The next `remaining` calls of `method` ("*" = any) fail in `mode`: 429, 500, 503 or "drop"."""

    method: str
    remaining: int
    mode: str
    retry_after_s: int = 1
