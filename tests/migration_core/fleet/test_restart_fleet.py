"""A move the bot died before starting is started again on restart, once (issue 11), on the real service.

The "dead bot" is store operations only: a job approved and moved to running under a lease that then runs out,
with no migration in the fleet, exactly what a bot killed between the two leaves behind. The new service
(the real dispatcher, executor and SQLite store, virtual time) must tell that apart from a migration that did
start (a progress sample, the VM already on the destination, a job on the source), which it reattaches to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from migration_core.dispatch.restart import RESTART_MOVE
from migration_core.drains import DrainState, MoveOutcome
from migration_core.hypervisor.fleet import HostSpec, Phase, VmSpec, run_virtual
from migration_core.models import Job, JobState, MigrationOptions, ProgressSample
from migration_core.planning.drain import DrainRequest
from migration_core.store import EventKind, EventRecord, Store
from tests.migration_core.fleet.support import H1, H2, Recorder, Rig, close_service, open_service, rig, when

RESTARTED = "stopped before libvirt started this migration; starting it again (nothing had been copied)"
NOT_AGAIN = "it is not started a third time"


def _vm(name: str, host: str = H1) -> VmSpec:
    return VmSpec(name, host=host, memory_mib=2048, transferable_mib=512, dirty_mib_s=2)


async def _approved(store: Store, r: Rig, vm: str) -> int:
    """A job for `vm` -> H2, approved (what the service does before the dispatcher claims it)."""
    plan = await r.plan(vm)
    job = await store.create_job(vm=vm, destination=H2, requester="alice", plan=plan)
    await store.transition(job.id, JobState.REQUESTED, JobState.PREFLIGHT)
    await store.transition(job.id, JobState.PREFLIGHT, JobState.AWAITING_APPROVAL)
    await store.add_approval(job.id, "bob", True, plan.hash)
    await store.transition(job.id, JobState.AWAITING_APPROVAL, JobState.APPROVED, actor="bob")
    return job.id


async def _mark_running(store: Store, job_id: int, replica: str) -> None:
    """The dispatcher's claim and its move to running; then the bot dies (no migration was started)."""
    job = await store.take_over(job_id, replica, 10.0)
    assert job is not None and job.state in (JobState.APPROVED, JobState.QUEUED)
    await store.transition(job_id, job.state, JobState.RUNNING, detail="migrating")


async def _left_running(
    url: str,
    r: Rig,
    vm: str,
    *,
    replica: str = "replica-a",
    then: Callable[[Store, int], Awaitable[None]] | None = None,
) -> int:
    """A job approved and moved to running, then the bot dies; `then` is what else it wrote before dying."""
    store = await Store.open(url, clock=r.clock.now)
    try:
        job_id = await _approved(store, r, vm)
        await _mark_running(store, job_id, replica)
        if then is not None:
            await then(store, job_id)
    finally:
        await store.close()
    await asyncio.sleep(30)  # its lease runs out
    return job_id


@dataclass(frozen=True)
class Restarted:
    """How the job ended after the bot came back, what it told the thread, and the job's record."""

    job: Job
    notices: list[str]
    events: list[EventRecord]

    def state_moves(self) -> list[tuple[JobState | None, JobState | None]]:
        return [(e.old_state, e.new_state) for e in self.events if e.kind is EventKind.STATE]


async def _restart(r: Rig, url: str, job_id: int) -> Restarted:
    """The same bot (replica-a) started again on the database; waits until the job ends, then stops."""
    sink = Recorder()
    service = await open_service(r, url, replica="replica-a", sink=sink)
    try:
        job = await service.wait(job_id, timeout_s=600)
        return Restarted(job, sink.notices(), await service.store.events(job_id))
    finally:
        await close_service(service)


def _sample(job_id: int, r: Rig) -> ProgressSample:
    gib = 1024**3
    return ProgressSample(
        job_id, r.clock.now(), Phase.PRECOPY, 10.0, 1.0, gib // 10, gib, gib, 100.0, 2.0, 1, None, 9.0, False
    )


def test_a_move_the_bot_died_before_starting_is_started_again(tmp_path: Path) -> None:
    r = rig(_vm("web1"))
    url = f"sqlite:///{tmp_path}/jobs.db"

    async def main() -> None:
        job_id = await _left_running(url, r, "web1")
        after = await _restart(r, url, job_id)
        assert after.job.state is JobState.SUCCEEDED, after.job.error
        assert r.fleet.where("web1") == H2
        assert r.fleet.migrations_started == 1
        assert any(f"the bot {RESTARTED}" == n for n in after.notices), after.notices
        assert after.state_moves()[-5:] == [
            (JobState.APPROVED, JobState.RUNNING),
            RESTART_MOVE,
            (JobState.QUEUED, JobState.RUNNING),
            (JobState.RUNNING, JobState.VERIFYING),
            (JobState.VERIFYING, JobState.SUCCEEDED),
        ]
        assert any(e.kind is EventKind.NOTICE and RESTARTED in e.detail for e in after.events)  # in the record too

    run_virtual(main())


