"""Post-migration verification: where the VM really is on both hosts, against what the flags promised.

`verify` reads the VM's state on both hosts (never trusting the migrate call's return alone), compares it
with what the plan's flags promise (running or paused or shut off on the destination; gone, or shut off and
still defined, on the source; persistent or transient on the destination), flags a split-brain, compares
the measured downtime with the target, and on failure tells the operator the true state and the next step
(post-copy failures get the POSTCOPY_RESUME recovery). The judgement is `judge`, a pure function.
"""

from __future__ import annotations

import asyncio

from migration_core.errors import HypervisorError
from migration_core.execution.types import ExecutionResult
from migration_core.execution.verify_checks import (
    Observed,
    downtime_ms,
    failure_checks,
    failure_next_step,
    liveness_check,
    measured_total_s,
    numbers_checks,
    success_checks,
    target_ms,
)
from migration_core.hypervisor.port import HypervisorPort
from migration_core.hypervisor.types import DomainInfo, DomainState, JobStats
from migration_core.models import (
    CheckResult,
    CheckStatus,
    JobState,
    MigrationMode,
    Plan,
    VerificationSummary,
)
from migration_core.units import MIB


def _flags(plan: Plan) -> frozenset[str]:
    return frozenset(f.removeprefix("VIR_MIGRATE_") for f in plan.flags)


async def verify(
    plan: Plan, hypervisor: HypervisorPort, result: ExecutionResult, *, liveness_window_s: float = 1.0
) -> VerificationSummary:
    """Check the outcome on both hosts and build the summary (never raises for an unreachable host).

    Guest liveness: the destination's vCPU time is read twice, `liveness_window_s` apart (its vCPUs ran: the
    guest executes), and the guest agent is pinged when one is configured."""
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
    advance, why = None, None
    if dest is not None and dest.state is DomainState.RUNNING:
        advance, why = await _cpu_advance_ns(hypervisor, result.destination_uri, vm, liveness_window_s)
    if dest is not None and dest.active and await _agent_configured(hypervisor, result.destination_uri, vm):
        agent = await hypervisor.guest_agent_ping(result.destination_uri, vm)
    observed = Observed(
        seen["source"], dest, errors["source"], errors["destination"], agent, advance, liveness_window_s, why
    )
    return judge(plan, result, observed)


async def _cpu_advance_ns(
    hypervisor: HypervisorPort, uri: str, vm: str, window_s: float
) -> tuple[int | None, str | None]:
    try:
        before = await hypervisor.cpu_time_ns(uri, vm)
        await asyncio.sleep(window_s)
        return await hypervisor.cpu_time_ns(uri, vm) - before, None
    except HypervisorError as err:
        return None, f"could not read the vCPU time ({err.message})"


async def _agent_configured(hypervisor: HypervisorPort, uri: str, vm: str) -> bool:
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
            f"do not destroy {vm} on either host. Restore the link between {a} and {b}, then resume the "
            f"post-copy migration (the bot's post-copy recovery; by hand on {a}: `virsh domjobabort --postcopy "
            f"{vm}` if it still shows a job, then `virsh migrate {vm} --live --p2p --postcopy "
            f"--postcopy-resume <{b} peer URI>`)"
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
        checks.extend(success_checks(plan, flags, seen))
        if any(c.status is CheckStatus.FAIL for c in checks):
            outcome = JobState.FAILED
            next_step = f"inspect {vm} on both hosts (`virsh list --all`) before retrying"
    else:
        checks.extend(failure_checks(plan, result, seen))
        next_step = failure_next_step(plan, result, seen)
    checks.extend(numbers_checks(plan, result))
    evidence: str | None = None
    if outcome is JobState.SUCCEEDED and plan.mode is MigrationMode.LIVE:
        alive = liveness_check(plan, seen)
        checks.append(alive)
        evidence = alive.reason
        if seen.agent is None:
            checks.append(CheckResult("guest_agent", CheckStatus.SKIPPED, "no guest agent configured"))
        if alive.status is CheckStatus.FAIL:
            outcome = JobState.FAILED
            next_step = f"inspect {vm} on both hosts (`virsh list --all`) before anything else writes to its disks"
    if seen.agent is not None:
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
    total_s = measured_total_s(result)
    data = stats.get_int("data_processed") if stats else None
    return VerificationSummary(
        job_id=result.job_id,
        outcome=outcome,
        headline=_headline(plan, outcome, result, total_s, stats, seen),
        checks=tuple(checks),
        source_state=_state(src, seen.source_error),
        destination_state=_state(dst, seen.destination_error),
        downtime_ms=downtime_ms(stats),
        downtime_target_ms=target_ms(plan) if plan.mode is MigrationMode.LIVE else None,
        total_s=total_s,
        data_bytes=data or None,
        throughput_mib_s=round(data / MIB / total_s, 1) if data and total_s else None,
        iterations=stats.get_int("memory_iteration") if stats and "memory_iteration" in stats.values else None,
        next_step=next_step,
        evidence=evidence,
    )


def _moved(plan: Plan, src: DomainInfo, dst: DomainInfo) -> bool:
    """Nova's heuristic from the other side: gone (or shut off) on the source and there on the destination."""
    gone = not src.active
    if plan.mode is MigrationMode.OFFLINE:
        return False  # an offline move cannot be told apart from "never started" by state alone
    return gone and dst.active


def _headline(
    plan: Plan,
    outcome: JobState,
    result: ExecutionResult,
    total_s: float | None,
    stats: JobStats | None,
    seen: Observed,
) -> str:
    vm, a, b = plan.request.vm, plan.source, plan.destination
    kind = "offline" if plan.mode is MigrationMode.OFFLINE else ("post-copy" if result.postcopy else "live")
    if outcome is JobState.SUCCEEDED:
        where = "defined (shut off)" if plan.mode is MigrationMode.OFFLINE else "running"
        extra = f", {total_s:.1f} s" if total_s else ""
        downtime = downtime_ms(stats)
        if downtime is not None and plan.mode is MigrationMode.LIVE:
            extra += f", downtime {downtime} ms"
        return f"{vm} is {where} on {b} ({kind} migration from {a}{extra})"
    where = _where(seen, a, b)
    if outcome is JobState.ABORTED:
        return f"{kind} migration of {vm} to {b} was aborted; {vm} {where}"
    return f"{kind} migration of {vm} from {a} to {b} failed; {vm} {where}"


def _where(seen: Observed, a: str, b: str) -> str:
    """Where the VM is now, in a few words, from both hosts' answers."""
    src, dst = seen.source, seen.destination
    if src is not None and src.postcopy_failed:
        return f"is split between {a} and {b} (post-copy broke)"
    if src is not None and src.state is DomainState.RUNNING:
        if dst is not None and dst.state is DomainState.RUNNING:
            return f"stays on {a} (and runs on {b} too!)"
        leftover = dst is not None and dst.active
        return f"stays on {a}" + (f" ({b} still holds a paused incoming copy)" if leftover else "")
    if dst is not None and dst.state is DomainState.RUNNING:
        return f"runs on {b}"
    if src is None or dst is None:
        return "is in an unknown state (a host did not answer)"
    return f"runs on neither host ({a}: {src.describe()}; {b}: {dst.describe()})"
