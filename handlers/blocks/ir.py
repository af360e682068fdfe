"""A tiny message model between the renderers and the two outputs (Block Kit, terminal), plus dialects.

Renderers (card, progress, summary, ...) describe a message once as a `Message` of parts: header, text,
fields, context, actions. `handlers.blocks.slack.to_blocks` turns it into Block Kit (enforcing Slack's limits) and
`bot.console_render` into terminal text, so the words of a card are written in one place only. What differs
between the two outputs inline (mentions, dates, escaping) is the `Dialect`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from handlers.blocks.fmt import epoch_s, fmt_utc

_REF = re.compile(r"(<[@#][UWCG][A-Z0-9_]{1,40}>)")
_USER_ID = re.compile(r"[UW][A-Z0-9_]{1,40}")  # Slack user ids (what MIGRATE_BOT_APPROVERS accepts)


@dataclass(frozen=True)
class Header:
    """A title line (Block Kit header: plain text, ≤150 characters)."""

    text: str


@dataclass(frozen=True)
class Text:
    """A paragraph of mrkdwn-style text (`*bold*`, `` `code` ``, line breaks)."""

    md: str


@dataclass(frozen=True)
class Fields:
    """Label/value pairs shown two per row (Block Kit section fields: ≤10)."""

    items: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Context:
    """Small print (Block Kit context: ≤10 elements)."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class Divider:
    """A horizontal rule."""


@dataclass(frozen=True)
class Confirm:
    """A "are you sure?" dialog on a button."""

    title: str
    text: str
    confirm: str
    deny: str = "Cancel"


@dataclass(frozen=True)
class Button:
    """A button: `action_id` routes it, `value` carries the job id only (never authority)."""

    label: str
    action_id: str
    value: str
    style: str | None = None
    confirm: Confirm | None = None


@dataclass(frozen=True)
class Actions:
    """A row of buttons; `block_id` routes clicks (e.g. `approval:<job_id>`)."""

    block_id: str
    buttons: tuple[Button, ...]


Part = Header | Text | Fields | Context | Divider | Actions


@dataclass(frozen=True)
class Message:
    """A whole message: `text` is the one-line fallback (notifications, screen readers, the console's log).

    `more` is where the full content can be read when a long part had to be cut (e.g. `/migrate status 7`).
    """

    text: str
    parts: tuple[Part, ...]
    more: str = ""


class Dialect:
    """How inline references are written: the base class is the terminal (plain names, UTC times)."""

    name = "console"

    def user(self, user: str | None) -> str:
        return user or "someone"

    def users(self, users: tuple[str, ...] | list[str]) -> str:
        return ", ".join(self.user(u) for u in users) if users else "nobody"

    def date(self, at: datetime) -> str:
        return fmt_utc(at)

    def esc(self, text: str | None) -> str:
        """Text that came from a person or a host (names, reasons, libvirt messages)."""
        return text or ""

    def esc_refs(self, text: str | None) -> str:
        """Like `esc`, but keeps user and channel references (`<@U..>`, `<#C..>`) that core messages use."""
        return self.esc(text)

    def channel(self, channel: str) -> str:
        return f"#{channel}"

    def pre(self, text: str) -> str:
        """Preformatted text (help, aligned tables)."""
        return text


class SlackDialect(Dialect):
    """Slack mrkdwn: `<@U..>` mentions, `<!date^…>` times in the reader's time zone, &<> escaped."""

    name = "slack"

    def user(self, user: str | None) -> str:
        if not user:
            return "someone"
        # Slack ids become mentions; anything else (console names in a shared store) is shown as text.
        if _USER_ID.fullmatch(user):
            return f"<@{user}>"
        return self.esc(user)

    def date(self, at: datetime) -> str:
        return f"<!date^{epoch_s(at)}^{{date_short_pretty}} {{time}}|{fmt_utc(at)}>"

    def esc(self, text: str | None) -> str:
        # Slack requires these three escaped in all text; it also stops `<!channel>` in a reason from pinging.
        return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def esc_refs(self, text: str | None) -> str:
        pieces = _REF.split(text or "")
        # split() with one group alternates: plain, ref, plain, ref, ... ; only the plain pieces are escaped.
        return "".join(p if i % 2 else self.esc(p) for i, p in enumerate(pieces))

    def channel(self, channel: str) -> str:
        return f"<#{channel}>"

    def pre(self, text: str) -> str:
        return f"```\n{self.esc(text)}\n```"


CONSOLE = Dialect()
SLACK = SlackDialect()


def paragraphs(lines: list[str], *, limit: int = 2900, max_parts: int = 2, pointer: str = "") -> list[Text]:
    """Pack lines into at most `max_parts` Text parts of ≤`limit` characters; cut the rest with `pointer`.

    Lines are never split across parts; a single line longer than `limit` is cut on its own.
    """
    parts: list[list[str]] = [[]]
    size = 0
    dropped = 0
    for line in lines:
        line = line if len(line) <= limit else line[: limit - 1] + "…"
        if size + len(line) + 1 > limit and parts[-1]:
            if len(parts) == max_parts:
                dropped = len(lines) - sum(len(p) for p in parts)
                break
            parts.append([])
            size = 0
        parts[-1].append(line)
        size += len(line) + 1
    texts = ["\n".join(p) for p in parts if p]
    if dropped and texts:
        last = texts[-1].split("\n")

        def note() -> str:
            return f"… {dropped} more line(s) cut" + (f": see {pointer}" if pointer else "")

        while len("\n".join(last)) + len(note()) + 1 > limit and len(last) > 1:
            last.pop()
            dropped += 1
        texts[-1] = "\n".join([*last, note()])
    return [Text(t) for t in texts]
