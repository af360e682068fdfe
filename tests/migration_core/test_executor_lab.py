"""The executor against the real two-host lab: every migration type of the seed (each A -> B, verified,
guest memory checked, then back), the busy guest on a throttled link (plain live aborted cleanly, post-copy
completes), abort mid-flight, the destination daemon killed mid-migration, operator controls, progress
events, and restart recovery (reattach)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from migration_core.errors import RequestError, StateError
from migration_core.events import (
    DecisionMade,
    Notice,
    NoticeKind,
    ProgressUpdated,
    RecordingSink,
    SummaryReady,
)
from migration_core.execution.executor import Executor
from migration_core.execution.types import ExecutionResult
from migration_core.hypervisor.libvirt_adapter import Hypervisor
from migration_core.hypervisor.types import DomainState
from migration_core.models import (
    CheckStatus,
    ControlAction,
    CopyStorage,
    JobState,
    MigrationMode,
    MigrationOptions,
    Phase,
    Plan,
    ProgressSample,
    VerificationSummary,
)
from tests.labkit import REPO, LabInfo, console_status, kill_daemon, link_rate, link_reset, start_daemon
from tests.migration_core.executor_lab_support import (
    A,
    B,
    Guest,
    allocated_bytes,
    disk_copy,
    drop_guest,
    forget_on,
    healthy_link,
    inventory,
    make_guest,
    plan_for,
    wait_console_after,
)

pytestmark = pytest.mark.lab
_job_ids = iter(range(1000, 100000))


@pytest.fixture(scope="module")
def hv(lab: LabInfo) -> Iterator[Hypervisor]:
    healthy_link(lab)
    yield Hypervisor({A: lab.host(A).uri, B: lab.host(B).uri})


def _guest_fixture(template: str, name: str, **kw: object):  # type: ignore[no-untyped-def]
    @pytest.fixture(scope="module")
    def fixture(lab: LabInfo, hv: Hypervisor) -> Iterator[Guest]:
        g = asyncio.run(make_guest(hv, lab, template, name, **kw))  # type: ignore[arg-type]
        yield g
        asyncio.run(drop_guest(hv, lab, g))

    return fixture


idle = _guest_fixture("vm42", "xt-idle")
disky = _guest_fixture("disky", "xt-disky")
# 1 GiB virtual, 8 MiB of data: a thin disk must arrive thin.
thin = _guest_fixture("disky", "xt-thin", disk_mib=1024)
stopped = _guest_fixture("stopped", "xt-stopped", start=False)
# A small working set that the guest rewrites faster than the capped link carries: only throttling helps.
throttled = _guest_fixture("vm42", "xt-ac", cmdline="mem=8 rate=2000")
busy = _guest_fixture("busy", "xt-busy")


async def _xml(hv: Hypervisor, lab: LabInfo, guest: Guest) -> str:
    for host in (A, B):
        info = await hv.domain(lab.host(host).uri, guest.uuid)
        if info.present:
            return await hv.domain_xml(lab.host(host).uri, guest.uuid, migratable=False)
    raise AssertionError(f"{guest.name} is defined nowhere")


async def _plan(
    hv: Hypervisor, lab: LabInfo, guest: Guest, src: str, dst: str, opts: MigrationOptions, **kw: object
) -> Plan:
    return plan_for(lab, guest, await _xml(hv, lab, guest), source=src, destination=dst, options=opts, **kw)  # type: ignore[arg-type]


def _samples(sink: RecordingSink, job_id: int) -> list[ProgressSample]:
    return [e.sample for e in sink.events if isinstance(e, ProgressUpdated) and e.sample.job_id == job_id]


def _assert_progress(sink: RecordingSink, job_id: int, *, done: bool) -> list[ProgressSample]:
    samples = _samples(sink, job_id)
    percents = [s.percent for s in samples]
    assert percents == sorted(percents), f"progress went backwards: {percents}"
    if done:
        assert samples and samples[-1].percent == 100.0 and samples[-1].phase is Phase.DONE
        assert all(s.percent < 100 for s in samples[:-1])
    return samples


async def _go(ex: Executor, plan: Plan) -> tuple[ExecutionResult, VerificationSummary]:
    job = next(_job_ids)
    result = await ex.run(job, plan)
    return result, await ex.summarize(plan, result)


def _passed(summary: VerificationSummary) -> None:
    failed = [c for c in summary.checks if c.status is CheckStatus.FAIL]
    assert summary.outcome is JobState.SUCCEEDED and not failed, (summary.headline, failed)


async def _console_clean(lab: LabInfo, guest: Guest) -> None:
    """A fresh status line after the migration, with no lost or corrupted page since boot."""
    before = console_status(lab, guest.name)
    status = await wait_console_after(lab, guest, before.t_s if before else None)
    assert status.ok, (status, status.corrupt_lines)


@dataclass(frozen=True)
class Trip:
    plan: Plan
    result: ExecutionResult
    summary: VerificationSummary
    sink: RecordingSink


async def _roundtrip(
    hv: Hypervisor,
    lab: LabInfo,
    guest: Guest,
    opts: MigrationOptions,
    *,
    back: MigrationOptions | None = None,
    **kw: object,
) -> Trip:
    """A -> B with `opts` (verified, guest checked), then back B -> A with `back` (default: the same)."""
    sink = RecordingSink()
    ex = Executor(hv, inventory(lab), sink)
    plan = await _plan(hv, lab, guest, A, B, opts, **kw)
    result, summary = await _go(ex, plan)
    _passed(summary)
    _assert_progress(sink, result.job_id, done=True)
    assert isinstance(sink.events[-1], SummaryReady) and sink.events[-1].summary == summary
    if plan.mode is MigrationMode.LIVE:
        await _console_clean(lab, guest)
    # Home again; undefine-source there, so no stale definition stays on B for the next test.
    home = await _plan(hv, lab, guest, B, A, back or replace(opts, undefine_source=True), **kw)
    _, back_summary = await _go(ex, home)
    _passed(back_summary)
    if plan.mode is MigrationMode.LIVE:
        await _console_clean(lab, guest)
    return Trip(plan, result, summary, sink)


def _check(summary: VerificationSummary, name: str) -> str:
    return next(c.reason for c in summary.checks if c.name == name)


# ----- every migration type --------------------------------------------------------------------------------


async def test_live_persistent(lab: LabInfo, hv: Hypervisor, idle: Guest) -> None:
    trip = await _roundtrip(hv, lab, idle, MigrationOptions())
    assert {"VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST"} <= set(trip.plan.flags)
    assert not trip.result.postcopy and trip.result.completed is not None
    assert trip.summary.headline.startswith(f"{idle.name} is running on {B} (live migration from {A}")
    assert "shut off and still defined" in _check(trip.summary, "source")
    assert "persistent on hostB (asked: persistent)" in _check(trip.summary, "persistence")
    assert trip.summary.downtime_ms is not None and trip.summary.data_bytes and trip.summary.iterations
    assert trip.summary.total_s and trip.summary.throughput_mib_s
    agent = next(c for c in trip.summary.checks if c.name == "guest_agent")
    assert agent.status is CheckStatus.SKIPPED and agent.reason == "no guest agent configured"
    alive = next(c for c in trip.summary.checks if c.name == "guest_liveness")
    assert alive.status is CheckStatus.PASS and "vCPU time +" in alive.reason and f"on {B}" in alive.reason
    assert trip.summary.evidence == alive.reason
    print(f"\nliveness evidence: {trip.summary.evidence}")
    # one owner: the verified move removed A's shut-off definition (and the way home removed B's)
    assert "removed hostA's shut-off definition" in _check(trip.summary, "source_definition")
    assert not (await hv.domain(lab.host(B).uri, idle.uuid)).present


async def test_undefine_source(lab: LabInfo, hv: Hypervisor, idle: Guest) -> None:
    trip = await _roundtrip(hv, lab, idle, MigrationOptions(undefine_source=True))
    assert "VIR_MIGRATE_UNDEFINE_SOURCE" in trip.plan.flags
    assert trip.result.source is not None and not trip.result.source.present
    assert "expected: undefined" in _check(trip.summary, "source")


async def test_transient_then_persistent(lab: LabInfo, hv: Hypervisor, idle: Guest) -> None:
    # Out as a temporary move (transient on B, A keeps its definition), home as a permanent one.
    trip = await _roundtrip(
        hv, lab, idle, MigrationOptions(persistent=False), back=MigrationOptions(undefine_source=True)
    )
    assert "VIR_MIGRATE_PERSIST_DEST" not in trip.plan.flags
    assert trip.result.destination is not None and not trip.result.destination.persistent
    assert "transient on hostB (asked: transient)" in _check(trip.summary, "persistence")
    home = await hv.domain(lab.host(A).uri, idle.uuid)
    assert home.state is DomainState.RUNNING and home.persistent
    assert not (await hv.domain(lab.host(B).uri, idle.uuid)).present


async def test_offline(lab: LabInfo, hv: Hypervisor, stopped: Guest) -> None:
    trip = await _roundtrip(hv, lab, stopped, MigrationOptions(undefine_source=True), running=False)
    assert trip.plan.mode is MigrationMode.OFFLINE
    assert {"VIR_MIGRATE_OFFLINE", "VIR_MIGRATE_PERSIST_DEST"} <= set(trip.plan.flags)
    assert "defined and shut off" in _check(trip.summary, "destination")
    assert trip.summary.headline.startswith(f"{stopped.name} is defined (shut off) on {B}")
    home = await hv.domain(lab.host(A).uri, stopped.uuid)
    assert home.state is DomainState.SHUTOFF and home.persistent


async def test_postcopy_switches_automatically_after_n_seconds(lab: LabInfo, hv: Hypervisor, idle: Guest) -> None:
    # At 8 MiB/s the first pass over the guest's 32 MiB working set lasts ~4 s; the plan: post-copy after 1 s.
    trip = await _roundtrip(
        hv, lab, idle, MigrationOptions(postcopy_after_s=1.0, bandwidth_mib_s=8), back=MigrationOptions()
    )
    assert "VIR_MIGRATE_POSTCOPY" in trip.plan.flags and trip.plan.policy.allow_postcopy
    assert trip.result.postcopy
    switch = [d for d in trip.result.decisions if d.action is ControlAction.SWITCH_POSTCOPY]
    assert switch and "switching to post-copy" in switch[0].reason and "limit 1 s" in switch[0].reason
    made = [e for e in trip.sink.events if isinstance(e, DecisionMade)]
    assert made and made[0].decision == switch[0]
    assert any(isinstance(e, Notice) and e.kind is NoticeKind.POSTCOPY for e in trip.sink.events)
    assert "post-copy migration" in trip.summary.headline


async def test_auto_converge_throttles_the_guest(lab: LabInfo, hv: Hypervisor, throttled: Guest) -> None:
    # The guest rewrites 8 MiB at 7.8 MiB/s; capped at 6 MiB/s pre-copy only ends because the vCPU is throttled.
    trip = await _roundtrip(
        hv, lab, throttled, MigrationOptions(auto_converge=True, bandwidth_mib_s=6), back=MigrationOptions()
    )
    assert "VIR_MIGRATE_AUTO_CONVERGE" in trip.plan.flags and "auto_converge.initial" in trip.plan.params
    assert max(s.auto_converge_throttle_pct for s in _samples(trip.sink, trip.result.job_id)) > 0


@pytest.mark.parametrize("connections", [2, 4])
async def test_parallel_connections(lab: LabInfo, hv: Hypervisor, idle: Guest, connections: int) -> None:
    trip = await _roundtrip(hv, lab, idle, MigrationOptions(parallel_connections=connections))
    assert "VIR_MIGRATE_PARALLEL" in trip.plan.flags
    assert trip.plan.params["parallel.connections"] == connections


async def test_max_downtime_and_bandwidth_cap(lab: LabInfo, hv: Hypervisor, idle: Guest) -> None:
    """The plan's first downtime step and bandwidth reach libvirt; operators change both mid-flight."""
    sink = RecordingSink()
    ex = Executor(hv, inventory(lab), sink)
    plan = await _plan(hv, lab, idle, A, B, MigrationOptions(max_downtime_ms=50, bandwidth_mib_s=8))
    job = next(_job_ids)
    seen: dict[str, int] = {}

    async def probe(sample: ProgressSample) -> None:
        # Runs on every sample: read the live settings back from libvirt, then change them as operators.
        if sample.data_processed_bytes and "downtime" not in seen:
            seen["downtime"] = await hv.get_max_downtime(lab.host(A).uri, idle.uuid)
            seen["speed"] = await hv.get_max_speed(lab.host(A).uri, idle.uuid)
            await ex.set_max_downtime(job, 40, "bob")
            await ex.set_bandwidth(job, 64, "alice")
            seen["downtime2"] = await hv.get_max_downtime(lab.host(A).uri, idle.uuid)
            seen["speed2"] = await hv.get_max_speed(lab.host(A).uri, idle.uuid)

    ex.record_progress = probe
    result = await ex.run(job, plan)
    summary = await ex.summarize(plan, result)
    _passed(summary)
    assert plan.params["bandwidth"] == 8 and plan.policy.max_downtime_ms == 50
    assert seen == {"downtime": plan.policy.downtime_ramp_ms[0], "speed": 8, "downtime2": 40, "speed2": 64}
    actions = [(c.actor, c.action) for c in result.controls]
    assert actions == [("bob", "set_max_downtime"), ("alice", "set_bandwidth")]
    texts = [e.text for e in sink.events if isinstance(e, Notice) and e.kind is NoticeKind.CONTROL]
    assert texts == ["bob: max downtime set to 40 ms", "alice: pre-copy bandwidth capped at 64 MiB/s"]
    assert summary.downtime_target_ms == 50 and "target 50 ms" in _check(summary, "downtime")
    await _console_clean(lab, idle)
    _, back = await _go(ex, await _plan(hv, lab, idle, B, A, MigrationOptions()))
    _passed(back)


