"""Run the Bolt app over Socket Mode (default; outbound WebSocket) or HTTP (`/slack/events`, `/healthz`, `/metrics`).

HTTP mode puts a gate in front of Bolt (`slack_events_handler`): the request signature is checked FIRST, on
the raw bytes, before anything parses the body (401 for unsigned, wrongly signed, replayed or future
requests: the timestamp must be within 300 s of now). A signed but malformed body (not UTF-8, not JSON / form,
a payload of the wrong shape) gets a 400 instead of reaching Bolt, which would answer it with a 500 and a
traceback. Only then does Bolt (which checks the signature once more) dispatch.

Before any of the body is read, the headers are looked at: a request without both signature headers, or
whose timestamp is outside the replay window, is refused with 401; a declared length over MAX_BODY_BYTES
(far above Slack's largest payloads, a few tens of KB) with 413; the body must then arrive within the
guard's body timeout (`bot.http_guard`: connection cap, header and body deadlines). A client that goes
away mid-body costs one throttled log line, not a traceback.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.http_guard import (
    ConnectionGuard,
    ConnectionLimits,
    GuardedRunner,
    open_files_limit,
    read_body,
    throttle_accept_errors,
)
from bot.payload_gate import payload_problem
from bot.settings import Settings

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
REPLAY_WINDOW_S = 300  # Slack's rule: refuse requests whose timestamp is more than 5 minutes from now
MAX_BODY_BYTES = 256 * 1024  # Slack's payloads are tens of KB (a block_actions carries its whole message)
REFUSAL_LOG_EVERY_S = 10.0  # at most one log line per this interval for refused requests (no log flooding)

# Answers "is this process healthy?" with (ok, details); the default only says the process is up.
HealthCheck = Callable[[], Awaitable[tuple[bool, Mapping[str, Any] | str]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _process_up() -> tuple[bool, Mapping[str, Any] | str]:
    return True, "process up"


async def run_socket_mode(app: AsyncApp, settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Connect over Socket Mode and serve until cancelled (or until `stop` is set). Reconnects by itself."""
    if not settings.slack_app_token:
        settings.require_slack()  # raises the operator-readable SettingsError
    handler = AsyncSocketModeHandler(app, settings.slack_app_token)
    await handler.connect_async()  # type: ignore[no-untyped-call]
    log.info("connected to Slack over Socket Mode")
    try:
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]


def header_problem(timestamp: str | None, signature: str | None, now_s: float) -> str | None:
    """What makes a request unsigned or stale, from its headers alone (None: worth reading the body).

    >>> header_problem("1000", None, 1000.0)
    'missing X-Slack-Request-Timestamp or X-Slack-Signature'
    >>> header_problem("1000", "v0=ab", 1400.0)
    'the timestamp is 400 s old (limit 300 s)'
    """
    if not timestamp or not signature:
        return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return "the timestamp is not a number of seconds"
    skew_s = now_s - int(timestamp)
    if abs(skew_s) > REPLAY_WINDOW_S:
        return f"the timestamp is {abs(skew_s):.0f} s {'old' if skew_s > 0 else 'in the future'} (limit 300 s)"
    if not signature.startswith("v0=") or len(signature) > 100:
        return "the signature is not a v0 signature"
    return None


def signature_problem(
    secret: str, raw: bytes, timestamp: str | None, signature: str | None, now_s: float
) -> str | None:
    """Why a request is not Slack's (None when it is): Slack's v0 HMAC-SHA256 over `v0:<ts>:<body>`.

    >>> signature_problem("s", b"x", None, "v0=ab", 1000.0)
    'missing X-Slack-Request-Timestamp or X-Slack-Signature'
    """
    if (problem := header_problem(timestamp, signature, now_s)) is not None:
        return problem
    assert timestamp is not None and signature is not None
    if not secret:
        return "no signing secret is configured"
    expected = "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return "the signature does not match"
    return None


class _RefusalLog:
    """Logs refused requests without letting a flood of them flood the log."""

    def __init__(self) -> None:
        self._last = 0.0
        self._suppressed = 0

    def note(self, status: int, reason: str, peer: str | None) -> None:
        now = time.monotonic()
        if now - self._last < REFUSAL_LOG_EVERY_S:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more refused since the last line)" if self._suppressed else ""
        log.warning("refused a request to %s from %s: %d %s%s", EVENTS_PATH, peer or "?", status, reason, more)
        self._last, self._suppressed = now, 0


