"""The dispatcher's queue, as pure functions: why a job waits, and its place among the jobs it waits behind.

A host has two kinds of slots, outbound and inbound (max_outbound / max_inbound in the hosts file). A waiting
job competes only with the jobs that need one of the same slots: the same source (its outbound slots) or the
same destination (its inbound slots). Its place counts those of them ahead of it in queue order (oldest
request first, the order claims follow); jobs on other slots drain in parallel and do not delay it. (A single
line over every waiting job told people "place 7" for jobs that started next: bench/bench_load.py measures
how well the place predicts the actual start order.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from migration_core.inventory.hosts import Inventory
from migration_core.models import Job
from migration_core.store import HostLimit, HostLoad


@dataclass(frozen=True)
class QueuePosition:
    """Why an approved job waits, and its place in the queue (1 = next): what `/migrate status` lists."""

    job_id: int
    place: int
    why: str


def limits_of(inventory: Inventory) -> dict[str, HostLimit]:
    """Each host's concurrency limits from the inventory."""
    return {h.name: HostLimit(h.max_inbound, h.max_outbound) for h in inventory}


def queue_places(waiting: Sequence[Job]) -> dict[int, int]:
    """Job id -> place (1 = next), `waiting` in queue order: 1 + the jobs ahead that need one of its slots.

    >>> from datetime import UTC, datetime
    >>> from migration_core.models import JobState
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> moves = [(1, "hostA", "hostB"), (2, "hostB", "hostA"), (3, "hostA", "hostB"), (4, "hostC", "hostB")]
    >>> queue_places([Job(i, f"vm{i}", s, d, "alice", JobState.QUEUED, t, t) for i, s, d in moves])
    {1: 1, 2: 1, 3: 2, 4: 3}
    """
    places: dict[int, int] = {}
    for i, job in enumerate(waiting):
        ahead = waiting[:i]
        places[job.id] = 1 + sum(1 for a in ahead if a.source == job.source or a.destination == job.destination)
    return places


def waiting_reason(job: Job, load: Mapping[str, HostLoad], limits: Mapping[str, HostLimit]) -> str | None:
    """Why `job` cannot start now, or None when both hosts have a free slot.

    >>> from datetime import UTC, datetime
    >>> from migration_core.models import JobState
    >>> now = datetime(2026, 1, 1, tzinfo=UTC)
    >>> job = Job(44, "vm42", "hostA", "hostB", "alice", JobState.QUEUED, now, now)
    >>> waiting_reason(job, {"hostB": HostLoad("hostB", (41, 43))}, {"hostB": HostLimit(2, 2)})
    'hostB already receives 2 migrations: #41, #43'
    >>> waiting_reason(job, {"hostA": HostLoad("hostA", (), (40, 44))}, {"hostA": HostLimit(2, 1)})
    'hostA already sends 1 migration: #40'
    >>> waiting_reason(job, {}, {"hostA": HostLimit(2, 0), "hostB": HostLimit(0, 2)})
    'hostB accepts no incoming migrations (max_inbound = 0 in the hosts file)'
    >>> waiting_reason(job, {}, {"hostA": HostLimit(2, 0), "hostB": HostLimit(2, 2)})
    'hostA sends no migrations (max_outbound = 0 in the hosts file)'
    >>> waiting_reason(job, {"hostB": HostLoad("hostB", (44,))}, {"hostA": HostLimit(1, 1), "hostB": HostLimit(1, 1)})
    """
    # the destination's inbound slots first, then the source's outbound ones (one reason at a time)
    inbound = _slot_reason(job, job.destination, _INBOUND, load, limits)
    return inbound if inbound is not None else _slot_reason(job, job.source, _OUTBOUND, load, limits)


@dataclass(frozen=True)
class _SlotKind:
    """One direction of a host's migration slots, and how a waiting job is told that it is closed or full."""

    key: str  # the hosts-file limit
    closed: str
    verb: str
    inbound: bool

    def cap(self, limit: HostLimit) -> int:
        return limit.max_inbound if self.inbound else limit.max_outbound

    def held(self, load: HostLoad) -> tuple[int, ...]:
        return load.inbound_job_ids if self.inbound else load.outbound_job_ids


_INBOUND = _SlotKind("max_inbound", "accepts no incoming migrations", "receives", inbound=True)
_OUTBOUND = _SlotKind("max_outbound", "sends no migrations", "sends", inbound=False)


def _slot_reason(
    job: Job, host: str, kind: _SlotKind, load: Mapping[str, HostLoad], limits: Mapping[str, HostLimit]
) -> str | None:
    """Why `host` has no `kind` slot free for `job`, or None (no limits for the host: free)."""
    limit = limits.get(host)
    if limit is None:
        return None
    cap, ids = kind.cap(limit), [i for i in kind.held(load.get(host, HostLoad(host))) if i != job.id]
    if cap == 0:
        return f"{host} {kind.closed} ({kind.key} = 0 in the hosts file)"
    if len(ids) >= cap:
        listed = ", ".join(f"#{i}" for i in ids)
        return f"{host} already {kind.verb} {len(ids)} migration{'s' if len(ids) > 1 else ''}: {listed}"
    return None


_PLACE = re.compile(r" \(place \d+ in the queue\)$")


def queue_notice(why: str, place: int) -> str:
    """The notice a waiting job gets: why it waits and its place.

    >>> queue_notice("hostB already receives 2 migrations: #41, #43", 2)
    'waiting: hostB already receives 2 migrations: #41, #43 (place 2 in the queue)'
    """
    return f"waiting: {why} (place {place} in the queue)"


def queue_notice_reason(text: str) -> str:
    """A queue notice without its place: front ends post a new line only when the reason changes.

    >>> queue_notice_reason("waiting: hostB is busy (place 3 in the queue)")
    'waiting: hostB is busy'
    """
    return _PLACE.sub("", text)