def _has_data(image: Path) -> bool:
    """The lab disk's first 8 MiB still hold the pattern make_guest wrote (qemu-io reads it back)."""
    proc = subprocess.run(
        ["qemu-io", "-r", "-U", "-f", "qcow2", "-c", "read -P 0x5a 0 8M", str(image)], capture_output=True, text=True
    )
    return proc.returncode == 0 and "Pattern verification failed" not in proc.stdout


async def _copy_leg(
    ex: Executor, hv: Hypervisor, lab: LabInfo, guest: Guest, src: str, dst: str, opts: MigrationOptions
) -> VerificationSummary:
    before = allocated_bytes(disk_copy(lab, src, guest))
    _, summary = await _go(ex, await _plan(hv, lab, guest, src, dst, opts, local_disks=("vda",)))
    _passed(summary)
    after = allocated_bytes(disk_copy(lab, dst, guest))
    mib = 1024 * 1024
    print(f"\n{guest.name} {src}->{dst}: source image {before / mib:.1f} MiB allocated, destination "
          f"{(after or 0) / mib:.1f} MiB allocated after the copy")  # fmt: skip
    assert before is not None and after is not None
    assert after <= before + 4 * mib, f"the copy arrived fat: {after} bytes allocated for {before} on the source"
    assert _has_data(disk_copy(lab, dst, guest))
    await _console_clean(lab, guest)
    return summary


