"""Minimal but honest Block Kit validation for the fake Slack (the limits that bite, slack.md §15.1)."""

from __future__ import annotations

from typing import Any

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_FIELDS = 10
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_ACTION_ID = 255
MAX_BLOCK_ID = 255
MAX_ACTIONS_ELEMENTS = 25
MAX_CONTEXT_ELEMENTS = 10
MAX_MARKDOWN_TEXT = 12_000
MAX_MODAL_TITLE = 24

KNOWN_BLOCK_TYPES = frozenset(
    {"section", "header", "actions", "context", "divider", "image", "input", "rich_text", "markdown",
     "file", "video"}
)
# Input blocks only make sense where something can be submitted: modals (and Home tabs).
VIEW_ONLY_BLOCK_TYPES = frozenset({"input"})
TEXT_TYPES = frozenset({"plain_text", "mrkdwn"})
CONTEXT_ELEMENT_TYPES = frozenset({"plain_text", "mrkdwn", "image"})


def _text_errors(where: str, obj: Any, max_len: int, *, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where}: must be a text object"]
    kind = obj.get("type")
    allowed = {"plain_text"} if plain_only else TEXT_TYPES
    if kind not in allowed:
        return [f"{where}: text type must be one of {sorted(allowed)}, got {kind!r}"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"{where}: text must be a non-empty string"]
    if len(text) > max_len:
        return [f"{where}: text is {len(text)} chars, more than {max_len}"]
    return []


def _button_errors(where: str, element: dict[str, Any]) -> list[str]:
    errors = _text_errors(f"{where}.text", element.get("text"), MAX_BUTTON_TEXT, plain_only=True)
    value = element.get("value")
    if value is not None and (not isinstance(value, str) or len(value) > MAX_BUTTON_VALUE):
        errors.append(f"{where}.value: must be a string of at most {MAX_BUTTON_VALUE} chars")
    style = element.get("style")
    if style is not None and style not in ("primary", "danger"):
        errors.append(f"{where}.style: must be primary or danger, got {style!r}")
    return errors


def _element_errors(where: str, element: Any, seen_action_ids: set[str]) -> list[str]:
    if not isinstance(element, dict) or not isinstance(element.get("type"), str):
        return [f"{where}: must be an object with a type"]
    errors: list[str] = []
    action_id = element.get("action_id")
    if action_id is not None:
        if not isinstance(action_id, str) or not action_id or len(action_id) > MAX_ACTION_ID:
            errors.append(f"{where}.action_id: must be 1..{MAX_ACTION_ID} chars")
        elif action_id in seen_action_ids:
            errors.append(f"{where}.action_id: {action_id!r} is used twice in the same block")
        else:
            seen_action_ids.add(action_id)
    if element["type"] == "button":
        errors.extend(_button_errors(where, element))
    return errors


def _section_errors(where: str, block: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    text, fields = block.get("text"), block.get("fields")
    if text is None and not fields:
        errors.append(f"{where}: a section needs text or fields")
    if text is not None:
        errors.extend(_text_errors(f"{where}.text", text, MAX_SECTION_TEXT))
    if fields is not None:
        if not isinstance(fields, list) or len(fields) > MAX_FIELDS:
            errors.append(f"{where}.fields: must be a list of at most {MAX_FIELDS} text objects")
        else:
            for i, field in enumerate(fields):
                errors.extend(_text_errors(f"{where}.fields[{i}]", field, MAX_FIELD_TEXT))
    accessory = block.get("accessory")
    if accessory is not None:
        errors.extend(_element_errors(f"{where}.accessory", accessory, set()))
    return errors


def _block_errors(where: str, block: dict[str, Any], *, in_view: bool) -> list[str]:
    kind = block["type"]
    if kind not in KNOWN_BLOCK_TYPES:
        return [f"{where}: unknown block type {kind!r}"]
    if kind in VIEW_ONLY_BLOCK_TYPES and not in_view:
        return [f"{where}: {kind} blocks are only allowed in modals and Home tabs"]
    if kind == "section":
        return _section_errors(where, block)
    if kind == "header":
        return _text_errors(f"{where}.text", block.get("text"), MAX_HEADER_TEXT, plain_only=True)
    if kind == "markdown":
        text = block.get("text")
        if not isinstance(text, str) or not 0 < len(text) <= MAX_MARKDOWN_TEXT:
            return [f"{where}.text: must be 1..{MAX_MARKDOWN_TEXT} chars"]
        return []
    if kind in ("actions", "context"):
        limit = MAX_ACTIONS_ELEMENTS if kind == "actions" else MAX_CONTEXT_ELEMENTS
        elements = block.get("elements")
        if not isinstance(elements, list) or not 0 < len(elements) <= limit:
            return [f"{where}.elements: must be a list of 1..{limit} elements"]
        seen: set[str] = set()
        errors: list[str] = []
        for i, element in enumerate(elements):
            if kind == "context":
                if not isinstance(element, dict) or element.get("type") not in CONTEXT_ELEMENT_TYPES:
                    errors.append(f"{where}.elements[{i}]: context elements are text or image objects")
            else:
                errors.extend(_element_errors(f"{where}.elements[{i}]", element, seen))
        return errors
    if kind == "input":
        errors = _text_errors(f"{where}.label", block.get("label"), 2000, plain_only=True)
        return errors + _element_errors(f"{where}.element", block.get("element"), set())
    return []


def validate_blocks(blocks: Any, *, max_blocks: int, in_view: bool = False) -> list[str]:
    """Return the reasons `blocks` would be refused by Slack as `invalid_blocks` (empty list = valid)."""
    if blocks is None:
        return []
    if not isinstance(blocks, list):
        return ["blocks must be a JSON array"]
    if len(blocks) > max_blocks:
        return [f"{len(blocks)} blocks, more than the limit of {max_blocks}"]
    errors: list[str] = []
    seen_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            errors.append(f"{where}: must be an object with a type")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or not block_id or len(block_id) > MAX_BLOCK_ID:
                errors.append(f"{where}.block_id: must be 1..{MAX_BLOCK_ID} chars")
            elif block_id in seen_ids:
                errors.append(f"{where}.block_id: {block_id!r} is not unique in this message")
            else:
                seen_ids.add(block_id)
        errors.extend(_block_errors(where, block, in_view=in_view))
    return errors


def view_shape_errors(view: Any) -> list[str]:
    """Reasons a modal / Home view is malformed apart from its blocks (Slack: `invalid_arguments`)."""
    if not isinstance(view, dict):
        return ["view must be a JSON object"]
    kind = view.get("type")
    if kind not in ("modal", "home"):
        return [f"view.type must be modal or home, got {kind!r}"]
    errors: list[str] = []
    if kind == "modal":
        errors.extend(_text_errors("view.title", view.get("title"), MAX_MODAL_TITLE, plain_only=True))
        for key in ("submit", "close"):
            if view.get(key) is not None:
                errors.extend(_text_errors(f"view.{key}", view[key], MAX_MODAL_TITLE, plain_only=True))
    metadata = view.get("private_metadata")
    if metadata is not None and (not isinstance(metadata, str) or len(metadata) > 3000):
        errors.append("view.private_metadata: must be a string of at most 3000 chars")
    if not isinstance(view.get("blocks"), list):
        errors.append("view.blocks: required")
    return errors
