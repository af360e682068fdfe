"""Fake Web API methods for views, users, user groups and Socket Mode (apps.connections.open)."""

from __future__ import annotations

import copy
import secrets
from typing import Any

from .blocks import MAX_VIEW_BLOCKS, validate_blocks, view_shape_errors
from .records import View
from .store import MAX_PUSHED_VIEWS, TRIGGER_TTL_S, Workspace
from .webapi import ApiError, CallContext, Method, flag, require


def _new_hash(ws: Workspace) -> str:
    return f"{int(ws.clock.now())}.{secrets.token_hex(4)}"


def checked_view(args: dict[str, Any], *, kind: str) -> dict[str, Any]:
    view = require(args, "view")
    shape = view_shape_errors(view)
    if shape:
        raise ApiError("invalid_arguments", response_metadata={"messages": [f"[ERROR] {e}" for e in shape]})
    if view["type"] != kind:
        raise ApiError("invalid_arguments", response_metadata={
            "messages": [f"[ERROR] view.type must be {kind!r} for this method, got {view['type']!r}"]})
    errors = validate_blocks(view["blocks"], max_blocks=MAX_VIEW_BLOCKS, in_view=True)
    if errors:
        raise ApiError("invalid_blocks", errors=errors,
                       response_metadata={"messages": [f"[ERROR] {e}" for e in errors]})
    return copy.deepcopy(view)


def take_trigger(ws: Workspace, trigger_id: str) -> Any:
    """A trigger can be exchanged once, within 3 s of the interaction (on the fake clock)."""
    trigger = ws.triggers.get(trigger_id)
    if trigger is None:
        raise ApiError("invalid_trigger_id")
    if trigger.used:
        raise ApiError("exchanged_trigger_id")
    if ws.clock.now() - trigger.issued_t > TRIGGER_TTL_S:
        raise ApiError("expired_trigger_id")
    trigger.used = True
    return trigger


def _slack_view(ws: Workspace, view: View) -> dict[str, Any]:
    return view.to_slack(ws.team["id"], ws.bot["app_id"], ws.bot["bot_id"])


def views_open(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    body = checked_view(args, kind="modal")
    trigger = take_trigger(ws, str(require(args, "trigger_id")))
    view_id = ws.new_id("V")
    view = View(id=view_id, user=trigger.user, body=body, root_view_id=view_id, previous_view_id=None,
                hash=_new_hash(ws))
    ws.views[view_id] = view
    return {"view": _slack_view(ws, view)}


def open_stack(ws: Workspace, root_view_id: str) -> list[View]:
    return [v for v in ws.views.values() if v.root_view_id == root_view_id and v.open]


def views_push(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    body = checked_view(args, kind="modal")
    trigger = take_trigger(ws, str(require(args, "trigger_id")))
    source = ws.views.get(trigger.view_id or "")
    if source is None:  # fall back to the user's most recent open modal
        candidates = [v for v in ws.views.values() if v.open and v.user == trigger.user
                      and v.body.get("type") == "modal"]
        source = candidates[-1] if candidates else None
    if source is None or not source.open:
        raise ApiError("view_not_found", detail="views.push needs an open modal to push onto")
    stack = open_stack(ws, source.root_view_id)
    if len(stack) - 1 >= MAX_PUSHED_VIEWS:
        raise ApiError("push_limit_reached")
    view_id = ws.new_id("V")
    view = View(id=view_id, user=source.user, body=body, root_view_id=source.root_view_id,
                previous_view_id=stack[-1].id, hash=_new_hash(ws))
    ws.views[view_id] = view
    return {"view": _slack_view(ws, view)}


def views_update(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    body = checked_view(args, kind="modal")
    view_id, external_id = args.get("view_id"), args.get("external_id")
    if not view_id and not external_id:
        raise ApiError("invalid_arguments", detail="views.update needs view_id or external_id")
    view = ws.views.get(str(view_id)) if view_id else next(
        (v for v in ws.views.values() if v.body.get("external_id") == external_id), None)
    if view is None or not view.open:
        raise ApiError("not_found")
    if args.get("hash") and args["hash"] != view.hash:
        raise ApiError("hash_conflict")
    view.body, view.hash, view.errors = body, _new_hash(ws), None
    view.updates += 1
    return {"view": _slack_view(ws, view)}


def views_publish(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    user = str(require(args, "user_id"))
    if user not in ws.users:
        raise ApiError("user_not_found")
    body = checked_view(args, kind="home")
    current = ws.home_views.get(user)
    if args.get("hash") and current and args["hash"] != current["hash"]:
        raise ApiError("hash_conflict")
    published = {**body, "id": current["id"] if current else ws.new_id("V"), "hash": _new_hash(ws),
                 "team_id": ws.team["id"], "app_id": ws.bot["app_id"], "bot_id": ws.bot["bot_id"]}
    ws.home_views[user] = published
    ws.home_publishes[user] = ws.home_publishes.get(user, 0) + 1
    return {"view": copy.deepcopy(published)}


def users_info(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    user = ws.users.get(str(require(args, "user")))
    if user is None:
        raise ApiError("user_not_found")
    profile = {"real_name": user["real_name"], "display_name": user["name"]}
    return {"user": {"team_id": ws.team["id"], "profile": profile, **copy.deepcopy(user)}}


def _paid_plan(ws: Workspace) -> None:
    if ws.plan != "paid":
        raise ApiError("plan_upgrade_required")  # user groups need a Standard-or-above plan (§13)


def _group_json(ws: Workspace, group: dict[str, Any], include_users: bool) -> dict[str, Any]:
    out = {"id": group["id"], "team_id": ws.team["id"], "handle": group["handle"], "name": group["name"],
           "is_usergroup": True, "date_delete": 1 if group["disabled"] else 0,
           "user_count": len(group["users"])}
    if include_users:
        out["users"] = list(group["users"])
    return out


def usergroups_list(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    _paid_plan(ws)
    include_disabled = flag(args.get("include_disabled"))
    groups = [g for g in ws.usergroups.values() if include_disabled or not g["disabled"]]
    return {"usergroups": [_group_json(ws, g, flag(args.get("include_users"))) for g in groups]}


def usergroups_users_list(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    _paid_plan(ws)
    group = ws.usergroups.get(str(require(args, "usergroup")))
    if group is None or (group["disabled"] and not flag(args.get("include_disabled"))):
        raise ApiError("no_such_subteam")
    return {"users": list(group["users"])}


def connections_open(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    ticket = secrets.token_urlsafe(12)
    ws.tickets[ticket] = {"issued_t": ws.clock.now(), "uses": 0}
    ws_base = ctx.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    return {"url": f"{ws_base}/link?ticket={ticket}"}


MISC_METHODS = {
    "views.open": Method(views_open),
    "views.push": Method(views_push),
    "views.update": Method(views_update),
    "views.publish": Method(views_publish),
    "users.info": Method(users_info, scope="users:read"),
    "usergroups.list": Method(usergroups_list, scope="usergroups:read"),
    "usergroups.users.list": Method(usergroups_users_list, scope="usergroups:read"),
    "apps.connections.open": Method(connections_open, token_kind="app"),
}