async def test_copy_storage_all(lab: LabInfo, hv: Hypervisor, disky: Guest) -> None:
    """A -> B -> A with --copy-storage all: each leg copies a thin image, and (one owner) the verified move
    deletes the image it copied from the source, and says so."""
    ex = Executor(hv, inventory(lab), RecordingSink())
    opts = MigrationOptions(copy_storage=CopyStorage.ALL)
    there = await _copy_leg(ex, hv, lab, disky, A, B, opts)
    assert "/var/lib/libvirt/xt-disks/xt-disky.qcow2 (vda)" in _check(there, "source_images")
    assert allocated_bytes(disk_copy(lab, A, disky)) is None, "the copied image stayed on the source"
    assert not (await hv.domain(lab.host(A).uri, disky.uuid)).present
    back = await _copy_leg(ex, hv, lab, disky, B, A, opts)
    assert "deleted the images copied to hostA from hostB" in _check(back, "source_images")
    assert allocated_bytes(disk_copy(lab, B, disky)) is None


async def test_thin_disk_round_trip_keep_source_then_stale_image_replaced(
    lab: LabInfo, hv: Hypervisor, thin: Guest
) -> None:
    """1 GiB virtual, 8 MiB used: arrives with about 8 MiB allocated. Out with --keep-source (A keeps its
    definition and image: a stale copy), back with --copy-storage all: the stale image on A is recognised (not
    shared storage) and replaced by a fresh thin copy."""
    sink = RecordingSink()
    ex = Executor(hv, inventory(lab), sink)
    out = await _copy_leg(ex, hv, lab, thin, A, B, MigrationOptions(copy_storage=CopyStorage.ALL, keep_source=True))
    kept = _check(out, "source_cleanup")
    assert "kept on hostA (--keep-source)" in kept and "xt-thin.qcow2" in kept
    assert (await hv.domain(lab.host(A).uri, thin.uuid)).present and allocated_bytes(disk_copy(lab, A, thin))
    # Home: A's definition is this VM's own old copy (same UUID), its image a stale one.
    back = await _copy_leg(ex, hv, lab, thin, B, A, MigrationOptions(copy_storage=CopyStorage.ALL))
    notices = [e.text for e in sink.events if isinstance(e, Notice) and "pre-created" in e.text]
    assert any("replacing a stale copy" in t and "on hostA" in t for t in notices), notices
    assert "removed hostB's shut-off definition" in _check(back, "source_definition")
    assert allocated_bytes(disk_copy(lab, B, thin)) is None


