"""A job's record (status --json, export): the summary's checks and outcome folded from the event log (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from migration_core.models import CheckResult, CheckStatus, Job, JobState
from migration_core.store import SUMMARY_DETAIL, EventKind, EventRecord, job_record

T = datetime(2026, 1, 1, tzinfo=UTC)


def _summary(data: dict[str, object], event_id: int = 2) -> EventRecord:
    return EventRecord(event_id, 7, T, EventKind.NOTICE, None, SUMMARY_DETAIL, data=data)


def test_the_newest_summary_gives_the_checks_and_outcome_in_the_contract_shape() -> None:
    job = Job(7, "vm42", "hostA", "hostB", "alice", JobState.SUCCEEDED, T, T)
    old = _summary({"checks": [{"name": "old", "status": "fail", "reason": "first run"}]}, event_id=1)
    checks = [
        {"name": "running", "status": "pass", "reason": "vm42 runs on hostB", "fix": None},
        {"name": "source_cleanup", "status": "warn", "reason": "kept", "fix": "undefine it"},
        {"name": "broken", "status": "no-such-status", "reason": "not written by the store"},
        "not a check",
    ]
    record = job_record(job, [old, _summary({"total_s": 12.5, "iterations": 3, "checks": checks})])
    assert record.verification == (
        CheckResult("running", CheckStatus.PASS, "vm42 runs on hostB"),
        CheckResult("source_cleanup", CheckStatus.WARN, "kept", "undefine it"),
    )
    data = record.to_json()
    assert data["verification"] == [
        {"name": "running", "status": "pass", "reason": "vm42 runs on hostB"},
        {"name": "source_cleanup", "status": "warn", "reason": "kept"},
    ]
    outcome = {"total_s": 12.5, "downtime_ms": None, "data_bytes": None, "iterations": 3, "throughput_mib_s": None}
    assert list(data["outcome"].items()) == list(outcome.items())  # the contract's keys, in this order
    row = record.csv_row()
    assert row["verification"] == "running: pass; source_cleanup: warn"
    assert (row["total_s"], row["downtime_ms"]) == ("12.5", "")


def test_a_job_that_never_ran_has_no_outcome_and_no_checks() -> None:
    job = Job(7, "vm42", "hostA", "hostB", "alice", JobState.AWAITING_APPROVAL, T, T)
    record = job_record(job, [])
    assert (record.outcome, record.verification) == (None, ())
    assert record.to_json()["verification"] == [] and record.csv_row()["verification"] == ""
