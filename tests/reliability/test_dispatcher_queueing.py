"""The dispatcher's queueing step on a real SQLite store: only a job that really cannot start is called queued.

A job approved while a tick is between its claims and its queue pass has free slots; telling its thread
"waiting for a free slot" would announce a wait that is not happening (seen once in the restart test).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from migration_core.dispatch.dispatcher import Dispatcher, DispatcherConfig, JobMover
from migration_core.dispatch.queue import limits_of
from migration_core.events import JobEvent, Notice, NoticeKind
from migration_core.inventory.hosts import load_inventory
from migration_core.models import JobState
from migration_core.store import EventKind, Store

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PATH_TO_APPROVED = (JobState.PREFLIGHT, JobState.AWAITING_APPROVAL, JobState.APPROVED)


class Recorder:
    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    async def emit(self, event: JobEvent) -> None:
        self.events.append(event)


async def _approved(store: Store, vm: str) -> int:
    job = await store.create_job(vm=vm, destination="hostB", requester="alice", source="hostA")
    state = job.state
    for new in PATH_TO_APPROVED:
        await store.transition(job.id, state, new, actor="bob", detail=new.value)
        state = new
    return job.id


async def test_an_approved_job_with_free_slots_is_not_called_queued_but_one_without_is(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(
        "[defaults]\nmax_inbound = 1\nmax_outbound = 1\n\n"
        '[hosts.hostA]\nuri = "qemu+unix:///system?socket=/nowhere/a"\n\n'
        '[hosts.hostB]\nuri = "qemu+unix:///system?socket=/nowhere/b"\n'
    )
    inventory = load_inventory(hosts)
    store = await Store.open(f"sqlite:///{tmp_path / 'bot.db'}")
    sink = Recorder()
    dispatcher = Dispatcher(
        store=store,
        inventory=inventory,
        planner=None,  # type: ignore[arg-type]  # not reached: no job is started here
        executor=None,  # type: ignore[arg-type]
        mover=JobMover(store, sink, lambda: T0),
        sink=sink,
        config=DispatcherConfig(replica_id="r1"),
        clock=lambda: T0,
    )
    limits = limits_of(inventory)
    try:
        first = await _approved(store, "vm1")
        assert await dispatcher._mark_waiting(limits) is True  # it could start: left to the next claim
        assert (await store.get_job(first)).state is JobState.APPROVED
        assert [e for e in sink.events if isinstance(e, Notice)] == []

        claimed = await store.claim_next_runnable("r1", 30.0, limits=limits)
        assert claimed is not None and claimed.id == first  # it holds hostA's outbound and hostB's inbound slot
        second = await _approved(store, "vm2")
        assert await dispatcher._mark_waiting(limits) is False
        job = await store.get_job(second)
        assert job.state is JobState.QUEUED
        told = [e.text for e in sink.events if isinstance(e, Notice) and e.kind is NoticeKind.QUEUED]
        assert told == [f"waiting: hostB already receives 1 migration: #{first} (place 1 in the queue)"]
        notices = [e.detail for e in await store.events(second) if e.kind is EventKind.NOTICE]
        assert notices == told
    finally:
        await store.close()
