"""Will pre-copy converge? The first, analytic model: pre-copy, post-copy and auto-converge estimates.

The card's prediction is planning/estimate.py (calibrated from history). This model stays for the drain
planner's `ModelEstimator` and as the "before" column of bench/bench_prediction.py; units are migration_core/units.

The model (the same one QEMU's pre-copy follows): pass 1 sends all of RAM; every later pass sends what the
guest dirtied during the previous pass, which can never exceed the working set (or RAM). As soon as what is
left can be sent within the max downtime at the link bandwidth, QEMU pauses the guest and sends it: that is
the downtime. If the guest dirties memory as fast as the link sends it, the passes never shrink.

It is deliberately conservative: real runs are faster because pages that were never written (zero pages)
cost almost nothing in pass 1 (lab: a 256 MiB guest with a 128 MiB working set sent 257 MiB in post-copy).

Everything here is MiB/s (migration_core/units.py converts libvirt's other units at the edge).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from migration_core.errors import PreflightError, RequestError
from migration_core.models import Prediction
from migration_core.units import MIB, fmt_s

DEFAULT_SETUP_S = 1.0  # lab: wall time minus job time of a small live migration, ~1.2 s
PRECOPY_SWITCHOVER_MS = 10.0  # device state + hand-over on top of the last RAM chunk (lab idle: 11-35 ms)
POSTCOPY_SWITCHOVER_MS = 5.0  # lab post-copy downtime: 3-7 ms


@dataclass(frozen=True)
class _Run:
    converged: bool
    passes: int  # passes over memory, the final stop-and-copy included
    copy_s: float  # time of the live passes (the guest runs)
    final_bytes: float  # what the stop-and-copy sends (or, when diverging, what the last pass left)
    max_throttle_pct: int


def _simulate(
    memory_bytes: int,
    dirty_bytes_s: float,
    bw_bytes_s: float,
    max_downtime_ms: int,
    cap_bytes: int,
    max_passes: int,
    throttle_pct: Callable[[int], int],
) -> _Run:
    threshold_bytes = bw_bytes_s * max_downtime_ms / 1000
    if memory_bytes <= threshold_bytes:  # small enough to stop and copy at once
        return _Run(True, 1, 0.0, float(memory_bytes), 0)
    to_send, copy_s, max_pct = float(memory_bytes), 0.0, 0
    for n in range(1, max_passes):
        pass_s = to_send / bw_bytes_s
        copy_s += pass_s
        pct = throttle_pct(n)
        max_pct = max(max_pct, pct)
        to_send = min(dirty_bytes_s * (1 - pct / 100) * pass_s, float(cap_bytes))
        if to_send <= threshold_bytes:
            return _Run(True, n + 1, copy_s, to_send, max_pct)
    return _Run(False, max_passes, copy_s, to_send, max_pct)


def _check_inputs(memory_bytes: int, dirty_rate_mib_s: float | None, max_passes: int) -> None:
    if memory_bytes <= 0:
        raise PreflightError(
            f"cannot predict a migration of {memory_bytes} bytes of memory",
            "the VM's memory size was not read correctly; check `virsh dominfo` on the source",
        )
    if dirty_rate_mib_s is not None and (dirty_rate_mib_s < 0 or math.isnan(dirty_rate_mib_s)):
        raise PreflightError(
            f"the measured dirty rate {dirty_rate_mib_s} MiB/s is not a rate",
            "measure it again (`virsh domdirtyrate-calc VM`, then `virsh domstats --dirtyrate VM`)",
        )
    if max_passes < 2:
        raise RequestError(f"max_passes must be at least 2, not {max_passes}", "pre-copy needs two passes")


def _cap(memory_bytes: int, working_set_bytes: int | None) -> int:
    if working_set_bytes is None or working_set_bytes <= 0:
        return memory_bytes
    return min(working_set_bytes, memory_bytes)


def _no_link(dirty_rate_mib_s: float | None) -> Prediction:
    return Prediction(
        None,
        None,
        None,
        dirty_rate_mib_s,
        None,
        None,
        "cannot predict: the link bandwidth is unknown; set the host pair's bandwidth in the hosts file",
    )


@dataclass(frozen=True)
class AutoConverge:
    """QEMU's auto-converge throttle: from pass 3 at `initial_pct`, + `increment_pct` per pass, up to `max_pct`
    (QEMU's cpu-throttle-max, 99); it only engages when the guest dirties more than half the link."""

    initial_pct: int = 20
    increment_pct: int = 10
    max_pct: int = 99

    def throttle_pct(self, n: int) -> int:
        """The vCPU throttle during pass `n` (1-based) once it engaged."""
        return 0 if n < 3 else min(self.max_pct, self.initial_pct + self.increment_pct * (n - 3))


def predict_precopy(
    memory_bytes: int,
    dirty_rate_mib_s: float | None,
    bandwidth_mib_s: float,
    max_downtime_ms: int,
    *,
    max_passes: int = 30,
    setup_s: float = DEFAULT_SETUP_S,
    working_set_bytes: int | None = None,
    switchover_ms: float = PRECOPY_SWITCHOVER_MS,
    auto_converge: AutoConverge | None = None,
) -> Prediction:
    """Pre-copy, plain or with auto-converge: does it converge under `max_downtime_ms`, in how long, in how many
    passes?

    Worked example, the lab's idle guest: 256 MiB RAM dirtying 7.8 MiB/s over a 200 MiB/s link, 300 ms
    max. Pass 1 sends 256 MiB in 1.28 s, meanwhile 10 MiB are dirtied; 10 MiB go in 50 ms < 300 ms, so
    the second pass is the stop-and-copy: 1 s setup + 1.28 s + 60 ms = ~2.3 s, downtime ~60 ms.

    >>> predict_precopy(256 * MIB, 7.8, 200.0, 300).verdict
    'converges in ~2.3 s, downtime ~60 ms (2 passes)'

    The lab's busy guest (128 MiB working set at 31.2 MiB/s) on a 16 MiB/s link never converges:

    >>> p = predict_precopy(256 * MIB, 31.2, 16.0, 300, working_set_bytes=128 * MIB)
    >>> p.converges, p.verdict.split(" (")[0]
    (False, 'will not converge: dirty rate 31.2 MiB/s >= link 16.0 MiB/s')
    >>> p.verdict.split(" (")[1]
    'each pass leaves ~128 MiB: ~8000 ms of downtime, max 300 ms)'

    With `auto_converge`, QEMU throttles the vCPUs (slowing the dirtying) once two passes in a row re-dirtied
    more than half of what they sent; the throttled dirty rate is `dirty x (1 - throttle)`.

    Worked example, the lab's busy guest at 16 MiB/s with 50 %/+25 %: passes 3, 4, 5 run at 50, 75, 99 %;
    the 99 % pass leaves ~1.2 MiB (74 ms), so it converges (the lab measured 56.8 s, 10 passes, 99 %).

    >>> predict_precopy(256 * MIB, 31.2, 16.0, 300, working_set_bytes=128 * MIB,
    ...                 auto_converge=AutoConverge(initial_pct=50, increment_pct=25)).verdict
    'auto-converge: converges in ~45 s, downtime ~84 ms (6 passes, vCPUs throttled up to 99 %)'
    """
    high_dirty = dirty_rate_mib_s is not None and dirty_rate_mib_s > bandwidth_mib_s / 2

    def throttle_pct(n: int) -> int:
        return auto_converge.throttle_pct(n) if auto_converge is not None and high_dirty else 0

    label = "" if auto_converge is None else "auto-converge: "
    _check_inputs(memory_bytes, dirty_rate_mib_s, max_passes)
    if max_downtime_ms <= 0:
        raise RequestError(f"max downtime must be positive, not {max_downtime_ms} ms", "e.g. --max-downtime 300")
    if bandwidth_mib_s <= 0:
        return _no_link(dirty_rate_mib_s)
    bw = bandwidth_mib_s * MIB
    if dirty_rate_mib_s is None:
        first_pass_s = setup_s + memory_bytes / bw
        return Prediction(
            None,
            None,
            None,
            None,
            bandwidth_mib_s,
            None,
            f"cannot predict convergence: the dirty page rate was not measured; the first pass alone takes"
            f" ~{fmt_s(first_pass_s)} s at {bandwidth_mib_s:.1f} MiB/s",
        )
    run = _simulate(
        memory_bytes,
        dirty_rate_mib_s * MIB,
        bw,
        max_downtime_ms,
        _cap(memory_bytes, working_set_bytes),
        max_passes,
        throttle_pct,
    )
    left_mib, needs_ms = run.final_bytes / MIB, run.final_bytes / bw * 1000
    if run.converged:
        downtime_ms = round(needs_ms + switchover_ms, 1)
        total_s = round(setup_s + run.copy_s + downtime_ms / 1000, 1)
        throttle = f", vCPUs throttled up to {run.max_throttle_pct} %" if run.max_throttle_pct else ""
        verdict = (
            f"{label}converges in ~{fmt_s(total_s)} s, downtime ~{downtime_ms:.0f} ms ({run.passes} passes{throttle})"
        )
        return Prediction(True, total_s, downtime_ms, dirty_rate_mib_s, bandwidth_mib_s, run.passes, verdict)
    effective_mib_s = dirty_rate_mib_s * (1 - run.max_throttle_pct / 100)
    tail = f"each pass leaves ~{left_mib:.0f} MiB: ~{needs_ms:.0f} ms of downtime, max {max_downtime_ms} ms"
    if effective_mib_s >= bandwidth_mib_s:
        verdict = (
            f"will not converge{label and ' even with auto-converge'}: dirty rate {effective_mib_s:.1f} MiB/s"
            f" >= link {bandwidth_mib_s:.1f} MiB/s ({tail})"
        )
    else:
        verdict = (
            f"will not converge{label and ' even with auto-converge'} within {max_passes} passes: dirty rate"
            f" {effective_mib_s:.1f} MiB/s is {effective_mib_s / bandwidth_mib_s:.0%} of the link"
            f" {bandwidth_mib_s:.1f} MiB/s ({tail})"
        )
    return Prediction(False, None, None, dirty_rate_mib_s, bandwidth_mib_s, run.passes, verdict)


def predict_postcopy(
    memory_bytes: int,
    dirty_rate_mib_s: float | None,
    bandwidth_mib_s: float,
    *,
    postcopy_bandwidth_mib_s: float | None = None,
    setup_s: float = DEFAULT_SETUP_S,
    working_set_bytes: int | None = None,
    switchover_ms: float = POSTCOPY_SWITCHOVER_MS,
) -> Prediction:
    """Post-copy after the bulk pass: always completes; the downtime is only the switch-over.

    The bulk pass sends all RAM; then the guest moves and the destination pulls what was dirtied meanwhile
    (at most the working set) at the post-copy bandwidth. Without a measured dirty rate the whole working set
    is assumed dirty. Worked example, the lab's busy guest on a 16 MiB/s link: 1 s + 256 MiB / 16 + 128 MiB
    / 16 = 25 s (the lab measured 16-18 s, because zero pages are nearly free in the bulk pass).

    >>> predict_postcopy(256 * MIB, 31.2, 16.0, working_set_bytes=128 * MIB).verdict
    'post-copy completes in ~25 s, downtime ~5 ms (the bulk pass, then ~128 MiB pulled by the destination)'
    """
    _check_inputs(memory_bytes, dirty_rate_mib_s, 2)
    if bandwidth_mib_s <= 0:
        return _no_link(dirty_rate_mib_s)
    bw = bandwidth_mib_s * MIB
    post_bw = (postcopy_bandwidth_mib_s or bandwidth_mib_s) * MIB
    bulk_s = memory_bytes / bw
    cap = _cap(memory_bytes, working_set_bytes)
    pulled = float(cap) if dirty_rate_mib_s is None else min(dirty_rate_mib_s * MIB * bulk_s, float(cap))
    total_s = round(setup_s + bulk_s + pulled / post_bw + switchover_ms / 1000, 1)
    verdict = (
        f"post-copy completes in ~{fmt_s(total_s)} s, downtime ~{switchover_ms:.0f} ms (the bulk pass, then"
        f" ~{pulled / MIB:.0f} MiB pulled by the destination)"
    )
    if dirty_rate_mib_s is None:
        verdict += "; no dirty rate measured, so every page of the working set was assumed re-sent"
    return Prediction(True, total_s, switchover_ms, dirty_rate_mib_s, bandwidth_mib_s, 2, verdict)
