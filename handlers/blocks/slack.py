"""Message model -> Block Kit dicts, enforcing Slack's limits; plus an independent limits checker for tests.

Limits (reference/slack.md §15): ≤50 blocks per message (100 per view), section text ≤3000, ≤10 fields of
≤2000, header ≤150, button text ≤75, context ≤10 elements, confirm title/text/buttons 100/300/30/30,
block_id ≤255 and unique (and new on every update), and ~13k characters of block text in total before Slack
answers `msg_blocks_too_long`. Whatever does not fit is cut with a pointer to where the rest can be read.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from handlers.blocks.fmt import cut
from handlers.blocks.ir import Actions, Button, Confirm, Context, Divider, Fields, Header, Message, Part, Text

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
FIELDS_MAX = 10
HEADER_MAX = 150
BUTTON_TEXT_MAX = 75
CONTEXT_MAX = 10
BLOCK_ID_MAX = 255
TOTAL_TEXT_MAX = 12_000  # below the undocumented ~13k `msg_blocks_too_long`
FALLBACK_TEXT_MAX = 3000  # the notification text; Slack truncates at 40k, nobody reads that far
_CONFIRM_MAX = {"title": 100, "text": 300, "confirm": 30, "deny": 30}


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": cut(text, limit) or " ", "emoji": True}


def _md(text: str, limit: int) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": cut(text, limit) or " "}


def _confirm(c: Confirm) -> dict[str, Any]:
    return {
        "title": _plain(c.title, _CONFIRM_MAX["title"]),
        "text": _plain(c.text, _CONFIRM_MAX["text"]),
        "confirm": _plain(c.confirm, _CONFIRM_MAX["confirm"]),
        "deny": _plain(c.deny, _CONFIRM_MAX["deny"]),
    }


def _button(b: Button) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "button",
        "action_id": b.action_id,
        "text": _plain(b.label, BUTTON_TEXT_MAX),
        "value": b.value[:2000],
    }
    if b.style:
        out["style"] = b.style
    if b.confirm:
        out["confirm"] = _confirm(b.confirm)
    return out


def _block(part: Part, pointer: str) -> list[dict[str, Any]]:
    """One part -> one or more blocks (without block_ids; those are assigned afterwards)."""
    if isinstance(part, Header):
        return [{"type": "header", "text": _plain(part.text, HEADER_MAX)}]
    if isinstance(part, Text):
        return [{"type": "section", "text": _md(cut(part.md, SECTION_TEXT_MAX, pointer), SECTION_TEXT_MAX)}]
    if isinstance(part, Fields):
        items = [_md(f"*{label}*\n{value}", FIELD_TEXT_MAX) for label, value in part.items]
        return [
            {"type": "section", "fields": items[i : i + FIELDS_MAX]} for i in range(0, len(items), FIELDS_MAX)
        ]
    if isinstance(part, Context):
        return [{"type": "context", "elements": [_md(t, FIELD_TEXT_MAX) for t in part.items[:CONTEXT_MAX]]}]
    if isinstance(part, Divider):
        return [{"type": "divider"}]
    assert isinstance(part, Actions)
    return [
        {
            "type": "actions",
            "block_id": part.block_id[:BLOCK_ID_MAX],
            "elements": [_button(b) for b in part.buttons],
        }
    ]


def _text_size(block: dict[str, Any]) -> int:
    size = len(block.get("text", {}).get("text", ""))
    size += sum(len(f["text"]) for f in block.get("fields", ()))
    size += sum(len(e.get("text", "")) for e in block.get("elements", ()) if block["type"] == "context")
    return size


def to_blocks(msg: Message, *, max_blocks: int = MAX_MESSAGE_BLOCKS) -> list[dict[str, Any]]:
    """Render a message as Block Kit within every limit; actions blocks are never cut."""
    pointer = f"(see {msg.more})" if msg.more else ""
    rendered = [b for part in msg.parts for b in _block(part, pointer)]
    actions = [b for b in rendered if b["type"] == "actions"]
    others = [b for b in rendered if b["type"] != "actions"]
    room = max_blocks - len(actions)
    sizes = [_text_size(b) for b in others]
    kept = others
    if len(others) > room or sum(sizes) > TOTAL_TEXT_MAX:
        kept = []
        total = 0
        for block, size in zip(others, sizes, strict=True):
            if len(kept) >= room - 1 or total + size > TOTAL_TEXT_MAX:
                break
            kept.append(block)
            total += size
        note = "… the rest of this message was cut to fit Slack's limits" + (
            f": see {msg.more}" if msg.more else ""
        )
        kept.append({"type": "context", "elements": [_md(note, FIELD_TEXT_MAX)]})
    # Actions go back where they were relative to the end: buttons are always the last blocks of our messages.
    blocks = kept + actions
    nonce = hashlib.sha1(json.dumps(blocks, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:8]
    for i, block in enumerate(blocks):
        if "block_id" not in block:
            # A content-derived nonce: a new id whenever the content changes (Slack wants new ids on update),
            # yet the same message always renders to the same ids (golden files stay stable).
            block["block_id"] = f"b{i}.{nonce}"
    return blocks


def fallback_text(msg: Message) -> str:
    return cut(msg.text, FALLBACK_TEXT_MAX) or " "


def message_payload(msg: Message) -> dict[str, Any]:
    """Keyword arguments for chat.postMessage / chat.update / respond(): `text` fallback + `blocks`."""
    return {"text": fallback_text(msg), "blocks": to_blocks(msg)}


def home_view(msg: Message) -> dict[str, Any]:
    """A Home tab view (views.publish)."""
    return {"type": "home", "blocks": to_blocks(msg, max_blocks=MAX_VIEW_BLOCKS)}


def problems(blocks: list[dict[str, Any]], *, max_blocks: int = MAX_MESSAGE_BLOCKS) -> list[str]:
    """Independent checks of what slack_sdk's validation misses (block count, field size, ids, totals)."""
    found: list[str] = []
    if not 1 <= len(blocks) <= max_blocks:
        found.append(f"{len(blocks)} blocks (1..{max_blocks} allowed)")
    ids = [b.get("block_id") for b in blocks]
    if any(i is None for i in ids):
        found.append("a block has no block_id")
    if len(set(ids)) != len(ids):
        found.append("duplicate block_id")
    total = 0
    for b in blocks:
        total += _text_size(b)
        if b["type"] == "header" and (
            b["text"]["type"] != "plain_text" or len(b["text"]["text"]) > HEADER_MAX
        ):
            found.append("header must be plain_text ≤150")
        if b["type"] == "section":
            if "text" in b and not 1 <= len(b["text"]["text"]) <= SECTION_TEXT_MAX:
                found.append("section text length out of 1..3000")
            fields = b.get("fields", [])
            if len(fields) > FIELDS_MAX or any(len(f["text"]) > FIELD_TEXT_MAX for f in fields):
                found.append("section fields: ≤10 items of ≤2000 characters")
        if b["type"] == "context" and len(b["elements"]) > CONTEXT_MAX:
            found.append("context: ≤10 elements")
        if b["type"] == "actions":
            for e in b["elements"]:
                if e["text"]["type"] != "plain_text" or len(e["text"]["text"]) > BUTTON_TEXT_MAX:
                    found.append("button text must be plain_text ≤75")
    if total > TOTAL_TEXT_MAX:
        found.append(f"{total} characters of block text (≤{TOTAL_TEXT_MAX})")
    return found
