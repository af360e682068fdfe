"""Preflight check 7: shared storage vs --copy-storage, copy size and room, pre-creation, cache modes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from migration_core.facts.gathered import DiskVisibility, VmState
from migration_core.facts.vm import DiskSource, DiskSourceKind, VmFacts
from migration_core.models import CheckResult, CheckStatus, CopyStorage, MigrationOptions
from migration_core.preflight import storage
from migration_core.units import GIB
from tests.migration_core.fixtures.build import facts, named, one, statuses, vm

PASS, WARN, FAIL = CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL


def only(*targets: str) -> VmFacts:
    """vm42 with only the named disks."""
    v = vm("dom_vm42.xml")
    return replace(v, disks=tuple(d for d in v.disks if d.target in targets))


LOCAL_VDA = DiskVisibility(
    "vda",
    same_path_exists=False,
    shared=False,
    size_bytes=3 * GIB,
    capacity_bytes=20 * GIB,
    destination_free_bytes=100 * GIB,
    destination_pool="default",
    backing_on_destination=True,
)
SHARED_NFS = DiskVisibility("vda", same_path_exists=True, shared=True, shared_fs=True, fs_type="nfs4")


def run(v: VmFacts, disks: tuple[DiskVisibility, ...], **options: object) -> tuple[CheckResult, ...]:
    f = facts(v, disks=disks, options=MigrationOptions(**options))  # type: ignore[arg-type]
    return storage.check_storage(f)


def test_no_disks_passes() -> None:
    r = one(storage.check_storage(facts()))
    assert r.status is PASS and "no disks" in r.reason


def test_network_disk_is_shared_without_any_probe() -> None:
    r = one(run(only("vdb", "sda"), ()))
    assert r.status is PASS and "vdb (rbd vms/vm42-data on 10.0.0.11:6789, 10.0.0.12:6789)" in r.reason


def test_shared_nfs_disk_passes() -> None:
    r = one(run(only("vda"), (SHARED_NFS,)))
    assert r.status is PASS and "shared with hostB" in r.reason


def test_local_disk_without_copy_storage_fails_with_the_fix() -> None:
    r = one(run(only("vda"), (LOCAL_VDA,)))
    assert r.status is FAIL
    assert "vda (/var/lib/libvirt/images/vm42.qcow2) is local to hostA" in r.reason
    assert r.fix is not None and "--copy-storage all" in r.fix and "3.0 GiB" in r.fix and "seed 12.8" in r.fix


def test_local_disk_with_copy_storage_reports_bytes_and_room() -> None:
    results = run(only("vda"), (LOCAL_VDA,), copy_storage=CopyStorage.ALL)
    assert statuses(results) == {"storage": PASS, "storage.space": PASS}
    assert "copied with --copy-storage all: vda" in one(results, "storage").reason
    space = one(results, "storage.space").reason
    # the allocation (3 GiB of data) counts, not the virtual size (20 GiB): the bot's images arrive thin
    assert "will copy 3.0 GiB of the disks (allocated data, virtual size 20.0 GiB: images arrive thin" in space
    assert "hostB has room" in space


def test_copy_all_outside_a_pool_passes_since_the_bot_precreates_the_image() -> None:
    vis = replace(LOCAL_VDA, destination_pool=None)
    assert statuses(run(only("vda"), (vis,), copy_storage=CopyStorage.ALL))["storage"] is PASS


def test_copy_inc_needs_a_pool_or_a_precreated_image() -> None:
    vis = replace(LOCAL_VDA, destination_pool=None)
    r = one(run(only("vda"), (vis,), copy_storage=CopyStorage.INC), "storage")
    assert r.status is FAIL and "in no storage pool there" in r.reason
    assert r.fix is not None and "qemu-img create -f qcow2 /var/lib/libvirt/images/vm42.qcow2 20.0 GiB" in r.fix


def test_copy_into_an_existing_image_outside_pools_passes() -> None:
    vis = replace(LOCAL_VDA, destination_pool=None, same_path_exists=True)
    assert statuses(run(only("vda"), (vis,), copy_storage=CopyStorage.ALL))["storage"] is PASS


def test_copy_without_room_fails() -> None:
    vis = replace(LOCAL_VDA, destination_free_bytes=1 * GIB)
    r = one(run(only("vda"), (vis,), copy_storage=CopyStorage.ALL), "storage.space")
    assert r.status is FAIL and "needs 3.0 GiB in /var/lib/libvirt/images but hostB has 1.0 GiB free" in r.reason


def test_room_is_compared_per_directory_sum() -> None:
    v = vm("dom_vm42.xml")
    vdd_as_file = replace(
        next(d for d in v.disks if d.target == "vdd"),
        source=DiskSource(DiskSourceKind.FILE, path="/var/lib/libvirt/images/scratch.qcow2"),
    )
    two = replace(v, disks=(next(d for d in v.disks if d.target == "vda"), vdd_as_file))
    vdd = replace(LOCAL_VDA, target="vdd", size_bytes=2 * GIB, destination_free_bytes=4 * GIB)
    vda = replace(LOCAL_VDA, destination_free_bytes=4 * GIB)
    r = one(run(two, (vda, vdd), copy_storage=CopyStorage.ALL), "storage.space")
    assert r.status is FAIL and "needs 5.0 GiB" in r.reason  # 3 + 2 GiB into one directory with 4 GiB free


@pytest.mark.parametrize(
    ("size", "free", "expected", "fragment"),
    [
        (None, 10 * GIB, WARN, "could not read the size of vda"),
        (3 * GIB, None, WARN, "free space on hostB is unknown"),
    ],
)
def test_copy_room_unknowns_warn(size: int | None, free: int | None, expected: CheckStatus, fragment: str) -> None:
    vis = replace(LOCAL_VDA, size_bytes=size, destination_free_bytes=free)
    r = one(run(only("vda"), (vis,), copy_storage=CopyStorage.ALL), "storage.space")
    assert r.status is expected and fragment in r.reason


@pytest.mark.parametrize(
    ("backing", "expected", "fragment"),
    [
        (True, PASS, "copied with --copy-storage inc"),
        (False, FAIL, "backing chain (/var/lib/libvirt/images/base-debian12.qcow2) is missing on hostB"),
        (None, WARN, "could not tell whether hostB has the backing chain"),
    ],
)
def test_copy_storage_inc_needs_the_backing_chain(backing: bool | None, expected: CheckStatus, fragment: str) -> None:
    vis = replace(LOCAL_VDA, backing_on_destination=backing)
    results = run(only("vda"), (vis,), copy_storage=CopyStorage.INC)
    assert statuses(results)["storage"] is expected
    assert any(fragment in r.reason for r in named(results, "storage"))


def test_unknown_sharing_warns_and_is_not_copied() -> None:
    results = run(only("vda"), (DiskVisibility("vda", error="ssh to hostB timed out"),))
    r = one(results, "storage")
    assert r.status is WARN and "ssh to hostB timed out" in r.reason and "not copied" in r.reason
    assert storage.disks_to_copy(only("vda"), (DiskVisibility("vda"),)) == ()


def test_unknown_sharing_with_an_explicit_copy_storage_fails_never_drops_the_copy() -> None:
    """A probe that cannot decide is never treated as shared: the operator's --copy-storage is not dropped
    silently (libvirt would refuse "Migration without shared storage is unsafe"); the plan says what to do."""
    vis = DiskVisibility("vda", same_path_exists=True, error="probe failed")
    r = one(run(only("vda"), (vis,), copy_storage=CopyStorage.ALL), "storage")
    assert r.status is FAIL and "could not tell whether vda" in r.reason and "--copy-storage all" in r.reason
    assert r.fix is not None and "virsh vol-delete /var/lib/libvirt/images/vm42.qcow2" in r.fix


def test_a_stale_image_on_unshared_storage_is_replaced_and_said_so() -> None:
    """The copy-storage round trip: an old image at the same path, on the destination's own storage."""
    vis = replace(LOCAL_VDA, same_path_exists=True, shared=False)
    results = run(only("vda"), (vis,), copy_storage=CopyStorage.ALL)
    assert statuses(results) == {"storage": PASS, "storage.stale_image": CheckStatus.INFO, "storage.space": PASS}
    assert "a stale copy" in one(results, "storage.stale_image").reason


