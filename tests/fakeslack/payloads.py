"""Pure builders of what Slack sends to an app (slack.md §20) and the v0 request signature (§12)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import quote, urlencode


class DriverError(Exception):
    """The test asked for something Slack could never send (e.g. a click on a button that is not there)."""


def sign(signing_secret: str, timestamp: int | str, raw_body: str) -> str:
    """`v0=` + hex HMAC-SHA256 of `v0:<timestamp>:<raw body>` with the signing secret."""
    basestring = f"v0:{timestamp}:{raw_body}".encode()
    return "v0=" + hmac.new(signing_secret.encode(), basestring, hashlib.sha256).hexdigest()


def form_body(fields: dict[str, str]) -> str:
    return urlencode(fields)


def interactive_body(payload: dict[str, Any]) -> str:
    # Same encoding as Slack and bolt-python's tests: payload=<percent-encoded JSON>, '/' left as is.
    return "payload=" + quote(json.dumps(payload))


def user_json(user: dict[str, Any], team_id: str) -> dict[str, Any]:
    return {"id": user["id"], "username": user["name"], "name": user["name"], "team_id": team_id}


def slash_command_fields(ctx: dict[str, Any], *, command: str, text: str, response_url: str,
                         trigger_id: str) -> dict[str, str]:
    """The form fields of a slash command (§20.1); every value is a string."""
    team, user, channel = ctx["team"], ctx["user"], ctx["channel"]
    return {
        "token": "verification_token_deprecated", "team_id": team["id"], "team_domain": team["domain"],
        "channel_id": channel["id"], "channel_name": channel["name"], "user_id": user["id"],
        "user_name": user["name"], "command": command, "text": text, "api_app_id": ctx["bot"]["app_id"],
        "is_enterprise_install": "false", "response_url": response_url, "trigger_id": trigger_id,
    }


def find_action(blocks: list[Any] | None, action_id: str, block_id: str | None = None,
                value: str | None = None) -> tuple[str, dict[str, Any]]:
    """The (block_id, element) of the interactive element a user can click in `blocks`."""
    seen: list[str] = []
    for block in blocks or []:
        elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
        if block.get("accessory"):
            elements.append(block["accessory"])
        for element in elements:
            if not isinstance(element, dict) or "action_id" not in element:
                continue
            seen.append(f"{block.get('block_id')}/{element['action_id']}={element.get('value')!r}")
            if element["action_id"] != action_id:
                continue
            if block_id is not None and block.get("block_id") != block_id:
                continue
            if value is not None and element.get("value") != value:
                continue
            if not block.get("block_id"):
                raise DriverError(f"the block holding {action_id!r} has no block_id; Slack would invent one")
            return str(block["block_id"]), element
    raise DriverError(f"no clickable element action_id={action_id!r} block_id={block_id!r} value={value!r} "
                      f"in the stored message; it has: {seen or 'no interactive elements'}")


def block_actions_payload(ctx: dict[str, Any], *, message: dict[str, Any], is_ephemeral: bool,
                          block_id: str, element: dict[str, Any], response_url: str,
                          trigger_id: str, selected_value: str | None = None) -> dict[str, Any]:
    """A block_actions payload (§20.2) built from the stored message as Slack would show it."""
    team, user, channel = ctx["team"], ctx["user"], ctx["channel"]
    action: dict[str, Any] = {"action_id": element["action_id"], "block_id": block_id,
                              "type": element["type"], "action_ts": f"{time.time():.6f}"}
    if element["type"] == "button":
        action.update(text=element.get("text"), value=element.get("value"))
        if element.get("style"):
            action["style"] = element["style"]
    elif element["type"] in ("static_select", "overflow", "radio_buttons"):
        options = [o for o in element.get("options", []) if o.get("value") == selected_value]
        if not options:
            raise DriverError(f"{element['action_id']!r} has no option with value {selected_value!r}")
        action["selected_option"] = options[0]
    else:
        raise DriverError(f"clicking a {element['type']!r} element is not supported by the driver")
    container: dict[str, Any] = {"type": "message", "message_ts": message["ts"], "channel_id": channel["id"],
                                 "is_ephemeral": is_ephemeral}
    if message.get("thread_ts"):
        container["thread_ts"] = message["thread_ts"]
    return {
        "type": "block_actions", "user": user_json(user, team["id"]), "api_app_id": ctx["bot"]["app_id"],
        "token": "verification_token_deprecated", "container": container, "trigger_id": trigger_id,
        "team": {"id": team["id"], "domain": team["domain"]}, "enterprise": None,
        "is_enterprise_install": False, "channel": {"id": channel["id"], "name": channel["name"]},
        "message": message, "state": {"values": {}}, "response_url": response_url, "actions": [action],
    }


_VALUE_TYPES = {"plain_text_input", "number_input", "email_text_input", "url_text_input"}


def _element_state(element: dict[str, Any], value: Any) -> dict[str, Any]:
    kind = element.get("type")
    state: dict[str, Any] = {"type": kind}
    if kind in _VALUE_TYPES:
        state["value"] = None if value is None else str(value)
    elif kind in ("static_select", "radio_buttons"):
        matches = [o for o in element.get("options", []) if o.get("value") == value]
        if value is not None and not matches:
            raise DriverError(f"{element.get('action_id')!r} has no option {value!r}")
        state["selected_option"] = matches[0] if matches else None
    elif kind in ("checkboxes", "multi_static_select"):
        wanted = list(value or [])
        state["selected_options"] = [o for o in element.get("options", []) if o.get("value") in wanted]
    elif kind == "users_select":
        state["selected_user"] = value
    elif kind == "conversations_select":
        state["selected_conversation"] = value
    elif kind == "datepicker":
        state["selected_date"] = value
    elif kind == "timepicker":
        state["selected_time"] = value
    else:
        raise DriverError(f"input element type {kind!r} is not supported by the driver")
    return state


def view_state(blocks: list[Any], values: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`view.state` for a submission: every input of the view, filled from values[block_id][action_id]."""
    state: dict[str, dict[str, Any]] = {}
    known: set[tuple[str, str]] = set()
    for block in blocks:
        if block.get("type") != "input":
            continue
        element, block_id = block.get("element") or {}, str(block.get("block_id"))
        action_id = str(element.get("action_id"))
        known.add((block_id, action_id))
        value = values.get(block_id, {}).get(action_id)
        if value in (None, "", []) and not block.get("optional", False):
            raise DriverError(f"required input {block_id}/{action_id} is empty; Slack would not submit")
        state.setdefault(block_id, {})[action_id] = _element_state(element, value)
    for block_id, by_action in values.items():
        for action_id in by_action:
            if (block_id, action_id) not in known:
                raise DriverError(f"the view has no input {block_id}/{action_id}; inputs: {sorted(known)}")
    return {"values": state}