def slack_events_handler(
    app: AsyncApp,
    signing_secret: str,
    *,
    slack_api_url: str | None = None,
    clock: Callable[[], float] = time.time,
    body_timeout_s: float = ConnectionLimits.body_timeout_s,
) -> Handler:
    """POST /slack/events: signature gate, shape gate, then Bolt."""
    refusals = _RefusalLog()

    async def handle(request: web.Request) -> web.StreamResponse:
        h = request.headers
        early = header_problem(h.get("X-Slack-Request-Timestamp"), h.get("X-Slack-Signature"), clock())
        if early is not None:  # refused on the headers: the body is never read
            refusals.note(401, early, request.remote)
            return _refuse_unread(request, 401, "invalid_request_signature")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            refusals.note(413, f"declared body of {request.content_length} bytes", request.remote)
            return _refuse_unread(request, 413, "request_too_large")
        try:
            raw = await read_body(request, body_timeout_s)  # size: client_max_size (413)
        except web.HTTPRequestEntityTooLarge:
            refusals.note(413, "body over the limit", request.remote)
            return _refuse_unread(request, 413, "request_too_large")
        except TimeoutError:
            refusals.note(408, f"the body did not arrive within {body_timeout_s:g} s", request.remote)
            return _refuse_unread(request, 408, "request_timeout")
        except (ConnectionError, asyncio.IncompleteReadError, web.RequestPayloadError) as err:
            refusals.note(400, f"the client went away mid-body ({type(err).__name__})", request.remote)
            return _refuse_unread(request, 400, "incomplete_body")
        problem = signature_problem(
            signing_secret, raw, h.get("X-Slack-Request-Timestamp"), h.get("X-Slack-Signature"), clock()
        )
        if problem is not None:
            refusals.note(401, problem, request.remote)
            return web.json_response({"ok": False, "error": "invalid_request_signature"}, status=401)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _bad_request(refusals, "the body is not UTF-8", request.remote)
        content_type = (h.get("Content-Type") or "").split(";")[0] or None  # as Bolt reads it
        shape = payload_problem(text, content_type, slack_api_url=slack_api_url)
        if shape is not None:
            return _bad_request(refusals, shape, request.remote)
        bolt_request = AsyncBoltRequest(body=text, query=request.query_string, headers=dict(h.items()))
        bolt_response = await app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    return handle


def _refuse_unread(request: web.Request, status: int, error: str) -> web.Response:
    """An answer that closes the connection: the unread rest of the body must not be parsed as a request."""
    response = web.json_response({"ok": False, "error": error}, status=status)
    response.force_close()
    return response


def _bad_request(refusals: _RefusalLog, reason: str, peer: str | None) -> web.Response:
    refusals.note(400, reason, peer)
    return web.json_response({"ok": False, "error": "malformed_request", "detail": reason}, status=400)


