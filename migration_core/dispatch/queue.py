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

from migration_core.inventory.hosts import Inventory
from migration_core.models import Job
from migration_core.store import HostLimit, HostLoad


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
    """
    src, dst = limits.get(job.source), limits.get(job.destination)
    if dst is not None:
        ids = [i for i in load.get(job.destination, HostLoad(job.destination)).inbound_job_ids if i != job.id]
        if dst.max_inbound == 0:
            return f"{job.destination} accepts no incoming migrations (max_inbound = 0 in the hosts file)"
        if len(ids) >= dst.max_inbound:
            listed = ", ".join(f"#{i}" for i in ids)
            return f"{job.destination} already receives {len(ids)} migration{'s' if len(ids) > 1 else ''}: {listed}"
    if src is not None:
        ids = [i for i in load.get(job.source, HostLoad(job.source)).outbound_job_ids if i != job.id]
        if src.max_outbound == 0:
            return f"{job.source} sends no migrations (max_outbound = 0 in the hosts file)"
        if len(ids) >= src.max_outbound:
            listed = ", ".join(f"#{i}" for i in ids)
            return f"{job.source} already sends {len(ids)} migration{'s' if len(ids) > 1 else ''}: {listed}"
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
