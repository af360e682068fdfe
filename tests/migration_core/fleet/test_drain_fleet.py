"""Drains on the real service and the in-memory fleet, in virtual time: run, park, cancel, restart, return.

The service, dispatcher, executor, controller, verification and SQLite store are the real ones; only the hosts
are simulated. What these prove that the lab cannot hold in CI time: a busy guest that never converges is
parked and the drain goes on; a cancel while moves are in pre-copy and post-copy; a bot that stops mid-drain
and a new one that finishes it; the host marks that keep placement away from a draining host.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from migration_core.drains import DrainState, MoveOutcome
from migration_core.errors import MigrateBotError
from migration_core.events import DrainChanged, DrainMoveEnded, DrainRollup
from migration_core.hypervisor.fleet import DiskSpec, HostSpec, PoolSpec, VmSpec, run_virtual
from migration_core.inventory.policy_file import parse_policy
from migration_core.models import CheckStatus, CopyStorage, JobState, MigrationOptions, MigrationRequest
from migration_core.planning.drain import WAVE_OVERHEAD_S, DrainRequest
from migration_core.store import EventKind
from tests.migration_core.fleet.support import Recorder, close_service, open_service, rig, when

A, B, C = "hA", "hB", "hC"
HOSTS = (HostSpec(A, link_mib_s=100), HostSpec(B, link_mib_s=100), HostSpec(C, link_mib_s=100))


def _idle(name: str, mib: int = 1024) -> VmSpec:
    return VmSpec(name, host=A, memory_mib=mib, transferable_mib=mib // 4, dirty_mib_s=1)


async def _approve_drain(service: object, drain_id: int) -> None:
    for who in ("bob", "carol"):
        drain = await service.get_drain(drain_id)  # type: ignore[attr-defined]
        if drain.state is DrainState.AWAITING_APPROVAL:
            await service.approve_drain(drain_id, who)  # type: ignore[attr-defined]


def test_drain_moves_every_vm_then_return_brings_them_home(tmp_path: Path) -> None:
    names = ("web1", "web2", "web3", "web4")
    r = rig(*(_idle(n, 512 * (i + 1)) for i, n in enumerate(names)), hosts=HOSTS)

    async def main() -> None:
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db")
        try:
            drain = await service.request_drain(DrainRequest(A, MigrationOptions()), "alice")
            assert drain.state is DrainState.AWAITING_APPROVAL
            assert drain.requirement.total == 2  # a drain is a risky change
            with pytest.raises(MigrateBotError, match="you requested this"):
                await service.approve_drain(drain.id, "alice")
            await service.approve_drain(drain.id, "bob")
            assert (await service.get_drain(drain.id)).state is DrainState.AWAITING_APPROVAL
            await service.approve_drain(drain.id, "carol")
            status = await service.wait_drain(drain.id, timeout_s=3600)
            assert status.drain.state is DrainState.DONE, status.drain.detail
            assert all(m.outcome is MoveOutcome.SUCCEEDED for m in status.moves)
            assert all(r.fleet.where(n) in (B, C) for n in names)
            # every move ran as a job of the drain, approved by the drain's approvers, with its figures
            for m in status.moves:
                assert m.job is not None and m.job.drain_id == drain.id
                assert set(m.job.approvers) == {"bob", "carol"}
                assert m.total_s is not None and m.total_s > 0
            data = status.to_json()
            assert data["kind"] == "drain" and data["host"] == A and data["state"] == "done"
            assert {m["vm"] for m in data["moves"]} == set(names)
            assert all("total_s" in m and "downtime_ms" in m and m["job_id"] for m in data["moves"])
            ended = [e for e in r.sink.events if isinstance(e, DrainMoveEnded)]
            assert sorted(e.move.vm for e in ended) == sorted(names)
            assert any(isinstance(e, DrainRollup) for e in r.sink.events)
            # the host is marked drained: placement skips it, a move to it is warned about
            marks = await service.host_marks()
            assert A in marks and "drained" in marks[A]
            plan = await service.plan(MigrationRequest("web1", A))
            assert any(c.name == "host.maintenance" and c.status is CheckStatus.WARN for c in plan.checks)
            # return: every moved VM comes home, and the mark is gone
            back = await service.request_return(A, "alice", "maintenance over")
            assert {m.vm for m in back.plan.moves} == set(names)
            assert all(m.destination == A for m in back.plan.moves)
            await _approve_drain(service, back.id)
            done = await service.wait_drain(back.id, timeout_s=3600)
            assert done.drain.state is DrainState.DONE, done.drain.detail
            assert all(r.fleet.where(n) == A for n in names)
            assert A not in await service.host_marks()
        finally:
            await close_service(service)

    run_virtual(main())


def test_a_vm_that_never_converges_is_parked_and_the_drain_goes_on(tmp_path: Path) -> None:
    # busy dirties faster than the link: pre-copy never converges, and without --postcopy it must give up
    vms = (
        _idle("web1"),
        _idle("web2"),
        VmSpec("busy", host=A, memory_mib=2048, transferable_mib=2048, dirty_mib_s=400),
    )
    r = rig(*vms, hosts=HOSTS)

    async def main() -> None:
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db")
        try:
            drain = await service.request_drain(DrainRequest(A, MigrationOptions()), "alice")
            await _approve_drain(service, drain.id)
            status = await service.wait_drain(drain.id, timeout_s=4 * 3600)
            assert status.drain.state is DrainState.PARTIALLY_DONE, status.drain.detail
            by_vm = {m.vm: m for m in status.moves}
            assert by_vm["busy"].outcome is MoveOutcome.PARKED
            assert "stays on" in by_vm["busy"].why and "--postcopy" in by_vm["busy"].why
            assert r.fleet.where("busy") == A
            assert by_vm["web1"].outcome is MoveOutcome.SUCCEEDED and by_vm["web2"].outcome is MoveOutcome.SUCCEEDED
            assert "busy" in status.drain.detail
        finally:
            await close_service(service)

    run_virtual(main())


def test_cancel_stops_unstarted_moves_and_aborts_pre_copy(tmp_path: Path) -> None:
    # slow guests on a thin link: the first wave is still in pre-copy when the cancel comes
    vms = [VmSpec(f"big{i}", host=A, memory_mib=8192, transferable_mib=8192, dirty_mib_s=1) for i in range(4)]
    hosts = (HostSpec(A, link_mib_s=50, max_outbound=1), HostSpec(B, link_mib_s=50), HostSpec(C, link_mib_s=50))
    r = rig(*vms, hosts=hosts)

    async def main() -> None:
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db")
        try:
            drain = await service.request_drain(DrainRequest(A, MigrationOptions()), "alice")
            assert drain.plan.waves == 4  # one outbound slot: one move at a time
            await _approve_drain(service, drain.id)
            await when(lambda: any(r.fleet.job_phase(v.name) is not None for v in vms), limit_s=600)
            report = await service.cancel_drain(drain.id, "alice")
            assert len(report.aborted) == 1 and len(report.never_started) == 3, report
            assert "will not start" in report.text and "Aborted in pre-copy" in report.text
            status = await service.wait_drain(drain.id, timeout_s=3600)
            assert status.drain.state is DrainState.CANCELLED
            assert all(r.fleet.where(v.name) == A for v in vms)
            assert all(m.outcome is MoveOutcome.CANCELLED for m in status.moves)
            assert A not in await service.host_marks()  # a cancelled drain leaves no maintenance mark
        finally:
            await close_service(service)

    run_virtual(main())


def test_a_new_bot_finishes_a_drain_the_old_one_left_running(tmp_path: Path) -> None:
    vms = [_idle(f"web{i}", 2048) for i in range(1, 5)]
    hosts = (HostSpec(A, link_mib_s=50, max_outbound=1), HostSpec(B, link_mib_s=50), HostSpec(C, link_mib_s=50))
    r = rig(*vms, hosts=hosts)
    url = f"sqlite:///{tmp_path}/jobs.db"

    async def main() -> None:
        first = await open_service(r, url, replica="replica-a", lease_s=10)
        drain = await first.request_drain(DrainRequest(A, MigrationOptions()), "alice")
        await _approve_drain(first, drain.id)
        await when(lambda: sum(r.fleet.where(v.name) != A for v in vms) >= 1, limit_s=3600)
        # the bot dies: its database connection goes first, so it can neither renew nor release a lease
        await first.store.close()
        await first.drains.stop()
        await first.dispatcher.stop()
        moved_before = sum(r.fleet.where(v.name) != A for v in vms)
        assert moved_before < len(vms)
        await asyncio.sleep(30)  # the old leases run out
        second = await open_service(r, url, replica="replica-b", sink=Recorder(), lease_s=10)
        try:
            status = await second.wait_drain(drain.id, timeout_s=4 * 3600)
            assert status.drain.state is DrainState.DONE, status.drain.detail
            assert all(r.fleet.where(v.name) != A for v in vms)
            jobs = await second.store.jobs_of_drain(drain.id)
            assert sorted(j.vm for j in jobs) == sorted(v.name for v in vms)  # one job per VM, none twice
            assert all(j.state is JobState.SUCCEEDED for j in jobs)
        finally:
            await close_service(second)

    run_virtual(main())


def test_a_second_drain_never_places_on_a_draining_host(tmp_path: Path) -> None:
    vms = [_idle("a1"), _idle("a2"), VmSpec("b1", host=B, memory_mib=1024, transferable_mib=256, dirty_mib_s=1)]
    hosts = (HostSpec(A, link_mib_s=20, max_outbound=1), HostSpec(B, link_mib_s=100), HostSpec(C, link_mib_s=100))
    r = rig(*vms, hosts=hosts)

    async def main() -> None:
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db")
        try:
            drain = await service.request_drain(DrainRequest(A, MigrationOptions()), "alice")
            await _approve_drain(service, drain.id)
            assert (await service.get_drain(drain.id)).state is DrainState.RUNNING
            other = await service.plan_drain(DrainRequest(B, MigrationOptions()))
            assert [m.destination for m in other.moves] == [C]  # not hA: it is being drained
            with pytest.raises(MigrateBotError, match="being drained"):
                await service.plan_drain(DrainRequest(B, MigrationOptions(), to=(A,)))
            with pytest.raises(MigrateBotError, match="unfinished drain"):
                await service.request_drain(DrainRequest(A, MigrationOptions()), "alice")
            changed = [e for e in r.sink.events if isinstance(e, DrainChanged)]
            assert [e.status.drain.state for e in changed][:2] == [
                DrainState.AWAITING_APPROVAL,
                DrainState.AWAITING_APPROVAL,
            ]
            await service.wait_drain(drain.id, timeout_s=3600)
        finally:
            await close_service(service)

    run_virtual(main())


def test_a_recheck_that_finds_different_facts_asks_again_for_that_move_alone(tmp_path: Path) -> None:
    vms = [_idle("first", 4096), _idle("second", 512)]
    hosts = (HostSpec(A, link_mib_s=50, max_outbound=1), HostSpec(B, link_mib_s=50))
    r = rig(*vms, hosts=hosts)

    async def main() -> None:
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db")
        try:
            drain = await service.request_drain(DrainRequest(A, MigrationOptions()), "alice")
            assert [m.vm for m in drain.plan.moves] == ["first", "second"] and drain.plan.waves == 2
            await _approve_drain(service, drain.id)
            await when(lambda: r.fleet.job_phase("first") is not None, limit_s=600)
            # while the first move runs, hB's libvirt is downgraded: the second move's plan gains a warning
            state = r.fleet.hosts[B]
            state.spec = replace(state.spec, libvirt_version=state.spec.libvirt_version - 1_000_000)
            second = None
            for _ in range(3600):
                status = await service.drain_status(drain.id)
                second = next(m for m in status.moves if m.vm == "second")
                if second.job is not None and second.job.state is JobState.AWAITING_APPROVAL and second.why:
                    break
                await asyncio.sleep(1)
            assert second is not None and second.job is not None
            assert second.outcome is MoveOutcome.WAITING and "new approval" in second.why
            assert second.job.plan is not None and second.job.plan.hash != second.planned.plan.hash
            assert status.drain.state is DrainState.RUNNING  # the drain waits for that move, nothing else
            assert r.fleet.where("second") == A
            for who in ("bob", "carol"):  # the new plan has a warning: a risky plan's two approvers
                await service.approve(second.job.id, who)
            done = await service.wait_drain(drain.id, timeout_s=3600)
            assert done.drain.state is DrainState.DONE, done.drain.detail
            assert r.fleet.where("second") == B
        finally:
            await close_service(service)

    run_virtual(main())


def test_a_recheck_that_finds_only_better_facts_runs_the_approved_plan(tmp_path: Path) -> None:
    # hB is tight when the drain is planned (the memory check warns for the second move) and gains memory
    # before that move starts: no new risk, so no new approval; the approvals of the drain still bind the job
    vms = [_idle("first", 4096), _idle("second", 1024)]
    hosts = (HostSpec(A, link_mib_s=50, max_outbound=1), HostSpec(B, link_mib_s=50, memory_mib=5 * 1024 + 200))
    r = rig(*vms, hosts=hosts)

    async def main() -> None:
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db")
        try:
            drain = await service.request_drain(DrainRequest(A, MigrationOptions()), "alice")
            second = next(m for m in drain.plan.moves if m.vm == "second")
            memory = next(c for c in second.plan.checks if c.name == "capacity.memory")
            assert memory.status is CheckStatus.WARN, memory
            await _approve_drain(service, drain.id)
            await when(lambda: r.fleet.job_phase("first") is not None, limit_s=600)
            state = r.fleet.hosts[B]
            state.spec = replace(state.spec, memory_mib=64 * 1024)
            done = await service.wait_drain(drain.id, timeout_s=3600)
            assert done.drain.state is DrainState.DONE, done.drain.detail
            job = next(m.job for m in done.moves if m.vm == "second")
            assert job is not None and set(job.approvers) == {"bob", "carol"}
            assert job.plan is not None and job.plan.hash == second.plan.hash  # the approved plan ran
        finally:
            await close_service(service)

    run_virtual(main())


def test_vcpu_overcommit_is_counted_across_the_plan_so_the_recheck_agrees(tmp_path: Path) -> None:
    # hB has one CPU: six guests end at 6:1, over the 4:1 overcommit ratio. Every move's plan shows the host's
    # final load (as if it arrived last), so whichever order the waves run in, the re-check before each start
    # (which sees the guests already moved) finds it as good or better and nobody is asked again.
    vms = [_idle(f"g{i}", 256) for i in range(6)]
    r = rig(*vms, hosts=(HostSpec(A, link_mib_s=100), HostSpec(B, link_mib_s=100, cpus=1)))

    async def main() -> None:
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db")
        try:
            drain = await service.request_drain(DrainRequest(A, MigrationOptions()), "alice")
            statuses = [
                next(c.status for c in m.plan.checks if c.name == "capacity.vcpus")
                for m in sorted(drain.plan.moves, key=lambda m: m.order)
            ]
            assert statuses == [CheckStatus.WARN] * 6, statuses
            await _approve_drain(service, drain.id)
            done = await service.wait_drain(drain.id, timeout_s=3600)
            assert done.drain.state is DrainState.DONE, done.drain.detail
            assert all(set(m.job.approvers) == {"bob", "carol"} for m in done.moves if m.job is not None)
        finally:
            await close_service(service)

    run_virtual(main())


def test_the_drain_arguments_reach_the_plan_and_the_request(tmp_path: Path) -> None:
    """`to`, `--except` and `--include-stopped` reach the runner in the one DrainRequest the service is given
    (dry run and request alike)."""
    vms = (_idle("a1"), _idle("a2"), replace(_idle("off"), running=False))
    r = rig(*vms, hosts=HOSTS)

    async def main() -> None:
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db")
        try:
            plain = await service.plan_drain(DrainRequest(A, MigrationOptions()))
            assert sorted(m.vm for m in plain.moves) == ["a1", "a2"]
            assert [lb.vm for lb in plain.left_behind] == ["off"]
            only_c = DrainRequest(A, MigrationOptions(), to=(C,), except_vms=("a2",), include_stopped=True)
            dry = await service.plan_drain(only_c)
            assert sorted(m.vm for m in dry.moves) == ["a1", "off"]
            assert {m.destination for m in dry.moves} == {C}
            assert [(lb.vm, lb.reason) for lb in dry.left_behind] == [("a2", "excluded by --except")]
            drain = await service.request_drain(replace(only_c, except_vms=("a1",), include_stopped=False), "alice")
            assert sorted(m.vm for m in drain.plan.moves) == ["a2"]
            assert {m.destination for m in drain.plan.moves} == {C}
            assert sorted(lb.vm for lb in drain.plan.left_behind) == ["a1", "off"]
        finally:
            await close_service(service)

    run_virtual(main())


def test_the_eta_learns_each_waves_cost_from_the_last_finished_drain(tmp_path: Path) -> None:
    """The first drain's ETA counts the built-in cost per wave; once a drain has ended done, the next plan counts
    what that drain really took per wave beyond its predicted moves, and lands closer."""
    vms = [_idle(f"a{i}", 512) for i in range(4)] + [
        VmSpec(f"b{i}", host=B, memory_mib=512, transferable_mib=128, dirty_mib_s=1) for i in range(4)
    ]
    r = rig(*vms, hosts=(HostSpec(A, max_outbound=1), HostSpec(B, max_outbound=1), HostSpec(C)))

    async def main() -> None:
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db")
        loop = asyncio.get_running_loop()
        try:
            errors = []
            for host in (A, B):
                drain = await service.request_drain(DrainRequest(host, MigrationOptions()), "alice")
                await _approve_drain(service, drain.id)
                start = loop.time()
                done = await service.wait_drain(drain.id, timeout_s=3600)
                assert done.drain.state is DrainState.DONE, done.drain.detail
                errors.append(abs(drain.plan.eta_s - (loop.time() - start)) / (loop.time() - start))
                overhead = drain.plan.wave_overhead_s
            assert overhead != WAVE_OVERHEAD_S  # the second plan used the learned figure
            assert errors[1] < errors[0], errors
        finally:
            await close_service(service)

    run_virtual(main())


def test_a_refused_drain_decision_is_recorded_with_the_drain(tmp_path: Path) -> None:
    """Approve, deny and cancel of a drain that policy or the state refuses leave a `refused` event naming the
    action and the drain (the person sees the error; the log keeps who tried what)."""
    r = rig(_idle("web1"), hosts=HOSTS)

    async def main() -> None:
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db")
        try:
            drain = await service.request_drain(DrainRequest(A, MigrationOptions()), "alice")
            with pytest.raises(MigrateBotError, match="you requested this"):
                await service.approve_drain(drain.id, "alice")
            with pytest.raises(MigrateBotError):
                await service.deny_drain(drain.id + 100, "bob")
            with pytest.raises(MigrateBotError):
                await service.cancel_drain(drain.id + 100, "bob")
            refused = [e for e in await service.store.events(None) if e.kind is EventKind.REFUSED]
            assert [(e.actor, dict(e.data)) for e in refused] == [
                ("alice", {"action": "approve drain", "drain": drain.id}),
                ("bob", {"action": "deny drain", "drain": drain.id + 100}),
                ("bob", {"action": "cancel drain", "drain": drain.id + 100}),
            ]
        finally:
            await close_service(service)

    run_virtual(main())


def test_a_drain_times_a_copy_storage_move_as_the_single_moves_card_does(tmp_path: Path) -> None:
    """The drain's per-move figure and `/migrate plan` come from one set of estimate inputs (planning/estimates.py
    `move_inputs`), so a move that copies a local disk is timed the same, disk copy and scan included."""
    local = tuple(replace(h, pools=(PoolSpec(pool_type="dir"),)) for h in HOSTS[:2])
    disk = DiskSpec(size_gib=40, allocated_gib=6)
    r = rig(VmSpec("db", host=A, memory_mib=2048, transferable_mib=1024, dirty_mib_s=2, disks=(disk,)), hosts=local)
    options = MigrationOptions(copy_storage=CopyStorage.ALL)

    async def main() -> None:
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db")
        try:
            drain = await service.plan_drain(DrainRequest(A, options))
            (move,) = drain.moves
            card = await service.plan(MigrationRequest("db", B, options))
            assert card.prediction is not None and move.plan.prediction is not None
            assert card.prediction.disk_bytes == 6 * 2**30 == move.plan.prediction.disk_bytes
            assert move.predicted_total_s == pytest.approx(card.prediction.total_s, abs=0.1)
            # the 40 GiB the mirror walks are in both: without them the move would be quicker
            without_scan = await service.plan(MigrationRequest("db", B, MigrationOptions()))
            assert without_scan.prediction is not None and without_scan.prediction.total_s is not None
            assert move.predicted_total_s > without_scan.prediction.total_s + 6 * 1024 / 100
        finally:
            await close_service(service)

    run_virtual(main())


OWNERS_POLICY = """
[groups]
dba = ["dave"]
[vm_labels]
db = ["db*"]
[[owners]]
match = { vm_label = "db" }
group = "dba"
"""


def test_a_drains_owners_group_is_filled_by_whom_the_front_ends_group_check_names(tmp_path: Path) -> None:
    """Single moves and drains share one `Approvers` (dispatch/policy.py): with Slack user groups (`serve` wires
    them, see tests/bot/test_app.py) a drain's owners' group is Slack's @dba, not the policy file's list."""
    slack_dba = {"erin"}

    async def in_group(user: str, group: str) -> bool:
        return group == "dba" and user in slack_dba

    r = rig(_idle("db1"), _idle("web1"), hosts=HOSTS)

    async def main() -> None:
        rules = parse_policy(OWNERS_POLICY, "policy.toml")
        service = await open_service(r, f"sqlite:///{tmp_path}/jobs.db", rules=rules, group_check=in_group)
        try:
            drain = await service.request_drain(DrainRequest(A, MigrationOptions()), "alice")
            assert [(n.group, n.count) for n in drain.requirement.groups] == [("dba", 1)]
            await service.approve_drain(drain.id, "bob")
            with pytest.raises(MigrateBotError, match="not a member of that group"):
                await service.approve_drain(drain.id, "dave")  # in the file's [groups], not in Slack's @dba
            approved = await service.approve_drain(drain.id, "erin")
            assert approved.state is DrainState.RUNNING and approved.approvals[-1].groups == ("dba",)
            status = await service.wait_drain(drain.id, timeout_s=3600)
            assert status.drain.state is DrainState.DONE, status.drain.detail
        finally:
            await close_service(service)

    run_virtual(main())
