"""The lab works: two distinct hosts that reach each other, the lab VMs in place, guests that check their
memory, a link that can be shaped and cut, shared storage, daemon faults, and real migrations."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from migration_core.inventory.hosts import load_inventory
from tests.labkit import (
    LAB_TOOL,
    LabInfo,
    host_exec,
    kill_daemon,
    link_down,
    link_rate,
    link_reset,
    link_up,
    reset_vm,
    run_lab,
    start_daemon,
    virsh,
    vm_location,
    wait_console_line,
)

pytestmark = pytest.mark.lab

PEER = {"hostA": "hostB", "hostB": "hostA"}
# Where `lab up` leaves each lab VM (the contract the demo, tests and benchmarks rely on).
EXPECTED = {
    "vm42": "running",
    "busy": "running",
    "disky": "running",
    "shared": "running",
    "stopped": "shut off",
}


def migrate(lab: LabInfo, vm: str, src: str, *extra: str) -> None:
    """virsh migrate, peer-to-peer: the source daemon dials the destination over the lab link."""
    dst = lab.host(PEER[src])
    virsh(
        lab,
        src,
        "migrate",
        "--live",
        "--p2p",
        "--persistent",
        "--undefinesource",
        *extra,
        vm,
        dst.peer_uri,
        timeout_s=120,
    )


def tbf(lab: LabInfo, host: str) -> dict[str, object] | None:
    """The root tbf qdisc on a host's end of the migration link, with statistics (None if unshaped)."""
    h = lab.host(host)
    out = subprocess.run(
        ["tc", "-n", h.netns, "-s", "-j", "qdisc", "show", "dev", h.link_dev],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    ).stdout
    return next((q for q in json.loads(out) if q.get("root") and q.get("kind") == "tbf"), None)


def peer_hostname(lab: LabInfo, host: str) -> subprocess.CompletedProcess[str]:
    return host_exec(lab, host, ["virsh", "-q", "-c", lab.host(PEER[host]).peer_uri, "hostname"], timeout_s=30)


@pytest.fixture
def clean_link(lab: LabInfo) -> Iterator[None]:
    link_reset(lab)
    yield
    link_reset(lab)


@pytest.fixture(scope="module", autouse=True)
def lab_vms_at_home(lab: LabInfo) -> None:
    """Start this module from the lab `up` makes, whatever earlier test modules did with the lab VMs
    (on a fresh lab nothing is reset, and the first test sees exactly what `up` did)."""
    for vm, state in EXPECTED.items():
        if vm_location(lab, vm) != {"hostA": state}:
            reset_vm(lab, vm)


def test_lab_vms_are_where_up_put_them(lab: LabInfo) -> None:
    assert set(lab.vms) == set(EXPECTED)
    for vm, state in EXPECTED.items():
        assert vm_location(lab, vm) == {"hostA": state}, vm


def test_up_is_idempotent_and_puts_back_a_missing_vm(lab: LabInfo) -> None:
    virsh(lab, "hostA", "undefine", "stopped")
    assert vm_location(lab, "stopped") == {}
    out = run_lab(lab, "up")
    assert "lab already up and healthy; put back stopped" in out
    assert out.strip().splitlines()[-1] == f"MIGRATE_BOT_HOSTS={lab.hosts_toml}"
    assert vm_location(lab, "stopped") == {"hostA": "shut off"}
    assert vm_location(lab, "vm42") == {"hostA": "running"}  # a healthy lab is left running as it is


def test_hosts_answer_with_distinct_identities(lab: LabInfo) -> None:
    seen = set()
    for name, h in lab.hosts.items():
        assert virsh(lab, name, "hostname").stdout.strip() == h.hostname
        caps = virsh(lab, name, "capabilities").stdout
        assert f"<uuid>{h.uuid}</uuid>" in caps
        seen.add((h.hostname, h.uuid))
    assert len({hn for hn, _ in seen}) == len({u for _, u in seen}) == 2


def test_hosts_file_is_the_bots_inventory(lab: LabInfo) -> None:
    inv = load_inventory(lab.hosts_toml)
    assert inv.names() == ("hostA", "hostB")
    for name, h in lab.hosts.items():
        cfg = inv.get(name)
        assert (cfg.uri, cfg.peer_uri, cfg.migration_address) == (h.uri, h.peer_uri, h.ip)
        assert (cfg.link_mib_s, cfg.max_inbound, cfg.max_outbound, cfg.labels) == (200.0, 2, 2, ("lab",))


