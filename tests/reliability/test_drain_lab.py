"""Drains on the real three-host lab: dry run, drain of hostA to B and C, a parked busy guest, return, cancel,
and the bot choosing a single VM's destination.

The service is the one `serve` wires (bot.wiring) in this process; the moves are real libvirt migrations. The
lab VMs a drain moves are the shared lab's own: every test puts each of them back on hostA (a return, or
`lab reset-vm` for anything a failure left elsewhere) and resets the link, so the next test finds the lab as
`lab up` left it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from migration_core.drains import DrainState, MoveOutcome
from migration_core.models import JobState, MigrationOptions, MigrationRequest
from migration_core.planning.drain import DrainRequest
from migration_core.store import Store
from tests.labkit import LabInfo, console_status, link_rate, link_reset, reset_vm, vm_location
from tests.reliability.support import A, ConsoleBot, bot_env, in_process_bot, inventory_with_link, wait_progress

pytestmark = pytest.mark.lab

C = "hostC"
RUNNING_GUESTS = ("vm42", "busy", "disky", "shared", "web1", "web2", "web3", "web4", "db1", "pinned")


def _home(lab: LabInfo) -> None:
    """Every lab guest back where `lab up` leaves it (only those a test moved or stopped are reset)."""
    for vm in (*RUNNING_GUESTS, "stopped"):
        want = "shut off" if vm == "stopped" else "running"
        if vm_location(lab, vm) != {A: want}:
            reset_vm(lab, vm)


@pytest.fixture
def lab_at_home(lab: LabInfo) -> Iterator[LabInfo]:
    if C not in lab.hosts:
        pytest.fail(f"the lab has no {C}: run `deploy/lab/lab up` from this checkout (hosts: {sorted(lab.hosts)})")
    _home(lab)
    try:
        yield lab
    finally:
        link_reset(lab)
        _home(lab)


def _guest_ok(lab: LabInfo, vm: str) -> None:
    status = console_status(lab, vm)
    assert status is not None and status.ok, f"{vm}'s own memory check reports a problem: {status}"


@pytest.mark.timeout(600)  # two drains of eight guests on a 32 MiB/s link, one of them waiting out its budget
async def test_dry_run_drain_parks_the_busy_guest_then_return_brings_everything_home(
    lab_at_home: LabInfo, tmp_path: Path
) -> None:
    lab = lab_at_home
    # 32 MiB/s on every host's NIC, declared so in the hosts file: busy dirties as fast as that, so without
    # --postcopy it cannot move
    hosts = inventory_with_link(lab, tmp_path, 32)
    env = bot_env(lab, f"sqlite:///{tmp_path / 'bot.db'}", hosts_file=hosts)
    async with in_process_bot(env) as bot:
        svc = bot.service
        link_rate(lab, 32)
        options = MigrationOptions(timeout_s=15)  # the budget after which a move that cannot converge gives up
        plan = await svc.plan_drain(DrainRequest(A, options))
        placed = {m.vm: m.destination for m in plan.moves}
        left = {lb.vm: lb for lb in plan.left_behind}
        assert set(placed) | set(left) >= {*RUNNING_GUESTS, "stopped"}, (placed, left)
        assert "pinned" in left and "labonly" in left["pinned"].reason, left.get("pinned")
        assert "stopped" in left and "--include-stopped" in left["stopped"].fix
        assert placed["web1"] != placed["web2"], "anti-affinity group `web` put both on one host"
        assert {C, "hostB"} <= set(placed.values()), f"placement did not spread: {placed}"
        assert plan.eta_s > 0 and all(m.predicted_total_s > 0 for m in plan.moves)

        drain = await svc.request_drain(DrainRequest(A, options), "alice")
        assert drain.plan.hash == (await svc.get_drain(drain.id)).plan.hash
        await svc.approve_drain(drain.id, "bob")
        await svc.approve_drain(drain.id, "carol")
        status = await svc.wait_drain(drain.id, timeout_s=400)
        outcomes = {m.vm: m for m in status.moves}
        assert status.drain.state is DrainState.PARTIALLY_DONE, (status.drain.state, status.drain.detail)
        assert outcomes["busy"].outcome is MoveOutcome.PARKED, outcomes["busy"]
        assert "stays on hostA" in outcomes["busy"].why
        assert vm_location(lab, "busy") == {A: "running"}
        for vm, m in outcomes.items():
            if m.outcome is MoveOutcome.SUCCEEDED:
                assert vm_location(lab, vm) == {m.planned.destination: "running"}, vm
                _guest_ok(lab, vm)
                assert m.job is not None and m.job.state is JobState.SUCCEEDED
        moved = {vm for vm, m in outcomes.items() if m.outcome is MoveOutcome.SUCCEEDED}
        assert len(moved) >= 6, outcomes
        assert vm_location(lab, "web1") != vm_location(lab, "web2")
        marks = await svc.host_marks()
        assert A in marks

        link_reset(lab)
        back = await svc.request_return(A, "alice", "maintenance done")
        assert {m.vm for m in back.plan.moves} == moved
        await svc.approve_drain(back.id, "bob")
        await svc.approve_drain(back.id, "carol")
        home = await svc.wait_drain(back.id, timeout_s=300)
        assert home.drain.state is DrainState.DONE, home.drain.detail
        for vm in moved:
            assert vm_location(lab, vm) == {A: "running"}, vm  # one definition: nothing stale left on B or C
            _guest_ok(lab, vm)
        assert A not in await svc.host_marks()


async def test_cancel_mid_drain_stops_the_rest_and_aborts_pre_copy(lab_at_home: LabInfo, tmp_path: Path) -> None:
    lab = lab_at_home
    env = bot_env(lab, f"sqlite:///{tmp_path / 'bot.db'}", hosts_file=inventory_with_link(lab, tmp_path, 4))
    async with in_process_bot(env) as bot:
        svc = bot.service
        link_rate(lab, 4)  # slow enough that the first wave is still copying when the cancel comes
        keep = ("busy", "db1", "pinned", "disky", "shared", "vm42")
        drain = await svc.request_drain(DrainRequest(A, MigrationOptions(), except_vms=keep), "alice")
        await svc.approve_drain(drain.id, "bob")
        await svc.approve_drain(drain.id, "carol")
        for _ in range(300):
            jobs = await svc.store.jobs_of_drain(drain.id)
            if any(j.state is JobState.RUNNING for j in jobs):
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("no move of the drain started within 60 s")
        await asyncio.sleep(1.0)  # into pre-copy
        report = await svc.cancel_drain(drain.id, "alice")
        assert report.aborted, report.text
        assert report.never_started or report.finishing or len(drain.plan.moves) == len(report.aborted), report.text
        status = await svc.wait_drain(drain.id, timeout_s=120)
        assert status.drain.state is DrainState.CANCELLED, status.drain.detail
        for vm in report.aborted + report.never_started:
            assert vm_location(lab, vm) == {A: "running"}, vm
            _guest_ok(lab, vm)
        assert A not in await svc.host_marks()


async def test_the_bot_chooses_a_single_vms_destination(lab_at_home: LabInfo, tmp_path: Path) -> None:
    lab = lab_at_home
    env = bot_env(lab, f"sqlite:///{tmp_path / 'bot.db'}")
    async with in_process_bot(env) as bot:
        svc = bot.service
        placed = await svc.plan_any("web3", MigrationOptions())
        assert placed.destination in ("hostB", C) and placed.why, placed
        assert placed.to_json()["placement"]["destination"] == placed.destination
        job = await svc.submit(MigrationRequest("web3", placed.destination), "alice")
        await svc.approve(job.id, "bob")
        done = await svc.wait(job.id, timeout_s=120)
        assert done.state is JobState.SUCCEEDED, done.error
        assert vm_location(lab, "web3") == {placed.destination: "running"}
        _guest_ok(lab, "web3")
        nowhere = await svc.plan_any("pinned", MigrationOptions())
        assert nowhere.destination is None and "labonly" in nowhere.why, nowhere


async def test_kill_9_mid_drain_then_restart_finishes_the_drain(
    lab_at_home: LabInfo, tmp_path: Path, logs: Path
) -> None:
    """The bot (a real `migrate-bot console` process) is killed with SIGKILL while the drain's first move is
    copying; the migration runs on in libvirt (peer-to-peer); the restarted bot reattaches the running move,
    starts the rest and ends the drain done. A return by the second bot then brings every VM home."""
    lab = lab_at_home
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    # no replica id: both lives use the host name, so the second resumes the first's work. The moves are slowed by
    # libvirt's own bandwidth cap (--bandwidth), not by shaping the link, so libvirt's control connections stay
    # responsive while the bot is dead (a starved link can time out the peer-to-peer connection's keepalive).
    env = bot_env(lab, db, hosts_file=inventory_with_link(lab, tmp_path, 16))
    keep = "busy,db1,pinned,disky,shared,vm42"
    store = await Store.open(db)
    first = second = None
    try:
        first = ConsoleBot("drain-first", env, logs)
        first.send(f"drain {A} --except {keep} --bandwidth 16")
        ref = (await first.expect(r"(D\d+) created", 120)).group(1)
        drain_id = int(ref[1:])
        first.send("as bob", "approve last", "as carol", "approve last")
        for _ in range(600):
            running = [j for j in await store.jobs_of_drain(drain_id) if j.state is JobState.RUNNING]
            if running:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"no move of {ref} started:\n{first.tail()}")
        # killed once libvirt is copying (the migration then runs on without the bot, peer-to-peer)
        await wait_progress(store, running[0].id, 4 * 2**20)
        first.kill9()
        assert (await store.get_drain(drain_id)).state is DrainState.RUNNING
        second = ConsoleBot("drain-second", env, logs)
        for _ in range(1800):
            drain = await store.get_drain(drain_id)
            if drain.state.finished:
                break
            await asyncio.sleep(0.2)
        assert drain.state is DrainState.DONE, f"{drain.state.value}: {drain.detail}\n{second.tail()}"
        jobs = await store.jobs_of_drain(drain_id)
        assert sorted(j.vm for j in jobs) == ["web1", "web2", "web3", "web4"]  # one job each, none twice
        for job in jobs:
            assert job.state is JobState.SUCCEEDED, (job.vm, job.error)
            assert vm_location(lab, job.vm) == {job.destination: "running"}, job.vm
            _guest_ok(lab, job.vm)
        second.send(f"return {A}", "as bob", "approve last", "as carol", "approve last")
        back = int((await second.expect(r"D(\d+) created: return", 120)).group(1))
        for _ in range(1800):
            if (await store.get_drain(back)).state.finished:
                break
            await asyncio.sleep(0.2)
        assert (await store.get_drain(back)).state is DrainState.DONE, second.tail()
        assert all(vm_location(lab, j.vm) == {A: "running"} for j in jobs)
        assert await second.finish() == 0, second.tail()
    finally:
        for bot in (first, second):
            if bot is not None:
                bot.stop()
        await store.close()
