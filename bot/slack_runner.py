"""Run the Bolt app over Socket Mode (default; outbound WebSocket) or HTTP (`/slack/events` + `/healthz`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

from bot.settings import Settings

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"

# Answers "is this process healthy?" with (ok, detail); the default only says the process is up.
HealthCheck = Callable[[], Awaitable[tuple[bool, str]]]


async def _process_up() -> tuple[bool, str]:
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


def http_web_app(app: AsyncApp, *, health: HealthCheck = _process_up) -> web.Application:
    """The aiohttp application: Bolt on POST /slack/events, plus GET /healthz (200 or 503, JSON)."""
    web_app = app.web_app(path=EVENTS_PATH)

    async def healthz(_request: web.Request) -> web.Response:
        try:
            ok, detail = await health()
        except Exception as err:  # a failing probe is an unhealthy answer, not a 500 with a traceback
            ok, detail = False, f"health check failed: {type(err).__name__}"
        return web.json_response({"ok": ok, "detail": detail}, status=200 if ok else 503)

    web_app.router.add_get(HEALTH_PATH, healthz)
    return web_app


async def run_http(
    app: AsyncApp,
    settings: Settings,
    *,
    host: str = "0.0.0.0",
    health: HealthCheck = _process_up,
    stop: asyncio.Event | None = None,
    on_listening: Callable[[int], None] | None = None,
) -> None:
    """Serve Slack's HTTP requests on settings.http_port until cancelled (or until `stop` is set)."""
    runner = web.AppRunner(http_web_app(app, health=health), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host=host, port=settings.http_port)
    await site.start()
    port = settings.http_port
    server = getattr(site, "_server", None)
    if server is not None and getattr(server, "sockets", None):
        port = server.sockets[0].getsockname()[1]
    log.info("listening for Slack on http://%s:%d%s", host, port, EVENTS_PATH)
    if on_listening is not None:
        on_listening(port)
    try:
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        await runner.cleanup()