def view_submission_payload(ctx: dict[str, Any], *, view: dict[str, Any], values: dict[str, dict[str, Any]],
                            trigger_id: str) -> dict[str, Any]:
    """A view_submission payload (§20.3) for a view the app opened, with the user's input."""
    team, user = ctx["team"], ctx["user"]
    submitted = {**view, "state": view_state(view.get("blocks") or [], values)}
    return {"type": "view_submission", "team": {"id": team["id"], "domain": team["domain"]},
            "user": user_json(user, team["id"]), "api_app_id": ctx["bot"]["app_id"],
            "token": "verification_token_deprecated", "trigger_id": trigger_id, "view": submitted,
            "response_urls": [], "is_enterprise_install": False, "enterprise": None}


def event_callback(ctx: dict[str, Any], event: dict[str, Any], event_id: str) -> dict[str, Any]:
    """An Events API `event_callback` wrapper around `event` (e.g. app_home_opened)."""
    return {"token": "verification_token_deprecated", "team_id": ctx["team"]["id"],
            "api_app_id": ctx["bot"]["app_id"], "event": event, "type": "event_callback",
            "event_id": event_id, "event_time": int(time.time()),
            "authorizations": [{"team_id": ctx["team"]["id"], "user_id": ctx["bot"]["user_id"],
                                "is_bot": True, "is_enterprise_install": False}]}
