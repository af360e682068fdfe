"""Typed job-stats readings -> progress samples: monotonic %, phase, MiB/s, ETA, expected downtime, stall.

Pure: the caller polls `dom.jobStats()`, parses it (`parse_job_stats`, re-exported from jobstats.py) and
passes the reading and the time in. The stall signal is stall.py's, the same one the controller acts on.

The ETA starts from the card's announced estimate (`AnnouncedEta`: point and p10-p90 of the total) and
hands over to the live one (remaining bytes / throughput net of dirtying) as the announced time elapses, so
it improves as stats come in. The finish time it implies may move later by at most the announced range's width without
a reason: beyond that, or past the announced p90, the sample's `eta_note` says why (stall, dirtying,
throughput).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from migration_core.execution.stall import DEFAULT_EWMA_ALPHA, DEFAULT_MIN_DROP_FRACTION, Ewma, StallWatch, eta_s
from migration_core.hypervisor.jobstats import JobStatsReading, parse_job_stats, reading_from_job_stats
from migration_core.hypervisor.types import JobType
from migration_core.models import Phase, Plan, ProgressSample
from migration_core.units import MIB

__all__ = [
    "MAX_RUNNING_PERCENT",
    "AnnouncedEta",
    "JobStatsReading",
    "JobType",
    "ProgressTracker",
    "announced_eta",
    "blended_eta_s",
    "detect_phase",
    "parse_job_stats",
    "raw_percent",
    "reading_from_job_stats",
]

MAX_RUNNING_PERCENT = 99.0  # oVirt: never show 100 % before the job has really completed


def detect_phase(reading: JobStatsReading, postcopy_active: bool = False) -> Phase:
    """Where the job is. libvirt has no phase key: post-copy is known by the caller (it switched, or the
    lifecycle event said so); storage copy (NBD) runs before any memory is sent; "completing" is the final
    stop-and-copy (nothing left to send) or a completed job not yet verified.
    """
    if reading.job_type is JobType.COMPLETED:
        return Phase.COMPLETING
    if postcopy_active:
        return Phase.POSTCOPY
    if reading.memory_processed_bytes == 0 and reading.memory_iteration == 0:
        if reading.disk_total_bytes > 0:
            return Phase.STORAGE
        if reading.data_processed_bytes == 0:
            return Phase.SETUP
    if reading.data_remaining_bytes == 0 and reading.data_processed_bytes > 0:
        return Phase.COMPLETING
    return Phase.PRECOPY


def raw_percent(reading: JobStatsReading, redirtied_bytes: int = 0) -> float:
    """Done / (done + still to send), in %.

    "Done" counts zero pages (`handled_bytes`), or a mostly empty VM would show 15 % just before it completes.
    "Still to send" is `data_remaining` plus `redirtied_bytes`: the pages the guest dirtied since the current
    pass began, which libvirt only adds to `data_remaining` at the next pass. Without them every pass bottoms
    out near 0 remaining, and a percentage that never goes backwards would sit at 97 % from the end of the
    first pass of a migration that never converges. `data_total` is not the denominator: for migrations
    (unbounded jobs) it is less than done + remaining because re-dirtied pages are sent again; it only counts
    while memory has not started to move (setup, storage copy), so that the memory still to come is in.

    >>> raw_percent(JobStatsReading(JobType.UNBOUNDED, data_total_bytes=256, data_processed_bytes=384,
    ...                             data_remaining_bytes=128, memory_iteration=3))
    75.0
    >>> raw_percent(JobStatsReading(JobType.UNBOUNDED, data_total_bytes=256, data_processed_bytes=248,
    ...                             data_remaining_bytes=8, memory_iteration=1), redirtied_bytes=124)
    65.3
    >>> raw_percent(JobStatsReading(JobType.UNBOUNDED, data_total_bytes=320, disk_total_bytes=64,
    ...                             data_processed_bytes=64, disk_processed_bytes=64))  # disks copied
    20.0
    """
    done, remaining = reading.handled_bytes, reading.remaining_bytes
    if reading.memory_iteration == 0 and reading.memory_processed_bytes == 0:
        denominator = max(reading.total_bytes, done + remaining)
    else:
        denominator = done + remaining + redirtied_bytes
    return round(100.0 * done / denominator, 1) if denominator > 0 else 0.0


@dataclass(frozen=True)
class AnnouncedEta:
    """The total time the card announced: point and p10-p90 range, seconds from the start of the job."""

    total_s: float
    p10_s: float
    p90_s: float

    @property
    def width_s(self) -> float:
        return max(0.0, self.p90_s - self.p10_s)


def announced_eta(plan: Plan) -> AnnouncedEta | None:
    """The card's total-time estimate of a plan, when it had one with a range."""
    p = plan.prediction
    if p is None or p.total_s is None:
        return None
    return AnnouncedEta(p.total_s, p.total_p10_s or p.total_s, p.total_p90_s or p.total_s)


