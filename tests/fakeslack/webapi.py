"""Web API front door of the fake: parse JSON / form / query input, authenticate, inject faults, dispatch."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .ratelimit import RateLimiter
from .store import Workspace

STRING_JSON_FIELDS = ("blocks", "view", "attachments", "metadata")


class ApiError(Exception):
    """A Slack-style failure: HTTP 200 with {"ok": false, "error": code, ...extra}."""

    def __init__(self, code: str, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra


@dataclass(frozen=True)
class CallContext:
    token: str
    base_url: str  # e.g. "http://127.0.0.1:4567" (no trailing slash)


Handler = Callable[[Workspace, dict[str, Any], CallContext], dict[str, Any]]


@dataclass(frozen=True)
class Method:
    handler: Handler
    token_kind: str = "bot"  # "bot" (xoxb-) or "app" (xapp-)
    # A scope name, or a function of the arguments (e.g. channels:history vs groups:history), or None.
    scope: str | Callable[[Workspace, dict[str, Any]], str | None] | None = None


def flag(value: Any) -> bool:
    """Slack booleans arrive as JSON booleans, or as 'true' / '1' in forms and query strings."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def require(args: dict[str, Any], name: str) -> Any:
    value = args.get(name)
    if value is None or value == "":
        raise ApiError("invalid_arguments",
                       response_metadata={"messages": [f"[ERROR] missing required field: {name}"]})
    return value


async def parse_args(request: web.Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            raw = await request.text()
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ApiError("invalid_json")
            args.update(body)
        else:
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
    for name in STRING_JSON_FIELDS:
        if isinstance(args.get(name), str) and args[name]:
            try:
                args[name] = json.loads(args[name])
            except json.JSONDecodeError:
                raise ApiError(f"invalid_{name}" if name != "blocks" else "invalid_blocks_format") from None
    return args


def _token(request: web.Request, args: dict[str, Any]) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer "):].strip() or None
    token = args.pop("token", None)
    return str(token) if token else None


def _authenticate(ws: Workspace, method: Method, token: str | None) -> None:
    if not token:
        raise ApiError("not_authed")
    if token not in (ws.bot["token"], ws.bot["app_token"]):
        raise ApiError("invalid_auth")
    wanted = ws.bot["app_token"] if method.token_kind == "app" else ws.bot["token"]
    if token != wanted:
        # Slack's answer when e.g. apps.connections.open is called with a bot token or vice versa.
        raise ApiError("not_allowed_token_type")


def _check_scope(ws: Workspace, method: Method, args: dict[str, Any]) -> None:
    needed = method.scope(ws, args) if callable(method.scope) else method.scope
    if needed and needed not in ws.scopes:
        raise ApiError("missing_scope", needed=needed, provided=",".join(ws.scopes))


def _take_injection(ws: Workspace, name: str) -> Any:
    for injection in ws.injections:
        if injection.remaining > 0 and injection.method in (name, "*"):
            injection.remaining -= 1
            return injection
    return None


def _scopes_header(ws: Workspace, token: str | None) -> dict[str, str]:
    if token == ws.bot["token"]:
        return {"X-OAuth-Scopes": ",".join(ws.scopes)}
    return {}


def make_api_handler(ws: Workspace, methods: dict[str, Method], limiter_box: list[RateLimiter]) -> Any:
    """The aiohttp handler for GET/POST /api/<method>."""

    async def handle(request: web.Request) -> web.StreamResponse:
        name = request.match_info["method"]
        record: dict[str, Any] = {"method": name, "http_method": request.method,
                                  "content_type": request.content_type if request.can_read_body else None,
                                  "t": ws.clock.now()}
        try:
            args = await parse_args(request)
        except ApiError as e:
            record.update(args={}, token=None, ok=False, error=e.code)
            ws.calls.append(record)
            return web.json_response({"ok": False, "error": e.code})
        token = _token(request, args)
        record.update(args=args, token=token)
        ws.calls.append(record)

        injection = _take_injection(ws, name)
        if injection is not None:
            record["injected"] = injection.mode
            if injection.mode == "drop":
                # Close the TCP connection without an HTTP response: the client sees a disconnect.
                if request.transport is not None:
                    request.transport.abort()
                raise web.HTTPServiceUnavailable()  # never reaches the client
            if injection.mode == "429":
                record.update(ok=False, error="ratelimited", status=429)
                return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                         headers={"Retry-After": str(injection.retry_after_s)})
            status = int(injection.mode)
            record.update(ok=False, error="fatal_error", status=status)
            return web.json_response({"ok": False, "error": "fatal_error"}, status=status)

        method = methods.get(name)
        ctx = CallContext(token=token or "", base_url=f"{request.scheme}://{request.host}")
        try:
            if method is None:
                raise ApiError("unknown_method")
            _authenticate(ws, method, token)
            if ws.rate_limits_enabled:
                channel = args.get("channel") if isinstance(args.get("channel"), str) else None
                wait_s = limiter_box[0].check(name, channel, ws.clock.now())
                if wait_s is not None:
                    record.update(ok=False, error="ratelimited", status=429, rate_limited=True)
                    return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                             headers={"Retry-After": str(wait_s)})
            _check_scope(ws, method, args)
            body = {"ok": True, **method.handler(ws, args, ctx)}
        except ApiError as e:
            body = {"ok": False, "error": e.code, **e.extra}
        record.update(ok=body["ok"], error=body.get("error"), status=200)
        if body.get("warning"):
            record["warning"] = body["warning"]
        return web.json_response(body, headers=_scopes_header(ws, token))

    return handle
