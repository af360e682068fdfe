"""Logging: human-readable lines on a terminal, JSON lines on request; job context on every line; no secrets."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

# The job a log line belongs to: set around a job's work so every line of its life carries it.
_job_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("job_context", default=None)

_CONTEXT_KEYS = ("job_id", "vm", "source", "destination", "actor")
# Token shapes that must never reach a log, whatever code logged them.
_SECRET_PATTERNS = [
    (re.compile(r"xox[abposr]-[A-Za-z0-9-]+"), "[redacted]"),
    (re.compile(r"xapp-[A-Za-z0-9-]+"), "[redacted]"),
    (re.compile(r"(?<=://)([^:/@\s]+):([^@/\s]+)@"), r"\1:[redacted]@"),  # user:password@ in URLs
]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove tokens, URL passwords and the given secret values from a text."""
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[redacted]")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


@contextmanager
def job_log_context(**fields: Any) -> Iterator[None]:
    """Attach job fields (job_id, vm, source, destination, actor) to every log line inside the block."""
    merged = dict(_job_context.get() or {})
    merged.update({k: v for k, v in fields.items() if v is not None})
    token = _job_context.set(merged)
    try:
        yield
    finally:
        _job_context.reset(token)


class _ContextFilter(logging.Filter):
    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _job_context.get() or {}
        for key in _CONTEXT_KEYS:
            if not hasattr(record, key):
                setattr(record, key, ctx.get(key))
        record.msg = redact(record.getMessage(), self._secrets)
        record.args = None
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in _CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        ctx = " ".join(f"{k}={getattr(record, k)}" for k in _CONTEXT_KEYS if getattr(record, k, None) is not None)
        return f"{base} [{ctx}]" if ctx else base


def setup_logging(level: str = "INFO", json_lines: bool = False, secrets: Iterable[str] = ()) -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter(tuple(s for s in secrets if s)))
    if json_lines:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party chatter that is not useful at INFO.
    for noisy in ("slack_bolt", "slack_sdk", "aiohttp.access", "asyncssh"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
