"""The queue's pure rules (a job's place among the jobs that need its slots) and the store's announce-once
notice that keeps replicas from repeating each other's queue messages (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from migration_core.dispatch.queue import queue_places
from migration_core.models import Job, JobState
from migration_core.store import EventKind, Store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _jobs(*moves: str) -> list[Job]:
    """ "A>B" strings -> queued jobs 1, 2, ... in that (queue) order."""
    return [
        Job(i, f"vm{i}", m.split(">")[0], m.split(">")[1], "alice", JobState.QUEUED, T0, T0)
        for i, m in enumerate(moves, start=1)
    ]


@pytest.mark.parametrize(
    ("moves", "places"),
    [
        ((), {}),
        (("A>B",), {1: 1}),
        (("A>B", "A>B", "A>B"), {1: 1, 2: 2, 3: 3}),  # one line: same outbound and inbound slots
        (("A>B", "B>A", "A>B", "B>A"), {1: 1, 2: 1, 3: 2, 4: 2}),  # two directions drain in parallel
        (("A>B", "C>D", "A>D"), {1: 1, 2: 1, 3: 3}),  # A>D waits for A's outbound and D's inbound slot
        (("A>B", "C>B", "A>C"), {1: 1, 2: 2, 3: 2}),  # hostB receives both; A>C only waits for A>B
        (("B>A", "A>B"), {1: 1, 2: 1}),  # a host's inbound and outbound slots are separate limits
    ],
)
def test_a_place_counts_only_the_jobs_that_need_the_same_slots(moves: tuple[str, ...], places: dict[int, int]) -> None:
    assert queue_places(_jobs(*moves)) == places


@pytest.mark.postgres
async def test_replicas_announce_a_queue_change_once(store: Store) -> None:
    job = await store.create_job(vm="vm1", destination="hostB", requester="alice", source="hostA")
    text = "waiting: hostB already receives 1 migration: #7 (place 1 in the queue)"
    # Two replicas see the same change in the same tick: exactly one records (and so announces) it.
    first, second = await asyncio.gather(
        store.record_notice_if_new(job.id, text, prefix="waiting:"),
        store.record_notice_if_new(job.id, text, prefix="waiting:"),
    )
    assert sorted([first, second]) == [False, True]
    await store.record_event(job.id, EventKind.NOTICE, None, "something else happened")
    assert not await store.record_notice_if_new(job.id, text, prefix="waiting:")  # still the latest "waiting:"
    moved = text.replace("#7", "#8")
    assert await store.record_notice_if_new(job.id, moved, prefix="waiting:")
    assert await store.record_notice_if_new(job.id, text, prefix="waiting:")  # back to the earlier text: news
    notices = [e.detail for e in await store.events(job.id, [EventKind.NOTICE]) if e.detail.startswith("waiting:")]
    assert notices == [text, moved, text]
