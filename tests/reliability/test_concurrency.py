"""Concurrency against the real lab: one migration per VM, per-host limits with an ordered queue that says why
and where each job waits, and two real bot processes (replicas) sharing one PostgreSQL database."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from migration_core.grammar.parser import MigrateCommand, parse_command
from migration_core.hypervisor.libvirt_adapter import Hypervisor
from migration_core.models import Job, JobState, MigrationRequest
from migration_core.store import ActiveJobExists, EventKind, EventRecord, Store
from tests.labkit import LabInfo
from tests.migration_core.executor_lab_support import Guest
from tests.reliability.support import (
    B,
    ConsoleBot,
    assert_guest_intact,
    bot_env,
    in_process_bot,
    inventory_with_limits,
    lab_guest,
    states_of,
    summary_of,
    wait_progress,
    wait_state,
    where,
)

pytestmark = pytest.mark.lab
MIB = 1024 * 1024


def request(text: str) -> MigrationRequest:
    command = parse_command(text)
    assert isinstance(command, MigrateCommand)
    return command.request


async def test_a_second_request_for_the_same_vm_is_refused_naming_the_job(
    lab: LabInfo, hv: Hypervisor, tmp_path: Path
) -> None:
    env = bot_env(lab, f"sqlite:///{tmp_path / 'bot.db'}")
    async with (
        lab_guest(hv, lab, "rel-once", start=False) as guest,
        in_process_bot(env) as bot,
    ):
        first = await bot.service.submit(request(f"{guest.name} to {B}"), "alice")
        assert first.state is JobState.AWAITING_APPROVAL
        with pytest.raises(ActiveJobExists) as refused:
            await bot.service.submit(request(f"{guest.name} to {B} --reason again"), "bob")
        assert refused.value.job_id == first.id
        assert f"{guest.name} already has job #{first.id} (awaiting_approval)" in refused.value.message
        assert f"cancel {first.id}" in (refused.value.hint or "")
        assert [j.id for j in await bot.service.active_jobs()] == [first.id]  # nothing was created
        # Once the first job is over, the VM is free again.
        await bot.service.cancel(first.id, "alice")
        again = await bot.service.submit(request(f"{guest.name} to {B}"), "bob")
        assert again.id != first.id and again.state is JobState.AWAITING_APPROVAL


def _span(events: list[EventRecord], job: Job) -> tuple[float, float]:
    """When the job started running and when its migration left the host slots (event log timestamps).

    A job holds its hosts' slots while it runs (store.leases.host_load); verification afterwards (which
    watches the guest's vCPU time for a second) no longer moves data, so the next queued job may start."""
    start = next(e.at for e in events if e.new_state is JobState.RUNNING)
    end = next(
        e.at
        for e in events
        if e.new_state is not None and (e.new_state is JobState.VERIFYING or e.new_state.terminal)
    )
    assert job.state.terminal
    return start.timestamp(), end.timestamp()


