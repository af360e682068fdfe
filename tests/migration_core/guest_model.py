"""Stats sequences shaped like libvirt's job statistics for the lab's guests (reference/lab.md §6-§7).

`GuestModel` replays how QEMU pre-copy behaves as seen through `dom.jobStats()`: pass 1 sends all RAM; the
dirty bitmap is re-read only when what is left falls under `link x max downtime`, so `data_remaining` is a
sawtooth; `memory_dirty_rate` reads about half of what the guest really writes (lab §7's caveat). It is a
generator of recorded-like sequences for the pure modules, not a stand-in for libvirt in any other test.
`drive` runs the progress tracker and the controller over it, applying their decisions (closed loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from migration_core.execution.convergence import ControllerState, ConvergenceController, Observation
from migration_core.execution.progress import (
    AnnouncedEta,
    JobStatsReading,
    ProgressTracker,
    parse_job_stats,
)
from migration_core.models import ControlAction, Decision, ProgressSample

MiB = 1024 * 1024
BASE = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


@dataclass
class GuestModel:
    ram_mib: float
    working_set_mib: float
    dirty_mib_s: float  # what the guest really dirties
    link_mib_s: float
    max_downtime_ms: int
    disk_mib: float = 0.0
    setup_s: float = 0.3
    reported_dirty_fraction: float = 0.5
    page_size: int = 4096
    step_s: float = 0.01
    t: float = 0.0
    to_send: float = 0.0
    dirtied: float = 0.0
    processed: float = 0.0
    disk_left: float = field(default=0.0)
    iteration: int = 0
    postcopy: bool = False
    postcopy_requests: int = 0
    done: bool = False
    final_downtime_ms: int = 0
    sync_times: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.disk_left = self.disk_mib * MiB

    @property
    def bw(self) -> float:
        return self.link_mib_s * MiB

    def threshold(self) -> float:
        return self.bw * self.max_downtime_ms / 1000

    def advance_to(self, t: float) -> None:
        while self.t < t - 1e-9 and not self.done:
            self._step(min(self.step_s, t - self.t))

    def _step(self, dt: float) -> None:
        self.t += dt
        if self.t <= self.setup_s:
            return
        budget = self.bw * dt
        if self.disk_left > 0:
            sent = min(self.disk_left, budget)
            self.disk_left -= sent
            self.processed += sent
            return
        if self.iteration == 0:
            self.iteration, self.to_send = 1, self.ram_mib * MiB
        sent = min(self.to_send, budget)
        self.to_send -= sent
        self.processed += sent
        if self.postcopy:
            self.postcopy_requests += 1
            if self.to_send <= 0:
                self.done, self.final_downtime_ms = True, 5
            return
        self.dirtied = min(self.working_set_mib * MiB, self.dirtied + self.dirty_mib_s * MiB * dt)
        if self.to_send <= self.threshold():
            self.to_send = min(self.ram_mib * MiB, self.to_send + self.dirtied)
            self.dirtied = 0.0
            self.iteration += 1
            self.sync_times.append(self.t)
            if self.to_send <= self.threshold():
                self.done = True
                self.final_downtime_ms = int(self.to_send / self.bw * 1000) + 10
                self.processed += self.to_send
                self.to_send = 0.0

    def start_postcopy(self) -> None:
        self.postcopy = True
        self.to_send = min(self.ram_mib * MiB, self.to_send + self.dirtied)
        self.dirtied = 0.0

    def stats(self) -> dict[str, Any]:
        """What `dom.jobStats()` would return now."""
        if self.t < 0.1:
            return {"type": 0}
        memory_phase = self.iteration > 0
        memory_remaining = int(self.to_send)
        disk_total = int(self.disk_mib * MiB)
        disk_processed = disk_total - int(self.disk_left)
        memory_processed = int(self.processed) - disk_processed
        raw: dict[str, Any] = {
            "type": 3 if self.done else 2,
            "operation": 5,
            "time_elapsed": int(self.t * 1000),
            "data_total": int(self.ram_mib * MiB) + disk_total,
            "data_processed": int(self.processed),
            "data_remaining": memory_remaining + int(self.disk_left),
            "memory_total": int(self.ram_mib * MiB),
            "memory_processed": memory_processed,
            "memory_remaining": memory_remaining,
            "memory_bps": int(self.bw) if memory_phase and not self.done else 0,
            "memory_dirty_rate": (
                int(self.dirty_mib_s * MiB * self.reported_dirty_fraction / self.page_size)
                if memory_phase and not self.postcopy and not self.done
                else 0
            ),
            "memory_page_size": self.page_size,
            "memory_normal": memory_processed // self.page_size,  # the model has no zero pages
            "memory_constant": 0,
            "memory_iteration": self.iteration,
            "memory_postcopy_requests": self.postcopy_requests,
            "downtime": self.final_downtime_ms if self.done else int(memory_remaining / self.bw * 1000),
            "setup_time": int(self.setup_s * 1000),
        }
        if disk_total:
            raw.update(
                disk_total=disk_total,
                disk_processed=disk_processed,
                disk_remaining=int(self.disk_left),
                disk_bps=int(self.bw) if self.disk_left > 0 else 0,
            )
        if self.done:
            raw["success"] = True
        return raw


@dataclass
class Step:
    now_s: float
    reading: JobStatsReading
    sample: ProgressSample
    state: ControllerState | None
    decision: Decision | None


@dataclass
class Run:
    steps: list[Step]
    outcome: str  # "completed", "aborted", "running"

    def decisions(self, action: ControlAction) -> list[Step]:
        return [s for s in self.steps if s.decision is not None and s.decision.action is action]


def drive(
    model: GuestModel,
    *,
    poll_s: float = 0.5,
    until_s: float = 300.0,
    controller: ConvergenceController | None = None,
    stall_after_s: float = 15.0,
    announced: AnnouncedEta | None = None,
) -> Run:
    """Poll the model like the executor polls libvirt, feeding the tracker and (if given) the controller."""
    tracker = ProgressTracker(7, stall_after_s=stall_after_s, announced=announced)
    state = controller.initial_state() if controller else None
    if controller:
        model.max_downtime_ms = controller.initial_downtime_ms
    postcopy, steps, now = False, [], 0.0
    while now < until_s:
        now = round(now + poll_s, 6)
        model.advance_to(now)
        reading = parse_job_stats(model.stats())
        if reading is None:
            continue
        sample = tracker.update(reading, at(now), postcopy_active=postcopy)
        assert sample is not None
        decision = None
        if controller and state is not None:
            state, decision = controller.decide(state, Observation(now, sample.phase, reading))
            if decision.action is ControlAction.RAISE_DOWNTIME:
                assert decision.downtime_ms is not None
                model.max_downtime_ms = decision.downtime_ms
            elif decision.action is ControlAction.SWITCH_POSTCOPY:
                model.start_postcopy()
                postcopy = True
        steps.append(Step(now, reading, sample, state, decision))
        if decision is not None and decision.action is ControlAction.ABORT:
            return Run(steps, "aborted")
        if model.done:
            steps.append(Step(now, reading, tracker.finish(at(now), reading), state, None))
            return Run(steps, "completed")
    return Run(steps, "running")
