"""The seam between drain planning and the prediction: how long one move takes on a share of the link (pure).

A drain planner asks one question many times: "if this VM gets B MiB/s, how long does its move take, what is
its downtime, and does it still meet its downtime target?" `MoveEstimator` is that question; `ModelEstimator`
answers it with the older analytic model (planning/prediction.py); `CalibratedEstimator` with the card's
calibrated prediction (planning/estimate.py), which the runner uses. Any other prediction plugs in by
implementing the same one-method Protocol, without touching placement or scheduling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from migration_core.errors import MigrateBotError
from migration_core.limits import DEFAULT_MAX_DOWNTIME_MS
from migration_core.models import MigrationMode, MigrationOptions, MoveSample, Prediction
from migration_core.planning.advice import (
    AUTO_CONVERGE_INCREMENT_PCT,
    AUTO_CONVERGE_INITIAL_PCT,
)
from migration_core.planning.estimate import MoveInputs, estimate, mode_of, to_prediction
from migration_core.planning.prediction import (
    DEFAULT_SETUP_S,
    PRECOPY_SWITCHOVER_MS,
    AutoConverge,
    predict_postcopy,
    predict_precopy,
)
from migration_core.units import MIB


@dataclass(frozen=True)
class MoveLoad:
    """What a move has to carry: the VM's memory and dirty rate (live), disks to copy, and the mode."""

    vm: str
    memory_bytes: int
    dirty_rate_mib_s: float | None
    mode: MigrationMode = MigrationMode.LIVE
    copy_bytes: int = 0
    transferable_bytes: int | None = None  # what pass 1 really sends (RSS), when known
    source: str = ""
    destination: str = ""
    vm_uuid: str = ""
    copy_virtual_bytes: int = 0  # the copied disks' virtual size (the mirror walks it all)


@dataclass(frozen=True)
class MoveEstimate:
    """One move at one bandwidth: duration, downtime, whether the downtime target holds, and the model's words."""

    total_s: float
    downtime_ms: float
    meets_target: bool
    verdict: str
    prediction: Prediction | None = None


class MoveEstimator(Protocol):
    """How long a move takes at `bandwidth_mib_s` with these options (the drain planner's only question)."""

    def estimate(self, load: MoveLoad, bandwidth_mib_s: float, options: MigrationOptions) -> MoveEstimate: ...


def downtime_target_ms(options: MigrationOptions) -> int:
    """The downtime each VM must meet: --max-downtime, else QEMU's default (300 ms)."""
    return options.max_downtime_ms or DEFAULT_MAX_DOWNTIME_MS


def move_inputs(load: MoveLoad, link_mib_s: float | None, options: MigrationOptions) -> MoveInputs:
    """The calibrated estimate's inputs for one move: what it carries, on `link_mib_s`, with its options. One
    definition for the card (preflight's runner) and the drain planner, so their figures for a move agree.

    >>> i = move_inputs(MoveLoad("vm42", 64 * MIB, 4.0, copy_bytes=MIB), 100.0, MigrationOptions(postcopy=True))
    >>> i.mode.value, i.max_downtime_ms, i.disk_bytes, i.link_mib_s
    ('post-copy', 300, 1048576, 100.0)
    """
    return MoveInputs(
        memory_bytes=load.memory_bytes,
        dirty_rate_mib_s=load.dirty_rate_mib_s,
        link_mib_s=link_mib_s,
        transferable_bytes=load.transferable_bytes,
        mode=mode_of(
            offline=load.mode is MigrationMode.OFFLINE,
            postcopy=options.wants_postcopy,
            auto_converge=options.auto_converge,
        ),
        parallel_connections=options.parallel_connections,
        disk_bytes=load.copy_bytes,
        disk_virtual_bytes=load.copy_virtual_bytes,
        max_downtime_ms=downtime_target_ms(options),
        postcopy_after_s=options.postcopy_after_s,
        vm_uuid=load.vm_uuid,
        vm=load.vm,
        source=load.source,
        destination=load.destination,
    )


