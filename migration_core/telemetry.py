"""Process-wide hooks for what is not a job event: today, "a libvirt connection to a host failed".

The core calls `connection_error(...)` where it happens (hypervisor/libvirt_adapter.py); front ends that keep
metrics register a listener with `on_connection_error` (bot/metrics.py counts them per host). Listeners run on
whatever thread saw the error (libvirt calls run on worker threads), so they must be quick and thread-safe;
one that raises is dropped from the call, never into the hypervisor code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# (host name as the inventory calls it, libvirt error code or None)
ConnectionErrorListener = Callable[[str, int | None], None]

_lock = threading.Lock()
_listeners: list[ConnectionErrorListener] = []


def on_connection_error(listener: ConnectionErrorListener) -> Callable[[], None]:
    """Register a listener; returns a function that removes it again."""
    with _lock:
        _listeners.append(listener)

    def remove() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return remove


def connection_error(host: str, code: int | None) -> None:
    """Tell every listener that connecting to (or keeping a connection to) `host`'s libvirt failed."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(host, code)
        except Exception:  # a broken metrics hook must not change what the hypervisor code does
            log.warning("connection-error listener %r failed", listener, exc_info=True)