async def test_host_limits_queue_jobs_with_the_reason_and_drain_in_order(
    lab: LabInfo, hv: Hypervisor, tmp_path: Path
) -> None:
    hosts = inventory_with_limits(lab, tmp_path, max_inbound=1, max_outbound=1)
    env = bot_env(lab, f"sqlite:///{tmp_path / 'bot.db'}", hosts_file=hosts)
    names = ["rel-q1", "rel-q2", "rel-q3"]
    async with AsyncExitStack() as stack:
        guests: list[Guest] = list(
            await asyncio.gather(*(stack.enter_async_context(lab_guest(hv, lab, n)) for n in names))
        )
        bot = await stack.enter_async_context(in_process_bot(env))
        svc = bot.service
        # The first one is capped so that it is still moving data while the others queue behind it.
        texts = [f"{guests[0].name} to {B} --bandwidth 16", f"{guests[1].name} to {B}", f"{guests[2].name} to {B}"]
        jobs = [await svc.submit(request(t), "alice") for t in texts]
        assert all(j.state is JobState.AWAITING_APPROVAL for j in jobs)
        for job in jobs:  # approved in this order, within milliseconds
            await svc.approve(job.id, "bob")
        first, second, third = (j.id for j in jobs)
        await wait_state(bot.store, first, {JobState.RUNNING}, 60)
        await wait_state(bot.store, third, {JobState.QUEUED}, 30)
        queue = await svc.queue()
        assert [(q.job_id, q.place) for q in queue] == [(second, 1), (third, 2)]
        assert all(q.why == f"{B} already receives 1 migration: #{first}" for q in queue)
        for job_id in (first, second, third):
            await wait_state(bot.store, job_id, {JobState.SUCCEEDED}, 120)
        finished = [await bot.store.get_job(j) for j in (first, second, third)]
        events = [await bot.store.events(j) for j in (first, second, third)]
        for guest in guests:
            assert where(lab, guest) == {B: "running"}  # one owner: A's definition removed
            assert_guest_intact(lab, guest)
    # The card told each waiting job why and where: the queue notices are in the record.
    waiting = [
        [e.detail for e in ev if e.kind is EventKind.NOTICE and e.detail.startswith("waiting:")] for ev in events
    ]
    assert waiting[0] == []
    assert waiting[1][0] == f"waiting: {B} already receives 1 migration: #{first} (place 1 in the queue)"
    assert waiting[2][0] == f"waiting: {B} already receives 1 migration: #{first} (place 2 in the queue)"
    assert f"waiting: {B} already receives 1 migration: #{second} (place 1 in the queue)" in waiting[2]
    assert states_of(events[1])[-5:] == ["approved", "queued", "running", "verifying", "succeeded"]
    # Never two at once into hostB, and the queue drained in the order of the requests.
    spans = [_span(ev, job) for ev, job in zip(events, finished, strict=True)]
    assert spans[0][1] <= spans[1][0] and spans[1][1] <= spans[2][0], spans
    for ev in events:
        assert summary_of(ev)["outcome"] == "succeeded"


async def test_two_replicas_run_each_job_once_and_take_over_from_a_dead_one(
    lab: LabInfo, hv: Hypervisor, pg_database_url: str, logs: Path
) -> None:
    lease = {"MIGRATE_BOT_LEASE": "5s"}
    env1 = bot_env(lab, pg_database_url, MIGRATE_BOT_REPLICA_ID="replica-1", **lease)
    env2 = bot_env(lab, pg_database_url, MIGRATE_BOT_REPLICA_ID="replica-2", **lease)
    # A migration of ~20 s (pre-copy that cannot converge at 8 MiB/s, then post-copy): the owner is killed
    # early, the survivor takes the job over 5 s later and must watch and steer the rest of it.
    busy = "mem=96 rate=4000"
    async with lab_guest(hv, lab, "rel-replica", template="busy", cmdline=busy, filled_after_s=6) as guest:
        store = await Store.open(pg_database_url)
        bots = {
            "replica-1": ConsoleBot("replica-1", env1, logs),
            "replica-2": ConsoleBot("replica-2", env2, logs, user="bob"),
        }
        try:
            one = bots["replica-1"]
            one.send(f"/migrate {guest.name} to {B} --bandwidth 8 --postcopy-after 8s", "as bob")
            job_id = int((await one.expect(r"job (\d+) created", 90)).group(1))
            one.send(f"approve {job_id}", "as carol", f"approve {job_id}")
            running = await wait_state(store, job_id, {JobState.RUNNING}, 60)
            await wait_progress(store, job_id, 8 * MIB)
            owner = running.owner
            assert owner in bots
            survivor = "replica-2" if owner == "replica-1" else "replica-1"
            bots[owner].kill9()
            survived = bots[survivor]
            survived.send(f"wait {job_id}")
            await survived.expect(rf"\[job {job_id}\] ended: succeeded", 150)
            assert await survived.finish() == 0
        finally:
            for bot in bots.values():
                bot.stop()
        job = await store.get_job(job_id)
        events = await store.events(job_id)
        await store.close()
        assert where(lab, guest) == {B: "running"}  # one owner: A's definition removed
        assert_guest_intact(lab, guest)
    assert job.state is JobState.SUCCEEDED
    leases = [e.detail for e in events if e.kind is EventKind.LEASE]
    assert leases[-1] == f"released by {survivor}", leases
    claims = [d for d in leases if d.startswith("claimed by")]
    assert claims == [f"claimed by {owner}"], leases  # exactly one replica started it
    assert any(d.startswith(f"taken over by {survivor} from {owner}") for d in leases), leases
    assert states_of(events).count("running") == 1  # started once; the survivor reattached, never restarted it
    assert any(e.detail.startswith(f"replica {owner} stopped renewing its lease; reattaching") for e in events)
    assert summary_of(events)["outcome"] == "succeeded"
