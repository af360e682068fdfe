"""The job store on SQLite and on a real PostgreSQL: jobs, transitions (CAS), events, plans, history."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import psycopg
import pytest

from migration_core.errors import IllegalTransition, StoreError, UnknownDrainError, UnknownJobError
from migration_core.models import Approval, ChatRefs, Job, JobState, Phase, ProgressSample
from migration_core.store import ActiveJobExists, DuplicateRequestError, EventKind, Store
from migration_core.store.drain_ops import drain_from_row
from migration_core.store.schema import DrainRow, JobRow, job_from_row
from migration_core.store.states import ALLOWED
from tests.bot.factories import drain_status
from tests.migration_core.store_support import FakeClock, drive_to, path_to, sample_plan

S = JobState
LEGAL = [(old, new) for old in JobState for new in sorted(ALLOWED[old])]
ILLEGAL = [(old, new) for old, new in itertools.product(JobState, JobState) if new not in ALLOWED[old]]


async def test_create_and_read_back(store: Store) -> None:
    job = await store.create_job(
        vm="vm42", destination="hostB", requester="U1", reason="CHG-9", chat=ChatRefs("C1", "17.1")
    )
    assert job.state is S.REQUESTED
    assert job.chat == ChatRefs("C1", "17.1")
    assert (job.vm, job.destination, job.source, job.requester, job.reason) == ("vm42", "hostB", "", "U1", "CHG-9")
    assert job.created_at.tzinfo is not None
    again = await store.get_job(job.id)
    assert again == job
    [first] = await store.events(job.id)
    assert (first.kind, first.old_state, first.new_state, first.actor) == (EventKind.STATE, None, S.REQUESTED, "U1")


async def test_unknown_job_everywhere(store: Store) -> None:
    with pytest.raises(UnknownJobError, match="no job #999"):
        await store.get_job(999)
    with pytest.raises(UnknownJobError):
        await store.transition(999, S.REQUESTED, S.PREFLIGHT)
    with pytest.raises(UnknownJobError):
        await store.record_event(999, EventKind.CLICK, "U1")
    with pytest.raises(UnknownJobError):
        await store.add_approval(999, "U2", True, "abc")
    with pytest.raises(UnknownJobError):
        await store.update_job_chat(999, ChatRefs(channel="C1"))
    with pytest.raises(UnknownJobError):
        await store.set_plan(999, sample_plan())


async def test_every_legal_transition_is_persisted_with_its_event(store: Store) -> None:
    for n, (old, new) in enumerate(LEGAL):
        job = await store.create_job(vm=f"vm{n}", destination="hostB", requester="U1")
        await drive_to(store, job.id, old)
        moved = await store.transition(job.id, old, new, actor="U2", detail=f"{old}->{new}", data={"n": n})
        assert moved.state is new
        assert (await store.get_job(job.id)).state is new
        last = (await store.events(job.id))[-1]
        assert (last.kind, last.old_state, last.new_state, last.actor) == (EventKind.STATE, old, new, "U2")
        assert last.detail == f"{old}->{new}" and last.data == {"n": n}


async def test_every_illegal_transition_is_refused_and_changes_nothing(store: Store) -> None:
    jobs: dict[JobState, int] = {}
    for n, state in enumerate(JobState):
        job = await store.create_job(vm=f"vm{n}", destination="hostB", requester="U1")
        await drive_to(store, job.id, state)
        jobs[state] = job.id
    for old, new in ILLEGAL:
        before = await store.events(jobs[old])
        with pytest.raises(IllegalTransition):
            await store.transition(jobs[old], old, new, actor="U2")
        assert (await store.get_job(jobs[old])).state is old
        assert await store.events(jobs[old]) == before


async def test_stale_expected_state_names_the_real_state(store: Store) -> None:
    job = await store.create_job(vm="vm1", destination="hostB", requester="U1")
    await drive_to(store, job.id, S.AWAITING_APPROVAL)
    with pytest.raises(IllegalTransition, match=r"job #\d+ is awaiting_approval, not preflight"):
        await store.transition(job.id, S.PREFLIGHT, S.FAILED)


async def test_two_writers_race_exactly_one_wins(store_url: str) -> None:
    """Two Store instances (separate pools, separate threads) move the same jobs from the same state."""
    first, second = await Store.open(store_url), await Store.open(store_url)
    try:
        job_ids = []
        for n in range(20):
            job = await first.create_job(vm=f"vm{n}", destination="hostB", requester="U1")
            await drive_to(first, job.id, S.AWAITING_APPROVAL)
            job_ids.append(job.id)
        for job_id in job_ids:
            results = await asyncio.gather(
                first.transition(job_id, S.AWAITING_APPROVAL, S.APPROVED, actor="alice"),
                second.transition(job_id, S.AWAITING_APPROVAL, S.DENIED, actor="bob"),
                return_exceptions=True,
            )
            wins = [r for r in results if not isinstance(r, BaseException)]
            losses = [r for r in results if isinstance(r, BaseException)]
            assert len(wins) == 1 and len(losses) == 1, results
            assert isinstance(losses[0], IllegalTransition)
            winner_state = wins[0].state
            assert f"is {winner_state.value}, not awaiting_approval" in losses[0].message
            assert (await second.get_job(job_id)).state is winner_state
            moves = [e for e in await first.events(job_id) if e.old_state is S.AWAITING_APPROVAL]
            assert [(e.new_state, e.kind) for e in moves] == [(winner_state, EventKind.STATE)]
    finally:
        await first.close()
        await second.close()


async def test_event_log_is_complete_ordered_and_append_only(store: Store, store_url: str) -> None:
    plan = sample_plan()
    job = await store.create_job(vm="vm42", destination="hostB", requester="U1")
    await store.transition(job.id, S.REQUESTED, S.PREFLIGHT, actor="bot")
    await store.transition(job.id, S.PREFLIGHT, S.AWAITING_APPROVAL, actor="bot", plan=plan)
    await store.record_event(job.id, EventKind.CLICK, "U2", "pressed Approve", {"action": "approve"})
    await store.add_approval(job.id, "U2", True, plan.hash)
    snapshot = await store.events(job.id)
    await store.transition(job.id, S.AWAITING_APPROVAL, S.APPROVED, actor="U2")
    await store.record_event(job.id, EventKind.REFUSED, "U3", "not an approver")
    await store.record_event(job.id, EventKind.DECISION, "controller", "raise downtime", {"downtime_ms": 400})
    await store.record_event(job.id, EventKind.NOTICE, None, "stalled for 30 s")
    await store.set_plan(job.id, plan, actor="bot")

    log = await store.events(job.id)
    assert log[: len(snapshot)] == snapshot  # nothing written earlier changed
    assert [e.id for e in log] == sorted({e.id for e in log})
    assert [(e.kind, e.actor) for e in log] == [
        (EventKind.STATE, "U1"),
        (EventKind.STATE, "bot"),
        (EventKind.STATE, "bot"),
        (EventKind.CLICK, "U2"),
        (EventKind.APPROVAL, "U2"),
        (EventKind.STATE, "U2"),
        (EventKind.REFUSED, "U3"),
        (EventKind.DECISION, "controller"),
        (EventKind.NOTICE, None),
        (EventKind.PLAN, "bot"),
    ]
    assert log[2].data == {"plan_hash": plan.hash}
    assert log[7].data == {"downtime_ms": 400}
    states = [e.new_state for e in log if e.kind is EventKind.STATE]
    assert states == [S.REQUESTED, S.PREFLIGHT, S.AWAITING_APPROVAL, S.APPROVED]
    assert [e.kind for e in await store.events(job.id, kinds=[EventKind.REFUSED])] == [EventKind.REFUSED]

    # The database itself refuses to change or delete history, whoever asks.
    for statement in ("UPDATE events SET detail = 'forged'", "DELETE FROM events"):
        with pytest.raises((sqlite3.DatabaseError, psycopg.Error), match="append-only"):
            _raw_execute(store_url, statement)
    assert await store.events(job.id) == log


def _raw_execute(url: str, statement: str) -> None:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute(statement)
    else:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            conn.execute(statement)


async def test_events_without_a_job(store: Store) -> None:
    await store.record_event(None, EventKind.REFUSED, "U9", "button for unknown job", {"job_id": 4242})
    [event] = await store.events(None)
    assert (event.job_id, event.actor, event.data) == (None, "U9", {"job_id": 4242})


async def test_plan_json_round_trip(store: Store) -> None:
    plan = sample_plan()
    job = await store.create_job(vm="vm42", destination="hostB", requester="U1", plan=plan)
    assert job.plan == plan and job.source == "hostA"
    stored = await store.get_job(job.id)
    assert stored.plan == plan
    assert stored.plan is not None and stored.plan.hash == plan.hash
    other = sample_plan(vm="vm42", source="hostC", destination="hostB")
    replaced = await store.set_plan(job.id, other)
    assert replaced.plan == other and replaced.source == "hostC"
    await store.transition(job.id, S.REQUESTED, S.PREFLIGHT)
    moved = await store.transition(job.id, S.PREFLIGHT, S.AWAITING_APPROVAL, plan=plan)
    assert moved.plan == plan and moved.source == "hostA"


async def test_idempotency_key_is_unique(store: Store) -> None:
    first = await store.create_job(vm="vm1", destination="hostB", requester="U1", idempotency_key="trigger-1")
    with pytest.raises(DuplicateRequestError) as caught:
        await store.create_job(vm="vm2", destination="hostB", requester="U1", idempotency_key="trigger-1")
    assert caught.value.job_id == first.id and f"#{first.id}" in str(caught.value)
    found = await store.find_by_idempotency_key("trigger-1")
    assert found is not None and found.id == first.id
    assert await store.find_by_idempotency_key("nope") is None
    # No key at all is not a key: many jobs may have none.
    await store.create_job(vm="vm3", destination="hostB", requester="U1")
    await store.create_job(vm="vm4", destination="hostB", requester="U1")
    assert len(await store.history(limit=10)) == 3


async def test_one_unfinished_job_per_vm(store: Store) -> None:
    first = await store.create_job(vm="vm1", destination="hostB", requester="U1")
    with pytest.raises(ActiveJobExists) as caught:
        await store.create_job(vm="vm1", destination="hostC", requester="U2")
    assert caught.value.job_id == first.id and "vm1 already has job" in str(caught.value)
    assert (await store.active_job_for_vm("vm1")) == first
    await store.transition(first.id, S.REQUESTED, S.FAILED, error="preflight could not reach hostB")
    assert await store.active_job_for_vm("vm1") is None
    second = await store.create_job(vm="vm1", destination="hostC", requester="U2")
    latest = await store.latest_job_for_vm("vm1")
    assert latest is not None and latest.id == second.id
    assert (await store.get_job(first.id)).error == "preflight could not reach hostB"


async def test_history_filters_order_and_limit(store_url: str) -> None:
    clock = FakeClock()
    store = await Store.open(store_url, clock=clock)
    try:
        made = []
        routes = [("vm1", "hostA", "hostB"), ("vm2", "hostB", "hostC"), ("vm3", "hostC", "hostA")] * 4
        for vm, src, dst in routes:
            job = await store.create_job(vm=vm, source=src, destination=dst, requester="U1")
            await store.transition(job.id, S.REQUESTED, S.FAILED)
            made.append(job)
            clock.advance(60)
        newest_first = list(reversed(made))
        assert [j.id for j in await store.history(limit=100)] == [j.id for j in newest_first]
        assert [j.id for j in await store.history("vm2", limit=100)] == [j.id for j in newest_first if j.vm == "vm2"]
        host_b = [j.id for j in newest_first if "hostB" in (j.source, j.destination)]
        assert [j.id for j in await store.history("hostB", limit=100)] == host_b
        assert [j.id for j in await store.history("hostB", limit=3)] == host_b[:3]
        assert [j.id for j in await store.history(limit=5)] == [j.id for j in newest_first[:5]]
        assert await store.history("nowhere") == []
        # Same created_at: the higher id is newer.
        twins = [await store.create_job(vm=f"twin{n}", destination="hostZ", requester="U1") for n in range(2)]
        assert [j.id for j in await store.history("hostZ")] == [twins[1].id, twins[0].id]
        active = await store.active_jobs()
        assert [j.id for j in active] == [twins[1].id, twins[0].id]
        assert [j.id for j in await store.jobs_in_states([S.REQUESTED])] == [twins[0].id, twins[1].id]
    finally:
        await store.close()


async def test_approvals_are_loaded_with_the_job(store: Store) -> None:
    plan = sample_plan()
    job = await store.create_job(vm="vm42", destination="hostB", requester="U1", plan=plan)
    approval = await store.add_approval(job.id, "U2", True, plan.hash)
    await store.add_approval(job.id, "U3", False, plan.hash)
    assert (approval.job_id, approval.actor, approval.approved, approval.plan_hash) == (job.id, "U2", True, plan.hash)
    stored = await store.get_job(job.id)
    assert [(a.actor, a.approved) for a in stored.approvals] == [("U2", True), ("U3", False)]
    assert stored.approvers == ("U2",)
    [listed] = await store.history("vm42")
    assert listed.approvals == stored.approvals


async def test_chat_refs_update_only_what_is_given(store: Store) -> None:
    job = await store.create_job(vm="vm1", destination="hostB", requester="U1", chat=ChatRefs(channel="C1"))
    updated = await store.update_job_chat(job.id, ChatRefs(thread="171.5"))
    assert updated.chat == ChatRefs("C1", "171.5", None)
    updated = await store.update_job_chat(job.id, ChatRefs(progress="171.9"))
    assert updated.chat == ChatRefs("C1", "171.5", "171.9")
    assert (await store.get_job(job.id)).chat == updated.chat


async def test_drain_chat_refs_update_only_what_is_given(store: Store) -> None:
    d = drain_status().drain
    drain = await store.create_drain(
        kind=d.kind, plan=d.plan, requester="U1", requirement=d.requirement, chat=ChatRefs(channel="C1")
    )
    assert drain.chat == ChatRefs("C1")
    updated = await store.update_drain_chat(drain.id, ChatRefs(thread="171.5"))
    assert updated.chat == ChatRefs("C1", "171.5", None)
    updated = await store.update_drain_chat(drain.id, ChatRefs(progress="171.9"))
    assert updated.chat == ChatRefs("C1", "171.5", "171.9")
    assert (await store.get_drain(drain.id)).chat == updated.chat
    with pytest.raises(UnknownDrainError):
        await store.update_drain_chat(999, ChatRefs(progress="171.9"))


async def test_progress_samples_round_trip(store: Store) -> None:
    clock = FakeClock()
    job = await store.create_job(vm="vm1", destination="hostB", requester="U1")
    samples = [
        ProgressSample(
            job_id=job.id,
            at=clock.now,
            phase=Phase.PRECOPY,
            percent=10.0 * n,
            elapsed_s=2.0 * n,
            data_processed_bytes=n * 5 * 1024**3,
            data_remaining_bytes=(9 - n) * 5 * 1024**3,
            data_total_bytes=45 * 1024**3,
            throughput_mib_s=950.5,
            dirty_rate_mib_s=None if n == 0 else 80.0,
            iteration=n,
            expected_downtime_ms=None if n < 2 else 250,
            eta_s=None,
            stalled=n == 3,
            stalled_for_s=12.5 if n == 3 else 0.0,
            postcopy_requests=n,
            auto_converge_throttle_pct=20,
        )
        for n in range(5)
    ]
    for sample in samples:
        await store.add_progress(sample)
    assert await store.progress(job.id) == samples
    assert await store.progress(job.id, limit=2) == samples[-2:]
    with pytest.raises(UnknownJobError):
        await store.add_progress(ProgressSample(**{**samples[0].__dict__, "job_id": 999}))


def test_paths_used_by_the_tests_are_legal() -> None:
    for state in JobState:
        previous = S.REQUESTED
        for nxt in path_to(state):
            assert nxt in ALLOWED[previous]
            previous = nxt
        assert previous is state


async def test_import_jobs_keeps_states_times_plans_and_approvals(store: Store) -> None:
    clock = FakeClock()
    plan = sample_plan()
    originals = [
        Job(
            id=0,
            vm=f"vm{n}",
            source="hostA",
            destination="hostB",
            requester="U1",
            state=S.SUCCEEDED,
            created_at=clock.now + timedelta(minutes=n),
            updated_at=clock.now + timedelta(minutes=n, seconds=90),
            plan=plan if n % 2 else None,
            reason="CHG-7",
            chat=ChatRefs("C1", f"17.{n}", "18.1" if n % 2 else None),
            owner="replica-a",
            approvals=(Approval(0, "U2", True, plan.hash, clock.now),) if n % 3 else (),
        )
        for n in range(7)
    ]
    assert await store.import_jobs(originals, chunk=3) == 7
    loaded = list(reversed(await store.history(limit=100)))
    assert len(loaded) == 7
    for got, want in zip(loaded, originals, strict=True):
        assert replace(got, id=0, approvals=()) == replace(want, approvals=())
        assert [(a.job_id, a.actor, a.plan_hash) for a in got.approvals] == [
            (got.id, a.actor, a.plan_hash) for a in want.approvals
        ]
    assert await store.events(loaded[0].id) == []  # an import brings no invented history


def test_an_unreadable_stored_plan_is_named_for_the_operator() -> None:
    """A job's or a drain's plan column that does not decode says whose it is and what to look for."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    job = JobRow(id=5, vm="vm42", source="hostA", destination="hostB", requester="U1", state="requested",
                 created_at=at, updated_at=at, plan="{not json")  # fmt: skip
    with pytest.raises(StoreError, match=r"job #5 has an unreadable plan .*manual edits"):
        job_from_row(job, [])
    drain = DrainRow(id=3, kind="drain", host="hostA", state="running", requester="U1", plan="{}", plan_hash="h",
                     requirement="{}", created_at=at, updated_at=at)  # fmt: skip
    with pytest.raises(StoreError, match=r"drain D3 has an unreadable plan .*manual edits"):
        drain_from_row(drain)


async def test_an_event_takes_its_data_from_any_mapping(store: Store) -> None:
    """`record_event` data may be a read-only mapping: it is written as a JSON object all the same."""
    job = await store.create_job(vm="vm42", destination="hostB", requester="U1")
    event = await store.record_event(job.id, EventKind.CLICK, "U1", "clicked", MappingProxyType({"button": "ok"}))
    assert event.data == {"button": "ok"}
    assert (await store.events(job.id))[-1].data == {"button": "ok"}
