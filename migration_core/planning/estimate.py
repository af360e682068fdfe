"""The calibrated prediction: how long a move takes and how long the guest pauses, with a range and a basis.

The pure API (drain planning builds on it; no I/O, no clock, no store):

    estimate(inputs: MoveInputs, history: Sequence[MoveSample] = (), *, now: datetime | None = None) -> Estimate

- `MoveInputs`: what preflight knows before the move. `memory_bytes` (the VM's RAM), `transferable_bytes`
  (non-zero guest memory: pre-copy's first pass sends only that; the QEMU process RSS minus QEMU's own
  share, see `transferable_from_rss`; None = assume all RAM; the VM's earlier migrations then correct it
  through its history), `dirty_rate_mib_s`
  (measured), `link_mib_s` (the declared link, or --bandwidth if lower), `mode` (MoveMode: pre-copy,
  auto-converge, post-copy, offline), `parallel_connections`, `disk_bytes` (allocation of the disks
  --copy-storage sends, not their virtual size) and `disk_virtual_bytes`, `max_downtime_ms`,
  `postcopy_after_s` (the switch time the
  policy uses; None = after one full pass), `vm_uuid`, `source`, `destination` (to pick the history).
- `MoveSample` (models.py): one finished migration as the store keeps it: the raw model's figures, what the
  card said, what was measured (total, downtime, bytes, throughput, passes), the link it assumed, whether it
  succeeded; `sample_from_run` builds it from the plan's Prediction and the completed job stats.
- `Estimate`: `total_s` and `downtime_ms` (point), `total_p10_s`/`total_p90_s`, `downtime_p10_ms`/
  `downtime_p90_ms` (the range), `converges` (None = unknown; post-copy always True), `passes`,
  `model_total_s`/`model_downtime_ms` (the uncalibrated physics, stored with the sample so later runs can
  calibrate), `basis` ("from 4 earlier migrations of vm42 hostA→hostB" / "model only: no history"),
  `samples` (how many calibrated it), `postcopy_switch_s` (post-copy needed: when the policy switches),
  `verdict` (one line for the card). `to_prediction` makes it the plan's Prediction.
- `learn_pair` (a host pair's learned throughput share, fixed cost and pause offset) and `calibration_report` (per pair:
  errors and what was learned, for `migrate-bot calibration`) are pure too.

The physics (docs/prediction.md has the measurements): total = fixed cost (destination start, switch-over,
about 0.3 s) + bytes sent / effective throughput, where the bytes are the disk allocation, the transferable
memory and what each later pass re-sends (the guest's dirtying during the previous pass, capped by the
transferable memory); QEMU stops the guest once what is left fits the max downtime in force at the throughput,
and that is the convergence controller's ramp (its first step, 60 ms of a 300 ms max, raised while passes
stall), not the max. The effective throughput is ~85 % of a shaped link. Downtime = a switch-over cost (~21 ms
pre-copy incl. libvirt's hand-over, ~5 ms post-copy) + (the ~1.9 MiB send backlog + the last chunk) at the
throughput, the chunk being what the guest dirtied in the bulk pass (idle guests) or ~0.85 of the budget in
force (a mid-pass stop: busy guests, auto-converge). Auto-converge throttles on QEMU's schedule (50 % from
pass 3, +25 % every two passes); post-copy = the policy's switch time + what was re-dirtied, pulled at the
throughput.

Calibration, from the history the store keeps (one `MoveSample` per finished migration):
- per host pair (`learn_pair`): the effective throughput as a share of the declared link (median of
  memory_bps / link) and the fixed cost (median of total - bytes / throughput - downtime), from its plain
  pre-copy / auto-converge samples, shrunk towards the defaults while few; they replace the defaults in the
  model for every VM on that pair; and the pause offset (median of measured - modelled downtime, shrunk
  towards 0), added to the model's downtime for a VM without its own history;
- per VM (`_repeat`): the VM's own earlier moves of the same family (both directions) are the estimate: each
  total is split into the pair's fixed cost and a transfer part rescaled by declared link then / now; the
  median (with the model as one more vote while there are fewer than 3) is the point, the spread the range;
  the downtime (`_downtime`) is the VM's own pauses averaged with today's model, which weighs as one run
  (the pair's pause offset serves only VMs never moved).
Old or odd samples are guarded against: only succeeded runs (failed and aborted ones are stored, counted by
`calibration`, never learned from), none older than MAX_AGE_DAYS, only the newest WINDOW per tier, medians
rather than means, and values farther than 3 scaled MADs from the median dropped.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from enum import Enum

from migration_core.limits import (
    DEFAULT_MAX_DOWNTIME_MS,
    RAMP_COOLDOWN_S,
    RAMP_START_ITERATION,
    SHRINKING_PASS,
    downtime_ramp_ms,
)
from migration_core.models import MoveSample, Prediction
from migration_core.units import MIB

# Defaults for a host pair without history, each measured on the lab (docs/prediction.md, "Evidence").
DEFAULT_EFFICIENCY = 0.85  # memory_bps / shaped link rate: 0.75-0.95 (lower on fast links: CPU-bound)
DEFAULT_FIXED_S = 0.3  # time_elapsed minus bytes / throughput minus downtime (lab: 0.27-0.38 s)
PER_CHANNEL_FIXED_S = 0.05  # each multifd channel is one more connection to set up and tear down
# Downtime = a fixed switch-over + (send backlog + the last chunk of RAM) / throughput (docs/prediction.md,
# finding 5; fitted on QEMU's own split of 18 lab runs, 30-190 MiB/s): ~21 ms of CPU and device state and
# libvirt's hand-over (the destination's Finish and resume: ~10 ms of it), and ~1.9 MiB already queued in the
# socket and link that must drain first, which is why a slow link pauses longer for the same few dirty pages.
DEFAULT_SWITCHOVER_MS = 21.0
SEND_BACKLOG_BYTES = 1.9 * MIB
DIRTY_SPREAD = (0.75, 1.0, 1.33)  # the measured dirty rate's uncertainty (lab: the same guest measures +-30 %)
# A mid-pass stop leaves a bit less than the budget's worth: QEMU looks at what is left between rounds of sending
# (lab, QEMU's own figures: 0.73-1.01 of `throughput x 60 ms` in 9 busy runs at 61-192 MiB/s, 0.85 on average).
MIDPASS_SHARE = 0.85
THROTTLE_SLACK_PCT = 75  # auto-converge: a paced guest absorbs a throttle up to this in idle time (finding 7)
POSTCOPY_SWITCHOVER_MS = 5.0  # lab: 3-7 ms
OFFLINE_FIXED_S = 1.0  # offline = define on the destination, undefine on the source (lab wall time 1.02-1.05 s)
DISK_SCAN_S_PER_GIB = 0.3  # drive-mirror walks the whole virtual size, unallocated clusters cost only this
DEFAULT_QEMU_RSS_BYTES = 34 * MIB  # QEMU's own resident memory besides guest pages (lab: 30-38 MiB)
COLD_SPREAD = (0.7, 1.4)  # p10/p90 of measured/model without history (lab cold runs)
MIN_SPREAD = 0.1  # a range never narrower than +-10 %
WINDOW = 20
PRIOR_WEIGHT = 2  # the defaults count as this many runs when learning a pair
MODEL_DOWNTIME_WEIGHT = 1  # today's model counts as one run against a VM's own pauses (finding 6)
MAX_AGE_DAYS = 30.0
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
    max_downtime_ms: int = DEFAULT_MAX_DOWNTIME_MS
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

    @classmethod
    def without_figures(
        cls,
        basis: str,
        verdict: str,
        *,
        converges: bool | None = None,
        passes: int | None = None,
        model_total_s: float | None = None,
        throughput_mib_s: float | None = None,
    ) -> Estimate:
        """No time or downtime to give (no link bandwidth, or a move that will not converge): what the model knows."""
        no_time = no_downtime = (None, None, None)  # (point, p10, p90)
        return cls(converges, *no_time, *no_downtime, passes, model_total_s, None, throughput_mib_s, basis, 0, verdict)


@dataclass(frozen=True)
class PairCalibration:
    """What a host pair's history says: effective throughput as a share of the declared link, fixed cost."""

    efficiency: float = DEFAULT_EFFICIENCY
    fixed_s: float = DEFAULT_FIXED_S
    samples: int = 0
    # measured - modelled downtime on this pair (its hand-over and queues vs the defaults'), shrunk towards 0
    downtime_offset_ms: float = 0.0
    downtime_residuals: tuple[float, ...] = ()  # the pair's residuals it comes from (the range's spread)


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


