"""The lab works: three distinct hosts that all reach each other, the lab VMs in place, guests that check their
memory, a migration network whose per-host NICs can be shaped and cut, shared storage, daemon faults, each
host's own memory size, and real migrations (A<->B and A<->C)."""

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

PEER = {"hostA": "hostB", "hostB": "hostA", "hostC": "hostA"}
# Where `lab up` leaves each lab VM (the contract the demo, tests and benchmarks rely on).
EXPECTED = {
    "vm42": "running",
    "busy": "running",
    "disky": "running",
    "shared": "running",
    "stopped": "shut off",
    "web1": "running",
    "web2": "running",
    "web3": "running",
    "web4": "running",
    "db1": "running",
    "pinned": "running",
}
RUNNING = tuple(vm for vm, state in EXPECTED.items() if state == "running")
# The memory each lab host's libvirtd reports and the reserve hosts.toml keeps (deploy/lab/labtool/config.py):
# hostB alone cannot take hostA's running VMs (768 MiB to give), hostB and hostC together can (1280 MiB).
MEMORY_MIB = {"hostA": (4096, 3072, 512), "hostB": (2048, 1536, 768), "hostC": (2048, 1536, 1024)}


def migrate(lab: LabInfo, vm: str, src: str, *extra: str, to: str | None = None) -> None:
    """virsh migrate, peer-to-peer: the source daemon dials the destination over the migration network."""
    dst = lab.host(to or PEER[src])
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


def tbf(lab: LabInfo, host: str, ingress: bool = False) -> dict[str, object] | None:
    """The root tbf qdisc on a host's migration NIC, with statistics (None if unshaped): its own end (what it
    sends) or, with `ingress`, the switch's port towards it (what it receives)."""
    h = lab.host(host)
    netns, dev = (lab.switch_netns, h.link_port_dev) if ingress else (h.netns, h.link_dev)
    out = subprocess.run(
        ["tc", "-n", netns, "-s", "-j", "qdisc", "show", "dev", dev],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    ).stdout
    return next((q for q in json.loads(out) if q.get("root") and q.get("kind") == "tbf"), None)


def peer_hostname(lab: LabInfo, host: str, peer: str | None = None) -> subprocess.CompletedProcess[str]:
    """Dial `peer` (default PEER[host]) from inside `host`, the way a P2P migration's control connection does."""
    target = lab.host(peer or PEER[host]).peer_uri
    return host_exec(lab, host, ["virsh", "-q", "-c", target, "hostname"], timeout_s=30)


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
    assert len({hn for hn, _ in seen}) == len({u for _, u in seen}) == 3


def test_hosts_file_is_the_bots_inventory(lab: LabInfo) -> None:
    inv = load_inventory(lab.hosts_toml)
    assert inv.names() == ("hostA", "hostB", "hostC")
    for name, h in lab.hosts.items():
        cfg = inv.get(name)
        assert (cfg.uri, cfg.peer_uri, cfg.migration_address) == (h.uri, h.peer_uri, h.ip)
        assert (cfg.link_mib_s, cfg.max_inbound, cfg.max_outbound, cfg.labels) == (200.0, 2, 2, ("lab",))
        assert cfg.memory_reserve_mib == MEMORY_MIB[name][2] == h.memory_reserve_mib
    # hostC keeps the larger reserve, so a drain of hostA has to spread over hostB and hostC
    reserves = {h.name: h.memory_reserve_mib for h in inv}
    assert reserves["hostC"] > max(reserves["hostA"], reserves["hostB"])


def test_each_host_reports_its_own_memory_size(lab: LabInfo) -> None:
    """The hosts share one machine, but each libvirtd reports the lab host's fixed size (nodememstats reads
    /proc/meminfo, freecell the NUMA nodes): what the bot's placement counts against the reserves."""
    for name, (total, free, _reserve) in MEMORY_MIB.items():
        stats = dict(
            (k.strip(), int(v.split()[0]))
            for k, v in (line.split(":") for line in virsh(lab, name, "nodememstats").stdout.splitlines())
        )
        assert (stats["total"], stats["free"], stats["buffers"], stats["cached"]) == (total * 1024, free * 1024, 0, 0)
        assert virsh(lab, name, "freecell", "--all").stdout.split()[-2] == str(free * 1024), name


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
    """Every ordered pair: the migration network is a switch, not a cable between two hosts."""
    for name in lab.hosts:
        for peer in lab.hosts:
            if peer != name:
                proc = peer_hostname(lab, name, peer)
                assert proc.returncode == 0, (name, peer, proc.stderr)
                assert proc.stdout.strip() == lab.host(peer).hostname


