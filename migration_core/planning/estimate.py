"""The calibrated prediction: how long a move takes and how long the guest pauses, with a range and a basis.

The pure API (drain planning builds on it; no I/O, no clock, no store):

    estimate(inputs: MoveInputs, history: Sequence[MoveSample] = (), *, now: datetime | None = None) -> Estimate

- `MoveInputs`: what preflight knows before the move. `memory_bytes` (the VM's RAM), `transferable_bytes`
  (non-zero guest memory: pre-copy's first pass sends only that; from the VM's last migration, or the QEMU
  process RSS minus QEMU's own share, see `transferable_from_rss`; None = assume all RAM), `dirty_rate_mib_s`
  (measured), `link_mib_s` (the declared link, or --bandwidth if lower), `mode` (MoveMode: pre-copy,
  auto-converge, post-copy, offline), `parallel_connections`, `disk_bytes` (allocation of the disks
  --copy-storage sends, not their virtual size), `max_downtime_ms`, `postcopy_after_s` (the switch time the
  policy uses; None = after one full pass), `vm_uuid`, `source`, `destination` (to pick the history).
- `MoveSample`: one finished migration as the store keeps it: the raw model's figures for its inputs
  (`model_total_s`, `model_downtime_ms`), what was measured (total, downtime, bytes, throughput, passes) and
  whether it succeeded.
- `Estimate`: `total_s` and `downtime_ms` (point), `total_p10_s`/`total_p90_s`, `downtime_p10_ms`/
  `downtime_p90_ms` (the range), `converges` (None = unknown; post-copy always True), `passes`,
  `model_total_s`/`model_downtime_ms` (the uncalibrated physics, stored with the sample so later runs can
  calibrate), `basis` ("from 4 earlier migrations of vm42 hostA→hostB" / "model only: no history"),
  `samples` (how many calibrated it), `verdict` (one line for the card).

The physics (docs/prediction.md has the measurements): total = fixed cost (destination start, switch-over,
about 0.3 s) + bytes sent / effective throughput, where the bytes are the disk allocation, the transferable
memory and what each later pass re-sends (the guest's dirtying during the previous pass, capped by the
transferable memory); QEMU stops the guest once what is left fits in max-downtime at the throughput. The
effective throughput is ~85 % of a shaped link (TCP + framing). Downtime = a switch-over cost (~35 ms
pre-copy, ~5 ms post-copy) + the last chunk at the throughput.

Calibration (`calibrate`): the ratio measured / model of earlier successful migrations, preferring the same
VM on the same host pair in the same mode family, then the same host pair, multiplies the model's point;
their spread gives the range. Old or odd samples are guarded against: only the last `WINDOW` samples within
`MAX_AGE_DAYS`, only succeeded runs, ratios outside [1/5, 5] discarded as broken, then the median (not the
mean) and anything farther than 3 MADs from it dropped.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum

from migration_core.models import MoveSample, Prediction

MIB = 1024 * 1024
# Defaults for a host pair without history, each measured on the lab (docs/prediction.md, "Evidence").
DEFAULT_EFFICIENCY = 0.85  # memory_bps / shaped link rate: 0.75-0.95 (lower on fast links: CPU-bound)
DEFAULT_FIXED_S = 0.3  # time_elapsed minus bytes / throughput minus downtime (lab: 0.27-0.38 s)
PER_CHANNEL_FIXED_S = 0.05  # each multifd channel is one more connection to set up and tear down
DEFAULT_SWITCHOVER_MS = 35.0  # lab: an idle guest pauses 38-51 ms at 200 MiB/s with almost nothing left
FINAL_CHUNK_SHARE = 0.5  # QEMU re-syncs the dirty bitmap mid-pass: the stop-and-copy sends ~half a pass's dirt
POSTCOPY_SWITCHOVER_MS = 5.0  # lab: 3-7 ms
OFFLINE_FIXED_S = 1.0  # offline = define on the destination, undefine on the source (lab wall time 1.02-1.05 s)
DISK_SCAN_S_PER_GIB = 0.3  # drive-mirror walks the whole virtual size, unallocated clusters cost only this
DEFAULT_QEMU_RSS_BYTES = 34 * MIB  # QEMU's own resident memory besides guest pages (lab: 30-38 MiB)
COLD_SPREAD = (0.7, 1.4)  # p10/p90 of measured/model without history (lab cold runs)
MIN_SPREAD = 0.1  # a range never narrower than +-10 %
WINDOW = 20
MAX_AGE_DAYS = 30.0
MAX_RATIO = 5.0
MAX_PASSES = 30


class MoveMode(Enum):
    """How memory moves (parallel and copy-storage are options on top of the live ones)."""

    PRECOPY = "pre-copy"
    AUTO_CONVERGE = "auto-converge"
    POSTCOPY = "post-copy"
    OFFLINE = "offline"


@dataclass(frozen=True)
class MoveInputs:
    """What is known before the move (see the module docstring)."""

    memory_bytes: int
    dirty_rate_mib_s: float | None
    link_mib_s: float | None
    transferable_bytes: int | None = None
    mode: MoveMode = MoveMode.PRECOPY
    parallel_connections: int | None = None
    disk_bytes: int = 0
    disk_virtual_bytes: int = 0  # their virtual size (the mirror walks it all)
    max_downtime_ms: int = 300
    postcopy_after_s: float | None = None
    vm_uuid: str = ""
    vm: str = ""
    source: str = ""
    destination: str = ""

    @property
    def family(self) -> str:
        """Which samples calibrate this move: the mode, and whether extra channels or a disk copy run."""
        parts = [self.mode.value]
        if self.parallel_connections:
            parts.append("parallel")
        if self.disk_bytes:
            parts.append("copy-storage")
        return "+".join(parts)


@dataclass(frozen=True)
class Estimate:
    """The prediction: point, range, and what it is based on."""

    converges: bool | None
    total_s: float | None
    total_p10_s: float | None
    total_p90_s: float | None
    downtime_ms: float | None
    downtime_p10_ms: float | None
    downtime_p90_ms: float | None
    passes: int | None
    model_total_s: float | None
    model_downtime_ms: float | None
    throughput_mib_s: float | None
    basis: str
    samples: int
    verdict: str
    postcopy_switch_s: float | None = None  # post-copy: the switch the policy makes after this many seconds


@dataclass(frozen=True)
class Calibration:
    """Ratios measured/model learned from history for one move (1.0 and the cold spread without history)."""

    total_ratio: float = 1.0
    total_low: float = COLD_SPREAD[0]
    total_high: float = COLD_SPREAD[1]
    downtime_ratio: float = 1.0
    downtime_low: float = COLD_SPREAD[0]
    downtime_high: float = COLD_SPREAD[1] * 1.5
    samples: int = 0
    basis: str = "model only: no history"


def transferable_from_rss(
    memory_bytes: int, rss_bytes: int | None, qemu_rss_bytes: int = DEFAULT_QEMU_RSS_BYTES
) -> int | None:
    """Non-zero guest memory from the QEMU process's RSS (`virsh dommemstat` rss): pages the guest never
    touched are not resident, and QEMU skips zero pages in the first pass.

    >>> transferable_from_rss(64 * MIB, 67 * MIB) // MIB
    33
    >>> transferable_from_rss(64 * MIB, 200 * MIB) // MIB, transferable_from_rss(64 * MIB, None)
    (64, None)
    """
    if rss_bytes is None or rss_bytes <= 0:
        return None
    return max(4 * MIB, min(memory_bytes, rss_bytes - qemu_rss_bytes))


@dataclass(frozen=True)
class _Physics:
    converges: bool
    total_s: float
    downtime_ms: float
    passes: int
    throughput_mib_s: float
    switch_s: float | None = None  # post-copy: when the policy switches (pre-copy alone would not converge)


def _throughput_mib_s(inputs: MoveInputs) -> float:
    assert inputs.link_mib_s is not None
    return inputs.link_mib_s * DEFAULT_EFFICIENCY


def _fixed_s(inputs: MoveInputs) -> float:
    return DEFAULT_FIXED_S + PER_CHANNEL_FIXED_S * (inputs.parallel_connections or 0)


def _passes(
    sent_first: float, dirty: float, bw: float, threshold: float, cap: float, throttle: bool
) -> tuple[bool, float, float, int]:
    """Live passes: (converged, seconds, bytes of the stop-and-copy, passes incl. the final one)."""
    to_send, seconds = sent_first, 0.0
    for n in range(1, MAX_PASSES):
        pass_s = to_send / bw
        seconds += pass_s
        pct = min(99, 50 + 25 * (n - 3)) if throttle and n >= 3 and dirty > bw / 2 else 0
        to_send = min(dirty * (1 - pct / 100) * pass_s, cap)
        if to_send <= threshold:
            return True, seconds, to_send, n + 1
    return False, seconds, to_send, MAX_PASSES


def postcopy_switch_s(inputs: MoveInputs) -> float | None:
    """When the policy switches to post-copy if pre-copy will not converge: after about one full pass of the
    transferable memory at the effective throughput (x 1.2, at least 5 s); None without a link.

    >>> postcopy_switch_s(MoveInputs(256 * MIB, 31.0, 16.0, transferable_bytes=160 * MIB))
    14.1
    """
    if not inputs.link_mib_s or inputs.link_mib_s <= 0:
        return None
    transferable = min(inputs.memory_bytes, inputs.transferable_bytes or inputs.memory_bytes)
    return round(max(5.0, transferable / MIB / _throughput_mib_s(inputs) * 1.2), 1)


def physics(inputs: MoveInputs) -> _Physics | None:
    """The uncalibrated model (None when the link is unknown)."""
    if inputs.mode is MoveMode.OFFLINE:
        return _Physics(True, OFFLINE_FIXED_S, 0.0, 0, 0.0)
    if not inputs.link_mib_s or inputs.link_mib_s <= 0:
        return None
    bw = _throughput_mib_s(inputs) * MIB
    transferable = float(min(inputs.memory_bytes, inputs.transferable_bytes or inputs.memory_bytes))
    dirty = (inputs.dirty_rate_mib_s or 0.0) * MIB
    fixed = _fixed_s(inputs) + inputs.disk_bytes / bw + DISK_SCAN_S_PER_GIB * inputs.disk_virtual_bytes / 1024**3
    threshold = bw * inputs.max_downtime_ms / 1000
    throttle = inputs.mode is MoveMode.AUTO_CONVERGE
    converged, live_s, final, passes = _passes(transferable, dirty, bw, threshold, transferable, throttle)
    if inputs.mode is MoveMode.POSTCOPY and not converged:
        one_pass_s = transferable / bw
        switch_s = inputs.postcopy_after_s if inputs.postcopy_after_s is not None else postcopy_switch_s(inputs)
        assert switch_s is not None
        precopy_s = max(switch_s, one_pass_s)  # the switch waits for the bulk pass at least
        pulled = min(dirty * one_pass_s, transferable)
        total = fixed + precopy_s + pulled / bw + POSTCOPY_SWITCHOVER_MS / 1000
        return _Physics(True, total, POSTCOPY_SWITCHOVER_MS, 2, bw / MIB, switch_s)
    downtime_ms = DEFAULT_SWITCHOVER_MS + FINAL_CHUNK_SHARE * final / bw * 1000
    return _Physics(converged, fixed + live_s + downtime_ms / 1000, downtime_ms, passes, bw / MIB)


def _robust(ratios: list[float]) -> list[float]:
    """Drop broken ratios and those farther than 3 MADs from the median."""
    kept = [r for r in ratios if 1 / MAX_RATIO <= r <= MAX_RATIO]
    if len(kept) < 3:
        return kept
    med = statistics.median(kept)
    mad = statistics.median(abs(r - med) for r in kept) or 0.01
    return [r for r in kept if abs(r - med) <= 3 * mad * 1.4826]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def usable(history: Sequence[MoveSample], now: datetime | None) -> list[MoveSample]:
    """Succeeded samples, newest first, at most WINDOW, none older than MAX_AGE_DAYS (when `now` is given)."""
    ok = [s for s in history if s.succeeded and s.measured_total_s > 0 and s.model_total_s > 0]
    if now is not None:
        ok = [s for s in ok if now - s.finished_at <= timedelta(days=MAX_AGE_DAYS)]
    return sorted(ok, key=lambda s: s.finished_at, reverse=True)[:WINDOW]


def calibrate(inputs: MoveInputs, history: Sequence[MoveSample], now: datetime | None = None) -> Calibration:
    """Ratios from the closest history: this VM on this pair in this family, else this pair in this family,
    else this VM in this family anywhere, else this pair in any family (see the module docstring)."""
    ok = usable(history, now)
    pair = f"{inputs.source}→{inputs.destination}"
    vm_name = inputs.vm or "this VM"

    def same_pair(s: MoveSample) -> bool:
        return s.source == inputs.source and s.destination == inputs.destination

    def same_vm(s: MoveSample) -> bool:
        return bool(inputs.vm_uuid) and s.vm_uuid == inputs.vm_uuid

    def same_family(s: MoveSample) -> bool:
        return s.family == inputs.family

    tiers: tuple[tuple[Callable[[MoveSample], bool], str], ...] = (
        (lambda s: same_vm(s) and same_pair(s) and same_family(s), f"of {vm_name} {pair}"),
        (lambda s: same_pair(s) and same_family(s), pair),
        (lambda s: same_vm(s) and same_family(s), f"of {vm_name}"),
        (same_pair, f"{pair}, other modes"),
    )
    for match, where in tiers:
        chosen = [s for s in ok if (inputs.vm_uuid and match(s)) or (not inputs.vm_uuid and match(s))]
        totals = _robust([s.measured_total_s / s.model_total_s for s in chosen])
        if not totals:
            continue
        downs = _robust(
            [
                s.measured_downtime_ms / s.model_downtime_ms
                for s in chosen
                if s.measured_downtime_ms is not None and s.model_downtime_ms
            ]
        )
        t_med = statistics.median(totals)
        d_med = statistics.median(downs) if downs else 1.0
        n = len(totals)
        plural = "s" if n != 1 else ""
        return Calibration(
            total_ratio=t_med,
            total_low=min(_quantile(totals, 0.1) / t_med, 1 - MIN_SPREAD) if n > 2 else 1 - 2 * MIN_SPREAD,
            total_high=max(_quantile(totals, 0.9) / t_med, 1 + MIN_SPREAD) if n > 2 else 1 + 2 * MIN_SPREAD,
            downtime_ratio=d_med,
            downtime_low=min(_quantile(downs, 0.1) / d_med, 1 - MIN_SPREAD) if len(downs) > 2 else 0.7,
            downtime_high=max(_quantile(downs, 0.9) / d_med, 1 + MIN_SPREAD) if len(downs) > 2 else 1.3,
            samples=n,
            basis=f"from {n} earlier migration{plural} {where}",
        )
    return Calibration()


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.1f}" if seconds < 10 else f"{seconds:.0f}"


def estimate(inputs: MoveInputs, history: Sequence[MoveSample] = (), *, now: datetime | None = None) -> Estimate:
    """The calibrated prediction for one move (pure; see the module docstring).

    The lab's vm42 (64 MiB, 33 MiB of it non-zero, dirtying 4 MiB/s) over a 200 MiB/s link: ~170 MiB/s
    of throughput, 0.3 s fixed, 33 MiB in 0.19 s, ~0.8 MiB re-sent; the lab measures 0.50-0.56 s, 38-51 ms.

    >>> e = estimate(MoveInputs(64 * MIB, 4.0, 200.0, transferable_bytes=33 * MIB))
    >>> e.total_s, e.downtime_ms, e.basis
    (0.53, 37.3, 'model only: no history')
    >>> e.verdict
    'converges in ~0.5 s (0.4–0.7 s), downtime ~37 ms (26–78 ms); model only: no history'

    """
    phys = physics(inputs)
    if phys is None:
        return Estimate(
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            "no link bandwidth",
            0,
            "cannot predict: the link bandwidth is unknown; set the host pair's link_mib_s in the hosts file",
        )
    cal = calibrate(inputs, history, now)
    if not phys.converges:
        return Estimate(
            False,
            None,
            None,
            None,
            None,
            None,
            None,
            phys.passes,
            phys.total_s,
            None,
            phys.throughput_mib_s,
            cal.basis,
            cal.samples,
            f"will not converge: dirty rate {inputs.dirty_rate_mib_s or 0:.1f} MiB/s against ~"
            f"{phys.throughput_mib_s:.0f} MiB/s of throughput ({inputs.link_mib_s:g} MiB/s link); use"
            " --postcopy or --auto-converge",
        )
    total = phys.total_s * cal.total_ratio
    down = phys.downtime_ms * cal.downtime_ratio
    est = Estimate(
        True,
        round(total, 2),
        round(total * cal.total_low, 2),
        round(total * cal.total_high, 2),
        round(down, 1) if inputs.mode is not MoveMode.OFFLINE else None,
        round(down * cal.downtime_low, 1) if inputs.mode is not MoveMode.OFFLINE else None,
        round(down * cal.downtime_high, 1) if inputs.mode is not MoveMode.OFFLINE else None,
        phys.passes,
        round(phys.total_s, 3),
        round(phys.downtime_ms, 2),
        round(phys.throughput_mib_s, 1),
        cal.basis,
        cal.samples,
        "",
        phys.switch_s,
    )
    return replace(est, verdict=verdict(est, inputs))


def verdict(est: Estimate, inputs: MoveInputs) -> str:
    """One line: 'post-copy: ~27 s (22-35 s), downtime ~5 ms (4-7 ms); from 2 earlier migrations hostA→hostB'."""
    if est.total_s is None:
        return est.verdict
    label = {
        MoveMode.PRECOPY: "converges",
        MoveMode.AUTO_CONVERGE: "auto-converge: converges",
        MoveMode.POSTCOPY: "post-copy completes",
        MoveMode.OFFLINE: "offline move",
    }[inputs.mode]
    rng = f" ({_fmt_s(est.total_p10_s or 0)}–{_fmt_s(est.total_p90_s or 0)} s)"
    down = ""
    if est.downtime_ms is not None:
        down = f", downtime ~{est.downtime_ms:.0f} ms ({est.downtime_p10_ms:.0f}–{est.downtime_p90_ms:.0f} ms)"
    switch = ""
    if est.postcopy_switch_s is not None:
        switch = f" (pre-copy alone would not converge: switches to post-copy after {est.postcopy_switch_s:g} s)"
    return f"{label} in ~{_fmt_s(est.total_s)} s{rng}{down}{switch}; {est.basis}"


def mode_of(*, offline: bool, postcopy: bool, auto_converge: bool) -> MoveMode:
    """The estimate's mode for a plan's options (post-copy wins: auto-converge only runs before the switch).

    >>> mode_of(offline=False, postcopy=True, auto_converge=True).value
    'post-copy'
    """
    if offline:
        return MoveMode.OFFLINE
    if postcopy:
        return MoveMode.POSTCOPY
    return MoveMode.AUTO_CONVERGE if auto_converge else MoveMode.PRECOPY


def to_prediction(est: Estimate, inputs: MoveInputs) -> Prediction:
    """The plan's Prediction (models.py) for an estimate, with the inputs later calibration needs."""
    return Prediction(
        converges=est.converges,
        total_s=est.total_s,
        downtime_ms=est.downtime_ms,
        dirty_rate_mib_s=inputs.dirty_rate_mib_s,
        bandwidth_mib_s=inputs.link_mib_s,
        passes=est.passes,
        verdict=est.verdict,
        total_p10_s=est.total_p10_s,
        total_p90_s=est.total_p90_s,
        downtime_p10_ms=est.downtime_p10_ms,
        downtime_p90_ms=est.downtime_p90_ms,
        basis=est.basis,
        samples=est.samples,
        mode=inputs.family,
        model_total_s=est.model_total_s,
        model_downtime_ms=est.model_downtime_ms,
        transferable_bytes=inputs.transferable_bytes,
        disk_bytes=inputs.disk_bytes,
        postcopy_switch_s=est.postcopy_switch_s,
    )


