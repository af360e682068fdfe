"""Signals shared by the progress tracker and the convergence controller: bandwidth EWMA, stall watch, ETA.

Both `progress.py` (what the thread shows) and `convergence.py` (what the bot does) must agree on when a
migration is "stalled", so the definition lives here, once.

Why the stall watch is more than a plain low-water mark of `data_remaining`: QEMU re-reads the dirty bitmap
only when the pages still to send fall under `bandwidth x max downtime`, so `data_remaining` is a sawtooth
whose every tooth bottoms out near that same threshold, converging or not. A plain low-water mark therefore
stops falling at the end of the first pass of *every* multi-pass migration and would call a slow but
converging migration stalled. What tells the two apart is the height of each tooth: the data left at the
start of a new pass (what the guest dirtied during the previous one). So a new pass that starts meaningfully
lower than any earlier one counts as progress, and re-anchors the watch at that level; within a pass, the
remaining data falling meaningfully below the anchor counts as progress too (the bulk pass, post-copy,
storage copy, a long pass of a big VM). "Meaningfully" = by more than `min_drop_fraction` of the anchor and
by more than the data one poll interval moves at the current bandwidth (a sample lands anywhere within that
interval, so smaller differences are sampling noise).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from migration_core.models import Phase

# Phases in which data is expected to move; in the others (setup, completing, done) nothing is watched.
WATCHED_PHASES = frozenset({Phase.STORAGE, Phase.PRECOPY, Phase.POSTCOPY})

# KubeVirt's stall detector smooths memory_bps with alpha 0.4.
DEFAULT_EWMA_ALPHA = 0.4
DEFAULT_MIN_DROP_FRACTION = 0.01


@dataclass(frozen=True)
class Ewma:
    """Exponentially weighted moving average; `value` is None until the first sample.

    >>> e = Ewma(alpha=0.5).update(100.0).update(50.0)
    >>> e.value
    75.0
    """

    alpha: float = DEFAULT_EWMA_ALPHA
    value: float | None = None

    def update(self, sample: float) -> Ewma:
        if self.value is None:
            return replace(self, value=float(sample))
        return replace(self, value=self.alpha * sample + (1.0 - self.alpha) * self.value)


@dataclass(frozen=True)
class StallWatch:
    """When did the remaining data last fall meaningfully? Immutable: `observe` returns a new watch.

    Worked example: a pass starts at 128 MiB and empties at 16 MiB/s, polled every 0.5 s (8 MiB of noise):

    >>> MiB = 1024 * 1024
    >>> w = StallWatch().observe(now_s=0.0, phase=Phase.PRECOPY, iteration=2, remaining_bytes=128 * MiB,
    ...                          bandwidth_bytes_s=16 * MiB)
    >>> w = w.observe(now_s=0.5, phase=Phase.PRECOPY, iteration=2, remaining_bytes=124 * MiB,
    ...               bandwidth_bytes_s=16 * MiB)
    >>> w.stalled_for_s(0.5)  # 4 MiB is within one poll's 8 MiB: not yet counted
    0.5
    >>> w = w.observe(now_s=1.0, phase=Phase.PRECOPY, iteration=2, remaining_bytes=112 * MiB,
    ...               bandwidth_bytes_s=16 * MiB)
    >>> w.stalled_for_s(1.0)  # 16 MiB below the anchor: progress
    0.0
    """

    min_drop_fraction: float = DEFAULT_MIN_DROP_FRACTION
    phase: Phase | None = None
    iteration: int = 0
    anchor_bytes: int | None = None  # the level the remaining data must fall meaningfully below
    best_pass_start_bytes: int | None = None  # lowest data left at the start of a pre-copy pass
    low_water_bytes: int | None = None  # lowest remaining seen in this phase (for reports)
    progress_at_s: float | None = None
    last_now_s: float | None = None

    def observe(
        self,
        *,
        now_s: float,
        phase: Phase,
        iteration: int,
        remaining_bytes: int,
        bandwidth_bytes_s: float | None,
    ) -> StallWatch:
        """Feed one poll; returns the updated watch."""
        if phase not in WATCHED_PHASES:
            return StallWatch(self.min_drop_fraction, phase=phase, iteration=iteration, last_now_s=now_s)
        if phase is not self.phase or self.anchor_bytes is None or self.progress_at_s is None:
            # A new phase moves different data (disks, then memory; post-copy pulls the rest): start afresh.
            return StallWatch(
                self.min_drop_fraction,
                phase,
                iteration,
                remaining_bytes,
                remaining_bytes,
                remaining_bytes,
                progress_at_s=now_s,
                last_now_s=now_s,
            )
        interval_s = max(0.0, now_s - (self.last_now_s if self.last_now_s is not None else now_s))
        noise_bytes = max(0.0, bandwidth_bytes_s or 0.0) * interval_s

        def fell_meaningfully(reference: int) -> bool:
            return reference - remaining_bytes > max(self.min_drop_fraction * reference, noise_bytes)

        anchor, best, progress_at = self.anchor_bytes, self.best_pass_start_bytes, self.progress_at_s
        if phase is Phase.PRECOPY and iteration > self.iteration:
            # A new pass starts with what the guest dirtied during the last one: smaller = converging.
            if best is None or fell_meaningfully(best):
                anchor, best, progress_at = remaining_bytes, remaining_bytes, now_s
        elif fell_meaningfully(anchor):
            anchor, progress_at = remaining_bytes, now_s
        low = remaining_bytes if self.low_water_bytes is None else min(self.low_water_bytes, remaining_bytes)
        return replace(
            self,
            iteration=max(iteration, self.iteration),
            anchor_bytes=anchor,
            best_pass_start_bytes=best,
            low_water_bytes=low,
            progress_at_s=progress_at,
            last_now_s=now_s,
        )

    def restart(self, now_s: float) -> StallWatch:
        """Start the stall clock again from now (after a last-chance action), keeping the levels."""
        if self.progress_at_s is None:
            return self
        return replace(self, progress_at_s=now_s)

    def stalled_for_s(self, now_s: float) -> float:
        """Seconds since the last meaningful progress (0 when nothing is watched)."""
        if self.progress_at_s is None:
            return 0.0
        return max(0.0, now_s - self.progress_at_s)


def eta_s(
    phase: Phase, remaining_bytes: int, bandwidth_bytes_s: float | None, dirty_bytes_s: float | None
) -> float | None:
    """Seconds to finish, or None when it cannot be estimated (no bandwidth, or dirtying outpaces the link).

    In pre-copy the remaining data shrinks at the link rate minus the dirty rate (the sum of all the
    remaining passes is R/bw x 1/(1 - dirty/bw) = R/(bw - dirty)); in the other phases nothing re-dirties.
    libvirt's `memory_dirty_rate` under-reads a busy guest (lab: ~4000 of 8000 pages/s), so this errs on
    the optimistic side.

    >>> MiB = 1024 * 1024
    >>> eta_s(Phase.PRECOPY, 120 * MiB, 16 * MiB, 4 * MiB)
    10.0
    >>> eta_s(Phase.POSTCOPY, 120 * MiB, 16 * MiB, 4 * MiB)
    7.5
    >>> eta_s(Phase.PRECOPY, 120 * MiB, 16 * MiB, 20 * MiB) is None
    True
    """
    if remaining_bytes <= 0:
        return 0.0
    if bandwidth_bytes_s is None or bandwidth_bytes_s <= 0:
        return None
    rate = bandwidth_bytes_s
    if phase is Phase.PRECOPY and dirty_bytes_s is not None:
        rate = bandwidth_bytes_s - dirty_bytes_s
        if rate <= 0:
            return None
    return remaining_bytes / rate
