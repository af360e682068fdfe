"""Restart recovery with the bot as a real process: `kill -9` mid-migration and while a job awaits approval,
then start it again on the same database. The migration runs peer-to-peer, so libvirt carries on without the
bot; the restarted bot (same replica id: the host name by default) finds the job, reattaches its monitor,
verifies, and closes the record with the true outcome."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from migration_core.hypervisor.libvirt_adapter import Hypervisor
from migration_core.models import JobState
from migration_core.store import EventKind, Store
from tests.labkit import LabInfo
from tests.reliability.support import (
    A,
    B,
    ConsoleBot,
    assert_guest_intact,
    bot_env,
    lab_guest,
    source_job_active,
    states_of,
    summary_of,
    wait_progress,
    wait_state,
    where,
)

pytestmark = pytest.mark.lab
MIB = 1024 * 1024


async def _second_life_succeeds(
    env: dict[str, str], logs: Path, job_id: int, *lines: str, timeout_s: float, user: str = "alice"
) -> ConsoleBot:
    """A second life of the bot (a new console process on the same database) types `lines` and must report
    the job succeeded, then end with exit code 0. Returns it (stopped), for its output."""
    second = ConsoleBot("second-life", env, logs, user=user)
    try:
        second.send(*lines)
        await second.expect(rf"\[job {job_id}\] ended: succeeded", timeout_s)
        assert await second.finish() == 0
    finally:
        second.stop()
    return second


async def test_kill_9_mid_migration_then_restart_finishes_the_job(
    lab: LabInfo, hv: Hypervisor, tmp_path: Path, logs: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    env = bot_env(lab, db)  # no MIGRATE_BOT_REPLICA_ID: both lives use the host name, so the second resumes
    # A guest that dirties 16 MiB/s, capped at 8 MiB/s: pre-copy cannot converge, so after 8 s the controller
    # switches to post-copy, which then pulls the rest (~20 s in all). The bot is killed in pre-copy: the
    # second life must take over the steering (the switch) as well as the watching.
    busy = "mem=96 rate=4000"
    async with lab_guest(hv, lab, "rel-restart", template="busy", cmdline=busy, filled_after_s=6) as guest:
        store = await Store.open(db)
        first = None
        try:
            first = ConsoleBot("first-life", env, logs)
            first.send(f"/migrate {guest.name} to {B} --bandwidth 8 --postcopy-after 8s", "as bob")
            job_id = int((await first.expect(r"job (\d+) created", 90)).group(1))
            first.send(f"approve {job_id}", "as carol", f"approve {job_id}")  # post-copy: two approvals
            await wait_state(store, job_id, {JobState.RUNNING}, 60)
            await wait_progress(store, job_id, 8 * MIB)
            first.kill9()
            killed_at = datetime.now(UTC)
            # P2P: the source libvirtd runs the migration; the bot's death does not stop it.
            assert await source_job_active(hv, lab, A, guest.name), "the migration died with the bot"
            assert (await store.get_job(job_id)).state is JobState.RUNNING

            second = await _second_life_succeeds(env, logs, job_id, f"wait {job_id}", timeout_s=120)
        finally:
            if first is not None:
                first.stop()
        job = await store.get_job(job_id)
        events = await store.events(job_id)
        samples = await store.progress(job_id)
        await store.close()
        # The truth on both hosts: running on B only (one owner: the verified move removed the source's definition).
        assert where(lab, guest) == {B: "running"}  # one owner: A's definition removed
        assert_guest_intact(lab, guest)
    assert job.state is JobState.SUCCEEDED and job.error is None
    assert states_of(events) == [
        "requested",
        "preflight",
        "awaiting_approval",
        "approved",
        "running",
        "verifying",
        "succeeded",
    ]
    me = socket.gethostname()
    leases = [e.detail for e in events if e.kind is EventKind.LEASE]
    assert f"claimed by {me}" in leases and f"resumed by {me}" in leases, leases
    assert any("reattaching to the migration" in e.detail for e in events if e.kind is EventKind.NOTICE)
    # The second life watched the running migration (its own samples), not just the end of it.
    after = [s for s in samples if s.at > killed_at]
    assert after and after[-1].percent == 100.0 and any(s.percent < 100 for s in after)
    assert any(s.phase.value == "post-copy" for s in after), "the second life did not steer into post-copy"
    summary = summary_of(events)
    assert summary["outcome"] == "succeeded"
    assert "second-life" not in first.output() and "summary" not in first.output().lower()
    assert "succeeded" in second.output().lower()


async def _requested_then_killed(env: dict[str, str], logs: Path, vm: str) -> int:
    """A first life requests the move of `vm` to hostB and is killed (-9) while the job awaits approval."""
    first = ConsoleBot("first-life", env, logs)
    try:
        first.send(f"/migrate {vm} to {B}")
        job_id = int((await first.expect(r"job (\d+) created", 90)).group(1))
        await first.expect(r"awaiting_approval")
        first.kill9()
    finally:
        first.stop()
    return job_id


async def test_kill_9_while_awaiting_approval_then_approve_after_restart(
    lab: LabInfo, hv: Hypervisor, tmp_path: Path, logs: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    env = bot_env(lab, db)
    async with lab_guest(hv, lab, "rel-approve") as guest:
        store = await Store.open(db)
        job_id = await _requested_then_killed(env, logs, guest.name)
        assert (await store.get_job(job_id)).state is JobState.AWAITING_APPROVAL
        await _second_life_succeeds(env, logs, job_id, f"approve {job_id}", f"wait {job_id}", timeout_s=120, user="bob")
        job = await store.get_job(job_id)
        events = await store.events(job_id)
        await store.close()
        assert where(lab, guest) == {B: "running"}  # one owner: A's definition removed
        assert_guest_intact(lab, guest)
    assert job.state is JobState.SUCCEEDED and job.approvers == ("bob",)
    assert states_of(events)[-5:] == ["awaiting_approval", "approved", "running", "verifying", "succeeded"]
    assert summary_of(events)["outcome"] == "succeeded"


async def test_kill_9_before_libvirt_started_then_restart_starts_it(
    lab: LabInfo, hv: Hypervisor, tmp_path: Path, logs: Path
) -> None:
    """The bot dies between marking the job running and calling libvirt (issue 11). The first life is killed
    while the job awaits approval; then the database is put exactly where the dispatcher leaves it just before
    the migrate call (approved, leased to this host's replica id, running), with no migration on the hosts.
    The restarted bot must prove nothing started and run the move, not judge it failed."""
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    env = bot_env(lab, db)
    async with lab_guest(hv, lab, "rel-unstarted") as guest:
        store = await Store.open(db)
        job_id = await _requested_then_killed(env, logs, guest.name)
        job = await store.get_job(job_id)
        assert job.state is JobState.AWAITING_APPROVAL and job.plan is not None
        await store.add_approval(job_id, "bob", True, job.plan.hash)
        await store.transition(job_id, JobState.AWAITING_APPROVAL, JobState.APPROVED, actor="bob")
        assert await store.take_over(job_id, socket.gethostname(), 30.0) is not None
        await store.transition(job_id, JobState.APPROVED, JobState.RUNNING, detail=f"migrating {A} -> {B}")
        assert not await source_job_active(hv, lab, A, guest.name)
        await _second_life_succeeds(env, logs, job_id, f"wait {job_id}", timeout_s=180)
        job = await store.get_job(job_id)
        events = await store.events(job_id)
        await store.close()
        assert where(lab, guest) == {B: "running"}
        assert_guest_intact(lab, guest)
    assert job.state is JobState.SUCCEEDED, job.error
    assert states_of(events)[-6:] == ["approved", "running", "queued", "running", "verifying", "succeeded"]
    notices = [e.detail for e in events if e.kind is EventKind.NOTICE]
    assert any("stopped before libvirt started this migration; starting it again" in n for n in notices), notices
    assert summary_of(events)["outcome"] == "succeeded"
