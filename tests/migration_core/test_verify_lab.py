"""Verification against the VM's real state on both lab hosts: split-brain, a failure report that is wrong
about where the VM is, a VM running nowhere, an unreachable host, a guest agent that does not answer, and a
broken post-copy migration that verification sends to recovery (POSTCOPY_RESUME) which then completes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from migration_core.events import RecordingSink
from migration_core.execution.executor import Executor
from migration_core.execution.types import ExecutionResult
from migration_core.execution.verify import verify
from migration_core.hypervisor.libvirt_adapter import Hypervisor
from migration_core.hypervisor.types import DomainState, MigrationCall
from migration_core.models import CheckStatus, JobState, MigrationOptions, Phase, Plan, ProgressSample
from tests.labkit import LabInfo, console_status, link_down, link_rate, link_reset, link_up
from tests.migration_core.executor_lab_support import (
    A,
    B,
    Guest,
    clone_xml,
    drop_guest,
    healthy_link,
    inventory,
    make_guest,
    plan_for,
    wait_console_after,
)

pytestmark = pytest.mark.lab
LIVE_P2P = ("VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST", "VIR_MIGRATE_UNDEFINE_SOURCE")


@pytest.fixture(scope="module")
def hv(lab: LabInfo) -> Iterator[Hypervisor]:
    healthy_link(lab)
    yield Hypervisor({A: lab.host(A).uri, B: lab.host(B).uri})


@pytest.fixture(scope="module")
def guest(lab: LabInfo, hv: Hypervisor) -> Iterator[Guest]:
    g = asyncio.run(make_guest(hv, lab, "vm42", "xt-verify"))
    yield g
    asyncio.run(drop_guest(hv, lab, g))


def _result(
    lab: LabInfo,
    outcome: JobState,
    *,
    src: str = A,
    dst: str = B,
    error: str | None = None,
    destination_uri: str | None = None,
) -> ExecutionResult:
    now = datetime.now(UTC)
    return ExecutionResult(
        job_id=7,
        outcome=outcome,
        source_uri=lab.host(src).uri,
        destination_uri=destination_uri or lab.host(dst).uri,
        started_at=now,
        ended_at=now,
        wall_s=1.5,
        error=error,
    )


async def _plan(
    hv: Hypervisor, lab: LabInfo, guest: Guest, opts: MigrationOptions | None = None, src: str = A, dst: str = B
) -> Plan:
    xml = await hv.domain_xml(lab.host(A).uri, guest.uuid, migratable=False)
    return plan_for(lab, guest, xml, source=src, destination=dst, options=opts)


def _status(summary_checks: object, name: str) -> CheckStatus:
    return next(c.status for c in summary_checks if c.name == name)  # type: ignore[attr-defined]


async def _home(hv: Hypervisor, lab: LabInfo, guest: Guest) -> None:
    if (await hv.domain(lab.host(B).uri, guest.uuid)).active:
        await hv.migrate(lab.host(B).uri, guest.name, MigrationCall(LIVE_P2P, peer_uri=lab.host(A).peer_uri))


async def test_split_brain_is_flagged(lab: LabInfo, hv: Hypervisor, guest: Guest) -> None:
    await _home(hv, lab, guest)
    plan = await _plan(hv, lab, guest)
    # A second copy of the same VM (same name and UUID) running on hostB: the worst outcome there is.
    xml = clone_xml(lab, "vm42", guest.name, guest.uuid)
    xml = re.sub(r"console/[^'\"]+\.log", "console/xt-verify-twin.log", xml)
    await hv.define(lab.host(B).uri, xml)
    try:
        await hv.start(lab.host(B).uri, guest.name)
        summary = await verify(plan, hv, _result(lab, JobState.SUCCEEDED))
    finally:
        await hv.destroy(lab.host(B).uri, guest.name)
        await hv.undefine(lab.host(B).uri, guest.name)
    assert summary.outcome is JobState.FAILED and _status(summary.checks, "split_brain") is CheckStatus.FAIL
    assert "running on both hostA and hostB" in summary.checks[0].reason
    assert summary.source_state.startswith("running") and summary.destination_state.startswith("running")
    assert "authoritative" in (summary.next_step or "")


async def test_reported_failure_but_vm_moved_is_a_success(lab: LabInfo, hv: Hypervisor, guest: Guest) -> None:
    """Nova's heuristic: gone from the source and running on the destination means it moved, whatever the
    migrate call said."""
    await _home(hv, lab, guest)
    plan = await _plan(hv, lab, guest, MigrationOptions(undefine_source=True))
    await hv.migrate(lab.host(A).uri, guest.name, MigrationCall(LIVE_P2P, peer_uri=lab.host(B).peer_uri))
    summary = await verify(plan, hv, _result(lab, JobState.FAILED, error="client socket is closed"))
    assert summary.outcome is JobState.SUCCEEDED
    assert _status(summary.checks, "outcome") is CheckStatus.WARN
    assert _status(summary.checks, "destination") is CheckStatus.PASS
    assert _status(summary.checks, "source") is CheckStatus.PASS
    await _home(hv, lab, guest)


async def test_failure_reports_the_true_state_and_next_step(lab: LabInfo, hv: Hypervisor, guest: Guest) -> None:
    await _home(hv, lab, guest)
    plan = await _plan(hv, lab, guest)
    summary = await verify(plan, hv, _result(lab, JobState.FAILED, error="the link broke"))
    assert summary.outcome is JobState.FAILED and _status(summary.checks, "source") is CheckStatus.PASS
    assert _status(summary.checks, "destination_cleanup") is CheckStatus.PASS
    assert summary.next_step and summary.next_step.startswith(f"{guest.name} still runs on hostA")
    # Now the VM runs nowhere (shut off on A): the summary must say so, not "still runs".
    await hv.destroy(lab.host(A).uri, guest.name)
    try:
        nowhere = await verify(plan, hv, _result(lab, JobState.FAILED, error="the link broke"))
    finally:
        await hv.start(lab.host(A).uri, guest.name)
    assert _status(nowhere.checks, "source") is CheckStatus.FAIL
    assert nowhere.source_state.startswith("shut off") and "start or resume" in str(nowhere.checks)
    assert "still runs" not in (nowhere.next_step or "")


async def test_unreachable_destination_is_reported_not_raised(lab: LabInfo, hv: Hypervisor, guest: Guest) -> None:
    await _home(hv, lab, guest)
    plan = await _plan(hv, lab, guest)
    dead = "qemu+unix:///system?socket=/var/tmp/migrate-bot-lab/nonexistent-sock"
    summary = await verify(plan, hv, _result(lab, JobState.SUCCEEDED, destination_uri=dead))
    assert summary.destination_state.startswith("unknown (") and "does not answer" in summary.destination_state
    assert _status(summary.checks, "destination") is CheckStatus.WARN


async def test_guest_agent_without_an_answer_is_a_warning(lab: LabInfo, hv: Hypervisor) -> None:
    # A VM with a qemu-guest-agent channel but no agent inside (the test guest has no OS).
    with_agent = await make_guest(hv, lab, "vm42", "xt-agent", start=False)
    try:
        xml = await hv.domain_xml(lab.host(A).uri, with_agent.name, migratable=False)
        channel = "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
        await hv.define(lab.host(A).uri, xml.replace("<serial type='file'>", channel + "<serial type='file'>", 1))
        await hv.start(lab.host(A).uri, with_agent.name)
        plan = plan_for(lab, with_agent, xml, source=B, destination=A)  # "arrived" on hostA
        summary = await verify(plan, hv, _result(lab, JobState.SUCCEEDED, src=B, dst=A))
    finally:
        await drop_guest(hv, lab, with_agent)
    agent = next(c for c in summary.checks if c.name == "guest_agent")
    assert agent.status is CheckStatus.WARN and agent.reason.startswith("guest agent did not answer")
    # Without an answer, the guest's liveness still rests on its vCPU time advancing, and says so.
    alive = next(c for c in summary.checks if c.name == "guest_liveness")
    assert alive.status is CheckStatus.PASS and "vCPU time +" in alive.reason and "guest agent" not in alive.reason


async def test_broken_postcopy_is_sent_to_recovery_which_completes(lab: LabInfo, hv: Hypervisor, guest: Guest) -> None:
    """The link dies after the switch to post-copy: libvirt gives up (keepalive), verification names the
    post-copy failure and the recovery; with the link back, the recovery finishes the move."""
    await _home(hv, lab, guest)
    sink = RecordingSink()
    ex = Executor(hv, inventory(lab), sink)
    # 4 MiB/s keeps pre-copy going past the 1 s after which the plan switches to post-copy. Post-copy has no
    # bandwidth cap of its own, so the link itself is slowed to 2 MiB/s: the ~10 MiB left then take seconds,
    # and the cut lands in post-copy even when a loaded machine reports the phase late (it once finished first).
    plan = await _plan(hv, lab, guest, MigrationOptions(postcopy_after_s=1, bandwidth_mib_s=4, undefine_source=True))
    cut: list[bool] = []

    async def cut_link_in_postcopy(sample: ProgressSample) -> None:
        if sample.phase is Phase.POSTCOPY and not cut:
            cut.append(True)
            await asyncio.to_thread(link_down, lab)

    ex.record_progress = cut_link_in_postcopy
    try:
        await asyncio.to_thread(link_rate, lab, 2)
        result = await asyncio.wait_for(ex.run(21, plan), 120)
        broken = await ex.summarize(plan, result)
    finally:
        await asyncio.to_thread(link_up, lab)
        await asyncio.to_thread(link_reset, lab)
    assert cut and result.postcopy and result.outcome is JobState.FAILED, result
    assert broken.outcome is JobState.FAILED and "postcopy" in [c.name for c in broken.checks], broken
    assert _status(broken.checks, "postcopy") is CheckStatus.FAIL
    assert "post-copy failed" in broken.source_state and "--postcopy-resume" in (broken.next_step or "")
    assert "do not destroy" in (broken.next_step or "")

    ex.record_progress = None
    recovered = await asyncio.wait_for(ex.recover_postcopy(22, plan, "oncall"), 150)
    summary = await ex.summarize(plan, recovered)
    assert recovered.outcome is JobState.SUCCEEDED and summary.outcome is JobState.SUCCEEDED, summary
    there = await hv.domain(lab.host(B).uri, guest.uuid)
    assert there.state is DomainState.RUNNING and not there.postcopy_failed
    assert not (await hv.domain(lab.host(A).uri, guest.uuid)).active
    before = console_status(lab, guest.name)
    status = await wait_console_after(lab, guest, before.t_s if before else None)
    assert status.ok, status.corrupt_lines
    await _home(hv, lab, guest)
