"""A job's complete record for scripts and audits: what was planned, who approved, how it ran, what was verified.

Pure: `job_record(job, events)` folds a job and its append-only event log (the store reads both) into a typed
`JobRecord`; `JobRecord.to_json()` is the `migrate-bot status <id> --json` contract and one line of
`migrate-bot export --format jsonl`; `csv_row` is one line of `--format csv`. The outcome and the verification
come from the summary the dispatcher writes to the event log before it closes the job (a notice whose detail
is `summary` and whose data is the VerificationSummary), so no table beyond the event log is needed.

Contract keys (relied on by other tools): `plan` (as `plan --json` prints it, or null), `approvals` (list of
`user`, `at`), `outcome` (`total_s`, `downtime_ms`, `data_bytes`, `iterations`, `throughput_mib_s`; null until
the job ran), `verification` (list of `name`, `status`, `reason`), `events` (list of `at`, `kind`, `actor`,
`text`), plus the job's `id`, `vm`, `source`, `destination`, `state`, `requester`, `approvers`, `reason`,
`created_at`, `updated_at`, `error` and `plan_hash`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from migration_core.models import CheckResult, CheckStatus, Job
from migration_core.store.types import EventKind, EventRecord

SUMMARY_DETAIL = "summary"  # the detail of the notice that carries the VerificationSummary (dispatcher)

CSV_COLUMNS = (
    "id", "vm", "source", "destination", "state", "requester", "approvers", "reason", "created_at",
    "updated_at", "plan_hash", "total_s", "downtime_ms", "data_bytes", "iterations", "throughput_mib_s",
    "verification", "error",
)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """The measured numbers of a migration that ran (libvirt's completed-job statistics, via the summary)."""

    total_s: float | None
    downtime_ms: int | None
    data_bytes: int | None
    iterations: int | None
    throughput_mib_s: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # the contract's `outcome` keys are exactly these fields


@dataclass(frozen=True)
class JobRecord:
    """Everything on record about one job."""

    job: Job
    outcome: Outcome | None
    verification: tuple[CheckResult, ...]  # the summary's checks (the contract shows name, status, reason)
    events: tuple[EventRecord, ...]

    def to_json(self) -> dict[str, Any]:
        job = self.job
        return {
            "id": job.id,
            "vm": job.vm,
            "source": job.source,
            "destination": job.destination,
            "state": job.state.value,
            "requester": job.requester,
            "approvers": list(job.approvers),
            "reason": job.reason,
            "created_at": _iso(job.created_at),
            "updated_at": _iso(job.updated_at),
            "error": job.error,
            "plan_hash": job.plan.hash if job.plan else None,
            "plan": job.plan.to_json() if job.plan else None,
            "approvals": [{"user": a.actor, "at": _iso(a.at)} for a in job.approvals if a.approved],
            "outcome": self.outcome.to_json() if self.outcome else None,
            "verification": [{"name": c.name, "status": c.status.value, "reason": c.reason} for c in self.verification],
            "events": [
                {"at": _iso(e.at), "kind": e.kind.value, "actor": e.actor, "text": e.detail} for e in self.events
            ],
        }

    def csv_row(self) -> dict[str, str]:
        """One flat row (columns CSV_COLUMNS): lists joined with `; `, absent values empty."""
        data = self.to_json()
        outcome = data["outcome"] or {}
        row: dict[str, Any] = {k: data.get(k) for k in CSV_COLUMNS}
        row.update({k: outcome.get(k) for k in Outcome.__dataclass_fields__})
        row["approvers"] = "; ".join(data["approvers"])
        row["verification"] = "; ".join(f"{c.name}: {c.status.value}" for c in self.verification)
        return {k: "" if v is None else str(v) for k, v in row.items()}


def _iso(at: datetime) -> str:
    return at.isoformat()


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _check(raw: object) -> CheckResult | None:
    """One check of a stored summary (VerificationSummary.to_json wrote it); None for what is not one."""
    if not isinstance(raw, Mapping):
        return None
    try:
        status = CheckStatus(str(raw.get("status")))
    except ValueError:
        return None
    fix = raw.get("fix")
    return CheckResult(str(raw.get("name", "")), status, str(raw.get("reason", "")), None if fix is None else str(fix))


def summary_data(events: Sequence[EventRecord]) -> Mapping[str, Any] | None:
    """The last summary written for the job (a restart may verify again: the newest counts), or None."""
    for event in reversed(events):
        if event.kind is EventKind.NOTICE and event.detail == SUMMARY_DETAIL and event.data:
            return event.data
    return None


def job_record(job: Job, events: Sequence[EventRecord]) -> JobRecord:
    """Fold a job and its event log (in the order written) into its record."""
    summary = summary_data(events)
    outcome: Outcome | None = None
    checks: tuple[CheckResult, ...] = ()
    if summary is not None:
        outcome = Outcome(
            total_s=_float(summary.get("total_s")),
            downtime_ms=_int(summary.get("downtime_ms")),
            data_bytes=_int(summary.get("data_bytes")),
            iterations=_int(summary.get("iterations")),
            throughput_mib_s=_float(summary.get("throughput_mib_s")),
        )
        raw_checks = summary.get("checks")
        found = (_check(c) for c in (raw_checks if isinstance(raw_checks, list) else []))
        checks = tuple(c for c in found if c is not None)
    return JobRecord(job=job, outcome=outcome, verification=checks, events=tuple(events))
