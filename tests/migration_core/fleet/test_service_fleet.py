"""The real MigrationService (dispatcher, queue, leases, executor, verification, SQLite store) on the fleet.

Virtual time throughout: approvals that expire after 30 minutes, leases that run out, queues that drain over
several migrations, all in a fraction of a second of wall time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from migration_core.events import StateChanged, SummaryReady
from migration_core.hypervisor.fleet import HostSpec, Phase, VmSpec, run_virtual
from migration_core.models import JobState, MigrationOptions, MigrationRequest
from tests.migration_core.fleet.support import H1, H2, Recorder, approve, close_service, open_service, rig, when

ONE_LANE = (HostSpec(H1, link_mib_s=200, max_outbound=1), HostSpec(H2, link_mib_s=200, max_inbound=1))


def _vm(name: str, **kw: object) -> VmSpec:
    return VmSpec(name, host=H1, memory_mib=2048, transferable_mib=1024, dirty_mib_s=5, **kw)  # type: ignore[arg-type]


def test_request_approve_run_verify(tmp_path: Path) -> None:
    r = rig(_vm("web1"))

    async def main() -> None:
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db")
        try:
            job = await service.submit(MigrationRequest("web1", H2), "alice")
            assert job.state is JobState.AWAITING_APPROVAL
            await approve(service, job.id)
            done = await service.wait(job.id, timeout_s=600)
            assert done.state is JobState.SUCCEEDED, done.error
            assert r.fleet.where("web1") == H2
            summaries = [e for e in r.sink.events if isinstance(e, SummaryReady)]
            assert len(summaries) == 1 and summaries[0].summary.outcome is JobState.SUCCEEDED
            states = [e.new for e in r.sink.events if isinstance(e, StateChanged)]
            assert states[-3:] == [JobState.RUNNING, JobState.VERIFYING, JobState.SUCCEEDED]
        finally:
            await close_service(service)

    run_virtual(main())


def test_unanswered_approval_expires_after_its_ttl(tmp_path: Path) -> None:
    r = rig(_vm("web1"))

    async def main() -> None:
        # a tick a minute: the store (real SQLite, real threads) costs wall time per tick, virtual time none
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db", approval_ttl_s=1800, tick_s=60)
        try:
            job = await service.submit(MigrationRequest("web1", H2), "alice")
            await asyncio.sleep(1700)
            assert (await service.get_job(job.id)).state is JobState.AWAITING_APPROVAL
            await asyncio.sleep(100 + 2 * 60)
            assert (await service.get_job(job.id)).state is JobState.EXPIRED
            assert r.fleet.where("web1") == H1
        finally:
            await close_service(service)

    run_virtual(main())


def test_full_queue_waits_with_its_reason_and_drains_in_order(tmp_path: Path) -> None:
    names = ("q1", "q2", "q3")
    r = rig(*(_vm(n) for n in names), hosts=ONE_LANE)

    async def main() -> None:
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db")
        try:
            jobs = [await service.submit(MigrationRequest(n, H2), "alice") for n in names]
            for job in jobs:
                await approve(service, job.id)
            await when(lambda: r.fleet.job_phase("q1") is not None)
            queue = await service.queue()
            assert [q.job_id for q in queue] == [jobs[1].id, jobs[2].id]
            assert [q.place for q in queue] == [1, 2]
            assert all("h1" in q.why or "h2" in q.why for q in queue), queue
            # one lane: never two migrations at once
            finished = []
            for job in jobs:
                done = await service.wait(job.id, timeout_s=900)
                assert done.state is JobState.SUCCEEDED, done.error
                finished.append(done.updated_at)
            assert finished == sorted(finished)
            assert r.fleet.migrations_started == 3
            # the waiting jobs were marked queued (with their reason) before they ran; read from the record
            # rather than sampled, since the dispatcher's tick may not have marked them yet at the sample above
            for job in jobs[1:]:
                states = [e.new_state for e in await service.store.events(job.id) if e.new_state is not None]
                assert states.index(JobState.QUEUED) < states.index(JobState.RUNNING), states
            assert all(r.fleet.where(n) == H2 for n in names)
        finally:
            await close_service(service)

    run_virtual(main())


def test_abort_through_the_service(tmp_path: Path) -> None:
    r = rig(VmSpec("busy", host=H1, memory_mib=4096, dirty_mib_s=600, working_set_mib=2048), hosts=ONE_LANE)

    async def main() -> None:
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db")
        try:
            job = await service.submit(MigrationRequest("busy", H2), "alice")
            await approve(service, job.id)
            await when(lambda: r.fleet.job_phase("busy") is Phase.PRECOPY)
            await asyncio.sleep(2)
            await service.abort(job.id, "alice")
            done = await service.wait(job.id, timeout_s=120)
            assert done.state is JobState.ABORTED
            assert r.fleet.where("busy") == H1
        finally:
            await close_service(service)

    run_virtual(main())


def test_replica_takeover_when_the_owner_dies(tmp_path: Path) -> None:
    """Replica A starts a migration and dies (no lease renewal, no release); B takes the job over when the
    lease runs out, reattaches to the migration libvirt kept running, and closes the job. One SQLite store."""
    r = rig(VmSpec("long", host=H1, memory_mib=8192, dirty_mib_s=20), hosts=ONE_LANE)
    db = f"sqlite:///{tmp_path}/jobs.db"

    async def main() -> None:
        a = await open_service(r, db, replica="replica-a", lease_s=10)
        job = await a.submit(MigrationRequest("long", H2, MigrationOptions()), "alice")
        await approve(a, job.id)
        await when(lambda: r.fleet.job_phase("long") is Phase.PRECOPY)
        b_sink = Recorder()
        b = await open_service(r, db, replica="replica-b", lease_s=10, sink=b_sink)  # B joins while A runs it
        try:
            assert (await b.get_job(job.id)).owner == "replica-a"
            # A dies: its database connection goes first, so it can neither renew nor release its lease.
            await a.store.close()
            await a.dispatcher.stop()
            done = await b.wait(job.id, timeout_s=600)
            assert done.state is JobState.SUCCEEDED, done.error
            assert done.owner in (None, "replica-b")
            assert r.fleet.migrations_started == 1  # B reattached; it did not start a second migration
            assert any("replica-a stopped renewing its lease" in getattr(e, "text", "") for e in b_sink.events)
            assert r.fleet.where("long") == H2
        finally:
            await close_service(b)

    run_virtual(main())


class _AbortOnStart(Recorder):
    """Types `abort` the moment the job's start is announced, as an operator clicking Abort on the card's
    "running" edit would; the dispatcher awaits this emit (a second) before it hands the job to the executor."""

    def __init__(self) -> None:
        super().__init__()
        self.service: object = None
        self.abort: asyncio.Task[object] | None = None

    async def emit(self, event: object) -> None:
        await super().emit(event)  # type: ignore[arg-type]
        if isinstance(event, StateChanged) and event.new is JobState.RUNNING and self.abort is None:
            self.abort = asyncio.create_task(self.service.abort(event.job_id, "alice"))  # type: ignore[attr-defined]
            await asyncio.sleep(1.0)  # the card's edit takes a moment (a Slack round trip)


def test_an_abort_typed_as_the_start_is_announced_stops_the_move(tmp_path: Path) -> None:
    """Between "running" and the executor watching the run, an abort is neither refused nor lost: the run
    waits for it, and a migration libvirt has not started yet never starts."""
    sink = _AbortOnStart()
    r = rig(_vm("web1"))

    async def main() -> None:
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db", sink=sink)
        sink.service = service
        try:
            job = await service.submit(MigrationRequest("web1", H2), "alice")
            await approve(service, job.id)
            done = await service.wait(job.id, timeout_s=600)
            assert sink.abort is not None and sink.abort.done()
            aborted = sink.abort.result()  # not refused
            assert aborted.id == job.id  # type: ignore[attr-defined]
            assert done.state is JobState.ABORTED, done.error
            assert r.fleet.where("web1") == H1
            summaries = [e.summary for e in sink.events if isinstance(e, SummaryReady)]
            assert [s.outcome for s in summaries] == [JobState.ABORTED]
        finally:
            await close_service(service)

    run_virtual(main())


def test_an_abort_that_loses_the_race_to_the_start_aborts_the_run(tmp_path: Path) -> None:
    """The abort finds the job approved, but the dispatcher starts it before the withdrawal is written: the
    abort then goes to the run instead of failing with "another writer moved the job"."""
    r = rig(VmSpec("busy", host=H1, memory_mib=4096, dirty_mib_s=600, working_set_mib=2048), hosts=ONE_LANE)
    box: dict[str, object] = {}

    async def approver(user: str) -> bool:
        service, job_id = box.get("service"), box.get("job")
        if user == "alice" and job_id is not None:  # alice's abort: let the dispatcher start the job first
            await when(lambda: r.fleet.job_phase("busy") is Phase.PRECOPY)
            box["job"] = None
            assert (await service.get_job(job_id)).state is JobState.RUNNING  # type: ignore[attr-defined]
        return True

    async def main() -> None:
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db", approver_check=approver)
        box["service"] = service
        try:
            job = await service.submit(MigrationRequest("busy", H2), "alice")
            await approve(service, job.id)
            assert (await service.get_job(job.id)).state is JobState.APPROVED  # the dispatcher has not claimed it
            box["job"] = job.id
            await service.abort(job.id, "alice")
            done = await service.wait(job.id, timeout_s=600)
            assert done.state is JobState.ABORTED, done.error
            assert r.fleet.where("busy") == H1
        finally:
            await close_service(service)

    run_virtual(main())
