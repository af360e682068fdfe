"""Builders of core objects (plans, jobs, samples, summaries) for the front-end unit tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from migration_core.drains import DrainStatus
from migration_core.facts.gathered import VmState
from migration_core.models import (
    Approval,
    ChatRefs,
    CheckResult,
    CheckStatus,
    ConvergencePolicy,
    CopyStorage,
    Job,
    JobState,
    MigrationMode,
    MigrationOptions,
    MigrationRequest,
    Phase,
    Plan,
    Prediction,
    ProgressSample,
    VerificationSummary,
)
from migration_core.planning.drain import DrainPlan, PlacedPlan

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
GIB = 1024**3

PASSING = (
    CheckResult("hosts", CheckStatus.PASS, "hostA and hostB answer"),
    CheckResult("cpu", CheckStatus.PASS, "destination provides the VM's CPU model"),
    CheckResult("storage", CheckStatus.PASS, "all disks are on shared storage"),
    CheckResult("capacity", CheckStatus.PASS, "hostB has 20 GiB free for 1 GiB"),
)


def plan(
    *,
    vm: str = "vm42",
    checks: tuple[CheckResult, ...] = PASSING,
    postcopy: bool = False,
    copy_storage: CopyStorage | None = None,
    undefine_source: bool = False,
    reason: str | None = "CHG-1234 kernel update on hostA",
    mode: MigrationMode = MigrationMode.LIVE,
) -> Plan:
    opts = MigrationOptions(
        postcopy=postcopy, copy_storage=copy_storage, undefine_source=undefine_source, reason=reason
    )
    flags = ["VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST"]
    if postcopy:
        flags.append("VIR_MIGRATE_POSTCOPY")
    if copy_storage is CopyStorage.ALL:
        flags.append("VIR_MIGRATE_NON_SHARED_DISK")
    if undefine_source:
        flags.append("VIR_MIGRATE_UNDEFINE_SOURCE")
    return Plan(
        request=MigrationRequest(vm, "hostB", opts),
        source="hostA",
        destination="hostB",
        mode=mode,
        checks=checks,
        prediction=Prediction(
            True,
            12.0,
            80.0,
            30.0,
            110.0,
            4,
            "converges in ~12 s (10–15 s), downtime ~80 ms (60–110 ms); from 4 earlier migrations hostA→hostB",
            total_p10_s=10.2,
            total_p90_s=14.6,
            downtime_p10_ms=60.0,
            downtime_p90_ms=110.0,
            basis="from 4 earlier migrations hostA→hostB",
            samples=4,
            mode="pre-copy",
            model_total_s=11.1,
            model_downtime_ms=70.0,
        ),
        flags=tuple(flags),
        params={"migrate_uri": "tcp://10.77.0.2", "bandwidth": 110, "downtime": 300},
        policy=ConvergencePolicy(max_downtime_ms=300, downtime_ramp_ms=(300, 500, 1000), allow_postcopy=postcopy),
        recommendation=None,
        vm_memory_bytes=GIB,
        vm_uuid="8e1d0c39-7f1c-4c4e-a0f4-0123456789ab",
    )


def job(
    *,
    id: int = 7,
    state: JobState = JobState.AWAITING_APPROVAL,
    p: Plan | None = None,
    requester: str = "U0ALICE",
    approvers: tuple[str, ...] = (),
    deniers: tuple[str, ...] = (),
    error: str | None = None,
    created_at: datetime = T0,
) -> Job:
    p = p if p is not None else plan()
    approvals = tuple(Approval(id, a, True, p.hash, created_at + timedelta(minutes=1)) for a in approvers) + tuple(
        Approval(id, a, False, p.hash, created_at + timedelta(minutes=2)) for a in deniers
    )
    return Job(
        id=id,
        vm=p.request.vm,
        source=p.source,
        destination=p.destination,
        requester=requester,
        state=state,
        created_at=created_at,
        updated_at=created_at,
        plan=p,
        reason=p.request.options.reason,
        chat=ChatRefs("C0OPS", "1714564800.000100"),
        approvals=approvals,
        error=error,
    )


def sample(
    *,
    job_id: int = 7,
    percent: float = 40.0,
    phase: Phase = Phase.PRECOPY,
    stalled: bool = False,
    at: datetime = T0,
    iteration: int = 3,
) -> ProgressSample:
    total = GIB
    done = int(total * percent / 100)
    return ProgressSample(
        job_id=job_id,
        at=at,
        phase=phase,
        percent=percent,
        elapsed_s=40.0,
        data_processed_bytes=done,
        data_remaining_bytes=total - done,
        data_total_bytes=total,
        throughput_mib_s=112.0,
        dirty_rate_mib_s=30.5,
        iteration=iteration,
        expected_downtime_ms=120,
        eta_s=25.0,
        stalled=stalled,
        stalled_for_s=42.0 if stalled else 0.0,
    )


def summary(*, job_id: int = 7, outcome: JobState = JobState.SUCCEEDED) -> VerificationSummary:
    ok = outcome is JobState.SUCCEEDED
    return VerificationSummary(
        job_id=job_id,
        outcome=outcome,
        headline="vm42 runs on hostB; hostA keeps it shut off and defined" if ok else "vm42 still runs on hostA",
        checks=(
            CheckResult("running_on_destination", CheckStatus.PASS if ok else CheckStatus.FAIL, "vm42 is running"),
            CheckResult(
                "guest_liveness",
                CheckStatus.PASS if ok else CheckStatus.SKIPPED,
                "alive: vCPU time +12.5 ms in 1.0 s on hostB; hostA's copy is not running"
                if ok
                else "it is not running there",
            ),
            CheckResult("guest_agent", CheckStatus.SKIPPED, "no guest agent configured"),
            *(
                (CheckResult("source_definition", CheckStatus.INFO, "removed hostA's shut-off definition of vm42"),)
                if ok
                else ()
            ),
        ),
        source_state="shut off (defined)" if ok else "running",
        destination_state="running (persistent)" if ok else "absent",
        downtime_ms=85,
        downtime_target_ms=300,
        total_s=14.2,
        data_bytes=GIB + 200 * 1024**2,
        throughput_mib_s=86.5,
        iterations=4,
        next_step=None if ok else "nothing was changed; check the link and run /migrate again",
        evidence="alive: vCPU time +12.5 ms in 1.0 s on hostB; hostA's copy is not running" if ok else None,
    )


def with_state(j: Job, state: JobState, **kw: object) -> Job:
    return replace(j, state=state, **kw)  # type: ignore[arg-type]


# ----- drain dry runs (issue 11): built by the real pure planner over a small synthetic fleet ---------------


def big_drain_plan(n: int = 45) -> DrainPlan:
    """A drain of `n` VMs with long names, a third of them left behind: the card must stay within Slack's limits."""
    from migration_core.planning.drain import plan_drain
    from migration_core.planning.estimates import ModelEstimator
    from tests.migration_core.drain_support import SynFleet, SynHost, SynVm

    vms = [SynVm(f"web-frontend-production-{i:03d}", 1.0 + i % 3) for i in range(n)]
    vms += [SynVm(f"huge-analytics-node-{i:03d}", 512) for i in range(n // 3)]
    fleet = SynFleet(source="hostA", hosts=[SynHost(f"host{c}", free_gib=200) for c in "BCDE"], vms=vms)
    return plan_drain(
        fleet.drain_source(), fleet.drain_vms(), fleet.destinations(), fleet.candidacy(), MigrationOptions(),
        ModelEstimator(),
    )  # fmt: skip


def drain_plan(host: str = "hostA") -> DrainPlan:
    from migration_core.planning.drain import plan_drain
    from migration_core.planning.estimates import ModelEstimator
    from tests.migration_core.drain_support import SynFleet, SynHost, SynVm

    fleet = SynFleet(
        source=host,
        source_link_mib_s=200.0,
        max_outbound=2,
        hosts=[SynHost("hostB", free_gib=12, reserve_gib=2), SynHost("hostC", free_gib=6, cpu_family="old")],
        vms=[
            SynVm("vm42", 0.25, 2.0),
            SynVm("web1", 0.5, 1.0),
            SynVm("db1", 2, 20.0, groups=("db",)),
            SynVm("db2", 2, 20.0, groups=("db",)),
            SynVm("gpu", 4, 1.0, cpu_family="new"),
            SynVm("huge", 64),
            SynVm("stopped", 1, state=VmState.SHUTOFF),
        ],
    )
    return plan_drain(
        fleet.drain_source(), fleet.drain_vms(), fleet.destinations(), fleet.candidacy(), MigrationOptions(),
        ModelEstimator(),
    )  # fmt: skip


def placed_plan(vm: str = "vm42", *, nowhere: bool = False) -> PlacedPlan:
    from migration_core.planning.drain import plan_to_any
    from migration_core.planning.estimates import ModelEstimator
    from tests.migration_core.drain_support import SynFleet, SynHost, SynVm

    size = 64 if nowhere else 0.25
    fleet = SynFleet(source="hostA", hosts=[SynHost("hostB", free_gib=8), SynHost("hostC", free_gib=4)],
                     vms=[SynVm(vm, size)])  # fmt: skip
    return plan_to_any(
        fleet.drain_vms()[0], fleet.drain_source(), fleet.destinations(), fleet.candidacy(), MigrationOptions(),
        ModelEstimator(),
    )  # fmt: skip


def drain_status(
    state: str = "awaiting_approval",
    *,
    approvers: tuple[str, ...] = (),
    outcomes: dict[str, str] | None = None,
    detail: str = "",
    plan: DrainPlan | None = None,
) -> DrainStatus:
    """D7, a drain of hostA with drain_plan()'s moves (or `plan`'s), in `state`; `outcomes` sets moves' outcomes
    by VM."""
    from migration_core.drains import Drain, DrainKind, DrainState, DrainStatus, MoveOutcome, MoveStatus
    from migration_core.models import Approval, ApprovalRequirement

    p = plan or drain_plan()
    drain = Drain(
        id=7,
        kind=DrainKind.DRAIN,
        host="hostA",
        state=DrainState(state),
        requester="U0ALICE",
        plan=p,
        requirement=ApprovalRequirement(2, reasons=("a drain is a risky change: 2 approvers",)),
        created_at=T0,
        updated_at=T0,
        reason="CHG-7 firmware",
        approvals=tuple(Approval(7, a, True, p.hash, T0) for a in approvers),
        detail=detail,
        chat=ChatRefs("C0OPS", "1714564800.000100"),
    )
    moves = []
    for i, m in enumerate(p.moves):
        outcome = MoveOutcome((outcomes or {}).get(m.vm, "pending"))
        job_ = (
            replace(job(id=100 + i, p=m.plan, state=JobState.RUNNING), drain_id=7)
            if outcome.value != "pending"
            else None
        )
        moves.append(
            MoveStatus(
                m,
                job_,
                outcome,
                total_s=12.5 if outcome is MoveOutcome.SUCCEEDED else None,
                downtime_ms=40.0 if outcome is MoveOutcome.SUCCEEDED else None,
                why="did not converge; it stays on hostA" if outcome is MoveOutcome.PARKED else "",
                phase="precopy" if outcome is MoveOutcome.RUNNING else None,
                remaining_bytes=300 * 2**20 if outcome is MoveOutcome.RUNNING else None,
                eta_s=20.0 if outcome is MoveOutcome.RUNNING else None,
            )
        )
    finished = drain.state.finished
    return DrainStatus(drain, tuple(moves), None if finished else 95.0, 130.0 if state != "awaiting_approval" else 0.0)
