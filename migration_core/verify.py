"""Post-migration verification: where the VM really is on both hosts, against what the flags promised.

`verify` reads the VM's state on both hosts (never trusting the migrate call's return alone), compares it
with what the plan's flags promise (running or paused or shut off on the destination; gone, or shut off and
still defined, on the source; persistent or transient on the destination), flags a split-brain, compares
the measured downtime with the target, and on failure tells the operator the true state and the next step
(post-copy failures get the POSTCOPY_RESUME recovery). The judgement is `judge`, a pure function.
"""

from __future__ import annotations

from dataclasses import dataclass

from migration_core.errors import HypervisorError
from migration_core.executor_types import ExecutionResult
from migration_core.hypervisor import Hypervisor
from migration_core.hypervisor_types import DomainInfo, DomainState, JobStats
from migration_core.models import (
    CheckResult,
    CheckStatus,
    JobState,
    MigrationMode,
    Plan,
    VerificationSummary,
)

MIB = 1024 * 1024


@dataclass(frozen=True)
class Observed:
    """What verification saw: the VM on both hosts (None = that host did not answer) and the guest agent."""

    source: DomainInfo | None
    destination: DomainInfo | None
    source_error: str | None = None
    destination_error: str | None = None
    agent: str | None = None  # "answered", "no answer: ...", or None when no agent is configured


def _flags(plan: Plan) -> frozenset[str]:
    return frozenset(f.removeprefix("VIR_MIGRATE_") for f in plan.flags)


async def verify(plan: Plan, hypervisor: Hypervisor, result: ExecutionResult) -> VerificationSummary:
    """Check the outcome on both hosts and build the summary (never raises for an unreachable host)."""
    vm = plan.vm_uuid or plan.request.vm
    seen: dict[str, DomainInfo | None] = {}
    errors: dict[str, str | None] = {}
    for side, uri in (("source", result.source_uri), ("destination", result.destination_uri)):
        try:
            seen[side], errors[side] = await hypervisor.domain(uri, vm), None
        except HypervisorError as err:
            seen[side], errors[side] = None, str(err)
    agent: str | None = None
    dest = seen["destination"]
    if dest is not None and dest.active and await _agent_configured(hypervisor, result.destination_uri, vm):
        agent = await hypervisor.guest_agent_ping(result.destination_uri, vm)
    observed = Observed(seen["source"], dest, errors["source"], errors["destination"], agent)
    return judge(plan, result, observed)


async def _agent_configured(hypervisor: Hypervisor, uri: str, vm: str) -> bool:
    try:
        return await hypervisor.guest_agent_configured(uri, vm)
    except HypervisorError:
        return False


def _state(info: DomainInfo | None, error: str | None) -> str:
    return info.describe() if info is not None else f"unknown ({error or 'host did not answer'})"


def judge(plan: Plan, result: ExecutionResult, seen: Observed) -> VerificationSummary:
    """The pure verdict: checks, the true outcome, a headline and the next step."""
    flags = _flags(plan)
    src, dst = seen.source, seen.destination
    vm, a, b = plan.request.vm, plan.source, plan.destination
    checks: list[CheckResult] = []
    outcome = result.outcome
    next_step: str | None = None
    running_src = src is not None and src.state is DomainState.RUNNING
    running_dst = dst is not None and dst.state is DomainState.RUNNING
    postcopy_broken = [i for i in (src, dst) if i is not None and i.postcopy_failed]

    if postcopy_broken:
        where = " and ".join(
            f"{plan.source if i is src else plan.destination}: {i.describe()}" for i in postcopy_broken
        )
        checks.append(
            CheckResult(
                "postcopy",
                CheckStatus.FAIL,
                f"the post-copy migration broke: {where}; the VM's memory is split between the hosts",
                "recover with POSTCOPY_RESUME once the link is back (do not destroy either side)",
            )
        )
        outcome = JobState.FAILED
        next_step = (
            f"restore the link between {a} and {b}, then resume: `virsh migrate {vm} --live --p2p --postcopy "
            f"--postcopy-resume <{b} peer URI>` on {a} (the bot's resume action does the same)"
        )
    elif running_src and running_dst:
        checks.append(
            CheckResult(
                "split_brain",
                CheckStatus.FAIL,
                f"{vm} is running on both {a} and {b}",
                "keep the copy that serves clients; destroy the other after checking its disks",
            )
        )
        outcome = JobState.FAILED
        next_step = f"decide which copy of {vm} is authoritative before anything else writes to its disks"
    elif outcome is JobState.SUCCEEDED or (src is not None and dst is not None and _moved(plan, src, dst)):
        if outcome is not JobState.SUCCEEDED:
            checks.append(
                CheckResult(
                    "outcome",
                    CheckStatus.WARN,
                    f"libvirt reported a failure ({result.error}) but {vm} now lives on {b} only",
                    "treat the migration as done; check the guest",
                )
            )
            outcome = JobState.SUCCEEDED
        checks.extend(_success_checks(plan, flags, seen))
        if any(c.status is CheckStatus.FAIL for c in checks):
            outcome = JobState.FAILED
            next_step = f"inspect {vm} on both hosts (`virsh list --all`) before retrying"
    else:
        checks.extend(_failure_checks(plan, result, seen))
        next_step = _failure_next_step(plan, result, seen)
    checks.extend(_numbers_checks(plan, result))
    if outcome is JobState.SUCCEEDED and seen.agent is None and plan.mode is MigrationMode.LIVE:
        checks.append(CheckResult("guest_agent", CheckStatus.PASS, "not checked: no guest agent configured"))
    elif seen.agent is not None:
        ok = seen.agent == "answered"
        checks.append(
            CheckResult(
                "guest_agent",
                CheckStatus.PASS if ok else CheckStatus.WARN,
                f"guest agent {seen.agent}",
                None if ok else "log in to the guest and check it",
            )
        )
    stats = result.completed
    total_s = _total_s(result)
    data = stats.get_int("data_processed") if stats else None
    return VerificationSummary(
        job_id=result.job_id,
        outcome=outcome,
        headline=_headline(plan, outcome, result, total_s, stats),
        checks=tuple(checks),
        source_state=_state(src, seen.source_error),
        destination_state=_state(dst, seen.destination_error),
        downtime_ms=_downtime_ms(stats),
        downtime_target_ms=_target_ms(plan) if plan.mode is MigrationMode.LIVE else None,
        total_s=total_s,
        data_bytes=data or None,
        throughput_mib_s=round(data / MIB / total_s, 1) if data and total_s else None,
        iterations=stats.get_int("memory_iteration")
        if stats and "memory_iteration" in stats.values
        else None,
        next_step=next_step,
    )