def test_missing_visibility_entry_warns() -> None:
    assert one(run(only("vda"), ())).status is WARN


def test_shared_on_a_filesystem_libvirt_does_not_know_warns_about_unsafe() -> None:
    vis = DiskVisibility("vda", same_path_exists=True, shared=True, shared_fs=False, fs_type="ext4")
    r = one(run(only("vda"), (vis,)))
    assert r.status is WARN and "(ext4)" in r.reason and "VIR_MIGRATE_UNSAFE" in r.reason
    assert storage.placements(only("vda"), (vis,))[0].needs_unsafe


@pytest.mark.parametrize(
    ("vis", "expected"),
    [
        (DiskVisibility("vdc", same_path_exists=True, shared=True), PASS),
        (DiskVisibility("vdc", same_path_exists=True, shared=False), FAIL),
        (DiskVisibility("vdc"), WARN),
    ],
)
def test_shareable_disk_must_really_be_shared(vis: DiskVisibility, expected: CheckStatus) -> None:
    assert statuses(run(only("vdc"), (vis,)))["storage"] is expected


@pytest.mark.parametrize(
    ("exists", "expected"),
    [(True, PASS), (False, FAIL), (None, WARN)],
)
def test_readonly_image_must_exist_on_the_destination(exists: bool | None, expected: CheckStatus) -> None:
    v = vm("dom_vm42.xml")
    cdrom = next(d for d in v.disks if d.target == "sda")
    iso = replace(cdrom, source=DiskSource(path="/var/lib/libvirt/iso/debian.iso"))
    vis = DiskVisibility("sda", same_path_exists=exists, shared=None if exists is None else False)
    results = run(replace(v, disks=(iso,)), (vis,), copy_storage=CopyStorage.ALL)
    assert statuses(results)["storage"] is expected
    assert storage.disks_to_copy(replace(v, disks=(iso,)), (vis,)) == ()  # read-only disks are never copied


