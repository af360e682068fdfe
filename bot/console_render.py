"""Terminal rendering of the same messages the Slack blocks show (handlers.blocks.ir.Message -> rich Text)."""

from __future__ import annotations

import re

from rich.console import Group
from rich.rule import Rule
from rich.text import Text as RichText

from handlers.blocks.ir import Actions, Context, Divider, Fields, Header, Message, Text

# `*bold*`, `_italic_`, `` `code` `` (Slack mrkdwn, the subset the renderers use).
# Like Slack, markers only count at word boundaries: `running_on_destination` stays as it is.
_INLINE = re.compile(r"((?<![\w*])\*[^*\n]+\*(?![\w*])|(?<![\w])_[^_\n]+_(?!\w)|`[^`\n]+`)")
_STYLE = {"*": "bold", "_": "italic", "`": "cyan"}

# What to type in the console for each button (the console has no buttons).
CONSOLE_VERB = {
    "approve": "approve {job}",
    "deny": "deny {job}",
    "abort": "abort {job}",
    "postcopy": "postcopy {job}",
    "downtime": "downtime {job} <ms>",
    "bandwidth": "bandwidth {job} <MiB/s>",
    "drain_approve": "approve D{drain}",  # a drain button's value is "<drain id>:<plan hash>"
    "drain_deny": "deny D{drain}",
}


def inline(md: str) -> RichText:
    """mrkdwn-ish text -> styled rich Text (markers removed)."""
    out = RichText()
    for piece in _INLINE.split(md):
        if not piece:
            continue
        if len(piece) >= 2 and piece[0] in _STYLE and piece[-1] == piece[0] and _INLINE.fullmatch(piece):
            out.append(piece[1:-1], style=_STYLE[piece[0]])
        else:
            out.append(piece)
    return out


def actions_hint(part: Actions) -> RichText:
    out = RichText("→ ", style="bold")
    hints = []
    for b in part.buttons:
        verb = CONSOLE_VERB.get(b.action_id, b.action_id).format(job=b.value, drain=b.value.split(":")[0])
        hints.append(f"{b.label}: `{verb}`")
    out.append_text(inline("   ".join(hints)))
    return out


def render(msg: Message) -> Group:
    """The message as rich renderables: header rule, paragraphs, 'Label: value' fields, dim context."""
    items: list[RichText | Rule] = []
    for part in msg.parts:
        if isinstance(part, Header):
            items.append(Rule(RichText(part.text, style="bold"), align="left"))
        elif isinstance(part, Text):
            items.append(inline(part.md))
        elif isinstance(part, Fields):
            for label, value in part.items:
                line = RichText(f"{label}: ", style="bold")
                line.append_text(inline(value.replace("\n", " ")))
                items.append(line)
        elif isinstance(part, Context):
            ctx = inline(" · ".join(part.items))
            ctx.stylize("dim")
            items.append(ctx)
        elif isinstance(part, Divider):
            items.append(Rule(style="dim"))
        elif isinstance(part, Actions):
            items.append(actions_hint(part))
    return Group(*items)


def render_plain(msg: Message) -> str:
    """The message as plain text (tests, logs): what a non-terminal stdout shows."""
    lines: list[str] = []
    for item in render(msg).renderables:
        if isinstance(item, Rule):
            title = item.title.plain if isinstance(item.title, RichText) else str(item.title)
            lines.append(f"── {title} ──" if title else "──")
        elif isinstance(item, RichText):
            lines.append(item.plain)
    return "\n".join(lines)
