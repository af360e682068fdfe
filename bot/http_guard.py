"""Connection guard of the HTTP listeners: a cap on open connections, deadlines for slow clients, quiet accept errors.

aiohttp on its own keeps a connection that sends nothing, half a header or half a body open for an hour
(its keep-alive timeout) and accepts connections until the process runs out of file descriptors; asyncio
then logs `socket.accept() out of system resource` hundreds of thousands of times a minute. The guard:

- caps the open connections below the process's open-files limit (`connection_cap`), so accept() never
  fails for lack of descriptors; when the cap is reached, the connection that has waited longest without a
  complete request is dropped to make room (a slow-loris client cannot crowd out Slack, whose requests
  arrive whole within milliseconds); only when every connection is busy in a handler is the newcomer closed;
- gives every connection `header_timeout_s` to deliver its request headers (from connect, and again after
  each answer on a kept-alive connection); the Slack endpoint reads a body within `body_timeout_s`
  (`read_body`), and no request may occupy a connection longer than `request_deadline_s` in all;
- throttles asyncio's accept-error line to one per `ACCEPT_LOG_EVERY_S` with a count of the ones left out.

Only the handful of aiohttp hooks named here are used: `Server.connection_made/connection_lost` (kept and
wrapped, not replaced) and a middleware that marks a request as started and finished.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

DESCRIPTOR_RESERVE = 64  # for the database, libvirt, Slack's Web API, logs: never given to HTTP clients
MIN_CONNECTIONS = 16
ACCEPT_LOG_EVERY_S = 10.0
DROP_LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections an HTTP listener keeps open and how long a client may take to send a request."""

    max_connections: int = 512
    header_timeout_s: float = 5.0
    body_timeout_s: float = 10.0
    # Backstop for a whole request (body and handler): /healthz waits up to 5 s per probe, Slack's
    # listeners answer within 3 s; past this the connection is cut.
    request_deadline_s: float = 60.0


def connection_cap(wanted: int, nofile_soft: int, reserve: int = DESCRIPTOR_RESERVE) -> int:
    """The connection cap that fits in the open-files limit (pure).

    >>> connection_cap(512, 256)
    192
    >>> connection_cap(512, 65536)
    512
    >>> connection_cap(512, 40)
    16
    """
    if nofile_soft <= 0:  # RLIM_INFINITY is -1
        return wanted
    return max(MIN_CONNECTIONS, min(wanted, nofile_soft - reserve))


