"""Preflight checks 3-4: VM exists, state vs mode, name/UUID clash, definitions elsewhere, snapshots."""

from __future__ import annotations

import pytest

from migration_core.dispatch.policy import required_approvals, risk_reasons
from migration_core.facts.gathered import VmState
from migration_core.hypervisor.types import DomainInfo, DomainState
from migration_core.models import CheckStatus, CopyStorage, MigrationMode, MigrationOptions, MigrationRequest
from migration_core.preflight import run_checks, vmstate
from tests.migration_core.fixtures.build import facts, one

PASS, WARN, FAIL = CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL
UUID = "6c61622d-766d-4000-8000-000000000001"  # the lab guest's


def test_vm_not_found_suggests_close_names() -> None:
    f = facts(None, known_vms=("vm41", "vm43", "web01"), request=MigrationRequest("vm42", "hostB"))
    r = one(vmstate.check_exists(f))
    assert r.status is FAIL and "no VM named 'vm42' on hostA" in r.reason
    assert r.fix is not None and r.fix.startswith("did you mean vm41")


@pytest.mark.parametrize(
    ("known", "fragment"),
    [((), "hostA has no VMs"), (("alpha", "beta"), "VMs on hostA: alpha, beta")],
)
def test_vm_not_found_lists_or_says_empty(known: tuple[str, ...], fragment: str) -> None:
    r = one(vmstate.check_exists(facts(None, known_vms=known)))
    assert r.status is FAIL and fragment in (r.fix or "")


def test_run_checks_stops_when_vm_missing() -> None:
    results = run_checks(facts(None))
    assert results[-1].name == "vm.exists" and results[-1].status is FAIL
    assert {r.name for r in results} == {
        "hosts.known",
        "hosts.reachable",
        "hosts.distinct",
        "hypervisor",
        "vm.exists",
    }


STATES = [
    # state, requested mode, persistent, expected, fragment
    (VmState.RUNNING, None, True, PASS, "live migration"),
    (VmState.RUNNING, MigrationMode.LIVE, True, PASS, "live migration"),
    (VmState.RUNNING, MigrationMode.OFFLINE, True, FAIL, "--offline moves only its definition"),
    (VmState.SHUTOFF, None, True, PASS, "offline migration"),
    (VmState.SHUTOFF, MigrationMode.OFFLINE, True, PASS, "offline migration"),
    (VmState.SHUTOFF, MigrationMode.LIVE, True, FAIL, "cannot be live-migrated"),
    (VmState.SHUTOFF, None, False, FAIL, "not persistent"),
    (VmState.PAUSED, None, True, FAIL, "is paused"),
    (VmState.CRASHED, None, True, FAIL, "has crashed"),
    (VmState.PMSUSPENDED, None, True, FAIL, "suspended by the guest"),
    (VmState.OTHER, None, True, FAIL, "transitional state"),
    (None, None, True, WARN, "could not read the state"),
]


@pytest.mark.parametrize(("state", "mode", "persistent", "expected", "fragment"), STATES)
def test_state_fits_mode(
    state: VmState | None, mode: MigrationMode | None, persistent: bool, expected: CheckStatus, fragment: str
) -> None:
    f = facts(state=state, options=MigrationOptions(mode=mode), vm_persistent=persistent)
    r = one(vmstate.check_state(f))
    assert r.status is expected and fragment in r.reason
    if expected is FAIL:
        assert r.fix or "not persistent" in r.reason


@pytest.mark.parametrize(
    ("domain_state", "state"),
    [
        (DomainState.NOSTATE, VmState.OTHER),
        (DomainState.RUNNING, VmState.RUNNING),
        (DomainState.BLOCKED, VmState.RUNNING),
        (DomainState.PAUSED, VmState.PAUSED),
        (DomainState.SHUTDOWN, VmState.RUNNING),  # still running while it shuts down
        (DomainState.SHUTOFF, VmState.SHUTOFF),
        (DomainState.CRASHED, VmState.CRASHED),
        (DomainState.PMSUSPENDED, VmState.PMSUSPENDED),
        (DomainState.ABSENT, VmState.OTHER),
    ],
)
def test_state_of_a_domain(domain_state: DomainState, state: VmState) -> None:
    assert VmState.of(domain_state) is state