def _moved(plan: Plan, src: DomainInfo, dst: DomainInfo) -> bool:
    """Nova's heuristic from the other side: gone (or shut off) on the source and there on the destination."""
    gone = not src.active
    if plan.mode is MigrationMode.OFFLINE:
        return False  # an offline move cannot be told apart from "never started" by state alone
    return gone and dst.active


def _success_checks(plan: Plan, flags: frozenset[str], seen: Observed) -> list[CheckResult]:
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
        expect = (
            "shut off and still defined (no --undefine-source)" if src.present else "gone (it was transient)"
        )
        out.append(
            CheckResult(
                "source",
                CheckStatus.PASS if good else CheckStatus.FAIL,
                f"on {a}: {src.describe()}; expected {expect}",
                None if good else f"{plan.request.vm} still runs on {a}: find out which copy is live",
            )
        )
    return out


def _failure_checks(plan: Plan, result: ExecutionResult, seen: Observed) -> list[CheckResult]:
    src, dst, a, b = seen.source, seen.destination, plan.source, plan.destination
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
        leftover = dst.active
        out.append(
            CheckResult(
                "destination_cleanup",
                CheckStatus.FAIL if leftover else CheckStatus.PASS,
                f"on {b}: {dst.describe()}" + (" — a leftover copy" if leftover else ""),
                f"destroy the leftover incoming copy on {b}" if leftover else None,
            )
        )
    return out


def _failure_next_step(plan: Plan, result: ExecutionResult, seen: Observed) -> str:
    vm, a = plan.request.vm, plan.source
    where = f"{vm} still runs on {a}" if seen.source and seen.source.active else f"check {vm} on {a}"
    if result.outcome is JobState.ABORTED:
        return (
            f"{where}. To move it, retry with a strategy that converges (--postcopy or --auto-converge) "
            "or on a faster link"
        )
    return f"{where}. Fix the cause above, then retry (`/migrate plan {vm} to {plan.destination}` re-checks)"


def _numbers_checks(plan: Plan, result: ExecutionResult) -> list[CheckResult]:
    if plan.mode is not MigrationMode.LIVE or result.outcome is not JobState.SUCCEEDED:
        return []
    downtime, target = _downtime_ms(result.completed), _target_ms(plan)
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


def _downtime_ms(stats: JobStats | None) -> int | None:
    if stats is None or "downtime" not in stats.values:
        return None
    return stats.get_int("downtime")


def _target_ms(plan: Plan) -> int | None:
    return plan.policy.max_downtime_ms or None


def _total_s(result: ExecutionResult) -> float | None:
    if result.completed is not None and "time_elapsed" in result.completed.values:
        return round(result.completed.get_int("time_elapsed") / 1000.0, 2)
    return round(result.wall_s, 2) if result.wall_s else None


def _headline(
    plan: Plan, outcome: JobState, result: ExecutionResult, total_s: float | None, stats: JobStats | None
) -> str:
    vm, a, b = plan.request.vm, plan.source, plan.destination
    kind = "offline" if plan.mode is MigrationMode.OFFLINE else ("post-copy" if result.postcopy else "live")
    if outcome is JobState.SUCCEEDED:
        where = "defined (shut off)" if plan.mode is MigrationMode.OFFLINE else "running"
        extra = f", {total_s:.1f} s" if total_s else ""
        downtime = _downtime_ms(stats)
        if downtime is not None and plan.mode is MigrationMode.LIVE:
            extra += f", downtime {downtime} ms"
        return f"{vm} is {where} on {b} ({kind} migration from {a}{extra})"
    if outcome is JobState.ABORTED:
        return f"{kind} migration of {vm} to {b} was aborted; {vm} stays on {a}"
    return f"{kind} migration of {vm} from {a} to {b} failed"
