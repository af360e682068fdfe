"""The store when the database misbehaves: wrong password, server down, server restarting, bad URLs."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from migration_core.errors import StoreError
from migration_core.models import JobState
from migration_core.store import EventKind, RetryPolicy, Store
from tests.fixtures.postgres import PW_ROLE, PW_SECRET, run_pg_script

WRONG = "Wr0ng-S3cret-Pa55"
FAST = RetryPolicy(base_delay_s=0.05, max_delay_s=0.2, budget_s=0.5)


@pytest.mark.postgres
async def test_wrong_password_is_refused_and_never_shown(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    host_db = postgres_url.split("@", 1)[1]
    # The right password connects (so the failure below is about the password, nothing else).
    right = Store(f"postgresql+psycopg://{PW_ROLE}:{PW_SECRET}@{host_db}", retry=FAST)
    await right.ping()
    await right.close()

    caplog.set_level(logging.DEBUG)
    wrong = Store(f"postgresql+psycopg://{PW_ROLE}:{WRONG}@{host_db}", retry=FAST)
    assert WRONG not in wrong.url_masked and "***" in wrong.url_masked
    with pytest.raises(StoreError) as caught:
        await wrong.start()
    await wrong.close()
    text = f"{caught.value} {caught.value.message} {caught.value.hint} {caught.value!r}"
    assert WRONG not in text
    assert "password authentication failed" in text and f"{PW_ROLE}:***@" in text
    assert caught.value.__cause__ is None  # no chained driver exception carrying the connection string
    assert WRONG not in caplog.text


async def test_database_down_is_a_store_error_after_bounded_retries(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    store = Store("postgresql+psycopg://bot:pa55word@127.0.0.1:1/migratebot", retry=FAST)
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        await store.get_job(1)
    elapsed_s = time.monotonic() - started
    await store.close()
    assert "is unreachable" in caught.value.message
    assert "postgresql+psycopg://bot:***@127.0.0.1:1/migratebot" in caught.value.message
    assert "pa55word" not in str(caught.value) and "pa55word" not in caplog.text
    assert "retrying in" in caplog.text  # the outage is reported while it is being retried
    assert elapsed_s < 30  # bounded (generous: this is not a speed test)


async def test_ping_reports_an_outage_without_retrying() -> None:
    store = Store("postgresql+psycopg://bot@127.0.0.1:1/migratebot")  # default 30 s budget, not used by ping
    with pytest.raises(StoreError, match="unreachable"):
        await store.ping()
    await store.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://u:topsecret@db/x", "cannot use the database URL mysql://u:***@db/x"),
        ("postgresql+psycopg2://u:topsecret@db/x", "is not installed"),
        ("not a url at all", "cannot use the database URL"),
        ("sqlite:////nonexistent-dir-for-migrate-bot/x.db", "does not exist"),
    ],
)
def test_unusable_urls_are_explained(url: str, expected: str) -> None:
    with pytest.raises(StoreError) as caught:
        Store(url)
    assert expected in str(caught.value)
    assert "topsecret" not in str(caught.value)
    assert "sqlite:///" in caught.value.hint


@pytest.mark.postgres
async def test_bare_postgresql_url_uses_psycopg3(pg_database_url: str) -> None:
    store = await Store.open(pg_database_url.replace("postgresql+psycopg://", "postgresql://"))
    assert store.backend == "postgresql"
    await store.close()


async def test_closed_store_says_so(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get_job(1)


async def test_sqlite_in_memory_works_for_quick_tools() -> None:
    store = await Store.open("sqlite://")
    job = await store.create_job(vm="vm1", destination="hostB", requester="U1")
    assert (await store.get_job(job.id)).vm == "vm1"
    await store.close()


@pytest.mark.postgres
async def test_postgresql_restart_loses_no_event(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Stop and start a real server (its own, not the shared one) while events are being written."""
    env = {**os.environ, "MIGRATE_BOT_PG_PORT": "55439", "MIGRATE_BOT_PG_DIR": "/var/tmp/migrate-bot-pg-restart"}
    caplog.set_level(logging.WARNING)
    run_pg_script("start", env=env)
    url = run_pg_script("url", env=env)
    store = await Store.open(url, retry=RetryPolicy(base_delay_s=0.1, max_delay_s=1.0, budget_s=60))
    try:
        job = await store.create_job(vm=f"vm-{tmp_path.name}", destination="hostB", requester="U1")
        restarted = threading.Event()

        def restart() -> None:
            run_pg_script("stop", env=env)
            time.sleep(1.5)  # down for a while: writes in this window must wait and retry
            run_pg_script("start", env=env)
            restarted.set()

        outage = threading.Thread(target=restart)
        outage.start()
        written = 0
        while not restarted.is_set() or written < 40:
            await store.record_event(job.id, EventKind.NOTICE, "bot", f"tick {written}")
            written += 1
            await asyncio.sleep(0.05)
        outage.join()
        await store.transition(job.id, JobState.REQUESTED, JobState.FAILED, actor="bot")

        log = await store.events(job.id)
        ticks = [e.detail for e in log if e.kind is EventKind.NOTICE]
        assert ticks == [f"tick {n}" for n in range(written)]  # every one, once, in order
        assert log[-1].new_state is JobState.FAILED
        assert "is unreachable" in caplog.text and "retrying in" in caplog.text  # the writes did hit the outage
    finally:
        await store.close()
        run_pg_script("stop", env=env)