class HealthProbe:
    """/healthz for a process supervisor: the process answers, the database answers a ping, and which inventory
    hosts' libvirt answer.

    Healthy (200) means the bot can do its job's bookkeeping: the database answers. An unreachable database
    is 503. Hosts are probed too and reported per host (cached for `host_ttl_s`, so a supervisor polling
    every few seconds does not open libvirt connections every time), but an unreachable hypervisor does not
    make the bot unhealthy: restarting the bot cannot bring a host back, and a supervisor that restarts on
    503 would only add a restart to an outage. Alert on `hosts_reachable` (or the libvirt metrics) instead.
    """

    def __init__(
        self,
        ping: Callable[[], Awaitable[None]],
        hosts: Sequence[str],
        host_status: Callable[[str], Awaitable[tuple[bool, str, int | None]]],
        *,
        timeout_s: float = 5.0,
        host_ttl_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ping = ping
        self._hosts = tuple(hosts)
        self._host_status = host_status
        self._timeout_s = timeout_s
        self._host_ttl_s = host_ttl_s
        self._clock = clock
        self._host_cache: tuple[float, dict[str, dict[str, Any]]] | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> tuple[bool, Mapping[str, Any] | str]:
        database = await self._database()
        hosts = await self._probe_hosts()
        up = sum(1 for h in hosts.values() if h["ok"])
        detail = {
            "process": "up",
            "database": database,
            "hosts": hosts,
            "hosts_reachable": f"{up}/{len(hosts)}",
        }
        return bool(database["ok"]), detail

    async def _database(self) -> dict[str, Any]:
        try:
            await asyncio.wait_for(self._ping(), self._timeout_s)
            return {"ok": True}
        except TimeoutError:
            return {"ok": False, "error": f"no answer within {self._timeout_s:g} s"}
        except Exception as err:  # StoreError (URL masked) or anything the driver raised
            return {"ok": False, "error": str(err) or type(err).__name__}

    async def _probe_hosts(self) -> dict[str, dict[str, Any]]:
        async with self._lock:
            now = self._clock()
            if self._host_cache is not None and now - self._host_cache[0] < self._host_ttl_s:
                return self._host_cache[1]
            results = await asyncio.gather(*(self._one(name) for name in self._hosts))
            probed = dict(zip(self._hosts, results, strict=True))
            self._host_cache = (now, probed)
            return probed

    async def _one(self, name: str) -> dict[str, Any]:
        try:
            ok, detail, _running = await asyncio.wait_for(self._host_status(name), self._timeout_s)
            return {"ok": ok, "detail": detail}
        except TimeoutError:
            return {"ok": False, "detail": f"no answer within {self._timeout_s:g} s"}
        except Exception as err:
            return {"ok": False, "detail": str(err) or type(err).__name__}


def health_handler(health: HealthCheck) -> Handler:
    """GET /healthz: 200 when healthy, 503 when not, with the details as JSON."""

    async def healthz(_request: web.Request) -> web.Response:
        try:
            ok, detail = await health()
        except Exception as err:  # a failing probe is an unhealthy answer, not a 500 with a traceback
            ok, detail = False, f"health check failed: {type(err).__name__}"
        return web.json_response({"ok": ok, "detail": detail}, status=200 if ok else 503)

    return healthz


def http_web_app(
    app: AsyncApp,
    *,
    signing_secret: str,
    slack_api_url: str | None = None,
    health: HealthCheck = _process_up,
    metrics: Handler | None = None,
) -> web.Application:
    """The aiohttp application: POST /slack/events (gated), GET /healthz, and GET /metrics when given."""
    web_app = web.Application(client_max_size=MAX_BODY_BYTES)
    web_app.router.add_post(EVENTS_PATH, slack_events_handler(app, signing_secret, slack_api_url=slack_api_url))
    web_app.router.add_get(HEALTH_PATH, health_handler(health))
    if metrics is not None:
        web_app.router.add_get(METRICS_PATH, metrics)
    return web_app


def ops_web_app(*, health: HealthCheck = _process_up, metrics: Handler | None = None) -> web.Application:
    """The operations listener (MIGRATE_BOT_METRICS_PORT): GET /metrics and GET /healthz, nothing from Slack."""
    web_app = web.Application(client_max_size=64 * 1024)
    web_app.router.add_get(HEALTH_PATH, health_handler(health))
    if metrics is not None:
        web_app.router.add_get(METRICS_PATH, metrics)
    return web_app


async def start_site(
    web_app: web.Application,
    host: str,
    port: int,
    *,
    limits: ConnectionLimits | None = None,
    name: str = "http",
) -> tuple[web.AppRunner, int]:
    """Start listening on host:port (0 = any free port) behind a ConnectionGuard; returns the runner
    (cleanup() stops it; `runner.guard` is the guard) and the port."""
    guard = ConnectionGuard(limits or ConnectionLimits(), name=name)
    web_app.middlewares.insert(0, guard.middleware)
    # keepalive_timeout: aiohttp's own idle close, a second line behind the guard's header deadline.
    runner = GuardedRunner(web_app, guard, access_log=None, keepalive_timeout=guard.limits.header_timeout_s)
    await runner.setup()
    throttle_accept_errors(asyncio.get_running_loop())
    site = web.TCPSite(runner, host=host, port=port, backlog=min(1024, max(128, guard.cap)))
    await site.start()
    server = getattr(site, "_server", None)
    if server is not None and getattr(server, "sockets", None):
        port = int(server.sockets[0].getsockname()[1])
    log.info(
        "%s: at most %d connections (open-files limit %s), %g s for headers, %g s for a body",
        name,
        guard.cap,
        _nofile_text(),
        guard.limits.header_timeout_s,
        guard.limits.body_timeout_s,
    )
    return runner, port


def _nofile_text() -> str:
    soft = open_files_limit()
    return "unlimited" if soft < 0 else str(soft)


async def run_http(
    app: AsyncApp,
    settings: Settings,
    *,
    host: str | None = None,
    health: HealthCheck = _process_up,
    metrics: Handler | None = None,
    stop: asyncio.Event | None = None,
    on_listening: Callable[[int], None] | None = None,
) -> None:
    """Serve Slack's HTTP requests on settings.http_port until cancelled (or until `stop` is set)."""
    host = host or settings.bind_host
    web_app = http_web_app(
        app,
        signing_secret=settings.slack_signing_secret or "",
        slack_api_url=settings.slack_api_url,
        health=health,
        metrics=metrics,
    )
    limits = ConnectionLimits(max_connections=settings.http_max_connections)
    runner, port = await start_site(web_app, host, settings.http_port, limits=limits, name="slack listener")
    log.info("listening for Slack on http://%s:%d%s", host, port, EVENTS_PATH)
    if on_listening is not None:
        on_listening(port)
    try:
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        await runner.cleanup()