def test_guests_run_and_find_no_memory_errors(lab: LabInfo) -> None:
    first = {vm: wait_console_line(lab, vm) for vm in RUNNING}  # all first, then the later lines: no serial waits
    for vm in RUNNING:
        later = wait_console_line(lab, vm, after_t=first[vm].t_s)
        assert later.total_pages > first[vm].total_pages, vm
        assert later.ok, (vm, later)
    assert "mem=128MiB rate=8000 pages/s" in lab.console_path("busy").read_text()
    assert "mem=96MiB rate=4000 pages/s" in lab.console_path("db1").read_text()  # db1 dirties at half busy's rate


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
        # `labonly` (pinned's network) exists on hostA only: no other host can take pinned
        assert (virsh(lab, name, "net-info", "labonly", check=False).returncode == 0) is (name == "hostA"), name
    assert "labonly" in virsh(lab, "hostA", "domiflist", "pinned").stdout
    for vm in ("web1", "web2"):  # the anti-affinity pair, in the bot's own libvirt metadata
        meta = virsh(lab, "hostA", "metadata", vm, "urn:migrate-bot:placement:1").stdout
        assert 'group="web"' in meta, (vm, meta)
    assert virsh(lab, "hostA", "metadata", "web3", "urn:migrate-bot:placement:1", check=False).returncode != 0


def test_shared_disk_is_visible_from_both_hosts(lab: LabInfo) -> None:
    # `up` wrote 0x5a into the first 8 MiB; both hosts read it over the storage network from the NBD server.
    for name in lab.hosts:
        proc = host_exec(lab, name, ["qemu-io", "-r", "-f", "raw", "-c", "read -P 0x5a 0 1M", lab.storage.nbd_uri])
        assert proc.returncode == 0 and "read 1048576/1048576 bytes" in proc.stdout, proc.stdout + proc.stderr


def test_link_can_be_throttled_and_reset(lab: LabInfo, clean_link: None) -> None:
    link_rate(lab, "16MiB")
    for name in lab.hosts:
        for ingress in (False, True):  # each host's NIC, both ways
            qdisc = tbf(lab, name, ingress)
            assert qdisc is not None and qdisc["options"]["rate"] == 16 * 2**20, (name, ingress)  # type: ignore[index]
    assert "tbf 16.0 MiB/s" in run_lab(lab, "status")
    status = json.loads(run_lab(lab, "status", "--json"))
    assert {h: s["link_ingress"]["rate_bytes_s"] for h, s in status["hosts"].items()} == dict.fromkeys(
        lab.hosts, 16 * 2**20
    )
    link_reset(lab)
    assert all(tbf(lab, name, ingress) is None for name in lab.hosts for ingress in (False, True))