@pytest.mark.parametrize("name", ["hosts-ssh.toml", "hosts-tls.toml"])
def test_hosts_answer_over_ssh_and_tls(lab: LabInfo, name: str) -> None:
    """up's other inventories: the bot over qemu+ssh (key-only sshd per host) and over qemu+tls (lab CA)."""
    inv = load_inventory(lab.root / name)
    scheme = "qemu+ssh" if "ssh" in name else "qemu+tls"
    for h in inv:
        assert h.uri.startswith(f"{scheme}://") and h.migration_tls == (scheme == "qemu+tls")
        out = subprocess.run(["virsh", "-q", "-c", h.uri, "hostname"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and out.stdout.strip() == lab.host(h.name).hostname, out.stderr
        if scheme == "qemu+tls":  # the peers dial each other over TLS too, from inside the lab
            peer = inv.get(PEER[h.name])
            proc = host_exec(lab, h.name, ["virsh", "-q", "-c", peer.peer_uri, "hostname"])
            assert proc.stdout.strip() == lab.host(peer.name).hostname, proc.stderr


def test_hosts_reach_each_other_inside_the_lab(lab: LabInfo) -> None:
    for name in lab.hosts:
        proc = peer_hostname(lab, name)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == lab.host(PEER[name]).hostname


def test_guests_run_and_find_no_memory_errors(lab: LabInfo) -> None:
    for vm in ("vm42", "busy", "disky", "shared"):
        first = wait_console_line(lab, vm)
        later = wait_console_line(lab, vm, after_t=first.t_s)
        assert later.total_pages > first.total_pages, vm
        assert later.ok, (vm, later)
    banner = lab.console_path("busy").read_text()
    assert "mem=128MiB rate=8000 pages/s" in banner


def test_vm_storage_and_network_are_as_documented(lab: LabInfo) -> None:
    disky = virsh(lab, "hostA", "domblklist", "disky", "--details").stdout
    assert "/var/lib/libvirt/images/disky.qcow2" in disky
    assert (lab.host("hostA").images_dir / "disky.qcow2").exists()
    shared = virsh(lab, "hostA", "dumpxml", "shared").stdout
    assert "protocol='nbd'" in shared and f"name='{lab.storage.ip}'" in shared
    vm42 = virsh(lab, "hostA", "domiflist", "vm42").stdout
    assert lab.vm_bridge in vm42
    for name in lab.hosts:
        proc = host_exec(lab, name, ["ip", "-j", "link", "show", lab.vm_bridge])
        assert proc.returncode == 0 and json.loads(proc.stdout)[0]["ifname"] == lab.vm_bridge


def test_shared_disk_is_visible_from_both_hosts(lab: LabInfo) -> None:
    # `up` wrote 0x5a into the first 8 MiB; both hosts read it over the storage network from the NBD server.
    for name in lab.hosts:
        proc = host_exec(lab, name, ["qemu-io", "-r", "-f", "raw", "-c", "read -P 0x5a 0 1M", lab.storage.nbd_uri])
        assert proc.returncode == 0 and "read 1048576/1048576 bytes" in proc.stdout, proc.stdout + proc.stderr


def test_link_can_be_throttled_and_reset(lab: LabInfo, clean_link: None) -> None:
    link_rate(lab, "16MiB")
    for name in lab.hosts:
        qdisc = tbf(lab, name)
        assert qdisc is not None and qdisc["options"]["rate"] == 16 * 2**20  # type: ignore[index]
    assert "tbf 16.0 MiB/s" in run_lab(lab, "status")
    link_reset(lab)
    assert tbf(lab, "hostA") is None and tbf(lab, "hostB") is None


def test_bad_rate_is_refused_with_a_hint(lab: LabInfo) -> None:
    env = dict(os.environ, LAB_ROOT=str(lab.root), LAB_NETNS_PREFIX=lab.netns_prefix)
    proc = subprocess.run([str(LAB_TOOL), "link", "rate", "fast"], capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 1
    assert "cannot read the rate 'fast'" in proc.stderr and "16MiB" in proc.stderr


def test_link_can_be_cut_and_restored(lab: LabInfo, clean_link: None) -> None:
    link_down(lab)
    proc = peer_hostname(lab, "hostA")
    assert proc.returncode != 0 and "unreachable" in proc.stderr.lower()
    link_up(lab)
    for _ in range(40):  # bounded polling: the veth carrier comes back within a moment
        proc = peer_hostname(lab, "hostA")
        if proc.returncode == 0:
            break
        time.sleep(0.25)
    assert proc.stdout.strip() == "lab-b"


def test_vm42_live_migrates_there_and_back_over_the_lab_link(lab: LabInfo, clean_link: None) -> None:
    reset_vm(lab, "vm42")
    before = wait_console_line(lab, "vm42")
    link_rate(lab, "100MiB")  # a tbf with statistics proves the data took the lab link
    migrate(lab, "vm42", "hostA")
    assert vm_location(lab, "vm42") == {"hostB": "running"}
    sent = tbf(lab, "hostA")
    # The guest's dirtied pages (>= 4 MiB by its first status line) crossed kvl-a; libvirt's own control
    # traffic is a few KiB, so megabytes through this qdisc mean the migration data took the lab link.
    assert sent is not None and int(sent["bytes"]) > 2**20  # type: ignore[call-overload]
    there = wait_console_line(lab, "vm42", after_t=before.t_s)
    assert there.ok, there
    migrate(lab, "vm42", "hostB")
    assert vm_location(lab, "vm42") == {"hostA": "running"}
    back = wait_console_line(lab, "vm42", after_t=there.t_s)
    assert back.ok and back.total_pages > there.total_pages, back


def test_shared_disk_migrates_without_unsafe_but_local_disk_does_not(lab: LabInfo) -> None:
    reset_vm(lab, "shared")
    reset_vm(lab, "disky")
    before = wait_console_line(lab, "shared")
    migrate(lab, "shared", "hostA")  # no --unsafe: libvirt treats the NBD disk as shared storage
    assert vm_location(lab, "shared") == {"hostB": "running"}
    migrate(lab, "shared", "hostB")
    assert vm_location(lab, "shared") == {"hostA": "running"}
    after = wait_console_line(lab, "shared", after_t=before.t_s)
    assert after.ok, after
    proc = virsh(lab, "hostA", "migrate", "--live", "--p2p", "disky", lab.host("hostB").peer_uri, check=False)
    assert proc.returncode != 0 and "Unsafe migration" in proc.stderr
    assert vm_location(lab, "disky") == {"hostA": "running"}


def test_offline_migration_and_reset_vm(lab: LabInfo) -> None:
    reset_vm(lab, "stopped")
    virsh(
        lab,
        "hostA",
        "migrate",
        "--offline",
        "--p2p",
        "--persistent",
        "--undefinesource",
        "stopped",
        lab.host("hostB").peer_uri,
    )
    assert vm_location(lab, "stopped") == {"hostB": "shut off"}
    reset_vm(lab, "stopped")
    assert vm_location(lab, "stopped") == {"hostA": "shut off"}


def test_daemon_can_be_killed_while_its_guests_keep_running(lab: LabInfo) -> None:
    reset_vm(lab, "vm42")
    before = wait_console_line(lab, "vm42")
    kill_daemon(lab, "hostA")
    try:
        assert virsh(lab, "hostA", "hostname", check=False, timeout_s=20).returncode != 0
        during = wait_console_line(lab, "vm42", after_t=before.t_s)  # the QEMU outlives its daemon
        assert during.ok
    finally:
        start_daemon(lab, "hostA")
    assert vm_location(lab, "vm42") == {"hostA": "running"}
    assert wait_console_line(lab, "vm42", after_t=during.t_s).ok


def test_reset_vm_brings_back_a_vm_running_and_defined_only_on_hostB(lab: LabInfo) -> None:
    """After a one-owner move (the bot's default) a lab VM lives on hostB only, with its copied disk there:
    `reset-vm` still puts it back on hostA (fresh disk) and removes hostB's copy."""
    reset_vm(lab, "disky")
    virsh(
        lab,
        "hostA",
        "migrate", "--live", "--p2p", "--persistent", "--undefinesource", "--copy-storage-all",
        "disky", lab.host("hostB").peer_uri, f"tcp://{lab.host('hostB').ip}",
        timeout_s=120,
    )  # fmt: skip
    assert vm_location(lab, "disky") == {"hostB": "running"}
    assert (lab.host("hostB").images_dir / "disky.qcow2").exists()
    reset_vm(lab, "disky")
    assert vm_location(lab, "disky") == {"hostA": "running"}
    assert not (lab.host("hostB").images_dir / "disky.qcow2").exists()
