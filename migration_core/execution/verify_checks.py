"""The individual verification checks (pure): what the destination and source must look like after a
success, what a failure leaves behind, and the measured numbers against the targets. verify.py assembles them.
"""

from __future__ import annotations

from dataclasses import dataclass

from migration_core.execution.types import ExecutionResult
from migration_core.hypervisor.types import DomainInfo, DomainState, JobStats
from migration_core.models import CheckResult, CheckStatus, JobState, MigrationMode, Plan


@dataclass(frozen=True)
class Observed:
    """What verification saw: the VM on both hosts (None = that host did not answer) and the guest agent."""

    source: DomainInfo | None
    destination: DomainInfo | None
    source_error: str | None = None
    destination_error: str | None = None
    agent: str | None = None  # "answered", "no answer: ...", or None when no agent is configured
    # vCPU time the VM used on the destination over `liveness_window_s` right after the move (None: not read)
    cpu_advance_ns: int | None = None
    liveness_window_s: float = 1.0
    liveness_error: str | None = None


def liveness_check(plan: Plan, seen: Observed) -> CheckResult:
    """Is the guest alive on the destination? Evidence without an agent: its vCPUs ran (vCPU time advanced over
    about a second) while the source's copy is not running; with an agent, its answer as well. A check that
    could not run says so (SKIPPED), never "passed"."""
    name, b, vm = "guest_liveness", plan.destination, plan.request.vm
    dst, src = seen.destination, seen.source
    if dst is None or dst.state is not DomainState.RUNNING:
        why = "it is not running there" if dst is not None else f"{b} did not answer"
        return CheckResult(name, CheckStatus.SKIPPED, why)
    evidence: list[str] = []
    if seen.cpu_advance_ns is not None:
        ms = seen.cpu_advance_ns / 1e6
        if seen.cpu_advance_ns <= 0:
            return CheckResult(
                name,
                CheckStatus.WARN,
                f"{vm} is 'running' on {b} but its vCPUs did not run in {seen.liveness_window_s:.1f} s "
                "(vCPU time did not advance): the guest may be hung",
                f"look at its console on {b} (`virsh console {vm}`) and its QEMU log",
            )
        evidence.append(f"vCPU time +{ms:.1f} ms in {seen.liveness_window_s:.1f} s on {b}")
    if seen.agent == "answered":
        evidence.append("guest agent answered")
    elif seen.agent is not None and not evidence:
        return CheckResult(name, CheckStatus.WARN, f"the guest agent {seen.agent}", "log in to the guest and check it")
    if not evidence:
        why = seen.liveness_error or "vCPU time unreadable and no guest agent"
        return CheckResult(name, CheckStatus.SKIPPED, why)
    if src is not None and src.state is DomainState.RUNNING:
        return CheckResult(
            name,
            CheckStatus.FAIL,
            f"{vm} runs on {b} ({'; '.join(evidence)}) but the source's copy runs too",
            "find out which copy is live before anything else writes to its disks",
        )
    src_note = f"{plan.source}'s copy is not running" if src is not None else f"{plan.source} did not answer"
    return CheckResult(name, CheckStatus.PASS, f"alive: {'; '.join(evidence)}; {src_note}")


def success_checks(plan: Plan, flags: frozenset[str], seen: Observed) -> list[CheckResult]:
    src, dst, a, b = seen.source, seen.destination, plan.source, plan.destination
    out: list[CheckResult] = []
    if dst is None:
        out.append(
            CheckResult(
                "destination",
                CheckStatus.WARN,
                f"{b} did not answer: {seen.destination_error}",
                f"check {b}'s libvirtd, then `virsh list --all` there",
            )
        )
    else:
        if plan.mode is MigrationMode.OFFLINE:
            want, ok = "defined and shut off", dst.present and not dst.active
        elif "PAUSED" in flags:
            want, ok = "paused (--suspend)", dst.state is DomainState.PAUSED
        else:
            want, ok = "running", dst.state is DomainState.RUNNING
        out.append(
            CheckResult(
                "destination",
                CheckStatus.PASS if ok else CheckStatus.FAIL,
                f"on {b}: {dst.describe()} (expected {want})",
                None if ok else f"look at the QEMU log of {plan.request.vm} on {b}",
            )
        )
        persist = "PERSIST_DEST" in flags
        if dst.present:
            good = dst.persistent == persist
            out.append(
                CheckResult(
                    "persistence",
                    CheckStatus.PASS if good else CheckStatus.WARN,
                    f"{'persistent' if dst.persistent else 'transient'} on {b} "
                    f"(asked: {'persistent' if persist else 'transient'})",
                    None if good else "define it on the destination with `virsh define`",
                )
            )
    if src is None:
        out.append(
            CheckResult(
                "source",
                CheckStatus.WARN,
                f"{a} did not answer: {seen.source_error}",
                f"check that {plan.request.vm} is not running on {a} before using it on {b}",
            )
        )
    elif "UNDEFINE_SOURCE" in flags:
        good = not src.present
        out.append(
            CheckResult(
                "source",
                CheckStatus.PASS if good else CheckStatus.WARN,
                f"on {a}: {src.describe()} (expected: undefined, --undefine-source)",
                None if good else f"undefine the stale definition on {a} with `virsh undefine`",
            )
        )
    else:
        good = not src.active
        expect = "shut off and still defined (no --undefine-source)" if src.present else "gone (it was transient)"
        out.append(
            CheckResult(
                "source",
                CheckStatus.PASS if good else CheckStatus.FAIL,
                f"on {a}: {src.describe()}; expected {expect}",
                None if good else f"{plan.request.vm} still runs on {a}: find out which copy is live",
            )
        )
    return out


