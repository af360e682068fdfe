"""Check 7: every disk is shared with the destination, or will be copied (with room for it); cache modes.

Mirrors libvirt's own rules (qemuMigrationSrcIsSafe): empty and read-only disks need no sharing (but a
read-only image must exist on the destination, since nothing copies it), network disks (RBD, NBD, iSCSI,
Gluster) are shared by nature, and a local writable disk must be shared storage or be copied with
`--copy-storage`. Offline migration needs no disk access at all (seed table 12.1).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from migration_core.facts.gathered import DiskVisibility, PreflightFacts
from migration_core.facts.vm import DiskFacts, DiskSourceKind, VmFacts
from migration_core.models import CheckResult, CopyStorage, MigrationMode
from migration_core.preflight._common import (
    dest_name,
    failed,
    human_bytes,
    join,
    mode_of,
    noted,
    passed,
    src_name,
    warned,
)

NAME = "storage"
SAFE_CACHE_MODES = frozenset({"none", "directsync"})


@dataclass(frozen=True)
class DiskPlacement:
    """How one disk gets to the destination in a live migration (shared by the planner)."""

    disk: DiskFacts
    visibility: DiskVisibility | None
    shared: bool | None  # True: nothing to copy; False: local; None: could not tell

    @property
    def needs_unsafe(self) -> bool:
        """Proven shared, but on a filesystem libvirt does not know as shared: libvirt would refuse it."""
        return (
            self.shared is True
            and self.disk.source.kind is not DiskSourceKind.NETWORK
            and self.disk.writable
            and not self.disk.shareable
            and (self.visibility is None or self.visibility.shared_fs is not True)
        )


def placements(vm: VmFacts, disks: Sequence[DiskVisibility]) -> tuple[DiskPlacement, ...]:
    """Each non-empty disk with whether it is shared with the destination (`disks`: what it sees)."""
    by_target = {v.target: v for v in disks}
    out = []
    for d in vm.disks:
        if d.empty:
            continue
        vis = by_target.get(d.target)
        if d.source.kind is DiskSourceKind.NETWORK:
            shared: bool | None = True
        else:
            shared = None if vis is None else vis.shared
        out.append(DiskPlacement(d, vis, shared))
    return tuple(out)


def disks_to_copy(vm: VmFacts, disks: Sequence[DiskVisibility]) -> tuple[DiskPlacement, ...]:
    """Writable local disks that `--copy-storage` copies. Disks whose sharing is unknown are *not* copied:
    copying a shared image onto itself would corrupt it, and libvirt refuses a local one anyway."""
    return tuple(p for p in placements(vm, disks) if p.shared is False and p.disk.copyable)


def copy_sizes(vm: VmFacts, disks: Sequence[DiskVisibility]) -> tuple[int, int]:
    """What `--copy-storage` sends (the allocated bytes of `disks_to_copy`) and those disks' virtual size."""
    seen = [p.visibility for p in disks_to_copy(vm, disks) if p.visibility is not None]
    return sum(v.size_bytes or 0 for v in seen), sum(v.capacity_bytes or 0 for v in seen)


