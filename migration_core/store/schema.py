"""The store's tables (sqlmodel) and the conversions between their rows and the core's domain objects."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, Text, text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from migration_core.errors import StoreError
from migration_core.models import (
    TERMINAL_STATES,
    Approval,
    ChatRefs,
    Job,
    JobState,
    MoveSample,
    Phase,
    Plan,
    ProgressSample,
)
from migration_core.store.types import EventKind, EventRecord


def to_utc(at: datetime) -> datetime:
    """Aware UTC; a naive value is taken to be UTC already."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in and out, stored as UTC (timestamptz on PostgreSQL, UTC text on SQLite).

    Declared here rather than relying on the sqlmodel version's default datetime handling, which changed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else to_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else to_utc(value)


_TERMINAL_SQL = ", ".join(f"'{s.value}'" for s in sorted(TERMINAL_STATES))
# At most one unfinished job per VM: a partial unique index, so not even two replicas can both create one.
_ACTIVE_WHERE = text(f"state NOT IN ({_TERMINAL_SQL})")


class RequestColumns(SQLModel):
    """The columns a job and a drain share: both are change requests with a requester, a state, times, a card in
    chat, and the replica conducting them. Not a table itself: each table gets its own copy of these columns."""

    id: int | None = Field(default=None, primary_key=True)
    requester: str
    reason: str | None = Field(default=None, sa_type=Text)
    state: str
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)
    chat_channel: str | None = None
    chat_thread: str | None = None
    chat_progress: str | None = None
    owner: str | None = None  # the replica holding the lease (a job) or conducting it (a drain)
    lease_until: datetime | None = Field(default=None, sa_type=UtcDateTime)


class JobRow(RequestColumns, table=True):
    """jobs: one row per migration request; `state` moves only through Store.transition."""

    __tablename__ = "jobs"
    __table_args__ = (
        # History: newest first, overall and per VM / source / destination (see Store.history).
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_vm_created", "vm", "created_at", "id"),
        Index("ix_jobs_source_created", "source", "created_at", "id"),
        Index("ix_jobs_destination_created", "destination", "created_at", "id"),
        Index("ix_jobs_state_created", "state", "created_at", "id"),
        Index("uq_jobs_active_vm", "vm", unique=True, sqlite_where=_ACTIVE_WHERE, postgresql_where=_ACTIVE_WHERE),
    )

    vm: str
    source: str
    destination: str
    plan: str | None = Field(default=None, sa_type=Text)  # Plan.to_json() as JSON text
    plan_hash: str | None = None
    error: str | None = Field(default=None, sa_type=Text)
    idempotency_key: str | None = Field(default=None, unique=True)
    drain_id: int | None = None  # the drain this move belongs to (drains.id), if any


class ApprovalRow(SQLModel, table=True):
    """approvals: who approved or denied which plan hash, and when."""

    __tablename__ = "approvals"
    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="jobs.id", index=True)
    actor: str
    approved: bool
    plan_hash: str
    at: datetime = Field(sa_type=UtcDateTime)
    groups: str | None = Field(default=None, sa_type=Text)  # JSON list: the requirement's groups of the actor


class EventRow(SQLModel, table=True):
    """events: the append-only log (a trigger refuses UPDATE and DELETE, see GUARD_DDL)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_job", "job_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    job_id: int | None = Field(default=None, foreign_key="jobs.id")
    at: datetime = Field(sa_type=UtcDateTime)
    kind: str
    actor: str | None = None
    old_state: str | None = None
    new_state: str | None = None
    detail: str = Field(default="", sa_type=Text)
    data: str | None = Field(default=None, sa_type=Text)  # a JSON object
    # The tamper-evident chain (store/audit.py): the previous record's hash and this record's. NULL only for
    # records written before the chain existed.
    prev_hash: str | None = Field(default=None, sa_type=Text)
    hash: str | None = Field(default=None, sa_type=Text)


def dumps(data: Mapping[str, Any]) -> str | None:
    """A JSON object column's text (sorted keys; NULL for an empty object)."""
    return json.dumps(data, sort_keys=True, default=str) if data else None


def event_row(
    job_id: int | None,
    kind: EventKind,
    at: datetime,
    actor: str | None = None,
    detail: str = "",
    data: Mapping[str, Any] | None = None,
    *,
    old_state: JobState | None = None,
    new_state: JobState | None = None,
) -> EventRow:
    """One row of the event log: every writer (jobs, leases, approvals, drains, notices) builds it here."""
    return EventRow(
        job_id=job_id,
        at=at,
        kind=kind.value,
        actor=actor,
        old_state=old_state.value if old_state is not None else None,
        new_state=new_state.value if new_state is not None else None,
        detail=detail,
        data=dumps(dict(data or {})),  # any Mapping (a read-only view too) is written as a JSON object
    )