async def test_local_disk_without_copy_storage_is_refused_clearly(lab: LabInfo, hv: Hypervisor, disky: Guest) -> None:
    sink = RecordingSink()
    ex = Executor(hv, inventory(lab), sink)
    result, summary = await _go(ex, await _plan(hv, lab, disky, A, B, MigrationOptions()))
    assert result.outcome is JobState.FAILED and result.error is not None
    assert "not on storage it considers shared" in result.error and "--copy-storage" in (result.hint or "")
    assert summary.outcome is JobState.FAILED and "still runs on hostA" in (summary.next_step or "")
    assert (await hv.domain(lab.host(A).uri, disky.uuid)).state is DomainState.RUNNING
    assert any(isinstance(e, Notice) and e.kind is NoticeKind.FAILURE for e in sink.events)


# ----- the busy guest on a throttled link ------------------------------------------------------------------


@pytest.fixture
def slow_link(lab: LabInfo) -> Iterator[None]:
    link_rate(lab, 16)  # MiB/s, both directions (tc tbf): below the busy guest's 31 MiB/s of dirtying
    yield
    link_reset(lab)


async def test_busy_guest_plain_live_does_not_converge_and_is_aborted_cleanly(
    lab: LabInfo, hv: Hypervisor, busy: Guest, slow_link: None
) -> None:
    sink = RecordingSink()
    ex = Executor(hv, inventory(lab), sink)
    plan = await _plan(hv, lab, busy, A, B, MigrationOptions())
    # A short stall timeout keeps the test short; the budget stays as a backstop.
    plan = replace(plan, policy=replace(plan.policy, stall_timeout_s=6.0, timeout_s=60.0))
    result, summary = await _go(ex, plan)
    assert result.outcome is JobState.ABORTED and result.aborted_by == "convergence controller"
    assert (result.error or "").startswith("aborted by convergence controller: stalled for")
    aborts = [d for d in result.decisions if d.action is ControlAction.ABORT]
    assert aborts and "aborting" in aborts[-1].reason and "post-copy is not allowed" in aborts[-1].reason
    samples = _assert_progress(sink, result.job_id, done=False)
    assert any(s.stalled for s in samples) and max(s.percent for s in samples) < 100
    assert any(isinstance(e, Notice) and e.kind is NoticeKind.STALLED for e in sink.events)
    assert summary.outcome is JobState.ABORTED and f"stays on {A}" in summary.headline
    assert "running" in _check(summary, "source") and summary.source_state.startswith("running")
    assert not (await hv.domain(lab.host(B).uri, busy.uuid)).present  # nothing left behind
    await _console_clean(lab, busy)


