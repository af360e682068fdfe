"""What to do when pre-copy will not converge: the recommendation shown with the plan (pure).

Each suggestion says what the bot will set and why, with the model's figures for it (estimate.py), in the
order an operator should consider them: post-copy (when the VM's devices allow it), auto-converge, parallel
connections on fast links (seed 12.4), then a larger max downtime.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from migration_core.facts.vm import VmFacts
from migration_core.limits import DEFAULT_MAX_DOWNTIME_MS
from migration_core.models import CheckResult, CheckStatus, MigrationRequest, Prediction
from migration_core.planning.estimate import Estimate, MoveInputs, MoveMode, estimate
from migration_core.preflight import postcopy_blockers
from migration_core.units import mib_s_to_gbit_s

# Auto-converge throttle. QEMU's defaults (20 %, +10 %) did not converge the lab's busy guest in 40 s at
# 16 MiB/s; 50 %/+25 % did (lab.md §7). An operator asks for auto-converge when a VM will not converge, so
# the bot starts firm.
AUTO_CONVERGE_INITIAL_PCT = 50
AUTO_CONVERGE_INCREMENT_PCT = 25
# Downtimes the advice tries, smallest first; beyond 5 s a "live" migration is not live any more.
DOWNTIME_CANDIDATES_MS = (500, 1000, 2000, 5000)
TEN_GBIT_MIB_S = 1192.09
MAX_PARALLEL_CONNECTIONS = 255  # QEMU's multifd-channels is a uint8


def parallel_connections_for(link_mib_s: float) -> int:
    """Multi-FD channels for a link: one per 10 Gbit/s, at least 2 (seed 12.4: "one channel for each 10
    Gbps of available network bandwidth. The default value is 2 channels"). Rounded to the nearest channel so
    that a nominal 40 Gbit/s link configured as 4768 or 4770 MiB/s gets the same answer.

    >>> [parallel_connections_for(x) for x in (200, 1192, 2981, 4768, 11921)]
    [2, 2, 3, 4, 10]
    """
    if link_mib_s <= 0:
        return 2
    per_10g = math.floor(mib_s_to_gbit_s(link_mib_s) / 10 + 0.5)
    return max(2, min(per_10g, MAX_PARALLEL_CONNECTIONS))


def recommend(
    prediction: Prediction | None,
    request: MigrationRequest,
    vm: VmFacts | None,
    checks: Sequence[CheckResult],
) -> str | None:
    """Advice when the prediction says pre-copy will not converge; None when it converges or is unknown."""
    if prediction is None or prediction.converges is not False:
        return None
    opts = request.options
    bw = prediction.bandwidth_mib_s
    memory = vm.memory_bytes if vm is not None else 0
    max_dt = opts.max_downtime_ms or DEFAULT_MAX_DOWNTIME_MS
    can_model = memory > 0 and bw is not None and bw > 0
    lines = [f"Pre-copy will not converge ({prediction.verdict})."]
    blockers = list(postcopy_blockers(vm))
    if any(c.name == "options.postcopy" and c.status is CheckStatus.FAIL for c in checks) and not blockers:
        blockers.append("a failed post-copy check")
    wants_postcopy = opts.postcopy or opts.postcopy_after_s is not None
    if blockers:
        lines.append(f"- Post-copy is not possible for this VM: it has {', '.join(blockers)}.")
    elif wants_postcopy:
        when = f"after {opts.postcopy_after_s:g} s of pre-copy" if opts.postcopy_after_s else "when pre-copy stalls"
        figures = f" Model: {_figure(prediction, memory, MoveMode.POSTCOPY, max_dt).verdict}." if can_model else ""
        lines.append(f"- Post-copy is enabled: the bot switches to post-copy {when}.{figures}")
    else:
        figures = f" Model: {_figure(prediction, memory, MoveMode.POSTCOPY, max_dt).verdict}." if can_model else ""
        lines.append(
            "- Post-copy: add --postcopy (or --postcopy-after 60s). The bot sets VIR_MIGRATE_POSTCOPY and "
            "switches once pre-copy stalls; the guest then runs on the destination and pulls the rest, so "
            "it always finishes, but a network failure after the switch leaves the VM paused until "
            f"resumed.{figures}"
        )
    if not opts.auto_converge:
        figures = ""
        if can_model:
            ac = _figure(prediction, memory, MoveMode.AUTO_CONVERGE, max_dt)
            figures = f" Model: {ac.verdict}."
        lines.append(
            "- Auto-converge: add --auto-converge. The bot sets VIR_MIGRATE_AUTO_CONVERGE with a "
            f"{AUTO_CONVERGE_INITIAL_PCT} % vCPU throttle, +{AUTO_CONVERGE_INCREMENT_PCT} % per pass; it "
            f"helps only when the guest's CPUs do the dirtying, and slows the guest meanwhile.{figures}"
        )
    if bw is not None and bw >= TEN_GBIT_MIB_S and opts.parallel_connections is None:
        n = parallel_connections_for(bw)
        lines.append(
            f"- Parallel connections: add --parallel {n}. One connection per 10 Gbit/s of link (seed 12.4); "
            f"one stream rarely fills a {mib_s_to_gbit_s(bw):.0f} Gbit/s link, so the bot sets "
            f"VIR_MIGRATE_PARALLEL with parallel.connections={n}."
        )
    lines.append(_downtime_advice(prediction, memory, max_dt, can_model))
    return "\n".join(line for line in lines if line)


def _figure(prediction: Prediction, memory: int, mode: MoveMode, max_downtime_ms: int) -> Estimate:
    """The estimate (planning/estimate.py, model only) of this move in another mode or with another budget,
    from the inputs the prediction was made with."""
    return estimate(
        MoveInputs(
            memory_bytes=memory,
            dirty_rate_mib_s=prediction.dirty_rate_mib_s,
            link_mib_s=prediction.bandwidth_mib_s,
            transferable_bytes=prediction.transferable_bytes,
            mode=mode,
            disk_bytes=prediction.disk_bytes,
            max_downtime_ms=max_downtime_ms,
        )
    )


def _downtime_advice(prediction: Prediction, memory: int, max_dt: int, can_model: bool) -> str:
    if not can_model:
        return (
            f"- A larger max downtime (--max-downtime, now {max_dt} ms) lets the final pause absorb more "
            "dirty memory; the bot ramps up to it in steps."
        )
    for candidate in DOWNTIME_CANDIDATES_MS:
        if candidate <= max_dt:
            continue
        p = _figure(prediction, memory, MoveMode.PRECOPY, candidate)
        if p.converges:
            return (
                f"- A larger max downtime: --max-downtime {candidate}ms would let pre-copy finish "
                f"({p.verdict}); the bot ramps the downtime up to it in steps, so the guest pauses that "
                "long only if it must."
            )
    return (
        f"- A larger max downtime does not help: even {DOWNTIME_CANDIDATES_MS[-1]} ms is not enough at this "
        "dirty rate; lower the guest's load or migrate off-peak."
    )
