"""Logging: human-readable lines on a terminal, JSON lines on request; job context on every line; no secrets.

The job fields (job id, VM, source and destination hosts, actor) come from the context the core sets around a
job's work (migration_core.logctx), so every line of a job's life carries them without each call repeating
them. Every finished line — message, exception and traceback included — goes through `redact` before it is
written: token shapes, URL passwords and the configured secret values never reach the log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

from migration_core import logctx

_CONTEXT_KEYS = logctx.JOB_FIELDS
_MIN_SECRET_LEN = 6  # shorter "secrets" would redact ordinary words
# Token shapes that must never reach a log, whatever code logged them.
_SECRET_PATTERNS = [
    (re.compile(r"xox[abposr]-[A-Za-z0-9-]+"), "[redacted]"),
    (re.compile(r"xapp-[A-Za-z0-9-]+"), "[redacted]"),
    (re.compile(r"(?<=://)([^:/@\s]+):([^@/\s]+)@"), r"\1:[redacted]@"),  # user:password@ in URLs
    (re.compile(r"(?i)\b(password|passwd|pwd)=([^\s&'\"]+)"), r"\1=[redacted]"),  # key=value DSNs
    (re.compile(r"(?i)\b(authorization:?\s*['\"]?\s*bearer\s+)[^\s'\"]+"), r"\1[redacted]"),
]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove tokens, URL passwords, `password=` values and the given secret values from a text."""
    for secret in sorted((s for s in secrets if s and len(s) >= _MIN_SECRET_LEN), key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def url_password(url: str | None) -> str | None:
    """The password inside a database URL (`scheme://user:PASSWORD@host/db`), to be redacted by value."""
    if not url:
        return None
    m = re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:([^@\s]*)@", url)
    return m.group(1) if m and m.group(1) else None


@contextmanager
def job_log_context(**fields: Any) -> Iterator[None]:
    """Attach job fields (job_id, vm, source, destination, actor) to every log line inside the block."""
    with logctx.job_context(**fields):
        yield


class _ContextFilter(logging.Filter):
    """Puts the job fields on the record (explicit `extra=` values win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = logctx.current()
        for key in _CONTEXT_KEYS:
            if getattr(record, key, None) is None:
                setattr(record, key, ctx.get(key))
        return True


class _JsonFormatter(logging.Formatter):
    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self._secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage(), self._secrets),
        }
        for key in _CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                data[key] = value
        if record.exc_info:
            data["exc"] = redact(self.formatException(record.exc_info), self._secrets)
        return json.dumps(data, default=str)


# Control characters from user text (escape sequences, carriage returns) must not rewrite a terminal or a
# log viewer; newlines stay (tracebacks), JSON lines escape everything anyway.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class _TextFormatter(logging.Formatter):
    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        self._secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        ctx = " ".join(f"{k}={getattr(record, k)}" for k in _CONTEXT_KEYS if getattr(record, k, None) is not None)
        text = redact(f"{base} [{ctx}]" if ctx else base, self._secrets)
        return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def setup_logging(
    level: str = "INFO", json_lines: bool = False, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    """Configure the root logger once for the process (stderr unless `stream` is given)."""
    kept = tuple(s for s in secrets if s)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(_JsonFormatter(kept) if json_lines else _TextFormatter(kept))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party chatter that is not useful at INFO.
    for noisy in ("slack_bolt", "slack_sdk", "aiohttp.access", "asyncssh"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # Python warnings (deprecations from libraries) go through the same redacting handler.
    logging.captureWarnings(True)
