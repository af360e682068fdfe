"""bot/metrics.py: the metrics sink on job events, the Slack error observer, the libvirt hook, the exposition."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.metrics import Metrics, MetricsSink, SlackErrorObserver, watch_libvirt
from migration_core import telemetry
from migration_core.events import Notice, NoticeKind, StateChanged, SummaryReady
from migration_core.models import CheckResult, CheckStatus, Job, JobState
from tests.bot import factories

T0 = factories.T0


def sample(m: Metrics, name: str, **labels: str) -> float:
    """The value of one sample in the exposition text (0.0 when absent)."""
    for family in text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def moved(job_id: int, old: JobState | None, new: JobState, after_s: float) -> StateChanged:
    return StateChanged(job_id, old, new, None, "", T0 + timedelta(seconds=after_s))


async def test_a_job_that_ran_counts_its_outcome_duration_downtime_and_queue_wait():
    m = Metrics()
    sink = MetricsSink(m)
    for ev in (
        moved(7, JobState.AWAITING_APPROVAL, JobState.APPROVED, 0),
        moved(7, JobState.APPROVED, JobState.QUEUED, 1),
        moved(7, JobState.QUEUED, JobState.RUNNING, 30),
        moved(7, JobState.RUNNING, JobState.VERIFYING, 70),
        moved(7, JobState.VERIFYING, JobState.SUCCEEDED, 72),
    ):
        await sink.emit(ev)
    summary = replace(factories.summary(job_id=7), downtime_ms=80, total_s=41.5)
    await sink.emit(SummaryReady(summary))
    await sink.emit(SummaryReady(summary))  # announced twice (recovery): counted once
    assert sample(m, "migrate_bot_migrations_total", outcome="succeeded") == 1
    assert sample(m, "migrate_bot_migrations_total", outcome="failed") == 0  # every outcome is exported
    assert sample(m, "migrate_bot_queue_wait_seconds_count") == 1
    assert sample(m, "migrate_bot_queue_wait_seconds_sum") == 30  # approval at 0 s, start at 30 s
    assert sample(m, "migrate_bot_migration_duration_seconds_count") == 1
    assert sample(m, "migrate_bot_migration_duration_seconds_sum") == 41.5  # libvirt's figure wins
    assert sample(m, "migrate_bot_migration_downtime_seconds_sum") == pytest.approx(0.08)
    assert sample(m, "migrate_bot_job_transitions_total", state="running") == 1


async def test_without_libvirt_figures_the_duration_is_running_to_end():
    m = Metrics()
    sink = MetricsSink(m)
    await sink.emit(moved(3, JobState.APPROVED, JobState.RUNNING, 10))
    await sink.emit(moved(3, JobState.RUNNING, JobState.FAILED, 25))
    summary = replace(factories.summary(job_id=3, outcome=JobState.FAILED), total_s=None, downtime_ms=None)
    await sink.emit(SummaryReady(summary))
    assert sample(m, "migrate_bot_migration_duration_seconds_sum") == 15
    assert sample(m, "migrate_bot_migration_downtime_seconds_count") == 0  # no downtime measured, none observed


async def test_preflight_failures_are_counted_by_check_from_the_failed_plan():
    failing = factories.plan(
        checks=(
            CheckResult("cpu", CheckStatus.FAIL, "avx512f missing"),
            CheckResult("storage", CheckStatus.FAIL, "local disk"),
            CheckResult("hosts", CheckStatus.PASS, "ok"),
        )
    )
    jobs = {1: factories.job(id=1, p=failing, state=JobState.FAILED), 2: replace(factories.job(id=2), plan=None)}

    async def get_job(job_id: int) -> Job:
        return jobs[job_id]

    m = Metrics()
    sink = MetricsSink(m, get_job=get_job)
    await sink.emit(moved(1, JobState.PREFLIGHT, JobState.FAILED, 1))
    await sink.emit(moved(2, JobState.PREFLIGHT, JobState.FAILED, 1))  # facts could not be gathered: no plan
    await sink.emit(moved(3, JobState.RUNNING, JobState.FAILED, 1))  # failed while running: not a preflight
    assert sample(m, "migrate_bot_preflight_failures_total", check="cpu") == 1
    assert sample(m, "migrate_bot_preflight_failures_total", check="storage") == 1
    assert sample(m, "migrate_bot_preflight_failures_total", check="hosts") == 0
    assert sample(m, "migrate_bot_preflight_failures_total", check="facts_unavailable") == 1
    # Preflight refusals have their own outcome (issue 16): "failed" is for migrations that ran and failed.
    assert sample(m, "migrate_bot_migrations_total", outcome="failed") == 1
    assert sample(m, "migrate_bot_migrations_total", outcome="preflight_failed") == 2


async def test_a_failing_lookup_never_reaches_the_core():
    async def broken(_job_id: int) -> Job:
        raise RuntimeError("store down")

    m = Metrics()
    await MetricsSink(m, get_job=broken).emit(moved(1, JobState.PREFLIGHT, JobState.FAILED, 1))  # no raise
    await MetricsSink(m).emit(Notice(1, NoticeKind.INFO, "x", T0))  # other events are ignored


async def test_the_queue_gauge_is_read_when_scraped_and_survives_a_failing_source():
    m = Metrics()
    length = [3]

    async def queue_length() -> int:
        if length[0] < 0:
            raise RuntimeError("database unreachable")
        return length[0]

    m.watch_queue(queue_length)
    await m.refresh()
    assert sample(m, "migrate_bot_queue_length") == 3
    length[0] = -1
    await m.refresh()  # logged, not raised; the gauge keeps its last value
    assert sample(m, "migrate_bot_queue_length") == 3


def _response(status: int, body: dict[str, object] | None) -> HttpResponse:
    return HttpResponse(status_code=status, headers={}, body=body)


@pytest.mark.parametrize(
    ("status", "body", "error", "limited"),
    [
        (200, {"ok": True}, None, 0),
        (200, {"ok": False, "error": "channel_not_found"}, "channel_not_found", 0),
        (429, {"ok": False, "error": "ratelimited"}, "ratelimited", 1),
        (503, None, "http_503", 0),
    ],
)
async def test_the_slack_observer_counts_errors_and_429s_and_never_asks_for_a_retry(status, body, error, limited):
    m = Metrics()
    observer = SlackErrorObserver(m)
    request = HttpRequest(method="POST", url="http://fake/api/chat.postMessage", headers={}, body_params={})
    retry = await observer.can_retry_async(state=RetryState(), request=request, response=_response(status, body))
    assert retry is False
    assert sample(m, "migrate_bot_slack_api_ratelimited_total", method="chat.postMessage") == limited
    if error is not None:
        assert sample(m, "migrate_bot_slack_api_errors_total", method="chat.postMessage", error=error) == 1
    else:
        assert "migrate_bot_slack_api_errors_total{" not in m.exposition().decode()


async def test_a_connection_error_to_slack_is_counted():
    m = Metrics()
    request = HttpRequest(method="POST", url="http://fake/api/chat.update", headers={}, body_params={})
    await SlackErrorObserver(m).can_retry_async(state=RetryState(), request=request, error=OSError("reset"))
    assert sample(m, "migrate_bot_slack_api_errors_total", method="chat.update", error="connection") == 1


def test_libvirt_connection_errors_reported_by_the_core_are_counted_per_host_until_unwatched():
    m = Metrics()
    stop = watch_libvirt(m)
    telemetry.connection_error("hostB", 38)
    telemetry.connection_error("hostB", 1)
    stop()
    telemetry.connection_error("hostB", 38)
    assert sample(m, "migrate_bot_libvirt_connection_errors_total", host="hostB") == 2


def test_a_broken_listener_does_not_disturb_the_caller():
    def broken(_host: str, _code: int | None) -> None:
        raise RuntimeError("bug in a listener")

    stop = telemetry.on_connection_error(broken)
    try:
        telemetry.connection_error("hostA", None)  # logged, not raised
    finally:
        stop()
