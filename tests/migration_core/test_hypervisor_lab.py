"""The libvirt adapter against the real two-host lab: facts, storage, CPU, dirty rate, migration control,
error translation, and what happens to a migration whose client dies (P2P survives, client-managed not)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from migration_core.errors import DomainNotFound, HostUnreachable, HypervisorError
from migration_core.hypervisor.libvirt_adapter import Hypervisor, migration_flags
from migration_core.hypervisor.types import DomainState, EmulatorTarget, JobType, MigrationCall
from tests.labkit import REPO, LabInfo
from tests.migration_core.executor_lab_support import A, B, Guest, drop_guest, healthy_link, make_guest

pytestmark = pytest.mark.lab

QEMU64 = "<cpu><arch>x86_64</arch><model>qemu64</model></cpu>"
KVM64 = "<cpu><arch>x86_64</arch><model>kvm64</model></cpu>"
Q35_KVM = EmulatorTarget(arch="x86_64", machine="q35", virttype="kvm")
LIVE_P2P = (
    "VIR_MIGRATE_LIVE",
    "VIR_MIGRATE_PEER2PEER",
    "VIR_MIGRATE_PERSIST_DEST",
    "VIR_MIGRATE_UNDEFINE_SOURCE",
)


@pytest.fixture(scope="module")
def hv(lab: LabInfo) -> Iterator[Hypervisor]:
    healthy_link(lab)
    hypervisor = Hypervisor({A: lab.host(A).uri, B: lab.host(B).uri})
    for name in (A, B):
        hypervisor.add_host(name, lab.host(name).peer_uri)
    yield hypervisor


@pytest.fixture(scope="module")
def guest(lab: LabInfo, hv: Hypervisor) -> Iterator[Guest]:
    g = asyncio.run(make_guest(hv, lab, "vm42", "xt-hv", cmdline="mem=32 rate=4000"))
    yield g
    asyncio.run(drop_guest(hv, lab, g))


async def _home(hv: Hypervisor, lab: LabInfo, guest: Guest) -> None:
    """Bring the guest back to hostA if a test left it on hostB."""
    if (await hv.domain(lab.host(B).uri, guest.uuid)).active:
        await hv.migrate(lab.host(B).uri, guest.uuid, MigrationCall(LIVE_P2P, peer_uri=lab.host(A).peer_uri))


async def test_host_facts(lab: LabInfo, hv: Hypervisor) -> None:
    a, b = lab.host(A), lab.host(B)
    assert await hv.hostname(a.uri) == a.hostname
    assert await hv.ping(b.uri) == b.hostname
    versions = await hv.versions(a.uri)
    assert versions.libvirt_text.startswith("9.") and versions.hypervisor_type == "QEMU"
    assert versions.hypervisor_text.startswith("7.")
    assert f"<uuid>{b.uuid}</uuid>" in await hv.capabilities(b.uri)
    memory = await hv.node_memory(b.uri)
    assert memory.total_bytes > memory.available_bytes >= memory.free_bytes > 0
    domcaps = await hv.domain_capabilities(b.uri, EmulatorTarget(arch="x86_64", machine="q35", virttype="kvm"))
    assert "<domainCapabilities>" in domcaps and "<machine>pc-q35" in domcaps
    pools = {p.name: p for p in await hv.pools(b.uri)}
    assert pools["default"].target_path == "/var/lib/libvirt/images" and pools["default"].available_bytes > 0
    assert all(n.name for n in await hv.networks(a.uri))


async def test_domains_by_name_and_uuid(lab: LabInfo, hv: Hypervisor, guest: Guest) -> None:
    a, b = lab.host(A).uri, lab.host(B).uri
    listed = {d.name: d for d in await hv.list_domains(a)}
    mine = listed[guest.name]
    assert (mine.state, mine.active, mine.persistent, mine.uuid) == (
        DomainState.RUNNING,
        True,
        True,
        guest.uuid,
    )
    by_uuid = await hv.domain(a, guest.uuid)
    assert by_uuid.name == guest.name and by_uuid.reason_text == "booted"
    absent = await hv.domain(b, guest.name)
    assert not absent.present and absent.state is DomainState.ABSENT
    xml = await hv.domain_xml(a, guest.name, migratable=True)
    assert f"<uuid>{guest.uuid}</uuid>" in xml and "<cpu mode='custom'" in xml
    with pytest.raises(DomainNotFound, match="no VM named xt-nosuch on hostA"):
        await hv.domain_xml(a, "xt-nosuch")


async def test_cpu_compare_names_missing_features_and_baseline(lab: LabInfo, hv: Hypervisor) -> None:
    b = lab.host(B).uri
    # kvm-pvm lacks pni (lab.md §3): the comparison must fail and name the feature, not raise.
    kvm = await hv.compare_cpu(b, QEMU64, Q35_KVM)
    assert not kvm.compatible and "pni" in kvm.missing_features and "pni" in kvm.message
    tcg = await hv.compare_cpu(b, QEMU64, EmulatorTarget(arch="x86_64", machine="q35", virttype="qemu"))
    assert tcg.compatible and tcg.result > 0 and tcg.missing_features == ()
    baseline = await hv.baseline_cpu(b, [QEMU64, KVM64], Q35_KVM)
    assert "<model fallback='forbid'>kvm64</model>" in baseline


async def test_dirty_rate_page_sampling(lab: LabInfo, hv: Hypervisor, guest: Guest) -> None:
    rate = await hv.dirty_rate(lab.host(A).uri, guest.name, seconds=1)
    # The guest writes 4000 pages/s = 15.6 MiB/s; page sampling is coarse (lab.md §6.4), so only its order.
    assert rate.mode == "page-sampling" and rate.period_s == 1 and 2 <= rate.megabytes_per_second <= 100
    with pytest.raises(HypervisorError, match="unknown dirty-rate mode"):
        await hv.dirty_rate(lab.host(A).uri, guest.name, mode="guess")


async def test_storage_paths_pools_and_precreation(lab: LabInfo, hv: Hypervisor) -> None:
    a, b = lab.host(A), lab.host(B)
    outside = "/var/lib/libvirt/xt-nopool/xt-img.qcow2"  # in no pool: libvirt cannot pre-create it (P4)
    on_disk = b.images_dir.parent / "xt-nopool" / "xt-img.qcow2"
    on_disk.unlink(missing_ok=True)
    assert await hv.path_exists(b.uri, outside) is False
    await hv.create_volume(b.uri, outside, 16 * 1024 * 1024, "qcow2")
    assert on_disk.exists() and await hv.path_exists(b.uri, outside) is True
    assert await hv.path_exists(a.uri, outside) is False  # host-private: A has its own /var/lib/libvirt
    info = subprocess.run(["qemu-img", "info", "-U", str(on_disk)], capture_output=True, text=True, check=True)
    assert "virtual size: 16 MiB" in info.stdout and "file format: qcow2" in info.stdout
    on_disk.unlink()

    inside = "/var/lib/libvirt/images/xt-vol.qcow2"
    vol = await hv.create_volume(b.uri, inside, 8 * 1024 * 1024)
    assert (vol.pool, vol.format, vol.capacity_bytes) == ("default", "qcow2", 8 * 1024 * 1024)
    (b.images_dir / "xt-vol.qcow2").unlink()  # behind libvirt's back (P5): a refresh must notice
    assert await hv.volume_by_path(b.uri, inside) is None
    vol = await hv.create_volume(b.uri, inside, 8 * 1024 * 1024)
    assert await hv.delete_volume(b.uri, inside) is True and not (b.images_dir / "xt-vol.qcow2").exists()
    assert await hv.delete_volume(b.uri, inside) is False


async def test_migration_stats_controls_and_completed_stats(lab: LabInfo, hv: Hypervisor, guest: Guest) -> None:
    a, b = lab.host(A), lab.host(B)
    await _home(hv, lab, guest)
    hv.forget_completed(guest.uuid)
    task = asyncio.ensure_future(
        hv.migrate(a.uri, guest.uuid, MigrationCall(LIVE_P2P, {"bandwidth": 16}, peer_uri=b.peer_uri))
    )
    stats = await hv.job_stats(a.uri, guest.uuid)
    for _ in range(100):
        if stats.active and stats.get_int("data_processed") > 0:
            break
        await asyncio.sleep(0.05)
        stats = await hv.job_stats(a.uri, guest.uuid)
    assert stats.job_type is JobType.UNBOUNDED and stats.get_int("operation") == 5  # MIGRATION_OUT
    await hv.set_max_downtime(a.uri, guest.uuid, 123)
    assert await hv.get_max_downtime(a.uri, guest.uuid) == 123
    await hv.set_max_speed(a.uri, guest.uuid, 24)
    assert await hv.get_max_speed(a.uri, guest.uuid) == 24
    with pytest.raises(HypervisorError, match="post-copy was not enabled"):
        await hv.start_postcopy(a.uri, guest.uuid)
    await task
    completed = await hv.completed_job_stats(guest.uuid, source_uri=a.uri, destination_uri=b.uri)
    assert completed is not None and completed.get_int("time_elapsed") > 0
    assert 0 < completed.get_int("downtime") < 5000 and completed.get_int("data_processed") > 0
    there = await hv.domain(b.uri, guest.uuid)
    assert (there.state, there.reason_text, there.persistent) == (DomainState.RUNNING, "migrated", True)
    assert not (await hv.domain(a.uri, guest.uuid)).present
    await _home(hv, lab, guest)


async def test_error_translation(lab: LabInfo, hv: Hypervisor, guest: Guest) -> None:
    a = lab.host(A)
    await _home(hv, lab, guest)
    with pytest.raises(HypervisorError, match=r"same host \(same host UUID 6c61622d-0000-4000-8000-00000000000a\)"):
        await hv.migrate(a.uri, guest.name, MigrationCall(LIVE_P2P, peer_uri=a.peer_uri))
    with pytest.raises(HostUnreachable) as refused:
        await hv.hostname("qemu+tcp://127.0.0.1:1/system")
    assert "does not answer" in refused.value.message and "port 1 open" in refused.value.hint
    with pytest.raises(HostUnreachable, match="socket /nonexistent/sock present"):
        await hv.hostname("qemu+unix:///system?socket=/nonexistent/sock")
    with pytest.raises(HypervisorError, match="unknown migration flag 'VIR_MIGRATE_FAST'"):
        migration_flags(["VIR_MIGRATE_LIVE", "VIR_MIGRATE_FAST"])
    assert migration_flags(["LIVE", "VIR_MIGRATE_PEER2PEER"]) == 3
    assert (await hv.domain(a.uri, guest.uuid)).state is DomainState.RUNNING


_CHILD = textwrap.dedent("""
    import asyncio, sys
    from migration_core.hypervisor.libvirt_adapter import Hypervisor
    from migration_core.hypervisor.types import MigrationCall
    src, vm, mode, target = sys.argv[1:5]
    flags = ["VIR_MIGRATE_LIVE", "VIR_MIGRATE_PERSIST_DEST", "VIR_MIGRATE_UNDEFINE_SOURCE"]
    if mode == "p2p":
        flags.append("VIR_MIGRATE_PEER2PEER")
    kw = {"peer_uri": target} if mode == "p2p" else {"destination_uri": target}
    print("starting", flush=True)
    asyncio.run(Hypervisor().migrate(src, vm, MigrationCall(tuple(flags), {"bandwidth": 40}, **kw)))
    print("returned", flush=True)
