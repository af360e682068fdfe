"""The tamper-evident event log: the hash chain, `verify_chain`, and an attacker editing the database directly."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from migration_core.models import JobState
from migration_core.store import EventKind, Store
from migration_core.store.audit import GENESIS, ChainedRecord, fields_of, record_hash, verify_chain
from tests.migration_core.store_support import sample_plan

BIN = Path(sys.executable).parent / "migrate-bot"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def chain(n: int) -> list[ChainedRecord]:
    out: list[ChainedRecord] = []
    prev = GENESIS
    for i in range(1, n + 1):
        at = T0 + timedelta(seconds=i)
        base = ChainedRecord(i, 1, at, "notice", None, None, None, f"event {i}", None, prev, None)
        h = record_hash(prev, fields_of(base))
        out.append(ChainedRecord(i, 1, at, "notice", None, None, None, f"event {i}", None, prev, h))
        prev = h
    return out


def test_an_untouched_chain_verifies() -> None:
    report = verify_chain(chain(5))
    assert report.intact and report.checked == 5 and (report.first_id, report.last_id) == (1, 5)
    assert report.head_hash == chain(5)[-1].hash


def test_a_changed_record_is_named() -> None:
    records = chain(5)
    r = records[2]
    records[2] = ChainedRecord(r.id, r.job_id, r.at, r.kind, r.actor, r.old_state, r.new_state, "forged",
                               r.data, r.prev_hash, r.hash)  # fmt: skip
    report = verify_chain(records)
    assert report.broken_at == 3 and report.checked == 2
    assert report.problem.startswith("record #3 was changed")


def test_a_removed_record_is_named_by_the_next_one() -> None:
    records = chain(5)
    del records[1]
    report = verify_chain(records)
    assert report.broken_at == 3
    assert report.problem == (
        "record #3 does not link to #1: a record between them was removed (or #3's link was changed)"
    )


def test_records_older_than_the_chain_are_counted_not_checked() -> None:
    legacy = ChainedRecord(1, None, T0, "notice", None, None, None, "old", None, None, None)
    chained = [
        ChainedRecord(r.id + 1, r.job_id, r.at, r.kind, r.actor, r.old_state, r.new_state, r.detail, r.data,
                      r.prev_hash, r.hash)
        for r in chain(2)
    ]  # fmt: skip
    report = verify_chain([legacy, *chained])
    assert report.intact and report.unchained == 1 and report.checked == 2


# ----- on a real database ----------------------------------------------------------------------------------


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(store_url)
    try:
        yield opened
    finally:
        await opened.close()


async def _some_history(store: Store) -> int:
    plan = sample_plan()
    job = await store.create_job(vm="vm42", destination="hostB", requester="alice")
    await store.transition(job.id, JobState.REQUESTED, JobState.PREFLIGHT, actor="alice", detail="preflight")
    await store.transition(job.id, JobState.PREFLIGHT, JobState.AWAITING_APPROVAL, detail="ok", plan=plan)
    await store.add_approval(job.id, "bob", True, plan.hash, ["dba"])
    await store.record_event(None, EventKind.REFUSED, "mallory", "approve refused", {"job_id": 99})
    await store.record_event(job.id, EventKind.NOTICE, None, "über-ünïcode “quoted”", {"n": 1.5})
    return job.id


def _attack(url: str, *statements: str) -> None:
    """What someone with database access would do: drop the append-only guard, then edit history."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute("DROP TRIGGER IF EXISTS events_no_update")
            conn.execute("DROP TRIGGER IF EXISTS events_no_delete")
            for s in statements:
                conn.execute(s)
    else:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            conn.execute("DROP TRIGGER IF EXISTS events_append_only ON events")
            for s in statements:
                conn.execute(s)


async def test_every_writer_joins_the_chain_and_it_verifies(store: Store) -> None:
    await _some_history(store)
    report = await store.verify_audit()
    assert report.intact, report.problem
    assert report.checked >= 6 and report.unchained == 0


async def test_verify_catches_an_edited_row(store: Store, store_url: str) -> None:
    job_id = await _some_history(store)
    approval = next(e for e in await store.events(job_id) if e.kind is EventKind.APPROVAL)
    _attack(store_url, f"UPDATE events SET actor = 'mallory' WHERE id = {approval.id}")
    report = await store.verify_audit()
    assert report.broken_at == approval.id
    assert report.problem.startswith(f"record #{approval.id} was changed")


