"""Two replicas on one database: claims never overlap, slots are respected, dead replicas' jobs move over."""

from __future__ import annotations

import asyncio
import threading

from migration_core.models import JobState
from migration_core.store import EventKind, HostLimit, Store
from tests.migration_core.store_support import FakeClock, drive_to

S = JobState


async def _queued_jobs(store: Store, routes: list[tuple[str, str]], prefix: str = "vm") -> list[int]:
    ids = []
    for n, (src, dst) in enumerate(routes):
        job = await store.create_job(vm=f"{prefix}{n}", source=src, destination=dst, requester="U1")
        await drive_to(store, job.id, S.QUEUED)
        ids.append(job.id)
    return ids


def _claim_all(url: str, owner: str, start: threading.Barrier) -> list[int]:
    """One replica in its own thread with its own event loop and Store: claim until nothing is left."""

    async def run() -> list[int]:
        store = await Store.open(url)
        claimed: list[int] = []
        try:
            start.wait()
            while (job := await store.claim_next_runnable(owner, lease_s=60)) is not None:
                assert job.owner == owner
                claimed.append(job.id)
        finally:
            await store.close()
        return claimed

    return asyncio.run(run())


async def test_two_replicas_never_claim_the_same_job(store: Store, store_url: str) -> None:
    ids = await _queued_jobs(store, [("hostA", "hostB")] * 50)
    start = threading.Barrier(2)
    a, b = await asyncio.gather(
        asyncio.to_thread(_claim_all, store_url, "replica-a", start),
        asyncio.to_thread(_claim_all, store_url, "replica-b", start),
    )
    assert len(a) + len(b) == 50
    assert sorted(a + b) == sorted(ids)  # every job once, none twice
    assert not set(a) & set(b)
    for job_id in ids:
        job = await store.get_job(job_id)
        assert job.owner == ("replica-a" if job_id in a else "replica-b")
        leases = await store.events(job_id, kinds=[EventKind.LEASE])
        assert [e.actor for e in leases] == [job.owner]


async def test_claim_takes_the_oldest_and_skips_unapproved(store: Store) -> None:
    waiting = await store.create_job(vm="vm-wait", destination="hostB", requester="U1")
    await drive_to(store, waiting.id, S.AWAITING_APPROVAL)
    first, second = await _queued_jobs(store, [("hostA", "hostB"), ("hostA", "hostB")])
    claimed = await store.claim_next_runnable("r1", lease_s=30)
    assert claimed is not None and claimed.id == first
    claimed = await store.claim_next_runnable("r1", lease_s=30)
    assert claimed is not None and claimed.id == second
    assert await store.claim_next_runnable("r1", lease_s=30) is None


async def test_claims_respect_per_host_slots_and_drain_in_order(store: Store) -> None:
    limits = {"hostA": HostLimit(max_inbound=2, max_outbound=2), "hostB": HostLimit(max_inbound=1, max_outbound=1)}
    to_b1, to_b2, to_c = await _queued_jobs(store, [("hostA", "hostB"), ("hostA", "hostB"), ("hostA", "hostC")])

    got = await store.claim_next_runnable("r1", 30, limits=limits)
    assert got is not None and got.id == to_b1
    # hostB receives one already: the second job to hostB waits, the one to hostC (unlimited) goes.
    got = await store.claim_next_runnable("r1", 30, limits=limits)
    assert got is not None and got.id == to_c
    load = await store.host_load()
    assert load["hostB"].inbound_job_ids == (to_b1,)
    assert load["hostA"].outbound_job_ids == (to_b1, to_c)
    assert await store.claim_next_runnable("r1", 30, limits=limits) is None  # hostA outbound is full too

    await store.transition(to_b1, S.QUEUED, S.RUNNING)
    assert await store.claim_next_runnable("r1", 30, limits=limits) is None  # running still holds the slots
    await store.transition(to_b1, S.RUNNING, S.VERIFYING)
    got = await store.claim_next_runnable("r1", 30, limits=limits)
    assert got is not None and got.id == to_b2  # the slot freed: the next job for hostB, in order


async def test_lease_renew_release_and_take_over(store_url: str) -> None:
    clock = FakeClock()
    store = await Store.open(store_url, clock=clock)
    try:
        [job_id] = await _queued_jobs(store, [("hostA", "hostB")])
        claimed = await store.claim_next_runnable("replica-a", lease_s=30)
        assert claimed is not None and claimed.id == job_id
        await store.transition(job_id, S.QUEUED, S.RUNNING, actor="replica-a")

        clock.advance(20)
        assert await store.renew_lease(job_id, "replica-a", lease_s=30)  # heartbeat: now good until +50 s
        assert not await store.renew_lease(job_id, "replica-b", lease_s=30)  # not b's to renew
        clock.advance(25)
        assert await store.expired_leases() == []
        assert await store.take_over(job_id, "replica-b", lease_s=30) is None  # a's lease is still live
        assert [j.id for j in await store.jobs_owned_by("replica-a")] == [job_id]

        clock.advance(10)  # replica-a stopped renewing 35 s ago: its lease (30 s) ran out
        assert [j.id for j in await store.expired_leases()] == [job_id]
        taken = await store.take_over(job_id, "replica-b", lease_s=30)
        assert taken is not None and taken.owner == "replica-b" and taken.state is S.RUNNING
        assert not await store.renew_lease(job_id, "replica-a", lease_s=30)  # a learns it lost the job
        assert await store.expired_leases() == []
        assert await store.jobs_owned_by("replica-a") == []
        # A replica restarting under the same name resumes its own job at once.
        again = await store.take_over(job_id, "replica-b", lease_s=30)
        assert again is not None and again.owner == "replica-b"
        leases = await store.events(job_id, kinds=[EventKind.LEASE])
        assert [e.detail.split(" ")[0] for e in leases] == ["claimed", "taken", "resumed"]
        assert leases[1].data == {"previous_owner": "replica-a"}

        await store.transition(job_id, S.RUNNING, S.VERIFYING, actor="replica-b")
        await store.transition(job_id, S.VERIFYING, S.SUCCEEDED, actor="replica-b")
        clock.advance(3600)
        assert await store.expired_leases() == []  # finished jobs hold no lease
        assert await store.take_over(job_id, "replica-a", lease_s=30) is None
        assert not await store.renew_lease(job_id, "replica-b", lease_s=30)
    finally:
        await store.close()


async def test_release_gives_the_job_back_to_the_queue(store: Store) -> None:
    [job_id] = await _queued_jobs(store, [("hostA", "hostB")])
    assert (await store.claim_next_runnable("r1", 30)) is not None
    assert await store.claim_next_runnable("r2", 30) is None
    assert not await store.release(job_id, "r2")
    assert await store.release(job_id, "r1")
    again = await store.claim_next_runnable("r2", 30)
    assert again is not None and again.id == job_id and again.owner == "r2"


async def test_expired_claim_is_claimable_again(store_url: str) -> None:
    clock = FakeClock()
    store = await Store.open(store_url, clock=clock)
    try:
        [job_id] = await _queued_jobs(store, [("hostA", "hostB")])
        assert await store.claim_next_runnable("r1", 30) is not None
        clock.advance(31)  # r1 died between claiming and starting
        again = await store.claim_next_runnable("r2", 30)
        assert again is not None and again.id == job_id and again.owner == "r2"
    finally:
        await store.close()