CLASHES = [
    # destination domains, persistent, expected, fragment
    ((), True, PASS, "no domain named tcgvm"),
    ((DomainInfo("hostB", "other", "11111111-2222-3333-4444-555555555555", active=True),), True, PASS, "no domain"),
    ((DomainInfo("hostB", "tcgvm", UUID, active=True),), True, FAIL, "already running on hostB"),
    # same name and UUID, shut off: this VM's own old copy, replaced: information, not a warning
    (
        (DomainInfo("hostB", "tcgvm", UUID, active=False),),
        True,
        CheckStatus.INFO,
        "this VM's own copy; the migration replaces",
    ),
    ((DomainInfo("hostB", "tcgvm", UUID, active=False),), False, WARN, "stays defined there"),
    (
        (DomainInfo("hostB", "tcgvm", "11111111-2222-3333-4444-555555555555", active=False),),
        True,
        FAIL,
        "different VM",
    ),
    ((DomainInfo("hostB", "renamed", UUID.upper(), active=False),), True, FAIL, "same UUID"),
]


@pytest.mark.parametrize(("domains", "persistent", "expected", "fragment"), CLASHES)
def test_name_and_uuid_clash(
    domains: tuple[DomainInfo, ...], persistent: bool, expected: CheckStatus, fragment: str
) -> None:
    f = facts(destination_domains=domains, options=MigrationOptions(persistent=persistent))
    r = one(vmstate.check_name_clash(f))
    assert r.status is expected and fragment in r.reason


def test_clash_unknown_destination_domains_warns() -> None:
    assert one(vmstate.check_name_clash(facts(destination_domains=None))).status is WARN


@pytest.mark.parametrize(("count", "results"), [(None, 0), (0, 0), (2, 1)])
def test_snapshots_block(count: int | None, results: int) -> None:
    out = vmstate.check_snapshots(facts(vm_snapshots=count))
    assert len(out) == results
    if out:
        assert out[0].status is FAIL and "2 snapshot(s) recorded in libvirt" in out[0].reason


def test_the_old_copy_on_the_destination_does_not_make_the_plan_risky() -> None:
    """A round trip: the VM's own shut-off copy on the destination is information, so one approver suffices."""
    from migration_core.planning.planner import make_plan

    f = facts(destination_domains=(DomainInfo("hostB", "tcgvm", UUID, active=False),), definitions_elsewhere=())
    plan = make_plan(f, None, dest_peer_uri="qemu+tcp://10.213.7.2/system")
    clash = next(c for c in plan.checks if c.name == "vm.name_clash")
    assert clash.status is CheckStatus.INFO and plan.executable and not plan.warnings
    assert risk_reasons(plan) == [] and required_approvals(plan) == 1


@pytest.mark.parametrize(
    ("elsewhere", "unanswered", "expected", "fragments"),
    [
        ((), (), PASS, ("no other host of the inventory defines tcgvm",)),
        # the destination's own copy is the clash check's business (replaced), not a hazard
        ((DomainInfo("hostB", "tcgvm", active=False),), (), PASS, ("no other host",)),
        (
            (DomainInfo("hostC", "tcgvm", active=False), DomainInfo("hostD", "old-tcgvm", active=True)),
            (),
            WARN,
            ("hostC (tcgvm, shut off)", "hostD (old-tcgvm, running)", "split-brain hazard"),
        ),
        ((), ("hostC",), PASS, ("hostC did not answer",)),
    ],
)
def test_definitions_of_the_same_uuid_elsewhere_are_a_hazard(
    elsewhere: tuple[DomainInfo, ...],
    unanswered: tuple[str, ...],
    expected: CheckStatus,
    fragments: tuple[str, ...],
) -> None:
    r = one(vmstate.check_other_definitions(facts(definitions_elsewhere=elsewhere, hosts_unanswered=unanswered)))
    assert r.status is expected, r
    for fragment in fragments:
        assert fragment in r.reason
    if expected is WARN:
        assert r.fix and "virsh undefine" in r.fix


def test_no_host_listing_means_no_hazard_check() -> None:
    assert vmstate.check_other_definitions(facts(definitions_elsewhere=None)) == ()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (MigrationOptions(), "hostA's definition of tcgvm is removed"),
        (MigrationOptions(copy_storage=CopyStorage.ALL), "and the disk images copied from it is removed"),
        (MigrationOptions(keep_source=True), "--keep-source: hostA keeps"),
    ],
)
def test_the_plan_says_what_happens_to_the_source_definition(options: MigrationOptions, fragment: str) -> None:
    r = one(vmstate.check_one_owner(facts(options=options)))
    assert r.status is CheckStatus.INFO and fragment in r.reason


@pytest.mark.parametrize("options", [MigrationOptions(persistent=False), MigrationOptions(undefine_source=True)])
def test_transient_and_undefine_source_moves_say_nothing_about_one_owner(options: MigrationOptions) -> None:
    assert vmstate.check_one_owner(facts(options=options)) == ()