class ProgressRow(SQLModel, table=True):
    """progress_samples: one row per ProgressSample (byte counts are 64-bit)."""

    __tablename__ = "progress_samples"
    __table_args__ = (Index("ix_progress_job", "job_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="jobs.id")
    at: datetime = Field(sa_type=UtcDateTime)
    phase: str
    percent: float
    elapsed_s: float
    data_processed_bytes: int = Field(sa_type=BigInteger)
    data_remaining_bytes: int = Field(sa_type=BigInteger)
    data_total_bytes: int = Field(sa_type=BigInteger)
    throughput_mib_s: float
    dirty_rate_mib_s: float | None = None
    iteration: int
    expected_downtime_ms: int | None = None
    eta_s: float | None = None
    stalled: bool
    stalled_for_s: float = 0.0
    postcopy_requests: int = 0
    auto_converge_throttle_pct: int = 0


class MoveSampleRow(SQLModel, table=True):
    """move_samples: one row per finished migration that had a model prediction (calibration history).

    Added by issue 12; `create_all` creates it in databases made before (no existing table changes).
    """

    __tablename__ = "move_samples"
    __table_args__ = (
        Index("ix_move_samples_pair", "source", "destination", "finished_at"),
        Index("ix_move_samples_vm", "vm_uuid", "finished_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    job_id: int | None = None
    vm_uuid: str
    vm: str
    source: str
    destination: str
    family: str
    finished_at: datetime = Field(sa_type=UtcDateTime)
    succeeded: bool
    model_total_s: float
    model_downtime_ms: float | None = None
    predicted_total_s: float | None = None
    predicted_downtime_ms: float | None = None
    measured_total_s: float
    measured_downtime_ms: float | None = None
    memory_bytes_sent: int = Field(default=0, sa_type=BigInteger)
    disk_bytes_sent: int = Field(default=0, sa_type=BigInteger)
    throughput_mib_s: float | None = None
    passes: int | None = None
    postcopy: bool = False
    link_mib_s: float | None = None
    disk_bytes: int = Field(default=0, sa_type=BigInteger)
    postcopy_switch_s: float | None = None


class DrainRow(RequestColumns, table=True):
    """drains: one row per drain or return request (its moves are jobs keyed `drain:<id>:<vm>`)."""

    __tablename__ = "drains"
    __table_args__ = (Index("ix_drains_host_created", "host", "created_at"),)

    kind: str
    host: str
    plan: str = Field(sa_type=Text)  # DrainPlan.to_record() as JSON text
    plan_hash: str
    requirement: str = Field(sa_type=Text)  # ApprovalRequirement as JSON
    approvals: str = Field(default="[]", sa_type=Text)  # JSON list of approvals/denials
    returns_drain: int | None = None
    skipped: str = Field(default="{}", sa_type=Text)  # JSON {vm: why}: moves that could not get a job
    detail: str = Field(default="", sa_type=Text)


def sample_to_row(sample: MoveSample, job_id: int | None) -> MoveSampleRow:
    return MoveSampleRow(job_id=job_id, **{f.name: getattr(sample, f.name) for f in fields(MoveSample)})


def sample_from_row(row: MoveSampleRow) -> MoveSample:
    return MoveSample(**{f.name: getattr(row, f.name) for f in fields(MoveSample)})


APPEND_ONLY = "the event log is append-only"
# Per dialect: refuse UPDATE and DELETE on events at the database, not only by having no API for them.
GUARD_DDL = {
    "sqlite": [
        f"CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events "
        f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END",
        f"CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events "
        f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$",
        "CREATE OR REPLACE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events "
        "FOR EACH ROW EXECUTE FUNCTION events_append_only()",
    ],
}


def row_id(row: JobRow | EventRow) -> int:
    if row.id is None:  # only before a flush; every row read back has one
        raise StoreError("a row has no id", "this is a bug in the store: report it")
    return row.id


def chat_refs(row: RequestColumns) -> ChatRefs:
    """A job's or a drain's chat columns as one value: both tables store them alike, `chat_<field>`."""
    return ChatRefs(row.chat_channel, row.chat_thread, row.chat_progress)


def chat_columns(refs: ChatRefs) -> dict[str, Any]:
    """`refs` as the values of all three chat columns, for an insert (`JobRow(**…)`, `DrainRow(**…)`).

    Any, not object: mypy checks a `**` argument's value type against every column of the row, not only these.
    """
    return _chat_named(asdict(refs))


def chat_changes(refs: ChatRefs) -> dict[str, object]:
    """The chat columns an update to `refs` sets: `ChatRefs.changes`, so a None field keeps what is stored.

    One UPDATE of only these columns rather than read, merge and write back: two front-end steps storing
    different references at once (the card's thread, the progress message) cannot undo each other.
    """
    return _chat_named(refs.changes())


def _chat_named(values: Mapping[str, str | None]) -> dict[str, Any]:
    return {f"chat_{name}": value for name, value in values.items()}


@contextmanager
def decoding_plan(owner: str) -> Iterator[None]:
    """Decode a row's stored plan (JSON) inside this block: what does not parse is a StoreError naming `owner`."""
    try:
        yield
    except (ValueError, KeyError, TypeError) as err:
        raise StoreError(
            f"{owner} has an unreadable plan in the database: {err}",
            "the store never writes this: look for manual edits or a version mismatch",
        ) from None


def job_from_row(row: JobRow, approvals: Sequence[Approval]) -> Job:
    with decoding_plan(f"job #{row.id}"):
        plan = Plan.from_json(json.loads(row.plan)) if row.plan else None
    return Job(
        id=row_id(row),
        vm=row.vm,
        source=row.source,
        destination=row.destination,
        requester=row.requester,
        state=JobState(row.state),
        created_at=to_utc(row.created_at),
        updated_at=to_utc(row.updated_at),
        plan=plan,
        reason=row.reason,
        chat=chat_refs(row),
        approvals=tuple(approvals),
        error=row.error,
        owner=row.owner,
        drain_id=row.drain_id,
    )


def job_values(job: Job) -> dict[str, object]:
    """A domain job as column values for a bulk insert (a new id is assigned; no lease, no key)."""
    return {
        "vm": job.vm,
        "source": job.source,
        "destination": job.destination,
        "requester": job.requester,
        "reason": job.reason,
        "state": job.state.value,
        "plan": json.dumps(job.plan.to_json()) if job.plan else None,
        "plan_hash": job.plan.hash if job.plan else None,
        "created_at": to_utc(job.created_at),
        "updated_at": to_utc(job.updated_at),
        **chat_columns(job.chat),
        "error": job.error,
        "owner": job.owner,
        "lease_until": None,
        "idempotency_key": None,
        "drain_id": job.drain_id,
    }


def plan_values(plan: Plan) -> dict[str, object]:
    """The job columns a plan sets: the plan itself, its hash, and where it goes."""
    return {
        "plan": json.dumps(plan.to_json()),
        "plan_hash": plan.hash,
        "source": plan.source,
        "destination": plan.destination,
    }


def approval_from_row(row: ApprovalRow) -> Approval:
    groups = tuple(json.loads(row.groups)) if row.groups else ()
    return Approval(row.job_id, row.actor, row.approved, row.plan_hash, to_utc(row.at), groups)


# Columns added after the first release: (table, column, SQL type). `Store.start` adds any that an existing
# database lacks (create_all creates missing tables only); all are nullable, so old rows stay valid.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("approvals", "groups", "TEXT"),
    ("events", "prev_hash", "TEXT"),
    ("events", "hash", "TEXT"),
    ("jobs", "drain_id", "INTEGER"),
)


def event_from_row(row: EventRow) -> EventRecord:
    return EventRecord(
        id=row_id(row),
        job_id=row.job_id,
        at=to_utc(row.at),
        kind=EventKind(row.kind),
        actor=row.actor,
        detail=row.detail,
        old_state=JobState(row.old_state) if row.old_state else None,
        new_state=JobState(row.new_state) if row.new_state else None,
        data=json.loads(row.data) if row.data else {},
    )


# eta_note is a live explanation, not a measurement: not stored (and so no new column on an existing table).
_SAMPLE_FIELDS = tuple(f.name for f in fields(ProgressSample) if f.name not in ("job_id", "at", "phase", "eta_note"))


def progress_to_row(sample: ProgressSample) -> ProgressRow:
    extra = {name: getattr(sample, name) for name in _SAMPLE_FIELDS}
    return ProgressRow(job_id=sample.job_id, at=to_utc(sample.at), phase=sample.phase.value, **extra)


def progress_from_row(row: ProgressRow) -> ProgressSample:
    extra = {name: getattr(row, name) for name in _SAMPLE_FIELDS}
    return ProgressSample(job_id=row.job_id, at=to_utc(row.at), phase=Phase(row.phase), **extra)
