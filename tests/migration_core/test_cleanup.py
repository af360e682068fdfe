"""execution.cleanup.cleanup_plan, pure: one owner per VM after a verified move; --keep-source keeps; nothing is
touched after a failure, a transient move, or when libvirt already undefined the source."""

from __future__ import annotations

from dataclasses import replace

import pytest

from migration_core.execution.cleanup import CleanupPlan, cleanup_plan
from migration_core.hypervisor.types import DomainInfo, DomainState
from migration_core.models import CheckResult, CheckStatus, CopyStorage, JobState, MigrationOptions, Plan
from tests.bot.factories import plan, summary

UUID = "6c61622d-766d-4000-8000-000000000042"
OLD = DomainInfo("hostA", "vm42", UUID, DomainState.SHUTOFF, active=False, persistent=True)


def with_uuid(p: Plan, **options: object) -> Plan:
    opts = replace(p.request.options, **options)  # type: ignore[arg-type]
    return replace(p, vm_uuid=UUID, request=replace(p.request, options=opts))


def test_a_verified_move_removes_the_source_definition() -> None:
    assert cleanup_plan(with_uuid(plan()), summary(), OLD) == CleanupPlan(True, (), keep=False)


def test_a_copy_storage_move_also_names_the_copied_disks() -> None:
    p = with_uuid(plan(copy_storage=CopyStorage.ALL))
    p = replace(p, params={**p.params, "migrate_disks": ["vda"]})
    assert cleanup_plan(p, summary(), OLD) == CleanupPlan(True, ("vda",), keep=False)


def test_keep_source_keeps_but_still_reports() -> None:
    todo = cleanup_plan(with_uuid(plan(), keep_source=True), summary(), OLD)
    assert todo is not None and todo.keep


@pytest.mark.parametrize(
    ("p", "s", "source"),
    [
        (with_uuid(plan()), summary(outcome=JobState.FAILED), OLD),  # not verified
        (
            with_uuid(plan()),
            replace(summary(), checks=(CheckResult("persistence", CheckStatus.FAIL, "transient"),)),
            OLD,
        ),
        (with_uuid(replace(plan(), flags=("VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER"))), summary(), OLD),  # transient
        (with_uuid(plan(undefine_source=True)), summary(), OLD),  # libvirt did it
        (with_uuid(plan()), summary(), replace(OLD, state=DomainState.RUNNING, active=True)),  # runs: never
        (with_uuid(plan()), summary(), replace(OLD, uuid="11111111-2222-3333-4444-555555555555")),  # another VM
        (with_uuid(plan()), summary(), DomainInfo("hostA", "vm42")),  # already gone
        (with_uuid(plan()), summary(), None),  # the source did not answer
    ],
)
def test_nothing_is_touched(p: Plan, s: object, source: DomainInfo | None) -> None:
    assert cleanup_plan(p, s, source) is None  # type: ignore[arg-type]


def test_options_default_to_one_owner() -> None:
    assert MigrationOptions().keep_source is False
