"""The fleet's migration model: pre-copy passes, auto-converge, post-copy, as numbers advanced over time. Pure.

What it models (QEMU's RAM migration as libvirt reports it, reference/libvirt.md §3):
- Pass 1 scans all guest RAM: zero pages cost nothing (counted as `memory_constant`), the transferable
  (non-zero) pages are sent at the link rate (`min(link, max speed)`). Meanwhile the guest dirties its working
  set at its dirty rate (minus the auto-converge throttle).
- The dirty bitmap is re-read when what is left of the pass falls under `link x max downtime` (so
  `data_remaining` is a sawtooth, as in the lab); if what is dirty then fits in the max downtime, the guest
  pauses and the rest is sent: the migration completes with that downtime. Otherwise a new pass starts.
- Auto-converge (VIR_MIGRATE_AUTO_CONVERGE): from the second re-read on, a pass that dirtied more than half of
  what it sent throttles the guest: 20 %, then +10 % each time, up to 99 %.
- Post-copy (VIR_MIGRATE_POSTCOPY + a switch): the guest runs on the destination; what is left is sent once
  (no more dirtying on the source); the downtime is the switch itself (a few ms).
- Disks to copy (NON_SHARED_DISK/INC) go first, at the same link rate.
- A link that is down sends nothing; `stalled_s` counts how long, for the keepalive that breaks the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from migration_core.hypervisor.types import StatValue

PAGE_SIZE = 4096
SETUP_S = 0.3
SWITCH_DOWNTIME_MS = 5  # a post-copy switch pauses the guest for about this long
STOP_COPY_OVERHEAD_MS = 10  # device state and the final handshake, added to the last copy's time


class Phase(StrEnum):
    SETUP = "setup"
    DISKS = "disks"
    PRECOPY = "pre-copy"
    POSTCOPY = "post-copy"
    DONE = "done"


@dataclass
class MigrationModel:
    """One running migration. `advance(dt, link_up)` moves it on; `stats()` reads it as libvirt would."""

    memory_bytes: int
    transferable_bytes: int
    working_set_bytes: int
    dirty_bytes_s: float
    link_bytes_s: float
    max_downtime_ms: int
    disk_bytes: int = 0
    auto_converge: bool = False
    postcopy_allowed: bool = False
    elapsed_s: float = 0.0
    phase: Phase = Phase.SETUP
    iteration: int = 0
    to_send: float = 0.0  # what is left of the current pass (bytes)
    dirtied: float = 0.0  # dirtied since the last bitmap re-read (bytes)
    sent_memory: float = 0.0
    sent_disk: float = 0.0
    pass_sent: float = 0.0
    throttle_pct: int = 0
    postcopy_requests: int = 0
    stalled_s: float = 0.0
    downtime_ms: int = 0
    max_speed_bytes_s: float | None = None
    postcopy_speed_bytes_s: float | None = None

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def rate(self) -> float:
        cap = self.postcopy_speed_bytes_s if self.phase is Phase.POSTCOPY else self.max_speed_bytes_s
        return min(self.link_bytes_s, cap) if cap else self.link_bytes_s

    @property
    def effective_dirty_bytes_s(self) -> float:
        return self.dirty_bytes_s * (100 - self.throttle_pct) / 100

    def _threshold(self) -> float:
        return self.rate * self.max_downtime_ms / 1000

    def advance(self, dt: float, *, link_up: bool = True) -> None:
        """Move the model on by `dt` seconds (call with small steps: one bitmap re-read per step at most)."""
        if self.done or dt <= 0:
            return
        self.elapsed_s += dt
        if self.phase is Phase.SETUP:
            if self.elapsed_s < SETUP_S:
                return
            self.phase = Phase.DISKS if self.disk_bytes else Phase.PRECOPY
            if self.phase is Phase.PRECOPY:
                self._start_memory()
        if not link_up:
            self.stalled_s += dt
            if self.phase is Phase.PRECOPY:  # the guest goes on dirtying while nothing moves
                self._dirty(dt)
            return
        self.stalled_s = 0.0
        budget = self.rate * dt
        if self.phase is Phase.DISKS:
            sent = min(self.disk_bytes - self.sent_disk, budget)
            self.sent_disk += sent
            if self.sent_disk >= self.disk_bytes:
                self.phase = Phase.PRECOPY
                self._start_memory()
            return
        sent = min(self.to_send, budget)
        self.to_send -= sent
        self.sent_memory += sent
        self.pass_sent += sent
        if self.phase is Phase.POSTCOPY:
            self.postcopy_requests += 1
            if self.to_send <= 0:
                self.phase = Phase.DONE
            return
        self._dirty(dt)
        if self.to_send <= self._threshold():
            self._reread_bitmap()

    def _start_memory(self) -> None:
        self.iteration, self.to_send = 1, float(self.transferable_bytes)

    def _dirty(self, dt: float) -> None:
        self.dirtied = min(float(self.working_set_bytes), self.dirtied + self.effective_dirty_bytes_s * dt)

    def _reread_bitmap(self) -> None:
        if self.auto_converge and self.iteration >= 2 and self.dirtied > 0.5 * max(self.pass_sent, 1.0):
            self.throttle_pct = 20 if self.throttle_pct == 0 else min(99, self.throttle_pct + 10)
        self.to_send = min(float(self.transferable_bytes), self.to_send + self.dirtied)
        self.dirtied = 0.0
        self.pass_sent = 0.0
        self.iteration += 1
        if self.to_send <= self._threshold():
            self.downtime_ms = int(self.to_send / max(self.rate, 1.0) * 1000) + STOP_COPY_OVERHEAD_MS
            self.sent_memory += self.to_send
            self.to_send = 0.0
            self.phase = Phase.DONE

    def start_postcopy(self) -> None:
        """Switch: the guest runs on the destination from now on; what is dirty is sent once, on demand."""
        self.phase = Phase.POSTCOPY
        self.to_send = min(float(self.transferable_bytes), self.to_send + self.dirtied)
        self.dirtied = 0.0
        self.downtime_ms = SWITCH_DOWNTIME_MS

    @property
    def remaining_bytes(self) -> int:
        if self.phase in (Phase.SETUP, Phase.DISKS):
            return self.transferable_bytes
        return int(self.to_send)

    def stats(self, *, completed: bool = False) -> dict[str, StatValue]:
        """The typed params of `virDomainGetJobStats` for this job (without "type"), libvirt's keys and units."""
        memory_phase = self.phase in (Phase.PRECOPY, Phase.POSTCOPY)
        zero_pages = (self.memory_bytes - self.transferable_bytes) // PAGE_SIZE
        scanned_zero = zero_pages if self.iteration >= 1 else 0
        disk_left = max(0, self.disk_bytes - int(self.sent_disk))
        memory_remaining = self.remaining_bytes
        moving = memory_phase and not self.done
        values: dict[str, StatValue] = {
            "operation": 5,  # VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT
            "time_elapsed": int(self.elapsed_s * 1000),
            "data_total": self.transferable_bytes + self.disk_bytes,
            "data_processed": int(self.sent_memory + self.sent_disk),
            "data_remaining": memory_remaining + disk_left,
            "memory_total": self.memory_bytes,
            "memory_processed": int(self.sent_memory),
            "memory_remaining": memory_remaining,
            "memory_bps": int(self.rate) if moving and self.stalled_s == 0 else 0,
            "memory_dirty_rate": int(self.effective_dirty_bytes_s / PAGE_SIZE)
            if self.phase is Phase.PRECOPY and not completed
            else 0,
            "memory_page_size": PAGE_SIZE,
            "memory_normal": int(self.sent_memory) // PAGE_SIZE,
            "memory_normal_bytes": int(self.sent_memory),
            "memory_constant": scanned_zero,
            "memory_iteration": self.iteration,
            "memory_postcopy_requests": self.postcopy_requests,
            "downtime": self.downtime_ms
            if self.done or self.phase is Phase.POSTCOPY
            else int(memory_remaining / max(self.rate, 1.0) * 1000),
            "setup_time": int(SETUP_S * 1000),
        }
        if self.throttle_pct:
            values["auto_converge_throttle"] = self.throttle_pct
        if self.disk_bytes:
            values.update(
                disk_total=self.disk_bytes,
                disk_processed=int(self.sent_disk),
                disk_remaining=disk_left,
                disk_bps=int(self.rate) if self.phase is Phase.DISKS else 0,
            )
        if completed:
            values["success"] = True
        return values