def test_bad_rate_is_refused_with_a_hint(lab: LabInfo) -> None:
    env = dict(os.environ, LAB_ROOT=str(lab.root), LAB_NETNS_PREFIX=lab.netns_prefix)
    proc = subprocess.run([str(LAB_TOOL), "link", "rate", "fast"], capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 1
    assert "cannot read the rate 'fast'" in proc.stderr and "16MiB" in proc.stderr


def test_link_can_be_cut_and_restored(lab: LabInfo, clean_link: None) -> None:
    link_down(lab)
    for peer in ("hostB", "hostC"):
        proc = peer_hostname(lab, "hostA", peer)
        assert proc.returncode != 0 and "unreachable" in proc.stderr.lower(), peer
    link_up(lab)
    for peer in ("hostB", "hostC"):
        for _ in range(40):  # bounded polling: the veth carrier comes back within a moment
            proc = peer_hostname(lab, "hostA", peer)
            if proc.returncode == 0:
                break
            time.sleep(0.25)
        assert proc.stdout.strip() == lab.host(peer).hostname
    # the bot (root namespace) reaches hostB and hostC through hostA again: their routes were put back
    for peer in ("hostB", "hostC"):
        out = subprocess.run(
            ["virsh", "-q", "-c", lab.host(peer).peer_uri, "hostname"], capture_output=True, text=True, timeout=30
        )
        assert out.stdout.strip() == lab.host(peer).hostname, out.stderr


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


def test_vm42_live_migrates_to_hostC_and_back_through_the_switch(lab: LabInfo, clean_link: None) -> None:
    """A<->C over the migration bridge, shaped: the data leaves through hostA's NIC and enters through hostC's
    switch port (its ingress), not hostB's: each host's NIC is its own, and the switch forwards by address."""
    if vm_location(lab, "vm42") != {"hostA": "running"}:
        reset_vm(lab, "vm42")
    before = wait_console_line(lab, "vm42")
    link_rate(lab, "100MiB")
    migrate(lab, "vm42", "hostA", to="hostC")
    assert vm_location(lab, "vm42") == {"hostC": "running"}
    sent, received, elsewhere = tbf(lab, "hostA"), tbf(lab, "hostC", ingress=True), tbf(lab, "hostB", ingress=True)
    assert sent is not None and received is not None and elsewhere is not None
    assert int(sent["bytes"]) > 2**20 and int(received["bytes"]) > 2**20  # type: ignore[call-overload]
    assert int(elsewhere["bytes"]) < 2**20  # type: ignore[call-overload]  # at most a few flooded frames
    there = wait_console_line(lab, "vm42", after_t=before.t_s)
    assert there.ok, there
    migrate(lab, "vm42", "hostC", to="hostA")
    assert vm_location(lab, "vm42") == {"hostA": "running"}
    back = wait_console_line(lab, "vm42", after_t=there.t_s)
    assert back.ok and back.total_pages > there.total_pages, back


def test_hostC_daemon_can_be_killed_and_restarted(lab: LabInfo) -> None:
    before = lab.host("hostC").daemon_pid()
    kill_daemon(lab, "hostC")
    try:
        assert virsh(lab, "hostC", "hostname", check=False, timeout_s=20).returncode != 0
    finally:
        start_daemon(lab, "hostC")
    assert virsh(lab, "hostC", "hostname").stdout.strip() == "lab-c"
    assert lab.host("hostC").daemon_pid() not in (None, before)
    # the restarted daemon is in the same namespaces: it still reports hostC's own memory size
    assert "1572864 KiB" in virsh(lab, "hostC", "freecell", "--all").stdout


def test_status_lists_every_host_and_guest(lab: LabInfo) -> None:
    status = json.loads(run_lab(lab, "status", "--json"))
    assert set(status["hosts"]) == {"hostA", "hostB", "hostC"}
    for name, h in status["hosts"].items():
        assert h["running"] and h["sshd_pid"] and h["link"]["dev"] == lab.host(name).link_dev
    assert status["switch"]["netns"] and set(EXPECTED) <= set(status["vms"])
    assert {vm: status["vms"][vm] for vm in EXPECTED} == {vm: {"hostA": state} for vm, state in EXPECTED.items()}
    text = run_lab(lab, "status")
    assert "hostC: libvirtd pid" in text and "pinned" in text and "web4" in text


def test_reset_vm_brings_back_a_guest_that_lives_on_hostC(lab: LabInfo) -> None:
    """web2 moves to hostC with its anti-affinity metadata (the bot's placement reads it there); reset-vm puts
    it back on hostA only."""
    if vm_location(lab, "web2") != {"hostA": "running"}:
        reset_vm(lab, "web2")
    migrate(lab, "web2", "hostA", to="hostC")
    assert vm_location(lab, "web2") == {"hostC": "running"}
    meta = virsh(lab, "hostC", "metadata", "web2", "urn:migrate-bot:placement:1").stdout
    assert 'group="web"' in meta
    reset_vm(lab, "web2")
    assert vm_location(lab, "web2") == {"hostA": "running"}