async def test_verify_catches_a_removed_row(store: Store, store_url: str) -> None:
    job_id = await _some_history(store)
    events = await store.events(job_id)
    victim, after = events[1], events[2]
    _attack(store_url, f"DELETE FROM events WHERE id = {victim.id}")
    report = await store.verify_audit()
    assert report.broken_at == after.id
    assert f"does not link to #{events[0].id}: a record between them was removed" in report.problem


async def test_verify_catches_a_rehashed_row_whose_successor_still_links_to_the_old_hash(
    store: Store, store_url: str
) -> None:
    """A careful attacker recomputes the edited row's own hash; the next record's link then gives it away."""
    job_id = await _some_history(store)
    events = await store.events(job_id)
    target, successor = events[1], events[2]
    rows = {r.id: r for r in await _chained(store)}
    forged = rows[target.id]
    forged = ChainedRecord(forged.id, forged.job_id, forged.at, forged.kind, forged.actor, forged.old_state,
                           forged.new_state, "nothing happened", forged.data, forged.prev_hash, None)  # fmt: skip
    assert forged.prev_hash is not None
    new_hash = record_hash(forged.prev_hash, fields_of(forged))
    _attack(store_url, f"UPDATE events SET detail = 'nothing happened', hash = '{new_hash}' WHERE id = {target.id}")
    report = await store.verify_audit()
    assert report.broken_at == successor.id
    assert "a record between them was removed" in report.problem


async def _chained(store: Store) -> list[ChainedRecord]:
    from sqlmodel import col, select

    from migration_core.store.audit import chained_from_row
    from migration_core.store.schema import EventRow

    def read(s):  # type: ignore[no-untyped-def]
        return [chained_from_row(r) for r in s.exec(select(EventRow).order_by(col(EventRow.id))).all()]

    return await store._run("read", lambda _a: store._read(read))


async def test_an_older_database_gets_the_columns_and_chains_new_records(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = await Store.open(f"sqlite:///{path}")
    await store.close()
    with sqlite3.connect(path) as conn:  # make it look like a database from before this change
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("DROP TRIGGER events_no_delete")
        conn.execute("ALTER TABLE events DROP COLUMN hash")
        conn.execute("ALTER TABLE events DROP COLUMN prev_hash")
        conn.execute("ALTER TABLE approvals DROP COLUMN groups")
        conn.execute("INSERT INTO events (at, kind, detail) VALUES ('2026-01-01 00:00:00.000000', 'notice', 'old')")
    store = await Store.open(f"sqlite:///{path}")
    try:
        await _some_history(store)
        report = await store.verify_audit()
        assert report.intact and report.unchained == 1 and report.checked >= 6
    finally:
        await store.close()


def _cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE_BOT_", "SLACK_"))}
    env["MIGRATE_BOT_DB"] = db
    env["MIGRATE_BOT_HOSTS"] = "/nonexistent/hosts.toml"  # audit verify needs the database only
    return subprocess.run([str(BIN), "audit", "verify", *args], capture_output=True, text=True, env=env, timeout=60)


async def test_the_audit_verify_command_names_the_edited_record(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    store = await Store.open(url)
    try:
        job_id = await _some_history(store)
        events = await store.events(job_id)
    finally:
        await store.close()
    ok = _cli(url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("audit chain intact: ") and "head hash: " in ok.stdout
    _attack(url, f"UPDATE events SET detail = 'approved by nobody' WHERE id = {events[2].id}")
    bad = _cli(url)
    assert bad.returncode == 1
    assert bad.stdout.startswith(f"audit chain BROKEN at record #{events[2].id}: record #{events[2].id} was changed")
    report = json.loads(_cli(url, "--json").stdout)
    assert report["intact"] is False and report["broken_at"] == events[2].id


async def test_concurrent_writers_keep_one_chain(store: Store) -> None:
    """Many events written at once (worker threads, pooled connections; PostgreSQL: truly concurrent
    transactions) still form one unbroken chain: no two records link to the same predecessor."""
    import asyncio

    job = await store.create_job(vm="vm42", destination="hostB", requester="alice")
    await asyncio.gather(*(store.record_event(job.id, EventKind.NOTICE, None, f"note {i}") for i in range(40)))
    report = await store.verify_audit()
    assert report.intact, report.problem
    assert report.checked >= 41