def failure_checks(plan: Plan, result: ExecutionResult, seen: Observed) -> list[CheckResult]:
    src, dst, a = seen.source, seen.destination, plan.source
    out = [
        CheckResult(
            "migration",
            CheckStatus.FAIL,
            result.error or f"the migration {result.outcome.value}",
            result.hint,
        )
    ]
    want_src = "running" if plan.mode is MigrationMode.LIVE else "defined"
    if src is None:
        out.append(
            CheckResult(
                "source",
                CheckStatus.FAIL,
                f"{a} did not answer: {seen.source_error}",
                f"restore {a}'s libvirtd and check the VM with `virsh list --all`",
            )
        )
    else:
        ok = src.state is DomainState.RUNNING if plan.mode is MigrationMode.LIVE else src.present
        out.append(
            CheckResult(
                "source",
                CheckStatus.PASS if ok else CheckStatus.FAIL,
                f"on {a}: {src.describe()} (expected still {want_src})",
                None if ok else f"start or resume {plan.request.vm} on {a} (`virsh resume`/`start`)",
            )
        )
    if dst is not None:
        out.append(_destination_cleanup(plan, dst))
    return out


def _destination_cleanup(plan: Plan, dst: DomainInfo) -> CheckResult:
    """What a failed migration left on the destination. A paused incoming copy is normal for a while: libvirt
    destroys it when the destination notices the source's connection is gone (at once when the connection
    closes, after its keepalive when the link was cut), so it is a warning with a deadline, not a failure."""
    b, vm, name = plan.destination, plan.request.vm, "destination_cleanup"
    if not dst.active:
        return CheckResult(name, CheckStatus.PASS, f"on {b}: {dst.describe()}")
    if dst.state is DomainState.RUNNING:
        return CheckResult(
            name,
            CheckStatus.FAIL,
            f"on {b}: {dst.describe()} — a leftover copy that runs",
            f"destroy the leftover copy on {b} once you are sure the source's copy is the one that serves",
        )
    return CheckResult(
        name,
        CheckStatus.WARN,
        f"on {b}: {dst.describe()} — the paused incoming copy; {b}'s libvirtd removes it once it notices "
        "the migration's connection is gone",
        f"if it is still there in a minute, destroy it (`virsh destroy {vm}` on {b}); the source's copy is untouched",
    )


def failure_next_step(plan: Plan, result: ExecutionResult, seen: Observed) -> str:
    vm, a = plan.request.vm, plan.source
    where = f"{vm} still runs on {a}" if seen.source and seen.source.active else f"check {vm} on {a}"
    if result.outcome is JobState.ABORTED:
        return (
            f"{where}. To move it, retry with a strategy that converges (--postcopy or --auto-converge) "
            "or on a faster link"
        )
    return f"{where}. Fix the cause above, then retry (`/migrate plan {vm} to {plan.destination}` re-checks)"


def numbers_checks(plan: Plan, result: ExecutionResult) -> list[CheckResult]:
    if plan.mode is not MigrationMode.LIVE or result.outcome is not JobState.SUCCEEDED:
        return []
    downtime, target = downtime_ms(result.completed), target_ms(plan)
    if downtime is None:
        return [
            CheckResult(
                "downtime",
                CheckStatus.WARN,
                "the measured downtime is not available",
                "libvirt's completed-job statistics were not readable",
            )
        ]
    ok = target is None or downtime <= target
    why = f"measured downtime {downtime} ms" + (f" (target {target} ms)" if target is not None else "")
    return [
        CheckResult(
            "downtime",
            CheckStatus.PASS if ok else CheckStatus.WARN,
            why,
            None if ok else "the guest paused longer than the target: check its services",
        )
    ]


def downtime_ms(stats: JobStats | None) -> int | None:
    if stats is None or "downtime" not in stats.values:
        return None
    return stats.get_int("downtime")


def target_ms(plan: Plan) -> int | None:
    return plan.policy.max_downtime_ms or None


def measured_total_s(result: ExecutionResult) -> float | None:
    if result.completed is not None and "time_elapsed" in result.completed.values:
        return round(result.completed.get_int("time_elapsed") / 1000.0, 2)
    return round(result.wall_s, 2) if result.wall_s else None
