"""The shape gate for signed Slack HTTP requests: is this body something Slack could have sent? (pure)

Bolt parses a body and reads fields out of it before any listener runs, trusting their types: bad JSON in
`payload=`, a list where an object belongs or a number as an action id end as a 500 with a traceback inside
Bolt. The gate parses the body the way Bolt does and checks the types of every field Bolt or our listeners
read, so hostile or broken input gets a clean 400 instead. It also refuses a `response_url` that points
anywhere but Slack (or the configured Slack API host): the bot POSTs its answers there, so a forged URL
would make it send data to a place of the sender's choosing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

SLACK_HOOKS = ("https://hooks.slack.com/",)
# Payload types the bot has listeners for (slash commands carry no type). Anything else — workflow steps,
# dialogs, legacy attachments, shortcuts — is refused here rather than left to Bolt's parsers.
HANDLED_TYPES = frozenset({"block_actions", "view_submission", "view_closed", "event_callback", "url_verification"})
_STR = (str,)
_OPT_STR = (str, type(None))
_REF = (dict, str, type(None))  # team / channel / enterprise: an object, an id, or null

# Top-level fields: allowed types when present.
_TOP: dict[str, tuple[type, ...]] = {
    "type": _STR, "token": _STR, "team_id": _OPT_STR, "user_id": _STR, "channel_id": _STR,
    "command": _STR, "text": _STR, "trigger_id": _STR, "response_url": _STR, "api_app_id": _OPT_STR,
    "team": _REF, "user": (dict, str), "channel": _REF, "enterprise": _REF, "enterprise_id": _OPT_STR,
    "view": (dict,), "message": (dict,), "container": (dict,), "actions": (list,), "event": (dict,),
    "authorizations": (list,), "state": (dict,), "response_urls": (list,), "challenge": _STR,
    "is_ext_shared_channel": (bool,), "thread_ts": _STR, "is_enterprise_install": (bool, str),
    "previous_message": (dict,), "item": (dict,), "assistant_thread": (dict,), "function_data": (dict,),
    "function_execution_id": _OPT_STR, "bot_access_token": _OPT_STR, "callback_id": _STR,
}  # fmt: skip
_OBJECT_IDS = ("team", "user", "channel", "enterprise")
_EVENT: dict[str, tuple[type, ...]] = {
    "type": _STR, "user": (str, dict), "channel": (str, dict), "tab": _STR, "team": _OPT_STR,
    "user_team": _OPT_STR, "thread_ts": _STR, "item": (dict,), "message": (dict,),
    "previous_message": (dict,), "assistant_thread": (dict,), "enterprise": _REF,
}  # fmt: skip
_ACTION: dict[str, tuple[type, ...]] = {
    "action_id": _STR, "block_id": _STR, "value": _OPT_STR, "type": _STR, "action_ts": _STR,
}  # fmt: skip
_VIEW: dict[str, tuple[type, ...]] = {
    "callback_id": _STR, "private_metadata": _STR, "state": (dict,), "id": _STR, "team_id": _OPT_STR,
    "app_installed_team_id": _OPT_STR, "type": _STR,
}  # fmt: skip


def parse_like_bolt(text: str, content_type: str | None) -> Any:
    """The body as Bolt's parse_body reads it (JSON, `payload=<JSON>` form, or a plain form)."""
    if not text:
        return {}
    if content_type == "application/json" or text.startswith("{"):
        return json.loads(text)
    if "payload" in text:
        payload = dict(parse_qsl(text, keep_blank_values=True)).get("payload")
        return json.loads(payload) if payload is not None else {}
    return dict(parse_qsl(text, keep_blank_values=True))


def _fields(obj: Mapping[str, Any], spec: Mapping[str, tuple[type, ...]], where: str) -> str | None:
    for key, types in spec.items():
        if key in obj and not isinstance(obj[key], types):
            return f"{where}{key} has the wrong type ({type(obj[key]).__name__})"
    return None


def _id_objects(body: Mapping[str, Any], where: str) -> str | None:
    for key in _OBJECT_IDS:
        value = body.get(key)
        if isinstance(value, dict) and not isinstance(value.get("id"), _OPT_STR):
            return f"{where}{key}.id has the wrong type"
    return None