def sample_from_run(
    prediction: Prediction,
    *,
    vm_uuid: str,
    vm: str,
    source: str,
    destination: str,
    finished_at: datetime,
    succeeded: bool,
    total_s: float | None,
    downtime_ms: float | None,
    stats: Mapping[str, object],
    postcopy: bool,
) -> MoveSample | None:
    """The history sample of a finished run; None when its plan carried no model figures (older plans) or
    nothing was measured.

    `stats` are the completed job stats (libvirt keys: memory_normal_bytes, disk_processed, memory_bps,
    memory_iteration).
    """
    if prediction.model_total_s is None or total_s is None or total_s <= 0:
        return None

    def num(key: str) -> float:
        value = stats.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0

    bps = num("memory_bps")
    return MoveSample(
        vm_uuid=vm_uuid,
        vm=vm,
        source=source,
        destination=destination,
        family=prediction.mode,
        finished_at=finished_at,
        succeeded=succeeded,
        model_total_s=prediction.model_total_s,
        model_downtime_ms=prediction.model_downtime_ms,
        predicted_total_s=prediction.total_s,
        predicted_downtime_ms=prediction.downtime_ms,
        measured_total_s=total_s,
        measured_downtime_ms=downtime_ms,
        memory_bytes_sent=int(num("memory_normal_bytes")),
        disk_bytes_sent=int(num("disk_processed")),
        throughput_mib_s=round(bps / MIB, 1) if bps else None,
        passes=int(num("memory_iteration")) or None,
        postcopy=postcopy,
    )
