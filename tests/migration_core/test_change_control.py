"""Change control under a policy file, through the real service and a real SQLite store (issue 15).

The planner is a stand-in that returns a fixed plan (these tests are about who may approve and when a move may
start, not about preflight); the lab tests prove the same rules with real hosts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from migration_core.dispatch.dispatcher import Dispatcher, DispatcherConfig, JobMover
from migration_core.dispatch.queue import limits_of
from migration_core.errors import GrammarError, PolicyError, StateError
from migration_core.events import Notice, NoticeKind, RecordingSink
from migration_core.grammar.parser import MigrateCommand, parse_command
from migration_core.inventory.hosts import load_inventory
from migration_core.inventory.policy_file import Policy, parse_policy
from migration_core.models import JobState, MigrationRequest, Plan
from migration_core.service import MigrationService
from migration_core.store import EventKind, Store
from tests.bot.factories import plan as make_plan
from tests.migration_core.store_support import FakeClock

POLICY = """
[approvals]
default = 1
risky = 2
emergency = 3
[groups]
dba = ["dave", "erin"]
[vm_labels]
db = ["db*"]
[[owners]]
match = { vm_label = "db" }
group = "dba"
[[freeze]]
name = "year-end"
start = "2026-12-20T00:00:00Z"
end = "2027-01-04T00:00:00Z"
[ticket]
pattern = "^CHG[0-9]{7}$"
required = false
"""
BEFORE = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
DURING = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)


class FixedPlanner:
    """Returns the factories' plan for the requested VM, with the request's own options."""

    async def make_plan(self, request: MigrationRequest) -> Plan:
        return replace(make_plan(vm=request.vm), request=request)

    async def host_status(self, name: str) -> tuple[bool, str, int | None]:
        return True, "ok", 0


async def everyone(_user: str) -> bool:
    return True


async def only_bob_and_carol(user: str) -> bool:
    return user in ("bob", "carol")


@pytest.fixture
def hosts(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.toml"
    path.write_text(
        '[hosts.hostA]\nuri = "qemu+unix:///system?socket=/nowhere/a"\n[hosts.hostB]\nuri = "qemu+unix:///system?socket=/nowhere/b"\n'
    )
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(BEFORE)


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite:///{tmp_path / 'bot.db'}", clock=clock)
    yield s
    await s.close()


def service(store: Store, hosts: Path, clock: FakeClock, rules: Policy, approver=everyone) -> MigrationService:
    return MigrationService(
        store=store,
        inventory=load_inventory(hosts),
        planner=FixedPlanner(),
        executor=None,  # type: ignore[arg-type]  # nothing runs: the dispatcher is not started
        sink=RecordingSink(),
        approver_check=approver,
        clock=clock,
        rules=rules,
    )


def at(clock: FakeClock, when: datetime) -> FakeClock:
    clock.now = when
    return clock


def request(text: str) -> MigrationRequest:
    cmd = parse_command(text)
    assert isinstance(cmd, MigrateCommand)
    return cmd.request


async def test_a_request_during_a_freeze_is_refused_with_the_window_and_its_end(
    store: Store, hosts: Path, clock: FakeClock
) -> None:
    svc = service(store, hosts, at(clock, DURING), parse_policy(POLICY, "p.toml"))
    with pytest.raises(PolicyError) as err:
        await svc.submit(request("vm42 to hostB"), "alice")
    assert str(err.value).startswith(
        "changes are frozen: 'year-end' is in force until 2027-01-04 00:00 UTC. Request it again after that"
    )
    assert '--emergency --reason "why" (it then needs 3 approvers)' in str(err.value)
    assert await store.history(None, 10) == []  # nothing was created
    refused = [e for e in await store.events(None) if e.kind is EventKind.REFUSED]
    assert refused and refused[-1].data["code"] == "frozen"


async def test_an_emergency_request_needs_three_approvers(store: Store, hosts: Path, clock: FakeClock) -> None:
    svc = service(store, hosts, at(clock, DURING), parse_policy(POLICY, "p.toml"))
    job = await svc.submit(request('vm42 to hostB --emergency --reason "INC-42 host failing"'), "alice")
    assert job.state is JobState.AWAITING_APPROVAL
    assert job.plan is not None and job.plan.approval is not None and job.plan.approval.total == 3
    job = await svc.approve(job.id, "bob")
    job = await svc.approve(job.id, "carol")
    assert job.state is JobState.AWAITING_APPROVAL
    job = await svc.approve(job.id, "dave")
    assert job.state is JobState.APPROVED
    assert job.approvers == ("bob", "carol", "dave")


async def test_emergency_outside_a_freeze_is_refused(store: Store, hosts: Path, clock: FakeClock) -> None:
    svc = service(store, hosts, at(clock, BEFORE), parse_policy(POLICY, "p.toml"))
    with pytest.raises(PolicyError, match="no change freeze is in force, so --emergency does not apply"):
        await svc.submit(request("vm42 to hostB --emergency --reason x"), "alice")


async def test_the_owners_group_must_approve(store: Store, hosts: Path, clock: FakeClock) -> None:
    svc = service(store, hosts, at(clock, BEFORE), parse_policy(POLICY, "p.toml"), approver=only_bob_and_carol)
    job = await svc.submit(request("db1 to hostB"), "alice")
    assert job.plan is not None and job.plan.approval is not None
    assert [(n.group, n.count) for n in job.plan.approval.groups] == [("dba", 1)]
    with pytest.raises(PolicyError, match=r"still needs 1 more from @dba, and you are not a member of that group"):
        await svc.approve(job.id, "bob")  # a general approver does not fill the owners' place
    job = await svc.approve(job.id, "erin")  # a dba member (from the policy's [groups]) may approve
    assert job.state is JobState.APPROVED
    assert job.approvals[-1].groups == ("dba",)  # stored with the approval, for the card after a restart


async def test_a_plain_vm_keeps_the_default_of_one(store: Store, hosts: Path, clock: FakeClock) -> None:
    svc = service(store, hosts, at(clock, BEFORE), parse_policy(POLICY, "p.toml"))
    job = await svc.submit(request("vm42 to hostB"), "alice")
    job = await svc.approve(job.id, "bob")
    assert job.state is JobState.APPROVED


async def test_without_a_policy_file_nothing_changes(store: Store, hosts: Path, clock: FakeClock) -> None:
    svc = service(store, hosts, at(clock, DURING), Policy.default())
    job = await svc.submit(request("db1 to hostB --ticket anything"), "alice")
    assert job.plan is not None and job.plan.approval is None  # the built-in rule, as before
    job = await svc.approve(job.id, "bob")
    assert job.state is JobState.APPROVED


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vm42 to hostB --ticket CHG12", "ticket `CHG12` does not match the policy's pattern ^CHG[0-9]{7}$"),
    ],
)
async def test_a_ticket_that_does_not_match_the_pattern_is_refused(
    store: Store, hosts: Path, clock: FakeClock, text: str, message: str
) -> None:
    svc = service(store, hosts, at(clock, BEFORE), parse_policy(POLICY, "p.toml"))
    with pytest.raises(PolicyError) as err:
        await svc.submit(request(text), "alice")
    assert message in str(err.value)
    assert await store.history(None, 10) == []


async def test_a_required_ticket_is_asked_for_and_a_good_one_is_kept(
    store: Store, hosts: Path, clock: FakeClock
) -> None:
    rules = parse_policy(POLICY.replace("required = false", "required = true"), "p.toml")
    svc = service(store, hosts, at(clock, BEFORE), rules)
    with pytest.raises(PolicyError, match=r"a change ticket is required .* add --ticket ID matching"):
        await svc.submit(request("vm42 to hostB"), "alice")
    job = await svc.submit(request("vm42 to hostB --ticket CHG0012345"), "alice")
    stored = await store.get_job(job.id)
    assert stored.plan is not None and stored.plan.request.options.ticket == "CHG0012345"


def test_the_grammar_refuses_an_emergency_without_a_reason() -> None:
    with pytest.raises(GrammarError, match="--emergency needs --reason"):
        parse_command("vm42 to hostB --emergency")


async def test_freezes_lists_the_current_window(store: Store, hosts: Path, clock: FakeClock) -> None:
    svc = service(store, hosts, at(clock, DURING), parse_policy(POLICY, "p.toml"))
    (listed,) = await svc.freezes()
    assert (listed.name, listed.in_force, listed.end) == ("year-end", True, datetime(2027, 1, 4, tzinfo=UTC))


async def test_an_approved_move_waits_out_a_freeze_and_then_is_claimed(
    store: Store, hosts: Path, clock: FakeClock
) -> None:
    """Approved before the freeze, not started (slots were busy); the freeze begins: it is held and its thread
    is told why and until when; once the freeze ends it is claimed like any other."""
    clock.now = DURING - timedelta(hours=1)
    rules = parse_policy(POLICY, "p.toml")
    sink = RecordingSink()
    inventory = load_inventory(hosts)
    dispatcher = Dispatcher(
        store=store,
        inventory=inventory,
        planner=None,  # type: ignore[arg-type]  # nothing is started here
        executor=None,  # type: ignore[arg-type]
        mover=JobMover(store, sink, clock),
        sink=sink,
        config=DispatcherConfig(replica_id="r1"),
        clock=clock,
        freezes=rules.freezes,
    )
    job = await store.create_job(vm="vm42", destination="hostB", requester="alice", source="hostA")
    state = job.state
    for new in (JobState.PREFLIGHT, JobState.AWAITING_APPROVAL, JobState.APPROVED):
        await store.transition(
            job.id,
            state,
            new,
            actor="bob",
            detail=new.value,
            plan=make_plan() if new is JobState.AWAITING_APPROVAL else None,
        )
        state = new
    limits = limits_of(inventory)
    held = await dispatcher._held()
    assert held == {job.id: "change freeze 'year-end' is in force until 2027-01-04 00:00 UTC"}
    assert await store.claim_next_runnable("r1", 30.0, limits=limits, exclude=frozenset(held)) is None
    await dispatcher._mark_waiting(limits, held)
    assert (await store.get_job(job.id)).state is JobState.QUEUED
    told = [e.text for e in sink.events if isinstance(e, Notice) and e.kind is NoticeKind.QUEUED]
    assert told == ["waiting: change freeze 'year-end' is in force until 2027-01-04 00:00 UTC (place 1 in the queue)"]
    (position,) = await dispatcher.queue_positions()
    assert position.why.startswith("change freeze 'year-end'")

    clock.now = datetime(2027, 1, 4, tzinfo=UTC)  # the first minute after the freeze
    held = await dispatcher._held()
    assert held == {}
    claimed = await store.claim_next_runnable("r1", 30.0, limits=limits, exclude=frozenset(held))
    assert claimed is not None and claimed.id == job.id


async def test_an_emergency_job_is_not_held(store: Store, hosts: Path, clock: FakeClock) -> None:
    clock.now = DURING
    rules = parse_policy(POLICY, "p.toml")
    svc = service(store, hosts, clock, rules)
    job = await svc.submit(request("vm42 to hostB --emergency --reason x"), "alice")
    for who in ("bob", "carol", "dave"):
        job = await svc.approve(job.id, who)
    assert job.state is JobState.APPROVED
    assert await svc.dispatcher._held() == {}


def _dispatcher(store: Store, hosts: Path, clock: FakeClock, rules: Policy, sink: RecordingSink) -> Dispatcher:
    return Dispatcher(
        store=store,
        inventory=load_inventory(hosts),
        planner=None,  # type: ignore[arg-type]  # nothing is started here
        executor=None,  # type: ignore[arg-type]
        mover=JobMover(store, sink, clock),
        sink=sink,
        config=DispatcherConfig(replica_id="r1"),
        clock=clock,
        freezes=rules.freezes,
    )


async def test_a_scheduled_move_is_approved_now_and_claimed_at_its_time(
    store: Store, hosts: Path, clock: FakeClock
) -> None:
    rules = parse_policy(POLICY, "p.toml")
    svc = service(store, hosts, at(clock, BEFORE), rules)
    job = await svc.submit(request("vm42 to hostB --window 2026-12-01T12:00Z/12:10"), "alice")
    assert job.plan is not None
    opts = job.plan.request.options
    assert (opts.not_before, opts.not_after) == (
        datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
        datetime(2026, 12, 1, 12, 10, tzinfo=UTC),
    )
    job = await svc.approve(job.id, "bob")
    assert job.state is JobState.APPROVED  # approved now
    sink = RecordingSink()
    dispatcher = _dispatcher(store, hosts, clock, rules, sink)
    limits = limits_of(load_inventory(hosts))
    held = await dispatcher._held()
    assert held == {job.id: "scheduled: starts at 2026-12-01 12:00 UTC (it may start until 2026-12-01 12:10 UTC)"}
    assert await store.claim_next_runnable("r1", 30.0, limits=limits, exclude=frozenset(held)) is None
    await dispatcher._mark_waiting(limits, held)
    told = [e.text for e in sink.events if isinstance(e, Notice)]
    assert told == [f"waiting: {held[job.id]} (place 1 in the queue)"]

    clock.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # its first minute
    await dispatcher._expire_missed_windows()
    held = await dispatcher._held()
    claimed = await store.claim_next_runnable("r1", 30.0, limits=limits, exclude=frozenset(held))
    assert claimed is not None and claimed.id == job.id


async def test_a_missed_window_expires_the_request_saying_why(store: Store, hosts: Path, clock: FakeClock) -> None:
    """Approved, but its window passes before it could start (here: nobody ran the dispatcher in time)."""
    rules = parse_policy(POLICY, "p.toml")
    svc = service(store, hosts, at(clock, BEFORE), rules)
    job = await svc.submit(request("vm42 to hostB --at 2026-12-01T11:00Z"), "alice")
    assert job.plan is not None and job.plan.request.options.not_after == datetime(2026, 12, 1, 11, 30, tzinfo=UTC)
    await svc.approve(job.id, "bob")
    sink = RecordingSink()
    dispatcher = _dispatcher(store, hosts, clock, rules, sink)
    await dispatcher._mark_waiting(limits_of(load_inventory(hosts)), await dispatcher._held())
    clock.now = datetime(2026, 12, 1, 11, 30, tzinfo=UTC)  # the window is over and it never started
    await dispatcher._expire_missed_windows()
    expired = await store.get_job(job.id)
    assert expired.state is JobState.EXPIRED
    last = (await store.events(job.id))[-1]
    assert last.detail == (
        "its start window ended at 2026-12-01 11:30 UTC before it could start (scheduled: starts at "
        "2026-12-01 11:00 UTC (it may start until 2026-12-01 11:30 UTC)); nothing was changed: request it again "
        "with a new --at or --window"
    )


async def test_a_window_already_over_is_refused(store: Store, hosts: Path, clock: FakeClock) -> None:
    svc = service(store, hosts, at(clock, BEFORE), parse_policy(POLICY, "p.toml"))
    with pytest.raises(PolicyError, match=r"the start window ended at 2026-12-01 09:30 UTC, before this request"):
        await svc.submit(request("vm42 to hostB --at 2026-12-01T09:00Z"), "alice")


async def test_a_request_made_during_a_freeze_for_after_it_is_accepted(
    store: Store, hosts: Path, clock: FakeClock
) -> None:
    svc = service(store, hosts, at(clock, datetime(2027, 1, 3, 12, 0, tzinfo=UTC)), parse_policy(POLICY, "p.toml"))
    job = await svc.submit(request("vm42 to hostB --at 2027-01-04T08:00Z"), "alice")
    assert job.state is JobState.AWAITING_APPROVAL
    with pytest.raises(PolicyError, match="changes are frozen: 'year-end'"):
        await svc.submit(request("vm43 to hostB --at 2027-01-03T20:00Z"), "alice")  # its start is still frozen


async def test_naive_times_use_the_policys_schedule_zone(store: Store, hosts: Path, clock: FakeClock) -> None:
    rules = parse_policy(POLICY + '\n[schedule]\ntimezone = "Europe/Berlin"\n', "p.toml")
    svc = service(store, hosts, at(clock, BEFORE), rules)
    job = await svc.submit(request("vm42 to hostB --at 2026-12-01T13:00"), "alice")
    assert job.plan is not None
    assert job.plan.request.options.not_before == datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def test_approving_after_the_start_window_ended_is_refused_and_expires_it(
    store: Store, hosts: Path, clock: FakeClock
) -> None:
    svc = service(store, hosts, at(clock, BEFORE), parse_policy(POLICY, "p.toml"))
    job = await svc.submit(request("vm42 to hostB --window 2026-12-01T10:05Z/10:10"), "alice")
    clock.now = datetime(2026, 12, 1, 10, 10, tzinfo=UTC)
    with pytest.raises(StateError, match=r"the start window of job 1 ended at 2026-12-01 10:10 UTC before it was"):
        await svc.approve(job.id, "bob")
    assert (await store.get_job(job.id)).state is JobState.EXPIRED


async def test_a_job_taken_over_during_a_freeze_is_not_started(store: Store, hosts: Path, clock: FakeClock) -> None:
    """Claimed by a replica that died just before the freeze began: whoever takes it over holds it too."""
    rules = parse_policy(POLICY, "p.toml")
    svc = service(store, hosts, at(clock, datetime(2026, 12, 19, 23, 50, tzinfo=UTC)), rules)
    job = await svc.submit(request("vm42 to hostB"), "alice")
    await svc.approve(job.id, "bob")
    claimed = await store.claim_next_runnable("dead-replica", 30.0)
    assert claimed is not None and claimed.id == job.id
    clock.now = DURING  # the dead replica's lease ran out long ago
    taken = await store.take_over(job.id, "r1", 30.0)
    assert taken is not None and taken.owner == "r1"
    dispatcher = _dispatcher(store, hosts, clock, rules, RecordingSink())
    await dispatcher._run_in_context(taken, recovering=True)  # would crash into executor=None if it started
    after = await store.get_job(job.id)
    assert after.state is JobState.APPROVED and after.owner is None  # not started, lease given back