@pytest.mark.parametrize(
    ("vis", "expected", "fragment"),
    [
        (LOCAL_VDA, WARN, "will not start there until the images are copied"),
        (replace(LOCAL_VDA, same_path_exists=True), PASS, "neither needed nor copied"),
        (None, PASS, "seed table 12.1"),
    ],
)
def test_offline_needs_no_disk_access(vis: DiskVisibility | None, expected: CheckStatus, fragment: str) -> None:
    f = facts(only("vda"), state=VmState.SHUTOFF, disks=(vis,) if vis else ())
    r = one(storage.check_storage(f))
    assert r.status is expected and fragment in r.reason


CACHE = [
    # target, cache, visibility, expected count of storage.cache warnings
    ("vda", "none", SHARED_NFS, 0),
    ("vda", "directsync", SHARED_NFS, 0),
    ("vda", "writeback", SHARED_NFS, 1),
    ("vda", None, SHARED_NFS, 1),
    ("vda", "unsafe", SHARED_NFS, 1),
    ("vda", "writeback", LOCAL_VDA, 0),  # copied, so the host cache of the source does not matter
]


@pytest.mark.parametrize(("target", "cache", "vis", "count"), CACHE)
def test_cache_mode(target: str, cache: str | None, vis: DiskVisibility, count: int) -> None:
    v = only(target)
    v = replace(v, disks=tuple(replace(d, cache=cache) for d in v.disks))
    results = storage.check_cache(facts(v, disks=(vis,)))
    assert len(results) == count
    if count:
        assert results[0].status is WARN and results[0].fix is not None and "cache='none'" in results[0].fix
        assert ("loses writes" in results[0].reason) == (cache == "unsafe")


def test_cache_mode_is_not_checked_offline() -> None:
    v = replace(only("vda"), disks=tuple(replace(d, cache="writeback") for d in only("vda").disks))
    assert storage.check_cache(facts(v, disks=(SHARED_NFS,), state=VmState.SHUTOFF)) == ()


def test_running_lab_vm_on_nbd_shared_storage_needs_no_copy_and_no_unsafe() -> None:
    f = facts("dom_lab_nbd_running.xml")
    r = one(storage.check_storage(f))
    assert r.status is PASS and "vda (nbd shared on 10.213.8.3:10809)" in r.reason
    assert storage.check_cache(f) == ()
    assert not any(p.needs_unsafe for p in storage.placements(f.vm, ()))  # type: ignore[arg-type]
