"""Check 11: the requested options fit the VM and the mode (post-copy vs devices, offline vs live options)."""

from __future__ import annotations

from migration_core.facts.gathered import PreflightFacts
from migration_core.facts.host import HostVersions
from migration_core.facts.vm import VmFacts
from migration_core.models import CheckResult, MigrationMode
from migration_core.preflight._common import (
    dest_name,
    failed,
    join,
    mode_of,
    passed,
    src_name,
    warned,
)
from migration_core.preflight.storage import disks_to_copy, placements

# QEMU refused post-copy together with multifd ("Postcopy is not yet compatible with multifd") until 10.1
# (Nova's parallel-connections support checks for the same version).
QEMU_POSTCOPY_MULTIFD = 10_001_000


def postcopy_blockers(vm: VmFacts | None) -> tuple[str, ...]:
    """Why post-copy must not be used for this VM (seeds 12.6 and 12.7); empty when it may."""
    if vm is None:
        return ()
    reasons = []
    if vm.mdevs:
        reasons.append("a vGPU (seed 12.7)")
    if any(h.is_mellanox_vf for h in vm.pci_hostdevs):
        reasons.append("a Mellanox VF (seed 12.6)")
    if vm.iommu is not None:
        reasons.append(f"a vIOMMU ({vm.iommu.model})")
    return tuple(reasons)


def check_options(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    opts, vm, mode = facts.request.options, facts.vm, mode_of(facts)
    vm_name = facts.request.vm
    out: list[CheckResult] = []
    if mode is MigrationMode.OFFLINE:
        live_only = opts.live_only_flags()
        if live_only:
            why = "it is shut off" if opts.mode is None else "--offline was asked for"
            out.append(
                failed(
                    "options.mode",
                    f"{vm_name} is migrated offline ({why}), but {join(live_only)} only apply to a live migration",
                    f"drop {join(live_only)}, or start {vm_name} and migrate it live",
                )
            )
        if not opts.persistent:
            out.append(
                failed(
                    "options.mode",
                    "an offline migration always defines the VM persistently on the destination (libvirt "
                    "requires it), so --transient cannot be honoured",
                    "drop --transient",
                )
            )
    else:
        out.extend(_postcopy(facts, vm))
        if opts.undefine_source and facts.vm_persistent is False:
            out.append(
                warned(
                    "options.undefine_source",
                    f"{vm_name} is transient on {src_name(facts)}: --undefine-source has no definition to "
                    f"remove (the VM simply stops existing there once it has moved)",
                    "drop --undefine-source",
                )
            )
        if opts.copy_storage is not None and vm is not None:
            unknown = [p for p in placements(vm, facts.disks) if p.shared is None and p.disk.copyable]
            if not disks_to_copy(vm, facts.disks) and not unknown:
                out.append(
                    warned(
                        "options.copy_storage",
                        f"--copy-storage {opts.copy_storage.value} does nothing here: {vm_name} has no "
                        "local writable disks",
                        "drop --copy-storage",
                    )
                )
    out.extend(_combinations(facts))
    if not out:
        out.append(passed("options", _summary(facts, mode)))
    return tuple(out)


def _postcopy(facts: PreflightFacts, vm: VmFacts | None) -> list[CheckResult]:
    opts = facts.request.options
    if not opts.wants_postcopy:
        return []
    blockers = postcopy_blockers(vm)
    if blockers:
        return [
            failed(
                "options.postcopy",
                f"post-copy cannot be used for {facts.request.vm}: it has {join(blockers)}",
                "drop --postcopy / --postcopy-after; if the migration may not converge, use --auto-converge "
                "or a larger --max-downtime",
            )
        ]
    return [
        warned(
            "options.postcopy",
            f"post-copy is allowed: after the switch {facts.request.vm} runs on {dest_name(facts)} while "
            "its memory is still being pulled; if the link breaks then, the VM stays paused until the "
            "migration is resumed (it cannot be aborted)",
            None,
        )
    ]


def _combinations(facts: PreflightFacts) -> list[CheckResult]:
    opts, out = facts.request.options, []
    if opts.parallel_connections is not None and opts.compressed:
        out.append(
            failed(
                "options.combination",
                "QEMU cannot combine multi-FD (--parallel) with xbzrle compression (--compressed)",
                "drop one of them: --parallel for a fast link, --compressed for a slow one",
            )
        )
    postcopy = opts.wants_postcopy
    if opts.parallel_connections is not None and postcopy:
        hosts = (facts.source_host, facts.destination_host)
        versions = [h.versions.hypervisor for h in hosts if h is not None and h.versions is not None]
        if len(versions) < 2:
            out.append(
                warned(
                    "options.combination",
                    "post-copy with --parallel needs QEMU 10.1 or newer on both hosts, and the versions are unknown",
                    "drop --parallel if the migration fails to start",
                )
            )
        elif (oldest := min(versions)) < QEMU_POSTCOPY_MULTIFD:
            out.append(
                failed(
                    "options.combination",
                    f"QEMU {HostVersions.text(oldest)} cannot combine post-copy with multi-FD (--parallel); that "
                    "needs QEMU 10.1",
                    "drop --parallel (post-copy alone finishes any migration) or drop --postcopy",
                )
            )
    return out


def _summary(facts: PreflightFacts, mode: MigrationMode) -> str:
    opts = facts.request.options
    parts = [f"{mode.value} migration"]
    parts.append("defined on the destination" if opts.persistent else "transient on the destination")
    parts.append("undefined on the source" if opts.undefine_source else "definition kept on the source")
    return "the requested options fit: " + ", ".join(parts)
