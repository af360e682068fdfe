"""libvirt job statistics (`dom.jobStats()`) -> a typed reading in named units; pure, no libvirt import.

Keys and units are libvirt's (reference/libvirt.md §3): times in ms, sizes in bytes, `memory_bps`/`disk_bps`
in bytes/s, `memory_dirty_rate` in **pages/s** (x `memory_page_size` for bytes/s), `downtime` in ms
(expected while running, measured once completed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from migration_core.errors import HypervisorError
from migration_core.hypervisor.types import JobStats, JobType
from migration_core.units import DEFAULT_PAGE_SIZE_BYTES, pages_s_to_mib_s


@dataclass(frozen=True)
class JobStatsReading:
    """One `dom.jobStats()` result, typed and in named units. Missing counters read as 0."""

    job_type: JobType
    elapsed_s: float = 0.0
    data_total_bytes: int = 0
    data_processed_bytes: int = 0
    data_remaining_bytes: int = 0
    memory_total_bytes: int = 0
    memory_processed_bytes: int = 0
    memory_remaining_bytes: int = 0
    memory_bytes_s: int = 0  # libvirt's memory_bps
    disk_total_bytes: int = 0
    disk_processed_bytes: int = 0
    disk_remaining_bytes: int = 0
    disk_bytes_s: int = 0  # libvirt's disk_bps
    dirty_rate_pages_s: int | None = None  # libvirt's memory_dirty_rate; under-reads busy guests (lab §7)
    page_size_bytes: int = DEFAULT_PAGE_SIZE_BYTES
    memory_iteration: int = 0
    memory_constant_pages: int = 0  # zero pages: scanned and "sent" as a few bytes each
    memory_normal_pages: int = 0
    downtime_ms: int | None = None  # expected while running; the real downtime once COMPLETED
    downtime_net_ms: int | None = None
    setup_s: float | None = None
    time_remaining_s: float | None = None  # bounded jobs only
    postcopy_requests: int = 0
    auto_converge_throttle_pct: int = 0
    success: bool | None = None
    errmsg: str | None = None

    @property
    def dirty_rate_mib_s(self) -> float | None:
        """Pages/s x page size, in MiB/s.

        >>> JobStatsReading(JobType.UNBOUNDED, dirty_rate_pages_s=4000).dirty_rate_mib_s
        15.625
        """
        if self.dirty_rate_pages_s is None:
            return None
        return pages_s_to_mib_s(self.dirty_rate_pages_s, self.page_size_bytes)

    @property
    def transfer_bytes_s(self) -> int:
        """Memory + disk throughput as libvirt reports it, bytes/s."""
        return self.memory_bytes_s + self.disk_bytes_s

    @property
    def processed_bytes(self) -> int:
        """Bytes sent. libvirt folds disk_* into data_*; odd builds may not, so take whichever covers more."""
        return max(self.data_processed_bytes, self.memory_processed_bytes + self.disk_processed_bytes)

    @property
    def remaining_bytes(self) -> int:
        return max(self.data_remaining_bytes, self.memory_remaining_bytes + self.disk_remaining_bytes)

    @property
    def total_bytes(self) -> int:
        return max(self.data_total_bytes, self.memory_total_bytes + self.disk_total_bytes)

    @property
    def handled_bytes(self) -> int:
        """Bytes of guest data dealt with so far. Zero pages cost a few bytes on the wire but are done all the
        same, so pages (constant + normal) count when libvirt reports them; otherwise the bytes sent."""
        pages = (self.memory_constant_pages + self.memory_normal_pages) * self.page_size_bytes
        return max(self.processed_bytes, pages + self.disk_processed_bytes)


_COUNTERS_BYTES = {
    "data_total": "data_total_bytes",
    "data_processed": "data_processed_bytes",
    "data_remaining": "data_remaining_bytes",
    "memory_total": "memory_total_bytes",
    "memory_processed": "memory_processed_bytes",
    "memory_remaining": "memory_remaining_bytes",
    "memory_bps": "memory_bytes_s",
    "disk_total": "disk_total_bytes",
    "disk_processed": "disk_processed_bytes",
    "disk_remaining": "disk_remaining_bytes",
    "disk_bps": "disk_bytes_s",
    "memory_iteration": "memory_iteration",
    "memory_constant": "memory_constant_pages",
    "memory_normal": "memory_normal_pages",
    "memory_postcopy_requests": "postcopy_requests",
    "auto_converge_throttle": "auto_converge_throttle_pct",
}
_OPTIONAL_INTS = {
    "memory_dirty_rate": "dirty_rate_pages_s",
    "downtime": "downtime_ms",
    "downtime_net": "downtime_net_ms",
}
_MS_TO_S = {"time_elapsed": "elapsed_s", "setup_time": "setup_s", "time_remaining": "time_remaining_s"}


def _number(raw: Mapping[str, Any], key: str) -> int | float:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or math.isnan(value):
        raise HypervisorError(
            f"libvirt returned job statistics that make no sense: {key} = {value!r}",
            "this points at a libvirt/QEMU bug or a version mismatch; capture"
            " `virsh domjobinfo VM --rawstats` on the source host and report it",
        )
    return value


def parse_job_stats(raw: Mapping[str, Any], default_type: JobType = JobType.NONE) -> JobStatsReading | None:
    """`dom.jobStats()` dict -> typed reading; None when no job runs (type NONE: ignore the sample).

    `default_type` is used when the dict has no `type` key (the JOB_COMPLETED event's parameters: pass
    JobType.COMPLETED).

    >>> r = parse_job_stats({"type": 2, "time_elapsed": 1500, "memory_dirty_rate": 8000})
    >>> r.elapsed_s, r.dirty_rate_mib_s
    (1.5, 31.25)
    >>> parse_job_stats({"type": 0}) is None
    True
    """
    try:
        job_type = JobType(int(_number(raw, "type"))) if "type" in raw else default_type
    except ValueError:
        raise HypervisorError(
            f"libvirt returned an unknown job type {raw.get('type')!r}",
            "this libvirt is newer than migrate-bot knows; report it with `virsh domjobinfo VM --rawstats`",
        ) from None
    if job_type is JobType.NONE:
        return None
    fields: dict[str, Any] = {}
    for key, name in _COUNTERS_BYTES.items():
        if key in raw:
            fields[name] = int(_number(raw, key))
    for key, name in _OPTIONAL_INTS.items():
        if key in raw:
            fields[name] = int(_number(raw, key))
    for key, name in _MS_TO_S.items():
        if key in raw:
            fields[name] = _number(raw, key) / 1000
    if "memory_page_size" in raw and _number(raw, "memory_page_size") > 0:
        fields["page_size_bytes"] = int(_number(raw, "memory_page_size"))
    if "success" in raw:
        fields["success"] = bool(raw["success"])
    if "errmsg" in raw:
        fields["errmsg"] = str(raw["errmsg"])
    return JobStatsReading(job_type, **fields)


def reading_from_job_stats(stats: JobStats) -> JobStatsReading | None:
    """The adapter's `JobStats` (type + raw values) -> typed reading; None when no job runs."""
    return parse_job_stats(stats.values, default_type=stats.job_type)
