"""Socket Mode server side (slack.md §19.8): hello, envelopes, acks with latency, disconnect frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .interactions import apply_ack
from .store import Workspace

ACK_TIMEOUT_S = 3.0


@dataclass
class Connection:
    id: str
    ws: web.WebSocketResponse
    record: dict[str, Any]
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Pending:
    future: asyncio.Future[dict[str, Any]]
    sent_monotonic: float
    envelope: dict[str, Any]
    timed_out: bool = False


class SocketHub:
    """Open Socket Mode connections and envelopes waiting for their ack."""

    def __init__(self, ws: Workspace) -> None:
        self.workspace = ws
        self.connections: dict[str, Connection] = {}
        self.pending: dict[str, Pending] = {}
        self.connected = asyncio.Condition()

    def _frame(self, kind: str, **extra: Any) -> dict[str, Any]:
        return {"type": kind, "num_connections": len(self.connections),
                "debug_info": {"host": "fakeslack-applink", "build_number": 1},
                "connection_info": {"app_id": self.workspace.bot["app_id"]}, **extra}

    async def handle_link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        issued = self.workspace.tickets.get(ticket)
        if issued is None:
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)
        issued["uses"] += 1
        sock = web.WebSocketResponse(autoping=True)  # aiohttp answers the client's pings (§19.8 step 7)
        await sock.prepare(request)
        conn_id = f"conn-{len(self.workspace.connections) + 1}"
        record = {"id": conn_id, "ticket": ticket, "ticket_use": issued["uses"],
                  "opened_t": self.workspace.clock.now(), "closed_t": None, "frames_in": 0}
        self.workspace.connections.append(record)
        conn = Connection(conn_id, sock, record)
        self.connections[conn_id] = conn
        await sock.send_json(self._frame("hello"))
        async with self.connected:
            self.connected.notify_all()
        try:
            async for msg in sock:
                if msg.type == WSMsgType.TEXT:
                    record["frames_in"] += 1
                    self._on_frame(conn_id, msg.data)
        finally:
            record["closed_t"] = self.workspace.clock.now()
            self.connections.pop(conn_id, None)
            conn.closed.set()
        return sock

    def _on_frame(self, conn_id: str, data: str) -> None:
        try:
            frame = json.loads(data)
        except json.JSONDecodeError:
            self.workspace.acks.append({"connection_id": conn_id, "error": "not_json", "raw": data[:500]})
            return
        envelope_id = frame.get("envelope_id") if isinstance(frame, dict) else None
        pending = self.pending.pop(str(envelope_id), None)
        if pending is None:
            self.workspace.acks.append({"connection_id": conn_id, "envelope_id": envelope_id,
                                        "payload": frame.get("payload") if isinstance(frame, dict) else None,
                                        "stray": True, "t": self.workspace.clock.now()})
            return
        latency_s = time.monotonic() - pending.sent_monotonic
        ack = {"connection_id": conn_id, "envelope_id": envelope_id, "type": pending.envelope["type"],
               "payload": frame.get("payload"), "latency_s": latency_s, "t": self.workspace.clock.now(),
               "late": pending.timed_out}
        self.workspace.acks.append(ack)
        if not pending.future.done():
            pending.future.set_result(ack)

    async def _wait_for_connection(self, timeout_s: float, connection_id: str | None) -> Connection | None:
        def pick() -> Connection | None:
            if connection_id is not None:
                return self.connections.get(connection_id)
            open_conns = [c for c in self.connections.values() if not c.ws.closed]
            return open_conns[-1] if open_conns else None  # the newest connection gets the envelope

        async with self.connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.connected.wait_for(lambda: pick() is not None), timeout_s)
        return pick()

    async def deliver(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one envelope to the app and wait for its ack (fails after `timeout_s`, default 3 s)."""
        kind = request["type"]
        envelope: dict[str, Any] = {
            "envelope_id": str(uuid.uuid4()), "type": kind, "payload": request["payload"],
            "accepts_response_payload": request.get(
                "accepts_response_payload",
                kind == "slash_commands" or request["payload"].get("type") == "view_submission"),
        }
        if request.get("retry_attempt") is not None:
            envelope["retry_attempt"] = int(request["retry_attempt"])
            envelope["retry_reason"] = request.get("retry_reason") or "timeout"
        timeout_s = float(request.get("timeout_s", ACK_TIMEOUT_S))
        conn = await self._wait_for_connection(float(request.get("connect_timeout_s", 5.0)),
                                               request.get("connection_id"))
        record = {"envelope": envelope, "t": self.workspace.clock.now(),
                  "connection_id": conn.id if conn else None}
        self.workspace.envelopes.append(record)
        if conn is None:
            failure = {"envelope_id": envelope["envelope_id"], "type": kind, "error": "no_connection",
                       "t": self.workspace.clock.now()}
            self.workspace.ack_failures.append(failure)
            return {"ok": False, **failure}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[envelope["envelope_id"]] = Pending(future, time.monotonic(), envelope)
        await conn.ws.send_json(envelope)
        try:
            ack = await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            failure = {"envelope_id": envelope["envelope_id"], "type": kind, "error": "ack_timeout",
                       "timeout_s": timeout_s, "connection_id": conn.id, "t": self.workspace.clock.now()}
            self.workspace.ack_failures.append(failure)
            # Keep the pending entry so that a late ack is still recorded, flagged as late.
            self.pending[envelope["envelope_id"]].timed_out = True
            return {"ok": False, **failure}
        effect = apply_ack(self.workspace, kind, request["payload"], ack["payload"])
        ack["effect"] = effect
        return {"ok": True, "envelope_id": envelope["envelope_id"], "connection_id": conn.id,
                "ack": ack["payload"], "latency_s": ack["latency_s"], "effect": effect}

    async def disconnect(self, reason: str, connection_id: str | None, close: bool,
                         frame: bool) -> list[str]:
        """Send a `disconnect` frame (and/or close the socket) to one or every open connection."""
        targets = [c for c in self.connections.values() if connection_id in (None, c.id)]
        for conn in targets:
            if frame and not conn.ws.closed:
                await conn.ws.send_json(self._frame("disconnect", reason=reason))
            conn.record.setdefault("disconnects", []).append(
                {"reason": reason, "close": close, "frame": frame})
            if close:
                await conn.ws.close()
        return [c.id for c in targets]

    async def close_all(self) -> None:
        for conn in list(self.connections.values()):
            await conn.ws.close()
        for pending in self.pending.values():
            if not pending.future.done():
                pending.future.cancel()
        self.pending.clear()