def open_files_limit() -> int:
    """The soft RLIMIT_NOFILE of this process (-1 when unlimited)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return int(soft)


class _Throttled:
    """At most one log line per `every_s`, with the number of lines left out since the last one."""

    def __init__(self, every_s: float) -> None:
        self._every_s = every_s
        self._last = -every_s
        self.suppressed = 0

    def due(self) -> int | None:
        """None: stay quiet; otherwise the count suppressed since the last line (and reset it)."""
        now = time.monotonic()
        if now - self._last < self._every_s:
            self.suppressed += 1
            return None
        left_out, self.suppressed, self._last = self.suppressed, 0, now
        return left_out


class _Conn:
    __slots__ = ("busy", "handler", "since", "timer", "transport")

    def __init__(self, handler: RequestHandler, transport: asyncio.Transport, since: float) -> None:
        self.handler = handler
        self.transport = transport
        self.since = since
        self.busy = False  # a request's headers arrived; its handler runs
        self.timer: asyncio.TimerHandle | None = None


class ConnectionGuard:
    """Tracks the connections of one aiohttp Server; see the module docstring for the rules."""

    def __init__(self, limits: ConnectionLimits, *, name: str = "http") -> None:
        self.limits = limits
        self.name = name
        self.cap = connection_cap(limits.max_connections, open_files_limit())
        self._conns: dict[RequestHandler, _Conn] = {}
        self._drops = _Throttled(DROP_LOG_EVERY_S)
        self.dropped = 0

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def attach(self, server: web.Server) -> web.Server:
        """Wrap the server's connection hooks (aiohttp calls them from every RequestHandler)."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            made(handler, transport)
            self._made(handler, transport)

        def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            self._lost(handler)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]
        return server

    def _made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        if len(self._conns) >= self.cap and not self._evict_oldest_idle():
            self._drop(transport, "every connection is busy")
            return
        conn = _Conn(handler, transport, loop.time())
        self._conns[handler] = conn
        self._arm(conn, self.limits.header_timeout_s, "sent no complete request headers")

    def _lost(self, handler: RequestHandler) -> None:
        conn = self._conns.pop(handler, None)
        if conn is not None and conn.timer is not None:
            conn.timer.cancel()

    def _arm(self, conn: _Conn, after_s: float, why: str) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
        conn.timer = asyncio.get_running_loop().call_later(after_s, self._expire, conn, why, after_s)

    def _expire(self, conn: _Conn, why: str, after_s: float) -> None:
        if self._conns.pop(conn.handler, None) is not None:
            self._drop(conn.transport, f"{why} within {after_s:g} s")

    def _evict_oldest_idle(self) -> bool:
        idle = [c for c in self._conns.values() if not c.busy]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.since)
        del self._conns[oldest.handler]
        if oldest.timer is not None:
            oldest.timer.cancel()
        self._drop(oldest.transport, f"{self.cap} connections are open (the cap) and it had sent no request")
        return True

    def _drop(self, transport: asyncio.Transport, why: str) -> None:
        self.dropped += 1
        transport.abort()  # no lingering, no FIN_WAIT: the descriptor is free at once
        left_out = self._drops.due()
        if left_out is not None:
            more = f" ({left_out} more dropped since the last line)" if left_out else ""
            peer = transport.get_extra_info("peername")
            log.warning("%s: dropped a connection from %s: %s%s", self.name, _peer(peer), why, more)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Headers are in: stop the header clock, start the body clock; re-arm the header clock after."""
        conn = self._conns.get(request.protocol)
        if conn is not None:
            conn.busy = True
            self._arm(conn, self.limits.request_deadline_s, "did not finish a request")
        try:
            return await handler(request)
        finally:
            if conn is not None and conn.handler in self._conns:
                conn.busy = False
                conn.since = asyncio.get_running_loop().time()
                self._arm(conn, self.limits.header_timeout_s, "sent no next request")


async def read_body(request: web.Request, timeout_s: float) -> bytes:
    """The request body, which must arrive within `timeout_s` (TimeoutError otherwise)."""
    return await asyncio.wait_for(request.read(), timeout_s)


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and peer:
        return f"{peer[0]}:{peer[1]}" if len(peer) > 1 else str(peer[0])
    return "?"


class GuardedRunner(web.AppRunner):
    """An AppRunner whose Server reports its connections to a ConnectionGuard."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        return self.guard.attach(await super()._make_server())


def throttle_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Log asyncio's `socket.accept() out of system resource` at most once per ACCEPT_LOG_EVERY_S.

    asyncio (3.11) logs it once per pending connection per wake-up, with a traceback; at the open-files limit
    that is hundreds of thousands of lines a minute. Other exceptions go to the handler that was there.
    """
    previous = loop.get_exception_handler()
    if getattr(previous, "_migrate_bot_throttle", False):
        return
    throttled = _Throttled(ACCEPT_LOG_EVERY_S)

    def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if "out of system resource" in message:
            left_out = throttled.due()
            if left_out is not None:
                more = f" ({left_out} more since the last line)" if left_out else ""
                log.error(
                    "cannot accept connections: %s (%s)%s; raise LimitNOFILE or lower MIGRATE_BOT_HTTP_MAX_CONNECTIONS",
                    message,
                    context.get("exception"),
                    more,
                )
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    handler._migrate_bot_throttle = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)
