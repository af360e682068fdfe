"""Prometheus metrics (prometheus-client): job events -> counters and histograms, Slack and libvirt error hooks.

    metrics = Metrics()                                  # its own registry (tests make as many as they like)
    sink = MetricsSink(metrics, get_job=service.get_job)  # add to the service's FanoutSink
    client.retry_handlers.insert(0, SlackErrorObserver(metrics))
    stop_watching = watch_libvirt(metrics)
    metrics.add_refresher(lambda: ...)                   # gauges read from the store when scraped
    web_app.router.add_get("/metrics", metrics_handler(metrics))

Series (all prefixed `migrate_bot_`):
  migrations_total{outcome}            jobs that reached a terminal state (succeeded, failed, aborted, ...;
                                       preflight_failed: refused by its preflight, never started)
  job_transitions_total{state}         every persisted state change, by the state entered
  migration_duration_seconds           how long migrations ran (libvirt's time_elapsed, else running -> end)
  migration_downtime_seconds           the measured downtime of each migration that reported one
  queue_length                         approved jobs waiting for a host slot (read from the store per scrape)
  queue_wait_seconds                   approval -> start, for jobs this replica saw approved and started
  preflight_failures_total{check}      failed preflight checks by name (`facts_unavailable`: hosts not read)
  slack_api_errors_total{method,error} Web API calls that failed: Slack error code, http_<status> or connection
  slack_api_ratelimited_total{method}  429 answers (each one, retries included)
  libvirt_connection_errors_total{host} failed or dropped libvirt connections, by inventory host
  refusals_total{action,reason}        commands and clicks refused in Slack (reason: the policy code, e.g.
                                       wrong_channel, not_allowed, rate_limited, not_approver; forged)
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from migration_core import telemetry
from migration_core.events import JobEvent, StateChanged, SummaryReady
from migration_core.models import TERMINAL_STATES, Job, JobState

log = logging.getLogger(__name__)
PREFLIGHT_FAILED = "preflight_failed"  # migrations_total outcome of a job whose preflight said no

METRICS_PATH = "/metrics"
REFRESH_TIMEOUT_S = 5.0
SUMMARIES_REMEMBERED = 10_000
_PREFLIGHT_STATES = frozenset({JobState.PREFLIGHT, JobState.APPROVED, JobState.QUEUED})
_WAITING_STATES = frozenset({JobState.APPROVED, JobState.QUEUED})


class Metrics:
    """Every metric of one bot process, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.migrations = Counter(
            "migrate_bot_migrations", "Jobs that reached a terminal state, by outcome", ["outcome"], registry=r
        )
        self.transitions = Counter(
            "migrate_bot_job_transitions", "Persisted job state changes, by the state entered", ["state"], registry=r
        )
        self.duration = Histogram(
            "migrate_bot_migration_duration_seconds",
            "How long migrations ran",
            buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
            registry=r,
        )
        self.downtime = Histogram(
            "migrate_bot_migration_downtime_seconds",
            "Measured downtime (VM paused) of each migration",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.queue_length = Gauge("migrate_bot_queue_length", "Approved jobs waiting for a host slot", registry=r)
        self.queue_wait = Histogram(
            "migrate_bot_queue_wait_seconds",
            "Time from approval to start",
            buckets=(0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
            registry=r,
        )
        self.preflight_failures = Counter(
            "migrate_bot_preflight_failures", "Failed preflight checks, by check", ["check"], registry=r
        )
        self.slack_errors = Counter(
            "migrate_bot_slack_api_errors", "Failed Slack Web API calls", ["method", "error"], registry=r
        )
        self.slack_ratelimited = Counter(
            "migrate_bot_slack_api_ratelimited", "Slack Web API 429 answers", ["method"], registry=r
        )
        self.libvirt_errors = Counter(
            "migrate_bot_libvirt_connection_errors", "Failed or dropped libvirt connections", ["host"], registry=r
        )
        self.refusals = Counter(
            "migrate_bot_refusals",
            "Commands and clicks refused, by action and reason",
            ["action", "reason"],
            registry=r,
        )
        for state in sorted(TERMINAL_STATES):  # show every outcome from the start (0), not only once seen
            self.migrations.labels(outcome=state.value)
        self.migrations.labels(outcome=PREFLIGHT_FAILED)
        self._refreshers: list[Callable[[], Awaitable[None]]] = []
        self._lock = threading.Lock()

    def add_refresher(self, refresh: Callable[[], Awaitable[None]]) -> None:
        """An async callable run before each scrape (e.g. set the queue gauge from the store)."""
        self._refreshers.append(refresh)

    def watch_queue(self, queue_length: Callable[[], Awaitable[int]]) -> None:
        """Set migrate_bot_queue_length from `queue_length()` (e.g. len(await service.queue())) per scrape."""

        async def refresh() -> None:
            self.queue_length.set(await queue_length())

        self.add_refresher(refresh)

    async def refresh(self) -> None:
        """Run the refreshers; one that fails or hangs leaves its gauge at the last value."""
        for refresh in self._refreshers:
            try:
                await asyncio.wait_for(refresh(), REFRESH_TIMEOUT_S)
            except Exception as err:  # a scrape must still answer when the store is down
                log.warning("metrics: could not refresh a gauge: %s", err or type(err).__name__)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        with self._lock:
            return generate_latest(self.registry)

    def count_refusal(self, action: str, reason: str) -> None:
        """A refused command or click (handlers.deps.Deps.refused and the click listeners call it)."""
        self.refusals.labels(action=action[:40], reason=reason[:40]).inc()

    def count_libvirt_error(self, host: str, _code: int | None = None) -> None:
        self.libvirt_errors.labels(host=host).inc()


class MetricsSink:
    """EventSink: counts outcomes and transitions, observes durations, downtime, queue wait, preflight failures.

    `get_job` (the service's) is used only when a job fails before running, to name the failed checks.
    """

    def __init__(self, metrics: Metrics, get_job: Callable[[int], Awaitable[Job]] | None = None) -> None:
        self.metrics = metrics
        self._get_job = get_job
        self._waiting_since: dict[int, datetime] = {}
        self._running_since: dict[int, datetime] = {}
        self._ran_s: dict[int, float] = {}  # running -> terminal, until the job's summary arrives
        self._summarized: dict[int, None] = {}  # insertion-ordered, bounded

    async def emit(self, event: JobEvent) -> None:
        try:
            if isinstance(event, StateChanged):
                await self._state_changed(event)
            elif isinstance(event, SummaryReady):
                self._summary(event)
        except Exception:  # metrics must never disturb a job
            log.warning("metrics sink failed on %s", type(event).__name__, exc_info=True)

    async def _state_changed(self, ev: StateChanged) -> None:
        m = self.metrics
        m.transitions.labels(state=ev.new.value).inc()
        if ev.new in _WAITING_STATES:
            self._waiting_since.setdefault(ev.job_id, ev.at)
        elif ev.new is JobState.RUNNING:
            since = self._waiting_since.pop(ev.job_id, None)
            if since is not None:
                m.queue_wait.observe(max(0.0, (ev.at - since).total_seconds()))
            self._running_since[ev.job_id] = ev.at
        if ev.new is JobState.FAILED and ev.old in _PREFLIGHT_STATES:
            await self._preflight_failed(ev.job_id)
        if ev.new.terminal:
            # A preflight that said no (anyone's typo, an unreachable host) is not a failed migration: its
            # own label keeps the suggested outcome="failed" alert for migrations that ran and failed.
            preflight = ev.new is JobState.FAILED and ev.old in _PREFLIGHT_STATES
            m.migrations.labels(outcome=PREFLIGHT_FAILED if preflight else ev.new.value).inc()
            self._waiting_since.pop(ev.job_id, None)
            started = self._running_since.pop(ev.job_id, None)
            if started is not None:  # the summary (emitted right after) observes the duration
                self._ran_s[ev.job_id] = max(0.0, (ev.at - started).total_seconds())

    async def _preflight_failed(self, job_id: int) -> None:
        names: tuple[str, ...] = ()
        if self._get_job is not None:
            job = await self._get_job(job_id)
            if job.plan is not None:
                names = tuple(c.name for c in job.plan.failures)
        for name in names or ("facts_unavailable",):
            self.metrics.preflight_failures.labels(check=name).inc()

    def _summary(self, ev: SummaryReady) -> None:
        s = ev.summary
        if s.job_id in self._summarized:  # the core may announce a summary twice (recovery): count it once
            return
        self._summarized[s.job_id] = None
        while len(self._summarized) > SUMMARIES_REMEMBERED:
            del self._summarized[next(iter(self._summarized))]
        if s.downtime_ms is not None:
            self.metrics.downtime.observe(s.downtime_ms / 1000)
        ran_s = self._ran_s.pop(s.job_id, None)
        # libvirt's own measure of the migration when it gave one; else running -> end as this replica saw it
        duration_s = s.total_s if s.total_s is not None else ran_s
        if duration_s is not None:
            self.metrics.duration.observe(duration_s)


class SlackErrorObserver(AsyncRetryHandler):
    """Counts failed Web API calls and 429s. Put it FIRST in the client's retry handlers: it sees every
    attempt and never asks for a retry itself, so the real retry handlers after it still decide."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(max_retry_count=0)
        self.metrics = metrics

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        try:
            self._observe(request, response, error)
        except Exception:  # counting must never break a Slack call
            log.debug("slack error observer failed", exc_info=True)
        return False

    def _observe(self, request: HttpRequest, response: HttpResponse | None, error: Exception | None) -> None:
        method = str(request.url).rstrip("/").rsplit("/", 1)[-1] or "unknown"
        if error is not None and response is None:
            self.metrics.slack_errors.labels(method=method, error="connection").inc()
            return
        if response is None:
            return
        status = int(response.status_code)
        body: Any = response.body
        if status == 429:
            self.metrics.slack_ratelimited.labels(method=method).inc()
            self.metrics.slack_errors.labels(method=method, error="ratelimited").inc()
        elif status >= 400:
            self.metrics.slack_errors.labels(method=method, error=f"http_{status}").inc()
        elif isinstance(body, dict) and body.get("ok") is False:
            self.metrics.slack_errors.labels(method=method, error=str(body.get("error") or "unknown")[:64]).inc()


def watch_libvirt(metrics: Metrics) -> Callable[[], None]:
    """Count libvirt connection errors the core reports; returns a function that stops counting."""
    return telemetry.on_connection_error(metrics.count_libvirt_error)


def metrics_handler(metrics: Metrics) -> Callable[[web.Request], Awaitable[web.Response]]:
    """aiohttp handler for GET /metrics."""

    async def handle(_request: web.Request) -> web.Response:
        await metrics.refresh()
        resp = web.Response(body=metrics.exposition())
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    return handle
