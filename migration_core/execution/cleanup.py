"""One owner per VM: after a verified persistent move, remove what the move left on the source.

libvirt's default (virsh's too) leaves a shut-off definition of the VM on the host it left, and with
`--copy-storage` the source's images as well. Both are hazards: started by mistake while the VM runs
elsewhere, that definition writes to the same disks (shared storage) or resurrects a stale copy. Nova,
oVirt and Proxmox keep exactly one owner per VM; so does migrate-bot, unless the operator asks for
`--keep-source`. Nothing is removed before verification passed, and only what the move made redundant:
a shut-off, persistent definition with the plan's UUID, and the images that were copied (the plan's
`migrate_disks`, found by their path in the destination's definition, deleted on the source only).

`cleanup_plan` (pure) decides what to do; `remove_source_copies` does it and reports each step as a check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from migration_core.errors import MigrateBotError
from migration_core.facts.domxml import parse_domain
from migration_core.facts.vm import DiskSourceKind
from migration_core.hypervisor.port import HypervisorPort
from migration_core.hypervisor.types import DomainInfo
from migration_core.models import CheckResult, CheckStatus, JobState, Plan, VerificationSummary

log = logging.getLogger(__name__)
_COPY_FLAGS = frozenset({"NON_SHARED_DISK", "NON_SHARED_INC"})


@dataclass(frozen=True)
class CleanupPlan:
    """What the source still holds that the verified move made redundant, and whether to remove it."""

    undefine: bool  # remove the source's shut-off definition
    copied_disks: tuple[str, ...]  # targets whose images were copied (their source images go too, unless kept)
    keep: bool  # --keep-source: report what is kept, remove nothing


def cleanup_plan(plan: Plan, summary: VerificationSummary, source: DomainInfo | None) -> CleanupPlan | None:
    """None when nothing is to be done or said: the move failed or was not verified, was transient (the VM is
    not defined on the destination), or libvirt already undefined the source (--undefine-source)."""
    flags = frozenset(f.removeprefix("VIR_MIGRATE_") for f in plan.flags)
    verified = summary.outcome is JobState.SUCCEEDED and not any(c.status is CheckStatus.FAIL for c in summary.checks)
    if not verified or "PERSIST_DEST" not in flags or "UNDEFINE_SOURCE" in flags:
        return None
    chosen = plan.params.get("migrate_disks")
    copied = tuple(chosen) if isinstance(chosen, list) else ((chosen,) if isinstance(chosen, str) else ())
    copied = copied if flags & _COPY_FLAGS else ()
    defined = source is not None and source.present and source.persistent and not source.active
    if plan.vm_uuid and source is not None and source.present and source.uuid.lower() != plan.vm_uuid.lower():
        defined = False  # not this VM (replaced since the plan): never touch it
    if not defined and not copied:
        return None
    return CleanupPlan(undefine=defined, copied_disks=copied, keep=plan.request.options.keep_source)


async def remove_source_copies(
    plan: Plan, summary: VerificationSummary, hypervisor: HypervisorPort, source_uri: str, destination_uri: str
) -> tuple[CheckResult, ...]:
    """Carry out `cleanup_plan` and say what was removed and what was kept (INFO), or what failed (WARN)."""
    vm, a = plan.request.vm, plan.source
    ref = plan.vm_uuid or vm
    try:
        source: DomainInfo | None = await hypervisor.domain(source_uri, ref)
    except MigrateBotError as err:
        log.info("one-owner cleanup of %s: %s did not answer: %s", vm, a, err)
        source = None
    todo = cleanup_plan(plan, summary, source)
    if todo is None:
        return ()
    paths = await _copied_paths(hypervisor, destination_uri, ref, todo.copied_disks)
    if todo.keep:
        kept = [f"the shut-off definition of {vm}"] if todo.undefine else []
        kept += [f"{p} ({t})" for t, p in paths]
        return (CheckResult("source_cleanup", CheckStatus.INFO, f"kept on {a} (--keep-source): {', '.join(kept)}"),)
    out: list[CheckResult] = []
    if todo.undefine:
        try:
            await hypervisor.undefine_inactive(source_uri, ref)
            out.append(
                CheckResult(
                    "source_definition",
                    CheckStatus.INFO,
                    f"removed {a}'s shut-off definition of {vm}: the VM is defined on {plan.destination} only",
                )
            )
        except MigrateBotError as err:
            out.append(
                CheckResult(
                    "source_definition",
                    CheckStatus.WARN,
                    f"could not remove {a}'s shut-off definition of {vm} ({err.message}): two hosts define it",
                    f"undefine it on {a} (`virsh undefine {vm}`); never start it there",
                )
            )
            return tuple(out)  # the definition still points at the images: leave them
    removed, failed = [], []
    for target, path in paths:
        try:
            gone = await hypervisor.delete_volume(source_uri, path)
        except MigrateBotError as err:
            failed.append(f"{path} ({err.message})")
            continue
        removed.append(f"{path} ({target})" if gone else f"{path} ({target}, already gone)")
    if removed:
        text = f"deleted the images copied to {plan.destination} from {a}: {', '.join(removed)}"
        out.append(CheckResult("source_images", CheckStatus.INFO, text))
    if failed:
        out.append(
            CheckResult(
                "source_images",
                CheckStatus.WARN,
                f"could not delete on {a}: {', '.join(failed)}",
                f"delete the stale images on {a} by hand (`virsh vol-delete PATH`)",
            )
        )
    missing = [t for t in todo.copied_disks if t not in {t for t, _ in paths}]
    if missing:
        out.append(
            CheckResult(
                "source_images",
                CheckStatus.WARN,
                f"could not find the path of {', '.join(missing)} in {vm}'s definition on {plan.destination}, "
                f"so their old images on {a} were left",
                f"delete them on {a} by hand once you have checked the VM on {plan.destination}",
            )
        )
    return tuple(out)


async def _copied_paths(
    hypervisor: HypervisorPort, destination_uri: str, vm: str, targets: tuple[str, ...]
) -> list[tuple[str, str]]:
    """(target, path) of the copied file disks, read from the destination's definition (the same paths)."""
    if not targets:
        return []
    try:
        facts = parse_domain(await hypervisor.domain_xml(destination_uri, vm, migratable=False))
    except MigrateBotError as err:
        log.warning("one-owner cleanup: cannot read %s's XML on the destination: %s", vm, err)
        return []
    return [
        (d.target, d.source.path)
        for d in facts.disks
        # never a block device (an LV...)
        if d.target in targets and d.source.path and d.source.kind is DiskSourceKind.FILE
    ]