def _url_problem(url: str, slack_api_url: str | None) -> str | None:
    """A response_url must be Slack's hooks host, or the configured API host or one of its subdomains
    (e.g. hooks.slack-gov.com for https://slack-gov.com/api/), on the same scheme and port."""
    if any(url.startswith(prefix) for prefix in SLACK_HOOKS):
        return None
    if slack_api_url:
        try:
            api, target = urlsplit(slack_api_url), urlsplit(url)
            same_place = target.scheme == api.scheme and target.port == api.port
        except ValueError:
            return "response_url is not a URL"
        host, api_host = (target.hostname or ""), (api.hostname or "")
        if same_place and api_host and (host == api_host or host.endswith("." + api_host)):
            return None
    return "response_url does not point to Slack"


def _interactive_problem(body: Mapping[str, Any], kind: str) -> str | None:
    user = body.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str):
        return f"{kind} without user.id"
    if kind == "block_actions":
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions:
            return "block_actions without actions"
        for i, action in enumerate(actions):
            if not isinstance(action, dict) or not isinstance(action.get("action_id"), str):
                return f"actions[{i}] has no action_id"
            if problem := _fields(action, _ACTION, f"actions[{i}]."):
                return problem
    if kind in ("view_submission", "view_closed"):
        view = body.get("view")
        if not isinstance(view, dict) or not isinstance(view.get("callback_id"), str):
            return f"{kind} without view.callback_id"
        if not isinstance(view.get("type"), str):
            return f"{kind} without view.type"
        if problem := _fields(view, _VIEW, "view."):
            return problem
    return None


def shape_problem(body: Any, *, slack_api_url: str | None = None) -> str | None:
    """Why a parsed body is not a Slack request the bot can handle safely (None when it is)."""
    if not isinstance(body, dict):
        return "the payload is not a JSON object"
    return _field_problem(body) or _response_url_problem(body, slack_api_url) or _kind_problem(body)


def _field_problem(body: dict[str, Any]) -> str | None:
    """The types of the top-level, event and authorization fields the bot reads."""
    if problem := _fields(body, _TOP, "") or _id_objects(body, ""):
        return problem
    event = body.get("event")
    if isinstance(event, dict) and (problem := _fields(event, _EVENT, "event.") or _id_objects(event, "event.")):
        return problem
    for key in ("authorizations", "response_urls"):
        items = body.get(key) or []
        if not all(isinstance(item, dict) for item in items):
            return f"{key} must be a list of objects"
    for auth in body.get("authorizations") or []:
        if problem := _fields(auth, {"team_id": _OPT_STR, "enterprise_id": _OPT_STR, "user_id": _OPT_STR}, "auth."):
            return problem
    return None


def _response_url_problem(body: dict[str, Any], slack_api_url: str | None) -> str | None:
    """Every response_url must be a string pointing at Slack (the bot posts answers there)."""
    urls = [body["response_url"]] if "response_url" in body else []
    urls += [item.get("response_url") for item in body.get("response_urls") or []]
    for url in urls:
        if not isinstance(url, str):
            return "response_urls[].response_url must be a string"
        if problem := _url_problem(url, slack_api_url):
            return problem
    return None


def _kind_problem(body: dict[str, Any]) -> str | None:
    """A payload type the bot handles, with what that type needs (user, actions, view, event type)."""
    kind = body.get("type")
    event = body.get("event")
    if kind is not None and kind not in HANDLED_TYPES:
        return f"payloads of type {str(kind)[:40]!r} are not handled by this bot"
    if kind in ("block_actions", "view_submission", "view_closed"):
        return _interactive_problem(body, str(kind))
    if kind == "event_callback" and not (isinstance(event, dict) and isinstance(event.get("type"), str)):
        return "event_callback without an event type"
    if "command" in body and not isinstance(body.get("user_id"), str):
        return "slash command without user_id"
    if kind is None and "command" not in body and "ssl_check" not in body:
        return "neither a slash command nor a payload with a type"
    return None


def payload_problem(text: str, content_type: str | None, *, slack_api_url: str | None = None) -> str | None:
    """Why a (signed, UTF-8) request body must be refused with a 400, or None to let Bolt have it."""
    try:
        body = parse_like_bolt(text, content_type)
    except (ValueError, TypeError, RecursionError):
        return "the body is neither JSON nor a form Slack sends"
    return shape_problem(body, slack_api_url=slack_api_url)