""")


async def _kill_client_mid_migration(lab: LabInfo, hv: Hypervisor, guest: Guest, mode: str) -> None:
    a, b = lab.host(A), lab.host(B)
    target = b.peer_uri if mode == "p2p" else b.uri
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, a.uri, guest.uuid, mode, target],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "starting"
    deadline = time.monotonic() + 30
    while True:  # wait until data really flows, then kill the client the hard way
        stats = await hv.job_stats(a.uri, guest.uuid)
        if stats.active and stats.get_int("data_processed") > 0:
            break
        assert time.monotonic() < deadline, "the migration never started"
        await asyncio.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if not (await hv.job_stats(a.uri, guest.uuid)).active:
                break
        except HypervisorError:  # gone from the source, or "domain is not running": either way the job is over
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(0.5)


async def test_p2p_migration_survives_client_death(lab: LabInfo, hv: Hypervisor, guest: Guest) -> None:
    a, b = lab.host(A), lab.host(B)
    await _home(hv, lab, guest)
    await _kill_client_mid_migration(lab, hv, guest, "p2p")
    # The source daemon finished the migration on its own: the VM runs on B, A forgot it.
    there, here = await hv.domain(b.uri, guest.uuid), await hv.domain(a.uri, guest.uuid)
    assert there.state is DomainState.RUNNING and there.persistent and not here.present
    await _home(hv, lab, guest)


async def test_client_managed_migration_dies_with_its_client(lab: LabInfo, hv: Hypervisor, guest: Guest) -> None:
    a, b = lab.host(A), lab.host(B)
    await _home(hv, lab, guest)
    await _kill_client_mid_migration(lab, hv, guest, "managed")
    # Nobody drives Finish/Confirm: the destination drops the incoming VM and the source keeps running it.
    here, there = await hv.domain(a.uri, guest.uuid), await hv.domain(b.uri, guest.uuid)
    assert here.state is DomainState.RUNNING and not there.active
