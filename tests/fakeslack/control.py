"""Test control API under /_test/ (slack.md §19.6) and the response_url sink (§19.5)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .interactions import apply_ack, use_response_url
from .ratelimit import RateLimiter
from .records import Injection, Message, ts_key
from .socketmode import SocketHub
from .store import Workspace

INJECT_MODES = ("429", "500", "503", "drop")


class ControlError(Exception):
    """A bad request to the control API: answered with HTTP 400 and the reason."""


async def _json(request: web.Request) -> dict[str, Any]:
    raw = await request.text()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as e:
        raise ControlError(f"body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise ControlError("body must be a JSON object")
    return body


class Control:
    def __init__(self, ws: Workspace, hub: SocketHub, limiter_box: list[RateLimiter]) -> None:
        self.ws, self.hub, self.limiter_box = ws, hub, limiter_box

    def routes(self) -> list[web.RouteDef]:
        post = {
            "seed": self.seed, "reset": self.reset, "inject": self.inject, "trigger": self.trigger,
            "response_url": self.response_url, "clock": self.clock, "deliver": self.deliver,
            "disconnect": self.disconnect, "record_ack": self.record_ack, "user_message": self.user_message,
            "rate_limits": self.rate_limits,
        }
        get = {"state": self.state, "messages": self.messages, "message": self.message, "view": self.view,
               "health": self.health, "context": self.context, "calls": self.calls,
               "ephemerals": self.ephemerals}
        routes = [web.post(f"/_test/{name}", self._wrap(fn)) for name, fn in post.items()]
        routes += [web.get(f"/_test/{name}", self._wrap(fn)) for name, fn in get.items()]
        routes.append(web.post("/response/{key}", self.response_sink))
        return routes

    def _wrap(self, fn: Any) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                result = await fn(request)
            except (ControlError, KeyError, ValueError, TypeError) as e:
                return web.json_response({"ok": False, "error": f"{type(e).__name__}: {e}"}, status=400)
            return web.json_response({"ok": True, **result})
        return handler

    async def health(self, request: web.Request) -> dict[str, Any]:
        return {"connections": len(self.hub.connections)}

    async def context(self, request: web.Request) -> dict[str, Any]:
        """Team, bot, and the named user and channel: what the driver needs to build payloads."""
        user_id, channel_id = request.query.get("user"), request.query.get("channel")
        user = self.ws.users.get(user_id or "") or (
            {"id": user_id, "name": user_id.lower()} if user_id else None)
        channel = self.ws.channels.get(channel_id or "") or (
            {"id": channel_id, "name": channel_id.lower()} if channel_id else None)
        bot = {k: v for k, v in self.ws.bot.items() if "token" not in k}
        return {"team": self.ws.team, "bot": bot, "user": user, "channel": channel}

    async def seed(self, request: web.Request) -> dict[str, Any]:
        self.ws.seed(await _json(request))
        return {}

    async def reset(self, request: web.Request) -> dict[str, Any]:
        await self.hub.close_all()
        self.ws.reset()
        self.limiter_box[0] = RateLimiter()
        return {}

    async def state(self, request: web.Request) -> dict[str, Any]:
        return self.ws.to_state()  # serialised at once, so no copy is needed

    async def calls(self, request: web.Request) -> dict[str, Any]:
        method = request.query.get("method")
        return {"calls": [c for c in self.ws.calls if method in (None, c["method"])]}

    async def ephemerals(self, request: web.Request) -> dict[str, Any]:
        channel, user = request.query.get("channel"), request.query.get("user")
        return {"ephemerals": [vars(e) for e in self.ws.ephemerals if not e.deleted
                               and channel in (None, e.channel) and user in (None, e.user)]}

    async def inject(self, request: web.Request) -> dict[str, Any]:
        body = await _json(request)
        mode = str(body.get("mode", "429"))
        if mode not in INJECT_MODES:
            raise ControlError(f"mode must be one of {INJECT_MODES}, got {mode!r}")
        if body.get("clear"):
            self.ws.injections.clear()
            return {}
        self.ws.injections.append(Injection(method=str(body["method"]), remaining=int(body.get("count", 1)),
                                            mode=mode, retry_after_s=int(body.get("retry_after_s", 1))))
        return {}

    async def trigger(self, request: web.Request) -> dict[str, Any]:
        body = await _json(request)
        trigger = self.ws.mint_trigger(body.get("user"), body.get("view_id"))
        return {"trigger_id": trigger.trigger_id, "issued_t": trigger.issued_t}

    async def response_url(self, request: web.Request) -> dict[str, Any]:
        body = await _json(request)
        url = self.ws.mint_response_url(body.get("channel"), body.get("user"), body.get("message_ts"),
                                        bool(body.get("is_ephemeral", False)))
        return {"key": url.key, "url": f"{request.scheme}://{request.host}/response/{url.key}"}

    async def clock(self, request: web.Request) -> dict[str, Any]:
        body = await _json(request)
        if "set" in body:
            self.ws.clock.set(float(body["set"]), freeze=bool(body.get("freeze", False)))
        if "advance_s" in body:
            self.ws.clock.advance(float(body["advance_s"]))
        if body.get("unfreeze"):
            self.ws.clock.unfreeze()
        return self.ws.clock.describe()

    async def deliver(self, request: web.Request) -> dict[str, Any]:
        body = await _json(request)
        if body.get("type") not in ("slash_commands", "interactive", "events_api"):
            raise ControlError("type must be slash_commands, interactive or events_api")
        if not isinstance(body.get("payload"), dict):
            raise ControlError("payload must be a JSON object")
        result = await self.hub.deliver(body)
        return {"delivered": result.pop("ok"), **result}

    async def disconnect(self, request: web.Request) -> dict[str, Any]:
        body = await _json(request)
        ids = await self.hub.disconnect(
            str(body.get("reason", "refresh_requested")), body.get("connection_id"),
            close=bool(body.get("close", False)), frame=bool(body.get("frame", True)))
        return {"connections": ids}

    async def record_ack(self, request: web.Request) -> dict[str, Any]:
        """The driver reports an HTTP-mode ack so that both transports share one record and one effect."""
        body = await _json(request)
        ack = body.get("ack")
        effect: dict[str, Any] = {"effect": "none"}
        if body.get("status") == 200:
            effect = apply_ack(self.ws, str(body["kind"]), body["payload"], ack)
        self.ws.acks.append({"transport": "http", "type": body["kind"], "payload": ack,
                             "status": body.get("status"), "latency_s": body.get("latency_s"),
                             "t": self.ws.clock.now(), "effect": effect})
        if body.get("failure"):
            self.ws.ack_failures.append({"transport": "http", "type": body["kind"], "error": body["failure"],
                                         "t": self.ws.clock.now()})
        return {"effect": effect}

    async def user_message(self, request: web.Request) -> dict[str, Any]:
        """A person (not the bot) posts in a channel: gives tests messages the bot does not own."""
        body = await _json(request)
        channel, user = str(body["channel"]), str(body["user"])
        if channel not in self.ws.channels or user not in self.ws.users:
            raise ControlError(f"unknown channel {channel!r} or user {user!r}: seed them first")
        message = Message(channel=channel, ts=self.ws.next_ts(), text=str(body.get("text", "")),
                          blocks=body.get("blocks"), user=user, bot_id=None,
                          thread_ts=body.get("thread_ts"), source="user")
        self.ws.messages.append(message)
        return {"ts": message.ts}

    async def rate_limits(self, request: web.Request) -> dict[str, Any]:
        body = await _json(request)
        self.ws.rate_limits_enabled = bool(body.get("enabled", True))
        self.limiter_box[0] = RateLimiter({str(k): int(v) for k, v in (body.get("limits") or {}).items()})
        return {"enabled": self.ws.rate_limits_enabled}

    async def messages(self, request: web.Request) -> dict[str, Any]:
        q = request.query
        channel = q["channel"]
        if q.get("thread_ts"):
            items = self.ws.thread(channel, q["thread_ts"])
        elif q.get("include_replies") == "1":
            items = [m for m in self.ws.messages if m.channel == channel and not m.deleted]
        else:
            items = self.ws.timeline(channel)
        return {"messages": [m.to_json() for m in sorted(items, key=ts_key)]}

    async def message(self, request: web.Request) -> dict[str, Any]:
        channel, ts = request.query["channel"], request.query["ts"]
        message = self.ws.find_message(channel, ts)
        if message is not None:
            return {"message": message.to_json(), "is_ephemeral": False,
                    "slack": message.to_slack(self.ws.team["id"], self.ws.bot["app_id"])}
        eph = self.ws.find_ephemeral(channel, ts)
        if eph is not None:
            as_message = {"type": "message", "ts": eph.ts, "text": eph.text, "blocks": eph.blocks,
                          "user": self.ws.bot["user_id"], "bot_id": self.ws.bot["bot_id"]}
            return {"message": {**vars(eph)}, "is_ephemeral": True, "slack": as_message}
        raise ControlError(f"no message {ts} in channel {channel}")

    async def view(self, request: web.Request) -> dict[str, Any]:
        view = self.ws.views.get(request.query["id"])
        if view is None:
            raise ControlError(f"no view {request.query['id']}")
        return {"view": view.to_slack(self.ws.team["id"], self.ws.bot["app_id"], self.ws.bot["bot_id"]),
                "open": view.open, "errors": view.errors, "user": view.user}

    async def response_sink(self, request: web.Request) -> web.StreamResponse:
        raw = await request.text()
        try:
            body: Any = json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError:
            body = raw
        status, text, _record = use_response_url(self.ws, request.match_info["key"], body)
        return web.Response(status=status, text=text)