async def test_busy_guest_completes_with_postcopy(lab: LabInfo, hv: Hypervisor, busy: Guest, slow_link: None) -> None:
    """The planner's recommendation for a guest that outruns the link: post-copy. An abort in post-copy is
    refused (it would lose the VM)."""
    sink = RecordingSink()
    ex = Executor(hv, inventory(lab), sink)
    # Switch after the first full pass (~9 s at 16 MiB/s); the rest is pulled by the destination.
    plan = await _plan(hv, lab, busy, A, B, MigrationOptions(postcopy_after_s=10, undefine_source=True))
    job = next(_job_ids)
    refusals: list[str] = []

    async def try_abort(sample: ProgressSample) -> None:
        if sample.phase is Phase.POSTCOPY and not refusals:
            with pytest.raises(StateError) as refused:
                await ex.abort(job, "dave")
            refusals.append(refused.value.message)

    ex.record_progress = try_abort
    result = await ex.run(job, plan)
    summary = await ex.summarize(plan, result)
    _passed(summary)
    assert result.postcopy and any(d.action is ControlAction.SWITCH_POSTCOPY for d in result.decisions)
    assert refusals and "aborting now would lose the VM" in refusals[0]
    assert any(c.actor == "dave" and not c.applied for c in result.controls)
    await _console_clean(lab, busy)
    # Bring it home on the full-speed link (plain pre-copy converges there).
    link_reset(lab)
    _, back = await _go(ex, await _plan(hv, lab, busy, B, A, MigrationOptions(undefine_source=True)))
    _passed(back)


