"""The calibrated prediction on the real lab: a finished migration is recorded and the next plan of the same
move uses it (issue 12). The planner is built as bot/wiring.open_core builds it, with the store's history."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from migration_core.events import RecordingSink
from migration_core.execution.executor import Executor
from migration_core.hypervisor.libvirt_adapter import Hypervisor
from migration_core.inventory.hosts import load_inventory
from migration_core.models import JobState, MigrationOptions, MigrationRequest, MoveSample, Plan
from migration_core.planning.estimate import sample_from_run
from migration_core.preflight.runner import PreflightRunner
from migration_core.store import Store
from tests.labkit import LabInfo
from tests.migration_core.executor_lab_support import A, B, Guest, drop_guest, inventory, make_guest, plan_for

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def hv(lab: LabInfo) -> Iterator[Hypervisor]:
    adapter = Hypervisor({A: lab.host(A).uri, B: lab.host(B).uri})
    yield adapter
    asyncio.run(adapter.close())


@pytest.fixture(scope="module")
def guest(lab: LabInfo, hv: Hypervisor) -> Iterator[Guest]:
    g = asyncio.run(make_guest(hv, lab, "vm42", "xt-predict"))
    yield g
    asyncio.run(drop_guest(hv, lab, g))


def error(predicted: float | None, measured: float) -> float:
    """The issue's error: |p - m| / m, with 0.3 s absolute tolerance below 2 s."""
    assert predicted is not None
    if measured < 2.0 and abs(predicted - measured) <= 0.3:
        return 0.0
    return abs(predicted - measured) / measured


async def _move(
    lab: LabInfo, hv: Hypervisor, runner: PreflightRunner, store: Store, guest: Guest, src: str, dst: str, job: int
) -> tuple[Plan, MoveSample]:
    """Plan with the runner (prediction from the store's history), migrate with the executor, record the run
    as the dispatcher does (`sample_from_run` + `add_move_sample`)."""
    planned = await runner.make_plan(MigrationRequest(guest.name, dst, MigrationOptions()))
    assert planned.prediction is not None and planned.source == src, planned
    xml = await hv.domain_xml(lab.host(src).uri, guest.name, migratable=False)
    plan = plan_for(lab, guest, xml, source=src, destination=dst, options=MigrationOptions(undefine_source=True))
    result = await Executor(hv, inventory(lab), RecordingSink()).run(job, plan)
    assert result.outcome is JobState.SUCCEEDED and result.completed is not None, result.error
    stats = dict(result.completed.values)
    sample = sample_from_run(
        planned.prediction,
        vm_uuid=planned.vm_uuid,
        vm=guest.name,
        source=src,
        destination=dst,
        finished_at=datetime.now(UTC),
        succeeded=True,
        total_s=float(stats["time_elapsed"]) / 1000,
        downtime_ms=float(stats["downtime"]),
        stats=stats,
        postcopy=result.postcopy,
    )
    assert sample is not None
    await store.add_move_sample(sample, job)
    return planned, sample


async def test_history_is_recorded_and_used(lab: LabInfo, hv: Hypervisor, guest: Guest, tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'bot.db'}")
    inv = load_inventory(lab.hosts_toml)
    adapter = Hypervisor({h.name: h.uri for h in inv})
    for host in inv:
        adapter.add_host(host.name, host.uri, host.peer_uri)

    async def history(vm_uuid: str, source: str, destination: str) -> list[MoveSample]:
        return await store.move_samples(vm_uuid=vm_uuid, source=source, destination=destination)

    runner = PreflightRunner(inv, adapter, dirty_rate_window_s=1.0, history=history)
    try:
        first, measured_first = await _move(lab, hv, runner, store, guest, A, B, 9801)
        assert first.prediction is not None and first.prediction.basis == "model only: no history"
        assert first.prediction.transferable_bytes is not None  # the RSS was read before the move
        _, back = await _move(lab, hv, runner, store, guest, B, A, 9802)
        recorded = await store.move_samples(vm_uuid=first.vm_uuid)
        assert [(s.source, s.destination) for s in recorded] == [(B, A), (A, B)]
        assert recorded[1].measured_total_s == measured_first.measured_total_s > 0
        assert recorded[1].memory_bytes_sent > 0 and recorded[1].throughput_mib_s
        second, measured_second = await _move(lab, hv, runner, store, guest, A, B, 9803)
        p1, p2 = first.prediction, second.prediction
        assert p2 is not None
        assert p2.basis == f"from 2 earlier migrations of {guest.name} {A}→{B}", p2.basis
        assert p2.total_p10_s is not None and p2.total_p90_s is not None
        assert p2.total_p10_s <= p2.total_s <= p2.total_p90_s
        # The VM's own runs narrow the range (a point figure may coincide: the median of two runs and the model
        # vote can be the model itself, which may round to the first, model-only figure).
        assert p1.total_p10_s is not None and p1.total_p90_s is not None
        width = (p2.total_p90_s - p2.total_p10_s) / p2.total_s
        assert width < (p1.total_p90_s - p1.total_p10_s) / p1.total_s, (p1, p2)
        m = measured_second.measured_total_s
        assert error(p2.total_s, m) <= error(p1.total_s, m), (p1.total_s, p2.total_s, m, back.measured_total_s)
    finally:
        await adapter.close()
        await store.close()