def blended_eta_s(live_s: float | None, announced: AnnouncedEta | None, elapsed_s: float) -> float | None:
    """The ETA: the announced remaining time, handing over to the live one as the announced time runs out.

    The weight of the live ETA is the share of the announced total already elapsed, not the percentage:
    a pre-copy that re-sends memory reaches 70 % early and then crawls, and the live ETA (remaining / net
    throughput) is optimistic exactly then, while a calibrated estimate already counts the passes.

    >>> a = AnnouncedEta(10.0, 8.0, 13.0)
    >>> blended_eta_s(None, a, 2.0), blended_eta_s(4.0, a, 5.0), blended_eta_s(1.0, a, 12.0)
    (8.0, 4.5, 1.0)
    """
    if announced is None:
        return live_s
    told = max(0.0, announced.total_s - elapsed_s)
    if live_s is None:
        return told
    w = min(1.0, max(0.0, elapsed_s / announced.total_s)) if announced.total_s > 0 else 1.0
    return w * live_s + (1 - w) * told


def later_reason(reading: JobStatsReading, stalled: bool, throughput_mib_s: float) -> str:
    """Why the finish moves later, from what the stats show."""
    if stalled:
        return "pre-copy is stalled: passes no longer shrink"
    dirty = reading.dirty_rate_mib_s
    if dirty and throughput_mib_s and dirty > throughput_mib_s / 4:
        return (
            f"the guest dirties {dirty:.0f} MiB/s against {throughput_mib_s:.0f} MiB/s of throughput, so pass"
            f" {reading.memory_iteration} re-sends memory"
        )
    return f"throughput is {throughput_mib_s:.0f} MiB/s, slower than the estimate assumed"


def delta_rate_bytes_s(previous: tuple[float, int] | None, elapsed_s: float, processed_bytes: int) -> float:
    """Bytes/s between two readings, from (elapsed_s, processed_bytes) of the previous one; 0.0 when there is
    no previous reading or no time or data moved between them.

    >>> delta_rate_bytes_s((1.0, 10 * 1024 * 1024), 1.5, 40 * 1024 * 1024) / (1024 * 1024)
    60.0
    >>> delta_rate_bytes_s(None, 1.5, 4096), delta_rate_bytes_s((1.5, 4096), 1.5, 8192)
    (0.0, 0.0)
    """
    if previous is None:
        return 0.0
    dt_s, moved = elapsed_s - previous[0], processed_bytes - previous[1]
    return moved / dt_s if dt_s > 0 and moved > 0 else 0.0