# ----- aborts, faults, controls ----------------------------------------------------------------------------


async def _wait_for_data(sink: RecordingSink, job: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(s.data_processed_bytes > 0 for s in _samples(sink, job)):
        assert time.monotonic() < deadline, "no progress sample with data"
        await asyncio.sleep(0.1)


async def test_abort_mid_flight_leaves_the_vm_on_the_source(lab: LabInfo, hv: Hypervisor, idle: Guest) -> None:
    sink = RecordingSink()
    ex = Executor(hv, inventory(lab), sink)
    await forget_on(hv, lab, idle, B)
    plan = await _plan(hv, lab, idle, A, B, MigrationOptions(bandwidth_mib_s=2))
    job = next(_job_ids)
    task = asyncio.ensure_future(ex.run(job, plan))
    await _wait_for_data(sink, job)
    with pytest.raises(StateError, match="was not started with post-copy"):
        await ex.switch_postcopy(job, "erin")
    with pytest.raises(RequestError):
        await ex.set_max_downtime(job, 0, "erin")
    await ex.abort(job, "carol")
    result = await task
    summary = await ex.summarize(plan, result)
    assert result.outcome is JobState.ABORTED and result.aborted_by == "carol"
    assert summary.outcome is JobState.ABORTED and "stays on hostA" in summary.headline
    assert (await hv.domain(lab.host(A).uri, idle.uuid)).state is DomainState.RUNNING
    assert not (await hv.domain(lab.host(B).uri, idle.uuid)).present  # the destination has nothing left
    assert "carol: abort requested" in next(e.text for e in sink.events if isinstance(e, Notice))
    with pytest.raises(StateError, match="no migration running"):
        await ex.abort(job, "carol")
    await _console_clean(lab, idle)


async def test_destination_daemon_killed_mid_migration(lab: LabInfo, hv: Hypervisor, idle: Guest) -> None:
    sink = RecordingSink()
    ex = Executor(hv, inventory(lab), sink)
    plan = await _plan(hv, lab, idle, A, B, MigrationOptions(bandwidth_mib_s=4))
    job = next(_job_ids)
    task = asyncio.ensure_future(ex.run(job, plan))
    try:
        await _wait_for_data(sink, job)
        await asyncio.to_thread(kill_daemon, lab, B)
        result = await asyncio.wait_for(task, 90)
        summary = await ex.summarize(plan, result)
    finally:
        await asyncio.to_thread(start_daemon, lab, B)
    assert result.outcome is JobState.FAILED and result.error
    assert summary.outcome is JobState.FAILED and "still runs on hostA" in (summary.next_step or "")
    assert (await hv.domain(lab.host(A).uri, idle.uuid)).state is DomainState.RUNNING
    await _console_clean(lab, idle)
    deadline = time.monotonic() + 30  # the restarted daemon cleans up the orphaned incoming QEMU
    while (await hv.domain(lab.host(B).uri, idle.uuid)).active:
        assert time.monotonic() < deadline, "hostB kept the half-migrated VM"
        await asyncio.sleep(0.5)


_STARTER = textwrap.dedent("""
    import asyncio, sys
    from migration_core.hypervisor.libvirt_adapter import Hypervisor
    from migration_core.hypervisor.types import MigrationCall
    src, vm, peer, migrate_uri = sys.argv[1:5]
    flags = ["VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST", "VIR_MIGRATE_UNDEFINE_SOURCE"]
    print("starting", flush=True)
    call = MigrationCall(tuple(flags), {"bandwidth": 24, "migrate_uri": migrate_uri}, peer_uri=peer)
    asyncio.run(Hypervisor().migrate(src, vm, call))
""")


async def test_reattach_after_the_bot_died(lab: LabInfo, hv: Hypervisor, idle: Guest) -> None:
    """Restart recovery: a bot process started a P2P migration and was killed; a new executor finds the job
    still running on the source, watches it to the end, and reports the true outcome."""
    a, b = lab.host(A), lab.host(B)
    plan = await _plan(hv, lab, idle, A, B, MigrationOptions(undefine_source=True))
    sink = RecordingSink()
    ex = Executor(hv, inventory(lab), sink)
    nothing = await ex.reattach(next(_job_ids), plan)  # no job, VM still on A: Nova's "failed"
    assert nothing.outcome is JobState.FAILED and "still runs on hostA" in (nothing.error or "")
    child = subprocess.Popen(
        [sys.executable, "-c", _STARTER, a.uri, idle.uuid, b.peer_uri, f"tcp://{b.ip}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "starting"
    deadline = time.monotonic() + 30
    while not (await hv.job_stats(a.uri, idle.uuid)).active:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    job = next(_job_ids)
    result = await ex.reattach(job, plan)
    assert result.reattached and result.outcome is JobState.SUCCEEDED
    assert _assert_progress(sink, job, done=True)
    summary = await ex.summarize(plan, result)
    _passed(summary)
    again = await ex.reattach(next(_job_ids), plan)  # after the end: the heuristic, from where the VM is
    assert again.outcome is JobState.SUCCEEDED
    await _console_clean(lab, idle)
    _, back = await _go(ex, await _plan(hv, lab, idle, B, A, MigrationOptions(undefine_source=True)))
    _passed(back)
