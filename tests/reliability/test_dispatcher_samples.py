"""The dispatcher records every finished migration's predicted and measured figures (issue 12 calibration),
on a real SQLite store; a plan from before the calibrated estimate records nothing and still finishes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from migration_core.dispatch.dispatcher import Dispatcher, DispatcherConfig, JobMover
from migration_core.events import JobEvent
from migration_core.execution.types import ExecutionResult
from migration_core.hypervisor.types import JobStats, JobType
from migration_core.inventory.hosts import load_inventory
from migration_core.models import JobState, Plan, VerificationSummary
from migration_core.planning.estimate import MoveInputs, estimate, to_prediction
from migration_core.store import Store
from migration_core.units import MIB
from tests.migration_core.store_support import drive_to, sample_plan

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class Recorder:
    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    async def emit(self, event: JobEvent) -> None:
        self.events.append(event)


class Summarizer:
    """The executor's `summarize`, as verification would answer for a clean run."""

    async def summarize(self, plan: Plan, result: ExecutionResult, *, emit: bool = True) -> VerificationSummary:
        return VerificationSummary(
            result.job_id, JobState.SUCCEEDED, "done", (), "shut off", "running", downtime_ms=41, total_s=0.62
        )


async def _run(tmp_path: Path, plan: Plan) -> Store:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(
        '[hosts.hostA]\nuri = "qemu+unix:///system?socket=/nowhere/a"\n\n[hosts.hostB]\nuri = "qemu+unix:///system?socket=/nowhere/b"\n'
    )
    store = await Store.open(f"sqlite:///{tmp_path / 'bot.db'}")
    sink = Recorder()
    dispatcher = Dispatcher(
        store=store,
        inventory=load_inventory(hosts),
        planner=None,  # type: ignore[arg-type]  # not reached: only verification runs here
        executor=Summarizer(),  # type: ignore[arg-type]
        mover=JobMover(store, sink, lambda: T0),
        sink=sink,
        config=DispatcherConfig(replica_id="r1"),
        clock=lambda: T0,
    )
    job = await store.create_job(vm=plan.request.vm, destination="hostB", requester="alice", source="hostA")
    await store.set_plan(job.id, plan)
    await drive_to(store, job.id, JobState.RUNNING)
    stats = JobStats(
        JobType.COMPLETED,
        {
            "time_elapsed": 620,
            "downtime": 41,
            "memory_normal_bytes": 33 * MIB,
            "memory_bps": 170 * MIB,
            "memory_iteration": 3,
        },
    )
    result = ExecutionResult(job.id, JobState.SUCCEEDED, "qemu:///a", "qemu:///b", T0, T0, 2.0, completed=stats)
    await dispatcher._verify(await store.get_job(job.id), plan, result)
    assert (await store.get_job(job.id)).state is JobState.SUCCEEDED
    return store


async def test_a_finished_migration_is_recorded(tmp_path: Path) -> None:
    inputs = MoveInputs(64 * MIB, 4.0, 200.0, transferable_bytes=33 * MIB, source="hostA", destination="hostB")
    plan = replace(sample_plan(), prediction=to_prediction(estimate(inputs), inputs))
    store = await _run(tmp_path, plan)
    try:
        [sample] = await store.move_samples(vm_uuid=plan.vm_uuid)
        assert (sample.source, sample.destination, sample.family, sample.succeeded) == (
            "hostA",
            "hostB",
            "pre-copy",
            True,
        )
        assert (sample.measured_total_s, sample.measured_downtime_ms) == (0.62, 41)
        assert sample.predicted_total_s == plan.prediction.total_s if plan.prediction else False
        assert sample.memory_bytes_sent == 33 * MIB and sample.throughput_mib_s == 170.0 and sample.passes == 3
        assert sample.link_mib_s == 200.0 and sample.finished_at == T0
    finally:
        await store.close()


async def test_a_plan_without_model_figures_records_nothing(tmp_path: Path) -> None:
    store = await _run(tmp_path, sample_plan())  # a stored plan from before: verdict only
    try:
        assert await store.move_samples() == []
    finally:
        await store.close()
