"""Helpers for the store tests: a settable clock, a rich sample plan, and paths through the state machine."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta

from migration_core.models import (
    CheckResult,
    CheckStatus,
    ConvergencePolicy,
    CopyStorage,
    JobState,
    MigrationMode,
    MigrationOptions,
    MigrationRequest,
    Plan,
    Prediction,
)
from migration_core.store import Store
from migration_core.store.states import next_states


class FakeClock:
    """A clock the test moves by hand (leases and history ordering depend on time)."""

    def __init__(self, start: datetime = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def sample_plan(vm: str = "vm42", source: str = "hostA", destination: str = "hostB") -> Plan:
    """A plan using every kind of field: enums, list params, a downtime ramp, a warning, a prediction."""
    return Plan(
        request=MigrationRequest(
            vm=vm,
            destination=destination,
            options=MigrationOptions(
                mode=MigrationMode.LIVE,
                postcopy=True,
                postcopy_after_s=30.0,
                parallel_connections=4,
                max_downtime_ms=500,
                bandwidth_mib_s=1024,
                copy_storage=CopyStorage.INC,
                tls=True,
                reason="CHG-1234 “quoted” ünïcode",
            ),
        ),
        source=source,
        destination=destination,
        mode=MigrationMode.LIVE,
        checks=(
            CheckResult("cpu", CheckStatus.PASS, "destination CPU is a superset"),
            CheckResult("storage", CheckStatus.WARN, "disk vdb is local", fix="use --copy-storage inc"),
        ),
        prediction=Prediction(
            converges=True,
            total_s=42.5,
            downtime_ms=120.0,
            dirty_rate_mib_s=80.0,
            bandwidth_mib_s=1100.0,
            passes=4,
            verdict="converges in ~43 s",
        ),
        flags=("VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_POSTCOPY"),
        params={"migrate_disks": ["vda", "vdb"], "bandwidth": 1024, "destination_name": vm},
        policy=ConvergencePolicy(max_downtime_ms=500, downtime_ramp_ms=(300, 400, 500), allow_postcopy=True),
        recommendation="post-copy after 30 s",
        vm_memory_bytes=8 * 1024**3,
        vm_uuid="0f3c2a9e-5d3b-4e8e-9a1f-3c2b1a0d9e8f",
    )


def path_to(target: JobState) -> list[JobState]:
    """The shortest list of states after `requested` that leads to `target` (empty for requested)."""
    parents: dict[JobState, JobState | None] = {JobState.REQUESTED: None}
    queue = deque([JobState.REQUESTED])
    while queue:
        state = queue.popleft()
        for nxt in sorted(next_states(state)):
            if nxt not in parents:
                parents[nxt] = state
                queue.append(nxt)
    path: list[JobState] = []
    node: JobState | None = target
    while node is not None and node != JobState.REQUESTED:
        path.append(node)
        node = parents[node]
    return list(reversed(path))


async def drive_to(store: Store, job_id: int, target: JobState, actor: str = "bot") -> None:
    """Move a job from `requested` to `target` through legal transitions."""
    state = JobState.REQUESTED
    for nxt in path_to(target):
        await store.transition(job_id, state, nxt, actor=actor)
        state = nxt