def test_a_drain_move_the_bot_died_before_starting_runs_and_the_drain_is_done(tmp_path: Path) -> None:
    hosts = (HostSpec("hA", link_mib_s=100), HostSpec("hB", link_mib_s=100), HostSpec("hC", link_mib_s=100))
    vms = [_vm(f"web{i}", "hA") for i in (1, 2, 3)]
    r = rig(*vms, hosts=hosts)
    url = f"sqlite:///{tmp_path}/jobs.db"

    async def main() -> None:
        first = await open_service(r, url, replica="replica-a")
        await first.dispatcher.stop()  # nothing starts: we stop the bot between "running" and libvirt
        drain = await first.request_drain(DrainRequest("hA", MigrationOptions()), "alice")
        for who in ("bob", "carol"):
            if (await first.get_drain(drain.id)).state is DrainState.AWAITING_APPROVAL:
                await first.approve_drain(drain.id, who)
        jobs: list[int] = []

        async def collect() -> None:
            jobs[:] = [j.id for j in await first.store.jobs_of_drain(drain.id) if j.state is JobState.APPROVED]

        while not jobs:
            await asyncio.sleep(1)
            await collect()
        await _mark_running(first.store, jobs[0], "replica-a")
        await first.store.close()  # the bot dies
        await first.drains.stop()
        await asyncio.sleep(30)
        sink = Recorder()
        second = await open_service(r, url, replica="replica-b", sink=sink)
        try:
            status = await second.wait_drain(drain.id, timeout_s=4 * 3600)
            assert status.drain.state is DrainState.DONE, status.drain.detail
            assert all(m.outcome is MoveOutcome.SUCCEEDED for m in status.moves)
            assert all(r.fleet.where(v.name) != "hA" for v in vms)
            assert r.fleet.migrations_started == len(vms)
            assert f"replica replica-a {RESTARTED}" in sink.notices()
        finally:
            await close_service(second)

    run_virtual(main())


def test_a_move_with_a_recorded_sample_is_not_started_again(tmp_path: Path) -> None:
    """A progress sample proves libvirt had started: today's judgement (no job, VM on the source: failed)."""
    r = rig(_vm("web1"))
    url = f"sqlite:///{tmp_path}/jobs.db"

    async def sampled(store: Store, job_id: int) -> None:
        await store.add_progress(_sample(job_id, r))

    async def main() -> None:
        job_id = await _left_running(url, r, "web1", then=sampled)
        after = await _restart(r, url, job_id)
        assert after.job.state is JobState.FAILED
        assert r.fleet.migrations_started == 0 and r.fleet.where("web1") == H1
        assert not any(RESTARTED in n for n in after.notices)

    run_virtual(main())


def test_a_migration_that_did_start_is_reattached_not_started_again(tmp_path: Path) -> None:
    """The dead bot's migration runs on (a job on the source) or already finished (the VM on the destination)."""
    r = rig(VmSpec("long", host=H1, memory_mib=8192, dirty_mib_s=20), _vm("quick"))
    url = f"sqlite:///{tmp_path}/jobs.db"

    async def main() -> None:
        store = await Store.open(url, clock=r.clock.now)
        ids = {}
        for vm in ("long", "quick"):
            ids[vm] = await _approved(store, r, vm)
            await _mark_running(store, ids[vm], "replica-a")
        await store.close()
        plans = {vm: await r.plan(vm) for vm in ids}
        await r.executor.run(ids["quick"], plans["quick"])  # finished before the bot died
        running = asyncio.ensure_future(r.executor.run(ids["long"], plans["long"]))
        await when(lambda: r.fleet.job_phase("long") is Phase.PRECOPY)
        running.cancel()  # the bot dies mid-migration; libvirt carries on
        await asyncio.sleep(0)
        assert r.fleet.migrations_started == 2
        sink = Recorder()
        service = await open_service(r, url, replica="replica-a", sink=sink, lease_s=10)
        try:
            for vm, job_id in ids.items():
                done = await service.wait(job_id, timeout_s=3600)
                assert done.state is JobState.SUCCEEDED, (vm, done.error)
                assert r.fleet.where(vm) == H2
            assert r.fleet.migrations_started == 2  # reattached; nothing started twice
            assert not any(RESTARTED in n for n in sink.notices())
        finally:
            await close_service(service)

    run_virtual(main())


def test_a_second_crash_before_the_start_is_not_restarted_again(tmp_path: Path) -> None:
    r = rig(_vm("web1"))
    url = f"sqlite:///{tmp_path}/jobs.db"

    async def restarted_then_died_again(store: Store, job_id: int) -> None:
        # the first restart already happened (running -> queued), then the bot died at the same point again
        await store.transition(job_id, *RESTART_MOVE, detail=f"the bot {RESTARTED}")
        await _mark_running(store, job_id, "replica-a")

    async def main() -> None:
        job_id = await _left_running(url, r, "web1", then=restarted_then_died_again)
        after = await _restart(r, url, job_id)
        assert after.job.state is JobState.FAILED
        assert r.fleet.migrations_started == 0 and r.fleet.where("web1") == H1
        assert any(NOT_AGAIN in n for n in after.notices), after.notices
        assert after.state_moves().count(RESTART_MOVE) == 1

    run_virtual(main())


def test_an_unreachable_destination_proves_nothing_so_the_move_is_not_started_again(tmp_path: Path) -> None:
    r = rig(_vm("web1"))
    url = f"sqlite:///{tmp_path}/jobs.db"

    async def main() -> None:
        job_id = await _left_running(url, r, "web1")
        r.fleet.stop_daemon(H2)
        try:
            after = await _restart(r, url, job_id)
        finally:
            r.fleet.start_daemon(H2)
        assert after.job.state.terminal and after.job.state is not JobState.SUCCEEDED
        assert r.fleet.migrations_started == 0
        assert not any(RESTARTED in n for n in after.notices)

    run_virtual(main())
