"""The job store: sqlmodel tables behind an async API; SQLite by default, PostgreSQL by URL.

The only package of the core that imports sqlmodel/sqlalchemy. It also owns `states`, the pure job state
machine. May import: migration_core.errors, models, events, drains, planning (the drain plan it records). Every
public method is async: the blocking
database work runs on a worker thread, transient failures (a server restart, SQLite busy) are retried along
a bounded backoff (`RetryPolicy`), and results are domain objects (`models.Job`, `Approval`,
`ProgressSample`, `EventRecord`), never ORM rows. Failures leave as `MigrateBotError`s; database problems
as `StoreError`, with credentials masked.

Concurrency: state changes are compare-and-set (`UPDATE ... WHERE id = ? AND state = ?`), so of two
writers moving a job from the same state exactly one wins. Replicas claim runnable jobs with leases; on
PostgreSQL the claim is `SELECT ... FOR UPDATE SKIP LOCKED`; on SQLite every write transaction is
`BEGIN IMMEDIATE` (one writer at a time, across processes), which makes the same read-check-write safe.

    schema.py   tables, indexes, append-only trigger, row <-> domain conversions
    engine.py   engines per backend, transient-error test, StoreError translation
    base.py     life cycle, transactions on worker threads, retries
    job_ops.py  jobs: create, read, transition (CAS), plan, chat refs, history, import
    records.py  approvals, events, progress samples
    leases.py   claims, take-over, heartbeats, per-host slot load
    drain_ops.py drains: create, read, state changes (CAS), approvals, chat refs, the conductor's lease
    samples.py  calibration history: predicted and measured figures of finished migrations
    journal.py  the record of running migrations, written in the background (never blocks a migration)
    audit.py    a job's complete record (plan, approvals, outcome, verification, events) for scripts and audits
    types.py    plain types and pure helpers (no database)
"""

from __future__ import annotations

from datetime import datetime

from migration_core.errors import (  # the store raises them  # the store raises them
    ActiveJobExists,
    DrainStateError,
    DuplicateRequestError,
    UnknownDrainError,
)
from migration_core.store.base import utc_now
from migration_core.store.drain_ops import DrainOps
from migration_core.store.job_ops import JobOps
from migration_core.store.job_record import SUMMARY_DETAIL, JobRecord, job_record
from migration_core.store.journal import Journal
from migration_core.store.leases import LeaseOps
from migration_core.store.records import RecordOps
from migration_core.store.samples import SampleOps
from migration_core.store.types import (
    NO_RETRY,
    EventKind,
    EventRecord,
    HostLimit,
    HostLoad,
    RetryPolicy,
    mask_secrets,
    mask_url,
    poll_until,
    retry_async,
)


class Store(JobOps, RecordOps, LeaseOps, SampleOps, DrainOps):
    """The job store. `store = await Store.open(url)` (or `async with Store(url) as store:`); `close()`."""

    async def record(self, job_id: int) -> JobRecord:
        """The job's complete record (UnknownJobError when there is no such job)."""
        job = await self.get_job(job_id)
        return job_record(job, await self.events(job_id))

    async def records_since(self, since: datetime | None = None) -> list[JobRecord]:
        """The records of every job created at or after `since` (None: all), oldest first."""
        return [job_record(job, await self.events(job.id)) for job in await self.jobs_since(since)]


__all__ = [
    "NO_RETRY",
    "SUMMARY_DETAIL",
    "ActiveJobExists",
    "DrainStateError",
    "DuplicateRequestError",
    "EventKind",
    "EventRecord",
    "HostLimit",
    "HostLoad",
    "JobRecord",
    "Journal",
    "RetryPolicy",
    "Store",
    "UnknownDrainError",
    "mask_secrets",
    "mask_url",
    "poll_until",
    "retry_async",
    "utc_now",
]
