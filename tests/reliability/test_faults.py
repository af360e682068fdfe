"""Fault injection in the real lab, through the bot's service (wired as `serve` wires it): a daemon killed or
restarted mid-migration, the migration link cut in pre-copy and in post-copy, the database stopped. Each test
ends with the VM's true state read from both hosts and the job's record checked to be complete: every state,
notice, controller decision and progress sample the front end was shown is in the store, plus the summary."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from migration_core.events import DecisionMade, Notice, ProgressUpdated, StateChanged, SummaryReady
from migration_core.grammar.parser import MigrateCommand, parse_command
from migration_core.hypervisor.libvirt_adapter import Hypervisor
from migration_core.models import JobState, Phase
from migration_core.store import EventKind, Store
from tests.fixtures.postgres import run_pg_script
from tests.labkit import LabInfo, kill_daemon, link_down, link_reset, link_up, start_daemon
from tests.migration_core.executor_lab_support import Guest
from tests.reliability.support import (
    A,
    B,
    InProcessBot,
    assert_guest_intact,
    bot_env,
    in_process_bot,
    lab_guest,
    states_of,
    summary_of,
    wait_progress,
    wait_state,
    where,
)

pytestmark = pytest.mark.lab
MIB = 1024 * 1024
BUSY = "mem=64 rate=4000"  # 16 MiB/s of dirtying: at 8 MiB/s only post-copy finishes


@pytest.fixture
def link_restored(lab: LabInfo) -> Iterator[None]:
    """Whatever happens in the test, the shared lab gets its link back, up and unshaped."""
    try:
        yield
    finally:
        link_up(lab)
        link_reset(lab)


async def start_job(bot: InProcessBot, text: str, approvers: tuple[str, ...] = ("bob",)) -> int:
    command = parse_command(text)
    assert isinstance(command, MigrateCommand)
    job = await bot.service.submit(command.request, "alice")
    assert job.state is JobState.AWAITING_APPROVAL, job.error
    for person in approvers:
        await bot.service.approve(job.id, person)
    await wait_state(bot.store, job.id, {JobState.RUNNING}, 60)
    return job.id


async def assert_record_complete(bot: InProcessBot, job_id: int) -> None:
    """Everything the front end was told about the job is in the store, and the record ends properly."""
    assert bot.service.journal is not None and await bot.service.journal.flush(30)
    shown = [e for e in bot.sink.events if _job_of(e) == job_id]
    events = await bot.store.events(job_id)
    recorded = [e.detail for e in events]
    told = [e.text for e in shown if isinstance(e, Notice)] + [
        e.decision.reason for e in shown if isinstance(e, DecisionMade)
    ]
    missing = [t for t in told if t not in recorded]
    assert not missing, f"shown but not recorded: {missing}"
    moves = [e.new.value for e in shown if isinstance(e, StateChanged)]
    assert states_of(events)[-len(moves) :] == moves
    assert states_of(events)[-2] == "verifying" and (await bot.store.get_job(job_id)).state.terminal
    samples = [e.sample.at for e in shown if isinstance(e, ProgressUpdated)]
    stored = [s.at for s in await bot.store.progress(job_id)]
    assert stored == samples, f"{len(samples)} progress samples shown, {len(stored)} stored"
    summaries = [e.summary for e in shown if isinstance(e, SummaryReady)]
    assert summaries and summary_of(events)["outcome"] == summaries[-1].outcome.value


def _job_of(event: object) -> int | None:
    if isinstance(event, ProgressUpdated):
        return event.sample.job_id
    if isinstance(event, SummaryReady):
        return event.summary.job_id
    return getattr(event, "job_id", None)


async def eventually_where(lab: LabInfo, guest: Guest, expected: dict[str, str], timeout_s: float = 45) -> None:
    """The truth on both hosts (a restarted daemon may take a few seconds to clean up the incoming copy)."""
    deadline = time.monotonic() + timeout_s
    while (seen := where(lab, guest)) != expected:
        assert time.monotonic() < deadline, f"{guest.name} is {seen}, expected {expected}"
        await asyncio.sleep(0.5)


async def test_destination_daemon_killed_mid_migration(lab: LabInfo, hv: Hypervisor, tmp_path: Path) -> None:
    env = bot_env(lab, f"sqlite:///{tmp_path / 'bot.db'}")
    async with lab_guest(hv, lab, "rel-dstkill") as guest, in_process_bot(env) as bot:
        job_id = await start_job(bot, f"{guest.name} to {B} --bandwidth 2")
        await wait_progress(bot.store, job_id, 2 * MIB)
        try:
            await asyncio.to_thread(kill_daemon, lab, B)
            await asyncio.sleep(2)  # the supervisor brings it back
        finally:
            await asyncio.to_thread(start_daemon, lab, B)
        job = await wait_state(bot.store, job_id, {JobState.FAILED}, 90)
        assert job.error and B in job.error, job.error
        await eventually_where(lab, guest, {A: "running"})
        assert_guest_intact(lab, guest)
        await assert_record_complete(bot, job_id)
        summary = summary_of(await bot.store.events(job_id))
        assert f"still runs on {A}" in str(summary["next_step"])


async def test_source_daemon_restarted_mid_migration(lab: LabInfo, hv: Hypervisor, tmp_path: Path) -> None:
    env = bot_env(lab, f"sqlite:///{tmp_path / 'bot.db'}")
    async with lab_guest(hv, lab, "rel-srcrestart") as guest, in_process_bot(env) as bot:
        job_id = await start_job(bot, f"{guest.name} to {B} --bandwidth 2")
        await wait_progress(bot.store, job_id, 2 * MIB)
        try:
            await asyncio.to_thread(kill_daemon, lab, A)
            await asyncio.sleep(1)
        finally:
            await asyncio.to_thread(start_daemon, lab, A)
        # On restart libvirtd finds its outgoing migration in pre-copy and cancels it: the VM stays on hostA.
        job = await wait_state(bot.store, job_id, {JobState.FAILED}, 90)
        assert job.error and "lost a libvirt connection" in job.error, job.error
        await eventually_where(lab, guest, {A: "running"})
        assert_guest_intact(lab, guest)
        await assert_record_complete(bot, job_id)
        summary = summary_of(await bot.store.events(job_id))
        assert summary["source_state"] == "running (booted), persistent"


async def test_link_cut_in_precopy_is_aborted_after_the_stall_timeout(
    lab: LabInfo, hv: Hypervisor, tmp_path: Path, link_restored: None
) -> None:
    env = bot_env(lab, f"sqlite:///{tmp_path / 'bot.db'}")
    async with lab_guest(hv, lab, "rel-cutpre") as guest, in_process_bot(env, stall_timeout_s=3.0) as bot:
        job_id = await start_job(bot, f"{guest.name} to {B} --bandwidth 2")
        await wait_progress(bot.store, job_id, 2 * MIB)
        await asyncio.to_thread(link_down, lab)
        # No byte moves: after 3 s without progress the controller aborts; libvirt returns once its
        # keepalive gives up on the peer connection (~8 s in the lab, ~30 s with libvirt's default). The stall
        # timeout must be the shorter, or libvirt fails the job before the controller's abort.
        job = await wait_state(bot.store, job_id, {JobState.ABORTED}, 90)
        await asyncio.to_thread(link_up, lab)
        assert job.error and job.error.startswith("aborted by convergence controller: stalled for"), job.error
        await eventually_where(lab, guest, {A: "running"})
        assert_guest_intact(lab, guest)
        await assert_record_complete(bot, job_id)
        decisions = [e for e in await bot.store.events(job_id) if e.kind is EventKind.DECISION]
        assert decisions and decisions[-1].data["action"] == "abort"


async def test_link_cut_in_postcopy_is_resumed_when_the_link_is_back(
    lab: LabInfo, hv: Hypervisor, tmp_path: Path, link_restored: None
) -> None:
    env = bot_env(lab, f"sqlite:///{tmp_path / 'bot.db'}")
    # The bot tries to resume every 2 s; with settle 0 it pauses and resumes as soon as the hosts reach each
    # other (by default it first gives the stream 15 s to carry on by itself, which it may: see the docs).
    async with (
        lab_guest(hv, lab, "rel-cutpost", template="busy", cmdline=BUSY, filled_after_s=5) as guest,
        in_process_bot(env, postcopy_retry_s=2.0, postcopy_settle_s=0.0) as bot,
    ):
        text = f"{guest.name} to {B} --bandwidth 8 --postcopy-after 3s"
        job_id = await start_job(bot, text, approvers=("bob", "carol"))
        await _wait_phase(bot.store, job_id, Phase.POSTCOPY)
        await asyncio.to_thread(link_down, lab)
        # libvirt declares the post-copy failed when its keepalive gives up (~8 s in the lab); the VM is split.
        await _wait_notice(bot.store, job_id, "broke", 90)
        assert where(lab, guest) == {A: "paused", B: "running"}  # B runs, but waits for pages it cannot get
        # The link stays down a while: the bot's attempts must find that out without touching the VM (pausing
        # the stream while the link is down crashes the destination's QEMU when the link comes back).
        await asyncio.sleep(8)
        assert where(lab, guest) == {A: "paused", B: "running"}
        await asyncio.to_thread(link_up, lab)
        job = await wait_state(bot.store, job_id, {JobState.SUCCEEDED}, 180)
        assert job.error is None
        await eventually_where(lab, guest, {B: "running"})  # one owner
        assert_guest_intact(lab, guest)  # no page lost in the split
        await assert_record_complete(bot, job_id)
        notices = [e.detail for e in await bot.store.events(job_id) if e.kind is EventKind.NOTICE]
        assert any("resuming the broken post-copy migration (POSTCOPY_RESUME)" in n for n in notices), notices
        assert any(n.startswith("post-copy recovery: after") for n in notices), notices


async def test_database_stopped_mid_migration_loses_nothing(lab: LabInfo, hv: Hypervisor, pg_database_url: str) -> None:
    env = bot_env(lab, pg_database_url)
    async with (
        lab_guest(hv, lab, "rel-dbdown", template="busy", cmdline=BUSY, filled_after_s=5) as guest,
        in_process_bot(env) as bot,
    ):
        text = f"{guest.name} to {B} --bandwidth 8 --postcopy-after 6s"
        job_id = await start_job(bot, text, approvers=("bob", "carol"))
        await wait_progress(bot.store, job_id, 4 * MIB)
        await asyncio.to_thread(run_pg_script, "stop")
        stopped = datetime.now(UTC)
        try:
            await asyncio.sleep(8)
        finally:
            await asyncio.to_thread(run_pg_script, "start")
        started = datetime.now(UTC)
        job = await wait_state(bot.store, job_id, {JobState.SUCCEEDED}, 120)
        assert job.error is None
        await eventually_where(lab, guest, {B: "running"})  # one owner
        assert_guest_intact(lab, guest)
        await assert_record_complete(bot, job_id)
        told = [e.text for e in bot.sink.events if isinstance(e, Notice) and e.job_id == job_id]
        assert any(t.startswith("the job database does not answer") for t in told), told
        assert any(t.startswith("the job database answers again") for t in told), told
        # The migration was watched and steered all along: progress kept coming while the database was away.
        shown = [e.sample for e in bot.sink.events if isinstance(e, ProgressUpdated) and e.sample.job_id == job_id]
        assert sum(stopped < s.at < started for s in shown) >= 8, "the migration's watch stalled with the database"


async def _wait_phase(store: Store, job_id: int, phase: Phase, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(s.phase is phase for s in await store.progress(job_id, limit=5)):
        assert time.monotonic() < deadline, f"job {job_id} never reached {phase.value}"
        await asyncio.sleep(0.2)


async def _wait_notice(store: Store, job_id: int, word: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(word in e.detail for e in await store.events(job_id) if e.kind is EventKind.NOTICE):
        job = await store.get_job(job_id)
        assert not job.state.terminal, f"job {job_id} ended ({job.state.value}: {job.error}) before {word!r}"
        assert time.monotonic() < deadline, f"no notice with {word!r} for job {job_id} in {timeout_s:g} s"
        await asyncio.sleep(0.5)