def _throughput_mib_s(inputs: MoveInputs, pair: PairCalibration | None = None) -> float:
    assert inputs.link_mib_s is not None
    return inputs.link_mib_s * (pair or PairCalibration()).efficiency


def _fixed_s(inputs: MoveInputs, pair: PairCalibration | None = None) -> float:
    return (pair or PairCalibration()).fixed_s + PER_CHANNEL_FIXED_S * (inputs.parallel_connections or 0)


def _throttled_share(pct: int) -> float:
    """How much of its dirtying a guest keeps under a vCPU throttle of `pct` %: a guest that is not CPU-bound
    absorbs the first THROTTLE_SLACK_PCT % in idle time (lab: the busy guest, paced at 31 MiB/s, under QEMU's
    50 -> 75 -> 99 % schedule sent ~6.5x its working set over 9-10 passes in 27-29 s: the passes stay full
    until the throttle passes 75 %; a proportional slow-down would have ended in ~18 s).

    >>> [round(_throttled_share(p), 2) for p in (0, 50, 75, 99)]
    [1.0, 1.0, 1.0, 0.04]
    """
    return min(1.0, (1 - pct / 100) / (1 - THROTTLE_SLACK_PCT / 100))


@dataclass(frozen=True)
class _Passes:
    converged: bool
    seconds: float  # the live passes
    final_bytes: float  # what the stop-and-copy sends (dirtied during the bulk pass, or a mid-pass stop's rest)
    passes: int  # incl. the final one
    budget_ms: int  # the max downtime in force at the stop (the ramp step reached)