class ModelEstimator:
    """Today's model: pre-copy (or auto-converge when asked), then post-copy when allowed and pre-copy would not
    converge; disks copied with --copy-storage go over the same share of the link first.

    Without a measured dirty rate the first pass is all that can be timed; the move is then assumed to meet its
    target (the single-move plan says the same: "cannot predict convergence").

    >>> est = ModelEstimator().estimate(MoveLoad("vm42", 256 * MIB, 7.8), 200.0, MigrationOptions())
    >>> est.total_s, est.meets_target
    (2.3, True)
    >>> busy = MoveLoad("busy", 256 * MIB, 31.2)
    >>> ModelEstimator().estimate(busy, 16.0, MigrationOptions()).meets_target
    False
    >>> ModelEstimator().estimate(busy, 16.0, MigrationOptions(postcopy=True)).downtime_ms
    5.0
    """

    def estimate(self, load: MoveLoad, bandwidth_mib_s: float, options: MigrationOptions) -> MoveEstimate:
        bandwidth = min(bandwidth_mib_s, float(options.bandwidth_mib_s or bandwidth_mib_s))
        copy_s = load.copy_bytes / MIB / bandwidth if bandwidth > 0 else 0.0
        if load.mode is MigrationMode.OFFLINE:
            total = round(DEFAULT_SETUP_S + copy_s, 1)
            return MoveEstimate(total, 0.0, True, f"offline: only the definition moves (~{total:g} s)")
        target = downtime_target_ms(options)
        try:
            throttle = AutoConverge(AUTO_CONVERGE_INITIAL_PCT, AUTO_CONVERGE_INCREMENT_PCT)
            p = predict_precopy(
                load.memory_bytes, load.dirty_rate_mib_s, bandwidth, target,
                auto_converge=throttle if options.auto_converge else None,
            )  # fmt: skip
            if p.converges is False and options.wants_postcopy:
                p = predict_postcopy(load.memory_bytes, load.dirty_rate_mib_s, bandwidth)
        except MigrateBotError as err:
            first_pass = DEFAULT_SETUP_S + load.memory_bytes / MIB / max(bandwidth, 1e-9) + copy_s
            return MoveEstimate(round(first_pass, 1), float(target), True, f"could not predict: {err.message}")
        if p.total_s is None:  # unmeasured dirty rate (converges None) or no convergence
            first_pass = round(DEFAULT_SETUP_S + load.memory_bytes / MIB / max(bandwidth, 1e-9) + copy_s, 1)
            met = p.converges is not False
            return MoveEstimate(first_pass, float(target) if met else float("inf"), met, p.verdict, p)
        downtime = p.downtime_ms if p.downtime_ms is not None else float(target)
        return MoveEstimate(round(p.total_s + copy_s, 1), downtime, p.converges is True, p.verdict, p)


class CalibratedEstimator:
    """The card's calibrated prediction (planning/estimate.py) behind the same seam, so a drain's per-move times
    match what `/migrate plan <vm> to <host>` says. `history` gives earlier runs per (VM UUID, source,
    destination), prefetched by the caller (the planner is pure); without it the estimate is "model only".

    >>> est = CalibratedEstimator().estimate(MoveLoad("vm42", 64 * MIB, 4.0, transferable_bytes=33 * MIB),
    ...                                      200.0, MigrationOptions())
    >>> est.total_s, est.meets_target
    (0.53, True)
    """

    def __init__(self, history: Mapping[tuple[str, str, str], Sequence[MoveSample]] | None = None) -> None:
        self.history = history or {}

    def estimate(self, load: MoveLoad, bandwidth_mib_s: float, options: MigrationOptions) -> MoveEstimate:
        bandwidth = min(bandwidth_mib_s, float(options.bandwidth_mib_s or bandwidth_mib_s))
        inputs = move_inputs(load, bandwidth, options)
        est = estimate(inputs, self.history.get((load.vm_uuid, load.source, load.destination), ()))
        prediction = to_prediction(est, inputs)
        if load.mode is MigrationMode.OFFLINE:
            return MoveEstimate(est.total_s or DEFAULT_SETUP_S, 0.0, True, est.verdict, prediction)
        if est.total_s is None:  # unmeasured dirty rate, or no link: time the first pass, as ModelEstimator does
            first_pass = round(DEFAULT_SETUP_S + load.memory_bytes / MIB / max(bandwidth, 1e-9), 1)
            met = est.converges is not False
            return MoveEstimate(first_pass, float(inputs.max_downtime_ms) if met else float("inf"), met,
                                est.verdict, prediction)  # fmt: skip
        downtime = est.downtime_ms if est.downtime_ms is not None else float(inputs.max_downtime_ms)
        met = est.converges is not False and downtime <= inputs.max_downtime_ms + PRECOPY_SWITCHOVER_MS
        return MoveEstimate(est.total_s, downtime, met, est.verdict, prediction)
