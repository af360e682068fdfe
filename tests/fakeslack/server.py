"""The fake Slack aiohttp application and its process entry point (loopback only)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from aiohttp import web

from .control import Control
from .methods_chat import CHAT_METHODS
from .methods_misc import MISC_METHODS
from .ratelimit import RateLimiter
from .socketmode import SocketHub
from .store import Workspace
from .webapi import make_api_handler

HOST = "127.0.0.1"  # never reachable from outside this machine
METHODS = {**CHAT_METHODS, **MISC_METHODS}


def build_app() -> web.Application:
    ws = Workspace()
    limiter_box = [RateLimiter()]  # a box so that /_test/ can swap the limiter the API handler uses
    hub = SocketHub(ws)
    api = make_api_handler(ws, METHODS, limiter_box)
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("GET", "/api/{method}", api)
    app.router.add_route("POST", "/api/{method}", api)
    app.router.add_get("/link", hub.handle_link)
    app.router.add_get("/link/", hub.handle_link)
    app.router.add_routes(Control(ws, hub, limiter_box).routes())

    async def close_sockets(_app: web.Application) -> None:
        await hub.close_all()

    app.on_shutdown.append(close_sockets)
    app["workspace"] = ws
    return app


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    # When the test process dies without closing us, do not linger as an orphan.
    while not stop.is_set():
        if os.getppid() != parent_pid:
            stop.set()
            return
        await asyncio.sleep(1.0)


async def serve(port: int, exit_with_parent: bool) -> None:
    runner = web.AppRunner(build_app(), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    print(f"PORT={bound_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_watch_parent(os.getppid(), stop)) if exit_with_parent else None
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.fakeslack",
                                     description="Fake Slack Web API + Socket Mode server for tests.")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="exit when the process that started us goes away")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s fakeslack %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.port, args.exit_with_parent))
    return 0