def check_storage(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    vm = facts.vm
    if vm is None:
        return ()
    places = placements(vm, facts.disks)
    if not places:
        return (passed(NAME, f"{vm.name} has no disks with media: nothing to share or copy"),)
    if mode_of(facts) is MigrationMode.OFFLINE:
        return _offline(facts, places)
    out: list[CheckResult] = []
    copy = facts.request.options.copy_storage
    local = [p for p in places if p.shared is False and p.disk.copyable]
    unknown = [p for p in places if p.shared is None and p.disk.copyable]
    for p in places:
        if p.disk.readonly or p.disk.shareable:
            out.extend(_must_exist(facts, p))
    if local and copy is None:
        size = sum(p.visibility.size_bytes or 0 for p in local if p.visibility)
        out.append(
            failed(
                NAME,
                f"{join(p.disk.label for p in local)} {'is' if len(local) == 1 else 'are'} local to "
                f"{src_name(facts)}: {dest_name(facts)} does not see {'it' if len(local) == 1 else 'them'}, "
                "and a live migration needs every writable disk on both hosts",
                f"add --copy-storage all to copy {'it' if len(local) == 1 else 'them'} during the migration "
                f"({human_bytes(size) if size else 'size unknown'}), or move the images to shared storage "
                "(NFS, Ceph/RBD, a SAN LUN, GlusterFS; seed 12.8)",
            )
        )
    for p in unknown:
        why = p.visibility.error if p.visibility and p.visibility.error else "no probe result"
        if copy is not None:
            # Never guess: copying onto shared storage would destroy the image, and not copying a local disk
            # (dropping the operator's --copy-storage) makes libvirt refuse the migration.
            out.append(
                failed(
                    NAME,
                    f"could not tell whether {p.disk.label} is shared with {dest_name(facts)} ({why}), so "
                    f"--copy-storage {copy.value} can neither copy it safely nor skip it",
                    f"check the path on {dest_name(facts)}: if a stale copy of the image is there, delete it "
                    f"(`virsh vol-delete {p.disk.source.path or 'PATH'}` on {dest_name(facts)}) and plan again; if the "
                    "storage is shared, drop --copy-storage",
                )
            )
            continue
        out.append(
            warned(
                NAME,
                f"could not tell whether {p.disk.label} is shared with {dest_name(facts)} ({why}); it is "
                "not copied, and libvirt will refuse the migration if it is local",
                "check that the path is on shared storage mounted on both hosts; if it is local, add "
                "--copy-storage all and plan again once the probe works",
            )
        )
    if copy is not None and local:
        out.extend(_copy_checks(facts, local, copy))
    unsafe = [p for p in places if p.needs_unsafe]
    if unsafe:
        fs = {p.visibility.fs_type for p in unsafe if p.visibility and p.visibility.fs_type}
        out.append(
            warned(
                NAME,
                f"{join(p.disk.label for p in unsafe)} {'is' if len(unsafe) == 1 else 'are'} proven shared "
                f"with {dest_name(facts)} but on a filesystem libvirt does not recognise as "
                f"shared{' (' + join(sorted(fs)) + ')' if fs else ''}; the bot adds VIR_MIGRATE_UNSAFE to "
                "say so",
                "use NFS, GFS2, OCFS2, CephFS or GlusterFS (or a network disk) so libvirt can verify it itself",
            )
        )
    if not any(r.name == NAME for r in out):
        shared = [p.disk.label for p in places if p.shared]
        copied = [p.disk.label for p in local] if copy is not None else []
        parts = ([f"shared with {dest_name(facts)}: {join(shared)}"] if shared else []) + (
            [f"copied with --copy-storage {copy.value if copy else ''}: {join(copied)}"] if copied else []
        )
        out.insert(0, passed(NAME, "; ".join(parts) or "no writable disks to share or copy"))
    return tuple(out)


def _offline(facts: PreflightFacts, places: tuple[DiskPlacement, ...]) -> tuple[CheckResult, ...]:
    missing = [
        p
        for p in places
        if p.shared is not True and p.visibility is not None and p.visibility.same_path_exists is False
    ]
    if not missing:
        return (
            passed(
                NAME,
                "offline migration moves only the definition; disk images are neither needed nor copied "
                "(seed table 12.1)",
            ),
        )
    return (
        warned(
            NAME,
            f"offline migration moves only the definition, and {join(p.disk.label for p in missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not on {dest_name(facts)}: the VM will not start there "
            "until the images are copied",
            f"copy them to the same paths on {dest_name(facts)} (e.g. rsync or `virsh vol-upload`) before "
            "starting the VM there, or keep them on shared storage (seed 12.8)",
        ),
    )


def _must_exist(facts: PreflightFacts, p: DiskPlacement) -> tuple[CheckResult, ...]:
    """Read-only and shareable disks are never copied: the destination must already see them."""
    kind = "read-only" if p.disk.readonly else "shareable"
    if p.shared is True or (p.visibility is not None and p.visibility.same_path_exists and p.disk.readonly):
        return ()
    if p.visibility is None or (p.shared is None and p.visibility.same_path_exists is None):
        return (
            warned(
                NAME,
                f"could not tell whether {dest_name(facts)} sees the {kind} disk {p.disk.label}",
                f"make sure it exists at the same path on {dest_name(facts)}; --copy-storage does not copy "
                f"{kind} disks",
            ),
        )
    return (
        failed(
            NAME,
            f"the {kind} disk {p.disk.label} is not on {dest_name(facts)}; libvirt never copies {kind} disks",
            f"make it available at the same path on {dest_name(facts)} (shared storage, or copy the image there)",
        ),
    )


def _copy_checks(facts: PreflightFacts, local: list[DiskPlacement], copy: CopyStorage) -> list[CheckResult]:
    out: list[CheckResult] = []
    dest = dest_name(facts)
    for p in local:
        vis, d = p.visibility, p.disk
        if vis is not None and vis.same_path_exists is True and p.shared is False and copy is CopyStorage.ALL:
            out.append(
                noted(
                    "storage.stale_image",
                    f"{dest} has an old image at {d.source.path or d.label} on storage of its own (not the source's): "
                    "a stale copy (e.g. from an earlier move); it is replaced by a fresh thin image and the copy",
                )
            )
        if (
            copy is CopyStorage.INC
            and vis is not None
            and vis.same_path_exists is False
            and vis.destination_pool is None
        ):
            size = human_bytes(vis.capacity_bytes) if vis.capacity_bytes else "SIZE"
            out.append(
                failed(
                    NAME,
                    f"{dest} has no image at {d.source.path or d.label} and its directory is in no storage pool "
                    "there, so libvirt cannot pre-create it for the copy",
                    f"pre-create it on {dest}: `qemu-img create -f {d.format or 'qcow2'} {d.source.path or 'PATH'} "
                    f"{size}`, or define a dir pool for {os.path.dirname(d.source.path or '') or 'its directory'} "
                    "there",
                )
            )
        elif vis is None or (vis.same_path_exists is None and vis.destination_pool is None):
            out.append(
                warned(
                    NAME,
                    f"could not tell whether {dest} can hold the copy of {d.label} (image or pool there)",
                    f"make sure {d.source.path or 'the image'} exists on {dest} or lies in one of its storage pools",
                )
            )
        if copy is CopyStorage.INC and d.backing_chain:
            backing = join(layer.source.path or layer.source.name or "?" for layer in d.backing_chain)
            if vis is not None and vis.backing_on_destination is False:
                out.append(
                    failed(
                        NAME,
                        f"--copy-storage inc copies only the top layer of {d.label}, and its backing chain "
                        f"({backing}) is missing on {dest}",
                        f"copy the backing files to the same paths on {dest}, or use --copy-storage all",
                    )
                )
            elif vis is None or vis.backing_on_destination is None:
                out.append(
                    warned(
                        NAME,
                        f"could not tell whether {dest} has the backing chain of {d.label} ({backing})",
                        f"--copy-storage inc needs it at the same paths on {dest}; --copy-storage all does not",
                    )
                )
    out.append(_space(facts, local, copy))
    return out


def _space(facts: PreflightFacts, local: list[DiskPlacement], copy: CopyStorage) -> CheckResult:
    name, dest = "storage.space", dest_name(facts)
    sizes = [(p, p.visibility.size_bytes if p.visibility else None) for p in local]
    total = sum(s or 0 for _, s in sizes)
    listed = join(f"{p.disk.target} {human_bytes(s)}" for p, s in sizes)
    unknown = [p.disk.target for p, s in sizes if s is None]
    if unknown:
        return warned(name, f"could not read the size of {join(unknown)}, so the copy size is unknown ({listed})")
    # Disks in one destination directory share its free space: compare per directory.
    by_dir: dict[str, tuple[int, int | None]] = {}
    for p, s in sizes:
        key = os.path.dirname(p.disk.source.path) if p.disk.source.path else f"pool {p.disk.source.pool}"
        need, free = by_dir.get(key, (0, None))
        reported = p.visibility.destination_free_bytes if p.visibility else None
        by_dir[key] = (need + (s or 0), reported if free is None else free)
    short = [(k, need, free) for k, (need, free) in by_dir.items() if free is not None and free < need]
    what = "the top layers" if copy is CopyStorage.INC else "the disks"
    if short:
        return failed(
            name,
            f"copying {what} needs "
            f"{join(f'{human_bytes(n)} in {k} but {dest} has {human_bytes(f)} free' for k, n, f in short)}",
            f"free space on {dest} or copy to another host",
        )
    if any(free is None for _, free in by_dir.values()):
        return warned(name, f"will copy {human_bytes(total)} ({listed}); free space on {dest} is unknown")
    virtual = sum(p.visibility.capacity_bytes or 0 for p in local if p.visibility)
    thin = f", virtual size {human_bytes(virtual)}: images arrive thin" if virtual > total else ""
    return passed(name, f"will copy {human_bytes(total)} of {what} (allocated data{thin}; {listed}); {dest} has room")


def check_cache(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    """Shared, writable, non-network disks with host caching: libvirt may refuse the migration as unsafe
    ('Migration may lead to data corruption if disks use cache other than none or directsync')."""
    vm = facts.vm
    if vm is None or mode_of(facts) is MigrationMode.OFFLINE:
        return ()
    risky = [
        p.disk
        for p in placements(vm, facts.disks)
        if p.shared is not False
        and p.disk.writable
        and not p.disk.shareable
        and p.disk.source.kind is not DiskSourceKind.NETWORK
        and (p.disk.cache or "default") not in SAFE_CACHE_MODES
    ]
    if not risky:
        return ()
    listed = join(f"{d.target} cache={d.cache or 'default (writeback)'}" for d in risky)
    unsafe = "; cache=unsafe also loses writes on a crash" if any(d.cache == "unsafe" for d in risky) else ""
    return (
        warned(
            "storage.cache",
            f"{listed} on storage that is not copied: host caching can serve stale data after the "
            f"switch-over, and libvirt refuses unless QEMU can drop its caches{unsafe}",
            f"set cache='none' (or 'directsync') on those disks (`virsh edit {vm.name}`, then restart it)",
        ),
    )