class ProgressTracker:
    """Turns successive readings of one job into `ProgressSample`s; state lives in the object, no I/O."""

    def __init__(
        self,
        job_id: int,
        *,
        stall_after_s: float = 15.0,
        ewma_alpha: float = DEFAULT_EWMA_ALPHA,
        min_drop_fraction: float = DEFAULT_MIN_DROP_FRACTION,
        announced: AnnouncedEta | None = None,
    ) -> None:
        self.job_id = job_id
        self.announced = announced
        self._finish_s: float | None = None  # the finish (elapsed + ETA) shown last
        self.stall_after_s = stall_after_s
        self._bandwidth = Ewma(alpha=ewma_alpha)
        self._stall = StallWatch(min_drop_fraction=min_drop_fraction)
        self._percent = 0.0
        self._pass: tuple[int, float] = (-1, 0.0)  # (memory_iteration, elapsed_s when it was first seen)
        self._first_at: datetime | None = None
        self._last: ProgressSample | None = None
        # (elapsed_s, processed_bytes) of the previous reading; the job's start before the first one
        self._moved: tuple[float, int] | None = (0.0, 0)

    @property
    def last(self) -> ProgressSample | None:
        return self._last

    @property
    def stall(self) -> StallWatch:
        return self._stall

    def update(
        self, reading: JobStatsReading, now: datetime, *, postcopy_active: bool = False
    ) -> ProgressSample | None:
        """Fold one reading in; returns the sample to show, or None for a NONE-type reading (ignored)."""
        if reading.job_type is JobType.NONE:
            return None
        if self._first_at is None:
            self._first_at = now
        if reading.job_type in (JobType.FAILED, JobType.CANCELLED) and self._last is not None:
            phase = self._last.phase
        else:
            phase = detect_phase(reading, postcopy_active)
        now_s = now.timestamp()
        elapsed = reading.elapsed_s or (now - self._first_at).total_seconds()
        if reading.transfer_bytes_s > 0:  # same rule as the controller, so both see the same stall
            self._bandwidth = self._bandwidth.update(reading.transfer_bytes_s)
        # libvirt's memory_bps/disk_bps stay 0 for the first readings while data already moves: until it reports
        # a rate, the one shown is the bytes sent since the previous reading over the time between them.
        moved_bytes_s = delta_rate_bytes_s(self._moved, elapsed, reading.processed_bytes)
        self._moved = (elapsed, reading.processed_bytes)
        shown_bytes_s = self._bandwidth.value if self._bandwidth.value is not None else moved_bytes_s
        remaining = reading.remaining_bytes
        self._stall = self._stall.observe(
            now_s=now_s,
            phase=phase,
            iteration=reading.memory_iteration,
            remaining_bytes=remaining,
            bandwidth_bytes_s=self._bandwidth.value,
        )
        stalled_for = self._stall.stalled_for_s(now_s)
        stalled = stalled_for >= self.stall_after_s
        dirty_mib_s = reading.dirty_rate_mib_s
        if reading.memory_iteration != self._pass[0]:
            self._pass = (reading.memory_iteration, elapsed)
        redirtied = 0
        if phase is Phase.PRECOPY and dirty_mib_s:
            since_pass_s = max(0.0, elapsed - self._pass[1])
            redirtied = int(min(dirty_mib_s * MIB * since_pass_s, reading.memory_total_bytes or reading.total_bytes))
        percent = raw_percent(reading, redirtied)
        self._percent = min(MAX_RUNNING_PERCENT, max(self._percent, percent))
        live = (
            None
            if stalled or phase is Phase.SETUP
            else eta_s(phase, remaining, self._bandwidth.value, None if dirty_mib_s is None else dirty_mib_s * MIB)
        )
        eta = None if stalled else blended_eta_s(live, self.announced, elapsed)
        note = self._note(eta, elapsed, reading, stalled)
        self._last = ProgressSample(
            job_id=self.job_id,
            at=now,
            phase=phase,
            percent=self._percent,
            elapsed_s=elapsed,
            data_processed_bytes=reading.processed_bytes,
            data_remaining_bytes=remaining,
            data_total_bytes=reading.total_bytes,
            throughput_mib_s=shown_bytes_s / MIB,
            dirty_rate_mib_s=dirty_mib_s,
            iteration=reading.memory_iteration,
            expected_downtime_ms=reading.downtime_ms,
            eta_s=None if eta is None else round(eta, 1),
            stalled=stalled,
            stalled_for_s=round(stalled_for, 1),
            postcopy_requests=reading.postcopy_requests,
            auto_converge_throttle_pct=reading.auto_converge_throttle_pct,
            eta_note=note,
        )
        return self._last

    def _note(self, eta: float | None, elapsed: float, reading: JobStatsReading, stalled: bool) -> str | None:
        """Say why, when the finish moves later than the announced range allows (or past its p90)."""
        a = self.announced
        if a is None:
            return None
        throughput = (self._bandwidth.value or 0.0) / MIB
        if eta is None:
            return f"no ETA: {later_reason(reading, stalled, throughput)}" if stalled else None
        finish = elapsed + eta
        before, self._finish_s = self._finish_s, finish
        if finish > a.p90_s:
            return f"later than announced (up to {a.p90_s:.0f} s): {later_reason(reading, stalled, throughput)}"
        if before is not None and finish - before > max(a.width_s, 1.0):
            return f"moved later by {finish - before:.0f} s: {later_reason(reading, stalled, throughput)}"
        return None

    def finish(self, now: datetime, reading: JobStatsReading | None = None) -> ProgressSample:
        """The job completed: 100 %, phase DONE; `reading`: the completed-job stats (real downtime)."""
        last = self._last
        if reading is not None:
            processed, total = reading.processed_bytes, reading.total_bytes
            elapsed, iteration, downtime = reading.elapsed_s, reading.memory_iteration, reading.downtime_ms
            requests, throttle = reading.postcopy_requests, reading.auto_converge_throttle_pct
        elif last is not None:
            processed, total = last.data_processed_bytes + last.data_remaining_bytes, last.data_total_bytes
            elapsed, iteration, downtime = last.elapsed_s, last.iteration, last.expected_downtime_ms
            requests, throttle = last.postcopy_requests, last.auto_converge_throttle_pct
        else:
            processed = total = iteration = requests = throttle = 0
            elapsed, downtime = 0.0, None
        self._percent = 100.0
        self._last = ProgressSample(
            job_id=self.job_id,
            at=now,
            phase=Phase.DONE,
            percent=100.0,
            elapsed_s=elapsed,
            data_processed_bytes=processed,
            data_remaining_bytes=0,
            data_total_bytes=total,
            throughput_mib_s=last.throughput_mib_s if last else 0.0,
            dirty_rate_mib_s=None,
            iteration=iteration,
            expected_downtime_ms=downtime,
            eta_s=0.0,
            stalled=False,
            stalled_for_s=0.0,
            postcopy_requests=requests,
            auto_converge_throttle_pct=throttle,
        )
        return self._last
