"""What Slack does with an app's answers: slash-command acks, view_submission acks, response_url posts."""

from __future__ import annotations

from typing import Any

from .blocks import MAX_MESSAGE_BLOCKS, MAX_VIEW_BLOCKS, validate_blocks, view_shape_errors
from .methods_chat import store_bot_message
from .methods_misc import open_stack
from .records import Ephemeral, ResponseUrl, View
from .store import MAX_PUSHED_VIEWS, RESPONSE_URL_MAX_USES, RESPONSE_URL_TTL_S, Workspace


def _visible_message(ws: Workspace, channel: str | None, user: str | None, body: dict[str, Any],
                     source: str, thread_ts: str | None = None) -> dict[str, Any]:
    """Post an in_channel message or an ephemeral one, as Slack does for acks and response_url posts."""
    text, blocks = str(body.get("text") or ""), body.get("blocks") or None
    errors = validate_blocks(blocks, max_blocks=MAX_MESSAGE_BLOCKS)
    if errors:
        return {"effect": "rejected", "error": "invalid_blocks", "errors": errors}
    if channel is None:
        return {"effect": "dropped", "error": "no channel to post in"}
    if body.get("response_type") == "in_channel":
        message = store_bot_message(ws, channel, text, blocks, thread_ts=thread_ts or body.get("thread_ts"),
                                    source=source)
        return {"effect": "in_channel", "ts": message.ts}
    eph = Ephemeral(channel=channel, user=user or "", ts=ws.next_ts(), text=text, blocks=blocks,
                    thread_ts=thread_ts or body.get("thread_ts"), source=source)
    ws.ephemerals.append(eph)
    return {"effect": "ephemeral", "ts": eph.ts}


def apply_slash_ack(ws: Workspace, command: dict[str, Any], ack: dict[str, Any] | None) -> dict[str, Any]:
    """An ack with text/blocks is shown to the user (ephemeral unless response_type is in_channel)."""
    if not ack or not (ack.get("text") or ack.get("blocks")):
        return {"effect": "none"}
    return _visible_message(ws, command.get("channel_id"), command.get("user_id"), ack, source="ack")


def apply_view_ack(ws: Workspace, submission: dict[str, Any], ack: dict[str, Any] | None) -> dict[str, Any]:
    """view_submission response_action semantics (slack.md §4, §20.3)."""
    view = ws.views.get(str(submission.get("view", {}).get("id")))
    if view is None:
        return {"effect": "unknown_view"}
    action = (ack or {}).get("response_action")
    if action == "errors":
        view.errors = dict((ack or {}).get("errors") or {})
        return {"effect": "errors", "errors": view.errors}
    if action == "update":
        new_body = (ack or {}).get("view")
        problems = view_shape_errors(new_body) or validate_blocks(
            (new_body or {}).get("blocks"), max_blocks=MAX_VIEW_BLOCKS, in_view=True)
        if problems or not isinstance(new_body, dict):
            return {"effect": "rejected", "errors": problems}
        view.body, view.errors = dict(new_body), None
        view.updates += 1
        return {"effect": "updated", "view_id": view.id}
    if action == "push":
        stack = open_stack(ws, view.root_view_id)
        if len(stack) - 1 >= MAX_PUSHED_VIEWS:
            return {"effect": "rejected", "error": "push_limit_reached"}
        new_id = ws.new_id("V")
        ws.views[new_id] = View(id=new_id, user=view.user, body=dict((ack or {}).get("view") or {}),
                                root_view_id=view.root_view_id, previous_view_id=stack[-1].id, hash="pushed")
        return {"effect": "pushed", "view_id": new_id}
    if action == "clear":
        for open_view in open_stack(ws, view.root_view_id):
            open_view.open = False
        return {"effect": "cleared"}
    view.open = False  # an empty ack closes the submitted view
    return {"effect": "closed", "view_id": view.id}


def apply_ack(ws: Workspace, kind: str, payload: dict[str, Any],
              ack: dict[str, Any] | None) -> dict[str, Any]:
    if kind == "slash_commands":
        return apply_slash_ack(ws, payload, ack)
    if kind == "interactive" and payload.get("type") == "view_submission":
        return apply_view_ack(ws, payload, ack)
    return {"effect": "none"}


def _replace_or_delete(ws: Workspace, url: ResponseUrl, body: dict[str, Any]) -> dict[str, Any] | None:
    """replace_original / delete_original act on the message the interaction came from."""
    delete, replace = bool(body.get("delete_original")), bool(body.get("replace_original"))
    if not (delete or replace):
        return None
    if url.message_ts is None or url.channel is None:
        return {"effect": "no_source_message"}
    target: Any = (ws.find_ephemeral(url.channel, url.message_ts) if url.is_ephemeral
                   else ws.find_message(url.channel, url.message_ts))
    if target is None:
        return {"effect": "source_message_gone"}
    if delete:
        target.deleted = True
        return {"effect": "deleted", "ts": url.message_ts}
    blocks = body.get("blocks") or None
    errors = validate_blocks(blocks, max_blocks=MAX_MESSAGE_BLOCKS)
    if errors:
        return {"effect": "rejected", "error": "invalid_blocks", "errors": errors}
    if url.is_ephemeral:
        target.replaced += 1
    else:
        target.history.append({**target.version(), "replaced_at": ws.clock.now()})
        target.edits += 1
    target.text, target.blocks = str(body.get("text") or ""), blocks
    return {"effect": "replaced", "ts": url.message_ts}


def use_response_url(ws: Workspace, key: str, body: Any) -> tuple[int, str, dict[str, Any]]:
    """Handle POST /response/<key>: (HTTP status, response text, the record stored in response_posts)."""
    url = ws.response_urls.get(key)
    record: dict[str, Any] = {"key": key, "body": body, "t": ws.clock.now()}
    ws.response_posts.append(record)
    if url is None:
        record.update(accepted=False, error="unknown_response_url")
        return 404, "unknown_response_url", record
    url.uses += 1
    record.update(channel=url.channel, user=url.user, use=url.uses)
    if ws.clock.now() - url.issued_t > RESPONSE_URL_TTL_S:
        record.update(accepted=False, error="expired_url")
        return 404, "expired_url", record
    if url.uses > RESPONSE_URL_MAX_USES:
        record.update(accepted=False, error="used_too_many_times")
        return 404, "used_too_many_times", record
    if not isinstance(body, dict):
        record.update(accepted=False, error="invalid_payload")
        return 400, "invalid_payload", record
    effect = _replace_or_delete(ws, url, body)
    if effect is None:
        effect = _visible_message(ws, url.channel, url.user, body, source="response_url")
    record.update(accepted=effect.get("effect") not in ("rejected", "dropped"), **effect)
    if not record["accepted"]:
        return 400, str(effect.get("error")), record
    return 200, "ok", record
