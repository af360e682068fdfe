"""The job a log line belongs to: a context variable the core sets around each job's work, read by the logger.

The core only sets it (`with job_context(job_id=..., vm=...)`); the bot's log formatter (bot/logging_setup.py)
reads `current()` and puts the fields on every line, so all lines of a job's life can be found by job id,
VM, hosts or actor without each log call repeating them. asyncio tasks and `asyncio.to_thread` copy the
context when they are created, so work a job spawns carries the fields too.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from migration_core.models import Job

P = ParamSpec("P")
R = TypeVar("R")

# The fields, in the order they are shown on a text log line.
JOB_FIELDS = ("job_id", "vm", "source", "destination", "actor")

FieldValue = int | str
_current: contextvars.ContextVar[Mapping[str, FieldValue] | None] = contextvars.ContextVar(
    "migrate_bot_job_context", default=None
)


def current() -> Mapping[str, FieldValue]:
    """The job fields of the code running now (empty outside any job)."""
    return _current.get() or {}


@contextmanager
def job_context(**fields: FieldValue | None) -> Iterator[None]:
    """Add job fields for the duration of the block; nested blocks add to (and may override) outer ones.

    Only the names in JOB_FIELDS are kept; None values leave an outer value in place.
    """
    unknown = set(fields) - set(JOB_FIELDS)
    if unknown:
        raise TypeError(f"unknown job log field(s): {', '.join(sorted(unknown))}; use {', '.join(JOB_FIELDS)}")
    merged = dict(current())
    merged.update({k: v for k, v in fields.items() if v is not None})
    token = _current.set(merged)
    try:
        yield
    finally:
        _current.reset(token)


def fields_of(job: Job, actor: str | None = None) -> dict[str, FieldValue | None]:
    """The log fields of a job (`actor` defaults to whoever requested it)."""
    return {
        "job_id": job.id,
        "vm": job.vm,
        "source": job.source or None,
        "destination": job.destination or None,
        "actor": actor or job.requester or None,
    }


@contextmanager
def for_job(job: Job, actor: str | None = None) -> Iterator[None]:
    """`job_context(**fields_of(job, actor))`: the usual way to enter a job's context."""
    with job_context(**fields_of(job, actor)):
        yield


def scoped(**params: str) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Run an async function in a job context taken from its arguments: `field="parameter name"`.

    @scoped(job_id="job_id", actor="actor")
    async def approve(self, job_id: int, actor: str) -> Job: ...
    """
    unknown = set(params) - set(JOB_FIELDS)
    if unknown:
        raise TypeError(f"unknown job log field(s): {', '.join(sorted(unknown))}")

    def decorate(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind_partial(*args, **kwargs).arguments
            fields = {field: bound.get(name) for field, name in params.items()}
            with job_context(**{k: v for k, v in fields.items() if isinstance(v, int | str)}):
                return await fn(*args, **kwargs)

        return wrapper

    return decorate
