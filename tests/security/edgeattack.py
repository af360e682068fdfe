"""The attacks of issue 16 on the HTTP listener, as plain sockets: idle, half-header and half-body connections,
and unsigned large bodies. Shared by tests/security/test_edge_connections.py and bench/bench_edge.py."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

MIB = 1024 * 1024


def _connect(port: int, timeout_s: float = 1.0) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    except OSError:  # refused or reset at once: the listener is full or closing; that is an answer too
        return None


def open_idle(port: int, count: int, kind: str = "nothing") -> list[socket.socket]:
    """`count` connections that send nothing ("nothing"), half a request line and headers ("headers"), all
    headers and a tenth of a declared 1 MiB body without signature headers ("body"), or fresh (but wrong)
    signature headers and half of a declared 100 kB body ("signed-body"); none ever finishes."""
    ts = str(int(time.time())).encode()
    partial = {
        "nothing": b"",
        "headers": b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-",
        "body": (
            b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {MIB}\r\n\r\n".encode()
            + b"a" * (MIB // 10)
        ),
        "signed-body": (
            b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            + b"X-Slack-Request-Timestamp: "
            + ts
            + b"\r\nX-Slack-Signature: v0="
            + b"0" * 64
            + b"\r\n"
            + b"Content-Length: 100000\r\n\r\n"
            + b"a" * 50_000
        ),
    }[kind]
    socks = []
    for _ in range(count):
        s = _connect(port)
        if s is None:
            continue
        if partial:
            with contextlib.suppress(OSError):
                s.sendall(partial)
        socks.append(s)
    return socks


def still_open(socks: list[socket.socket]) -> int:
    """How many of these connections the server has not closed (a closed one reads EOF or a reset)."""
    open_count = 0
    for s in socks:
        s.setblocking(False)
        try:
            data = s.recv(65536)
            if data:  # an answer (e.g. a 401) followed or not by a close: look again for EOF
                with contextlib.suppress(BlockingIOError):
                    if s.recv(65536) == b"":
                        continue
                open_count += 1
        except BlockingIOError:
            open_count += 1
        except OSError:
            pass
    return open_count


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()


@contextlib.contextmanager
def held(socks: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield socks
    finally:
        close_all(socks)


@dataclass(frozen=True)
class FloodResult:
    """What `unsigned_flood` saw: answers by status, and connections the server closed without an answer."""

    statuses: dict[int, int]
    closed_without_answer: int
    bytes_sent: int


def unsigned_flood(port: int, count: int, size: int = MIB, signed_looking: bool = False) -> FloodResult:
    """`count` connections at once, each POSTing `size` bytes without signature headers (or, `signed_looking`,
    with fresh but wrong ones); each keeps sending until the server answers or closes."""
    headers = b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    if signed_looking:
        ts = str(int(time.time())).encode()
        headers += b"X-Slack-Request-Timestamp: " + ts + b"\r\nX-Slack-Signature: v0=" + b"0" * 64 + b"\r\n"
    headers += f"Content-Length: {size}\r\n\r\n".encode()
    chunk = b"a" * 65536
    socks = [s for s in (_connect(port) for _ in range(count)) if s is not None]
    sent = 0
    statuses: dict[int, int] = {}
    closed = 0
    with held(socks):
        for s in socks:
            s.setblocking(True)
            s.settimeout(10.0)
            try:
                s.sendall(headers)
            except OSError:
                closed += 1
        # Send the bodies round-robin so that all `count` are in flight together, as an attacker would.
        pending = {id(s): (s, size) for s in socks}
        while pending:
            for key, (s, left) in list(pending.items()):
                n = min(left, len(chunk))
                try:
                    s.sendall(chunk[:n])
                    sent += n
                except OSError:  # the server answered and closed: stop sending
                    pending.pop(key)
                    continue
                left -= n
                if left <= 0:
                    pending.pop(key)
                else:
                    pending[key] = (s, left)
        for s in socks:
            try:
                head = s.recv(200)
            except OSError:
                head = b""
            if head.startswith(b"HTTP/1.1 "):
                status = int(head[9:12])
                statuses[status] = statuses.get(status, 0) + 1
            else:
                closed += 1
    return FloodResult(statuses, closed, sent)