def _throttle_pct(n: int) -> int:
    """The vCPU throttle during pass `n` under auto-converge: QEMU raises it at every second bitmap sync that
    finds the guest dirtying more than half of what was sent (migration_trigger_throttle), so from pass 3 on,
    50 %, then +25 % every two passes, at most 99 %.

    >>> [_throttle_pct(n) for n in range(1, 9)]
    [0, 0, 50, 50, 75, 75, 99, 99]
    """
    return 0 if n < 3 else min(99, 50 + 25 * ((n - 3) // 2))


def _passes(sent_first: float, dirty: float, bw: float, ramp_ms: Sequence[int], cap: float, throttle: bool) -> _Passes:
    """Live passes against the convergence controller's downtime ramp: QEMU stops the guest once what is left
    fits `bw x` the max downtime in force, which starts at the ramp's first step (60 ms of a 300 ms max, not
    the max) and climbs one step at a stalling pass boundary from pass RAMP_START_ITERATION, at most once per
    RAMP_COOLDOWN_S (while waiting, the stalled passes repeat at the same size).

    Where the stop falls: QEMU checks what is left after every chunk it sends, re-syncing the dirty bitmap
    once that fits the budget. In the bulk pass what is left includes the untouched (zero) memory, so the
    stop comes at its end and the pause sends what the guest dirtied meanwhile (idle guests: 0.6-1.3 MiB).
    In a later pass every page left is a dirty one: if the guest dirties less than the budget during the
    pass, QEMU stops mid-pass with a bit less than the budget's worth left (MIDPASS_SHARE; the busy guest at
    122 MiB/s: 5.3-7.3 MiB at 60 ms; auto-converge at 30 MiB/s after raises: ~190-270 ms of pause).

    >>> p = _passes(140 * MIB, 28 * MIB, 54 * MIB, (60, 120, 180, 240, 300), 140 * MIB, False)
    >>> p.converged, p.passes, p.budget_ms, round(p.final_bytes / MIB, 1)
    (True, 7, 60, 2.8)
    """
    to_send, seconds = sent_first, 0.0
    step, last_raise = 0, None
    for n in range(1, MAX_PASSES):
        pass_s = to_send / bw
        threshold = bw * ramp_ms[step] / 1000
        pct = _throttle_pct(n) if throttle and dirty > bw / 2 else 0
        following = min(dirty * _throttled_share(pct) * pass_s, cap)
        if n > 1 and to_send > threshold and following < threshold:  # a mid-pass stop (see above)
            chunk = max(following, MIDPASS_SHARE * threshold)
            return _Passes(True, seconds + (to_send - chunk) / bw, chunk, n + 1, ramp_ms[step])
        seconds += pass_s
        if following <= threshold:
            return _Passes(True, seconds, following, n + 1, ramp_ms[step])
        stalling = following >= to_send * SHRINKING_PASS
        if stalling and n + 1 >= RAMP_START_ITERATION and step + 1 < len(ramp_ms):
            waiting = last_raise is not None and seconds - last_raise < RAMP_COOLDOWN_S
            if waiting and not throttle and last_raise is not None:
                seconds = last_raise + RAMP_COOLDOWN_S  # identical stalled passes repeat until it may raise
                waiting = False
            if not waiting:
                step, last_raise = step + 1, seconds
                if following <= bw * ramp_ms[step] / 1000:
                    return _Passes(True, seconds, following, n + 1, ramp_ms[step])
        to_send = following
    return _Passes(False, seconds, to_send, MAX_PASSES, ramp_ms[step])


def postcopy_switch_s(inputs: MoveInputs, pair: PairCalibration | None = None) -> float | None:
    """When the policy switches to post-copy if pre-copy will not converge: after about one full pass of the
    transferable memory at the effective throughput (x 1.2, at least 5 s); None without a link.

    >>> postcopy_switch_s(MoveInputs(256 * MIB, 31.0, 16.0, transferable_bytes=160 * MIB))
    14.1
    """
    if not inputs.link_mib_s or inputs.link_mib_s <= 0:
        return None
    transferable = min(inputs.memory_bytes, inputs.transferable_bytes or inputs.memory_bytes)
    return round(max(5.0, transferable / MIB / _throughput_mib_s(inputs, pair) * 1.2), 1)


def physics(inputs: MoveInputs, pair: PairCalibration | None = None) -> _Physics | None:
    """The model with the pair's learned throughput share and fixed cost (defaults without history); None
    when the link is unknown."""
    if inputs.mode is MoveMode.OFFLINE:
        return _Physics(True, OFFLINE_FIXED_S, 0.0, 0, 0.0)
    if not inputs.link_mib_s or inputs.link_mib_s <= 0:
        return None
    bw = _throughput_mib_s(inputs, pair) * MIB
    transferable = float(min(inputs.memory_bytes, inputs.transferable_bytes or inputs.memory_bytes))
    dirty = (inputs.dirty_rate_mib_s or 0.0) * MIB
    fixed = _fixed_s(inputs, pair) + inputs.disk_bytes / bw + DISK_SCAN_S_PER_GIB * inputs.disk_virtual_bytes / 1024**3
    ramp = downtime_ramp_ms(inputs.max_downtime_ms) or (inputs.max_downtime_ms,)
    throttle = inputs.mode is MoveMode.AUTO_CONVERGE
    run = _passes(transferable, dirty, bw, ramp, transferable, throttle)
    converged, live_s, passes = run.converged, run.seconds, run.passes
    if inputs.mode is MoveMode.POSTCOPY and not converged:
        one_pass_s = transferable / bw
        switch_s = inputs.postcopy_after_s if inputs.postcopy_after_s is not None else postcopy_switch_s(inputs, pair)
        assert switch_s is not None
        precopy_s = max(switch_s, one_pass_s)  # the switch waits for the bulk pass at least
        pulled = min(dirty * precopy_s, transferable)  # pre-copy's later passes re-dirty the working set
        total = fixed + precopy_s + pulled / bw + POSTCOPY_SWITCHOVER_MS / 1000
        return _Physics(True, total, POSTCOPY_SWITCHOVER_MS, 2, bw / MIB, switch_s)
    # The pause sends what is left at the stop (at most the budget in force), after the send backlog drains;
    # the switch-over cost comes on top. Where the stop falls (pass boundary or mid-pass, which ramp step) is a
    # threshold effect of the dirty rate, and one 2 s measurement of it is +-30 % (the busy guest writes
    # 31 MiB/s and measured 20-41): the chunk is averaged over that range rather than taken at one edge.
    chunks = [
        r.final_bytes if r.converged else 0.0
        for r in (_passes(transferable, dirty * f, bw, ramp, transferable, throttle) for f in DIRTY_SPREAD)
    ]
    chunk = statistics.fmean(chunks) if converged else 0.0
    downtime_ms = DEFAULT_SWITCHOVER_MS + (SEND_BACKLOG_BYTES + chunk) / bw * 1000
    return _Physics(converged, fixed + live_s + downtime_ms / 1000, downtime_ms, passes, bw / MIB)


def _robust(values: list[float]) -> list[float]:
    """Drop values farther than 3 (scaled) MADs from the median: one odd run must not move the estimate."""
    if len(values) < 3:
        return values
    med = statistics.median(values)
    mad = statistics.median(abs(v - med) for v in values) * 1.4826 or abs(med) * 0.01
    return [v for v in values if abs(v - med) <= 3 * mad]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def usable(history: Sequence[MoveSample], now: datetime | None) -> list[MoveSample]:
    """Succeeded samples, newest first, none older than MAX_AGE_DAYS (when `now` is given)."""
    ok = [s for s in history if s.succeeded and s.measured_total_s > 0]
    if now is not None:
        ok = [s for s in ok if now - s.finished_at <= timedelta(days=MAX_AGE_DAYS)]
    return sorted(ok, key=lambda s: s.finished_at, reverse=True)


def _plain_live(s: MoveSample) -> bool:
    """Samples whose time is bytes / throughput + fixed cost: pre-copy or auto-converge, one channel, no disk."""
    return s.family in (MoveMode.PRECOPY.value, MoveMode.AUTO_CONVERGE.value)


def learn_pair(
    source: str, destination: str, history: Sequence[MoveSample], now: datetime | None = None
) -> PairCalibration:
    """The pair's throughput share (median of memory_bps / declared link) and fixed cost (median of total -
    bytes / throughput - downtime), from its last WINDOW plain live samples, shrunk towards the defaults
    with the weight of PRIOR_WEIGHT runs; defaults without any.

    >>> t = datetime(2026, 1, 1)
    >>> s = MoveSample("u", "vm", "A", "B", "pre-copy", t, True, 1.0, 40.0, None, None, 0.6, 40.0,
    ...                memory_bytes_sent=34 * MIB, throughput_mib_s=170.0, link_mib_s=200.0)
    >>> learn_pair("A", "B", [s])
    PairCalibration(efficiency=0.85, fixed_s=0.32, samples=1, downtime_offset_ms=0.0, downtime_residuals=(0.0,))
    """
    mine = [
        s
        for s in usable(history, now)
        if s.source == source
        and s.destination == destination
        and _plain_live(s)
        and s.throughput_mib_s
        and s.link_mib_s
        and s.memory_bytes_sent
    ][:WINDOW]
    if not mine:
        return PairCalibration()
    residuals = _robust(
        [
            s.measured_downtime_ms - s.model_downtime_ms
            for s in mine
            if s.measured_downtime_ms is not None and s.model_downtime_ms is not None
        ]
    )
    shares = _robust([min(1.0, (s.throughput_mib_s or 0) / (s.link_mib_s or 1)) for s in mine])
    fixed = _robust(
        [
            s.measured_total_s
            - (s.memory_bytes_sent + s.disk_bytes) / MIB / (s.throughput_mib_s or 1)
            - (s.measured_downtime_ms or 0) / 1000
            for s in mine
        ]
    )
    # Shrunk towards the defaults while there are few runs: one noisy run (the lab's identical moves vary by
    # 0.4 s) must not become the pair's fixed cost for every VM.
    n, k = len(mine), PRIOR_WEIGHT
    return PairCalibration(
        efficiency=round((n * statistics.median(shares) + k * DEFAULT_EFFICIENCY) / (n + k), 3),
        fixed_s=round((n * max(0.0, statistics.median(fixed)) + k * DEFAULT_FIXED_S) / (n + k), 3),
        samples=n,
        downtime_offset_ms=round(_shrunk(residuals, 0.0), 1),
        downtime_residuals=tuple(residuals),
    )


def _shrunk(values: list[float], prior: float, weight: float = PRIOR_WEIGHT) -> float:
    """The median of `values` shrunk towards `prior`, which weighs as `weight` runs: with two runs and a weight
    of one, one odd run moves the estimate a third of its oddness, not half of it (the median of two).

    >>> _shrunk([40.0, 80.0], 0.0), _shrunk([], 12.0), round(_shrunk([10.0] * 18, 0.0), 1)
    (30.0, 12.0, 9.0)
    """
    if not values:
        return prior
    n = len(values)
    return (n * statistics.median(values) + weight * prior) / (n + weight)


@dataclass(frozen=True)
class _Repeat:
    """This VM's earlier moves of the same kind, rescaled to today's link."""

    total_s: float
    total_low: float
    total_high: float
    samples: int
    basis: str


def _repeat(
    inputs: MoveInputs,
    history: list[MoveSample],
    pair: PairCalibration,
    phys: _Physics,
) -> _Repeat | None:
    """The VM's own history in this family (both directions): each earlier total is split into the pair's
    fixed cost and a transfer part, and the transfer part is rescaled by declared link then / now; the median
    of those (with the pair-calibrated model as one more vote while there are fewer than 3) is the point,
    their spread the range (at least +-MIN_SPREAD)."""
    same = [s for s in history if inputs.vm_uuid and s.vm_uuid == inputs.vm_uuid and s.family == inputs.family]
    here = [s for s in same if s.source == inputs.source and s.destination == inputs.destination]
    chosen = same[:WINDOW]  # both directions: the VM is the same, the link is rescaled, the pair's fixed cost kept
    if not chosen:
        return None
    switch_s, model_total = phys.switch_s, phys.total_s
    link_now = inputs.link_mib_s or 0.0
    fixed = OFFLINE_FIXED_S if inputs.mode is MoveMode.OFFLINE else _fixed_s(inputs, pair)

    def scale(s: MoveSample) -> float:
        if not s.link_mib_s or not link_now or inputs.mode is MoveMode.OFFLINE:
            return 1.0
        return s.link_mib_s / link_now

    def total(s: MoveSample) -> float:
        # Post-copy waits for the policy's switch, which follows today's inputs: keep only what came after.
        if switch_s is not None and s.postcopy_switch_s is not None:
            return fixed + switch_s + max(0.0, s.measured_total_s - fixed - s.postcopy_switch_s) * scale(s)
        return fixed + max(0.0, s.measured_total_s - fixed) * scale(s)

    # While the VM has fewer than 3 runs, the pair-calibrated model is one more vote: one noisy run (the lab's
    # identical moves vary by +-30 %) must not be the whole estimate. (The downtime: `_downtime`.)
    votes = [model_total] if len(chosen) < 3 else []
    totals = _robust([total(s) for s in chosen] + votes)
    t_med = statistics.median(totals)
    n = len(chosen) if votes else len(totals)  # the model vote is not a migration
    wide = n < 3
    where = f"of {inputs.vm or 'this VM'}" + (f" {inputs.source}→{inputs.destination}" if here else "")
    return _Repeat(
        total_s=t_med,
        total_low=1 - 1.2 * MIN_SPREAD if wide else min(_quantile(totals, 0.1) / t_med, 1 - MIN_SPREAD),
        total_high=1 + 1.2 * MIN_SPREAD if wide else max(_quantile(totals, 0.9) / t_med, 1 + MIN_SPREAD),
        samples=n,
        basis=f"from {n} earlier migration{'s' if n != 1 else ''} {where}",
    )


@dataclass(frozen=True)
class _Downtime:
    point_ms: float
    low_ms: float
    high_ms: float


def _downtime(inputs: MoveInputs, history: list[MoveSample], pair: PairCalibration, phys: _Physics) -> _Downtime:
    """The downtime from history. A VM moved before: its own earlier pauses in this family (both directions;
    the part above the switch-over rescaled by declared link then / now) averaged with today's model, which
    weighs as MODEL_DOWNTIME_WEIGHT runs. A VM never moved: the model + the pair's learned offset.

    Why not the VM's median alone: identical lab moves pause 60-121 ms (a loaded machine adds to the pause,
    never takes from it), and the model is as good a guess as one earlier run of the same move (lab: both 78 %
    within +-30 %/30 ms over 180 runs), so it is one more run's worth of evidence. Why not model + the VM's residuals:
    where the stop falls is a threshold effect of a noisy dirty-rate reading, so the model of an earlier run
    can be off by a budget step the VM never had. Why not the pair's offset for a VM with history: it is
    learned from other VMs' runs minutes or days before, and on the lab it carried their load into the
    estimate (the 17:34 benchmark run: 6 of 11 warm runs within the target with it, 8 without).
    Post-copy pauses only for the switch: the pre-copy pair offset does not apply.
    """
    postcopy = inputs.mode is MoveMode.POSTCOPY
    offset = 0.0 if postcopy else pair.downtime_offset_ms
    switchover = POSTCOPY_SWITCHOVER_MS if postcopy else DEFAULT_SWITCHOVER_MS
    link_now = inputs.link_mib_s or 0.0

    def rescaled(s: MoveSample) -> float:
        measured = s.measured_downtime_ms or 0.0
        scale = s.link_mib_s / link_now if s.link_mib_s and link_now else 1.0
        return switchover + max(0.0, measured - switchover) * scale

    mine = _robust(
        [
            rescaled(s)
            for s in history
            if inputs.vm_uuid
            and s.vm_uuid == inputs.vm_uuid
            and s.family == inputs.family
            and s.measured_downtime_ms is not None
        ][:WINDOW]
    )
    floor = min(phys.downtime_ms, POSTCOPY_SWITCHOVER_MS)
    if mine:
        # Without a dirty-rate reading the model cannot place the stop (nor tell post-copy's switch): no vote.
        weight = MODEL_DOWNTIME_WEIGHT if inputs.dirty_rate_mib_s is not None else 0
        point = max(floor, _shrunk(mine, phys.downtime_ms, weight=weight))
        if len(mine) < 3:
            return _Downtime(point, point * (1 - 3 * MIN_SPREAD), point * (1 + 3 * MIN_SPREAD))
        values = [*mine, phys.downtime_ms] if weight else mine
        return _Downtime(
            point,
            min(point * (1 - MIN_SPREAD), _quantile(values, 0.1)),
            max(point * (1 + MIN_SPREAD), _quantile(values, 0.9)),
        )
    point = max(floor, phys.downtime_ms + offset)
    residuals = [] if postcopy else list(pair.downtime_residuals)
    if len(residuals) < 3:
        return _Downtime(point, point * COLD_SPREAD[0], point * COLD_SPREAD[1])
    return _Downtime(
        point,
        min(point * (1 - MIN_SPREAD), max(floor, phys.downtime_ms + _quantile(residuals, 0.1))),
        max(point * (1 + MIN_SPREAD), phys.downtime_ms + _quantile(residuals, 0.9)),
    )


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.1f}" if seconds < 10 else f"{seconds:.0f}"


def estimate(inputs: MoveInputs, history: Sequence[MoveSample] = (), *, now: datetime | None = None) -> Estimate:
    """The calibrated prediction for one move (pure; see the module docstring).

    The lab's vm42 (64 MiB, 33 MiB of it non-zero, dirtying 4 MiB/s) over a 200 MiB/s link: ~170 MiB/s
    of throughput, 0.3 s fixed, 33 MiB in 0.19 s, ~0.8 MiB re-sent; the lab measures 0.50-0.56 s, 38-51 ms.

    >>> e = estimate(MoveInputs(64 * MIB, 4.0, 200.0, transferable_bytes=33 * MIB))
    >>> e.total_s, e.downtime_ms, e.basis
    (0.53, 36.9, 'model only: no history')
    >>> e.verdict
    'converges in ~0.5 s (0.4–0.7 s), downtime ~37 ms (26–77 ms); model only: no history'
    """
    ok = usable(history, now)
    pair = learn_pair(inputs.source, inputs.destination, ok)
    phys = physics(inputs, pair)
    if phys is None:
        return Estimate.without_figures(
            "no link bandwidth",
            "cannot predict: the link bandwidth is unknown; set the host pair's link_mib_s in the hosts file",
        )
    if not phys.converges:
        return Estimate.without_figures(
            "model",
            f"will not converge: dirty rate {inputs.dirty_rate_mib_s or 0:.1f} MiB/s against ~"
            f"{phys.throughput_mib_s:.0f} MiB/s of throughput ({inputs.link_mib_s:g} MiB/s link); use"
            " --postcopy or --auto-converge",
            converges=False,
            passes=phys.passes,
            model_total_s=phys.total_s,
            throughput_mib_s=phys.throughput_mib_s,
        )
    rep = _repeat(inputs, ok, pair, phys)
    offline = inputs.mode is MoveMode.OFFLINE
    dt = _downtime(inputs, ok, pair, phys)
    if not ok:  # the model alone: its own spread (lab cold runs)
        dt = _Downtime(phys.downtime_ms, phys.downtime_ms * COLD_SPREAD[0], phys.downtime_ms * COLD_SPREAD[1] * 1.5)
    if rep is not None:
        total, lo, hi, basis, n = rep.total_s, rep.total_low, rep.total_high, rep.basis, rep.samples
    else:
        total, n = phys.total_s, pair.samples
        lo, hi = (0.8, 1.25) if pair.samples >= 3 else COLD_SPREAD
        pairs = f"{inputs.source}→{inputs.destination}"
        basis = (
            f"model with throughput and fixed cost from {n} earlier migration{'s' if n != 1 else ''} {pairs}"
            if n
            else "model only: no history"
        )
    est = Estimate(
        True,
        round(total, 2),
        round(total * lo, 2),
        round(total * hi, 2),
        None if offline else round(dt.point_ms, 1),
        None if offline else round(dt.low_ms, 1),
        None if offline else round(dt.high_ms, 1),
        phys.passes,
        round(phys.total_s, 3),
        round(phys.downtime_ms, 2),
        round(phys.throughput_mib_s, 1),
        basis,
        n,
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
    if not bps and num("time_elapsed") > 0:
        # libvirt reports memory_bps 0 for a move that ended within QEMU's first rate interval (short lab moves):
        # the bytes it sent over the job's elapsed time is the throughput it got.
        bps = (num("memory_processed") or num("memory_normal_bytes")) / (num("time_elapsed") / 1000)
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
        link_mib_s=prediction.bandwidth_mib_s,
        disk_bytes=prediction.disk_bytes,
        postcopy_switch_s=prediction.postcopy_switch_s,
    )


@dataclass(frozen=True)
class PairReport:
    """How well predictions matched on one host pair (`migrate-bot calibration`)."""

    source: str
    destination: str
    migrations: int  # finished migrations with a prediction
    learned_from: int  # succeeded ones, the only ones calibration learns from
    total_error_median: float | None  # |predicted - measured| / measured
    total_error_p90: float | None
    downtime_error_median: float | None
    downtime_error_p90: float | None
    throughput_mib_s: float | None  # median memory_bps of the plain live samples
    efficiency: float  # learned share of the declared link
    fixed_s: float  # learned fixed cost
    pair_samples: int  # samples the throughput share and fixed cost come from (0: defaults)
    downtime_offset_ms: float = 0.0  # learned: measured - modelled pause on this pair (hand-over, queues)

    def to_json(self) -> dict[str, object]:
        """The `migrate-bot calibration --json` row: every field, by its name."""
        return asdict(self)


def _errors(pairs: list[tuple[float | None, float | None]]) -> list[float]:
    return [abs(p - m) / m for p, m in pairs if p is not None and m]


def calibration_report(history: Sequence[MoveSample], now: datetime | None = None) -> list[PairReport]:
    """Per host pair, sorted: counts, median and p90 error of the predicted total and downtime, and what was
    learned (the same `learn_pair` the estimate uses)."""
    pairs = sorted({(s.source, s.destination) for s in history})
    out = []
    for source, destination in pairs:
        mine = [s for s in history if s.source == source and s.destination == destination]
        ok = usable(mine, now)
        totals = _errors([(s.predicted_total_s, s.measured_total_s) for s in ok])
        downs = _errors([(s.predicted_downtime_ms, s.measured_downtime_ms) for s in ok])
        bps = [s.throughput_mib_s for s in ok if s.throughput_mib_s and _plain_live(s)]
        pair = learn_pair(source, destination, ok)
        out.append(
            PairReport(
                source=source,
                destination=destination,
                migrations=len(mine),
                learned_from=len(ok),
                total_error_median=round(statistics.median(totals), 3) if totals else None,
                total_error_p90=round(_quantile(totals, 0.9), 3) if totals else None,
                downtime_error_median=round(statistics.median(downs), 3) if downs else None,
                downtime_error_p90=round(_quantile(downs, 0.9), 3) if downs else None,
                throughput_mib_s=round(statistics.median(bps), 1) if bps else None,
                efficiency=pair.efficiency,
                fixed_s=pair.fixed_s,
                pair_samples=pair.samples,
                downtime_offset_ms=pair.downtime_offset_ms,
            )
        )
    return out
