"""PreflightRunner.make_plan against the real two-host lab: every preflight outcome of issue 4 and the prediction.

Each test builds the planner exactly as bot/wiring.open_core does (inventory + libvirt adapter) with a 1 s
dirty-rate window, and checks the plan against what the lab really is: libvirt's own refusal names the CPU
features, the temporary network exists on hostA only, the daemon is really dead. Temporary domains, networks
and bridges are transient and removed in `finally`; the lab VMs used are put back where `lab up` leaves them.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from migration_core.hypervisor.libvirt_adapter import Hypervisor
from migration_core.inventory.hosts import Inventory, load_inventory
from migration_core.limits import DEFAULT_MAX_DOWNTIME_MS
from migration_core.models import (
    CheckResult,
    CheckStatus,
    CopyStorage,
    MigrationMode,
    MigrationOptions,
    MigrationRequest,
    Plan,
)
from migration_core.planning.prediction import PRECOPY_SWITCHOVER_MS
from migration_core.preflight._common import human_bytes
from migration_core.preflight.runner import PreflightRunner
from tests.labkit import (
    LabInfo,
    host_exec,
    kill_daemon,
    link_rate,
    link_reset,
    reset_vm,
    run_lab,
    start_daemon,
    virsh,
    vm_location,
    wait_console_line,
)

pytestmark = pytest.mark.lab

A, B = "hostA", "hostB"
WINDOW_S = 1.0
THROTTLED_MIB_S = 16
PASS, WARN, FAIL = CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL
# The default max downtime plus the model's switch-over allowance: the most a converging plan may promise.
MAX_DOWNTIME_MS = DEFAULT_MAX_DOWNTIME_MS + PRECOPY_SWITCHOVER_MS


# ----- helpers ------------------------------------------------------------------------------------------


def planning_for(inventory: Inventory) -> PreflightRunner:
    """The planner as bot/wiring.open_core builds it, with a short dirty-rate window."""
    hypervisor = Hypervisor({h.name: h.uri for h in inventory})
    for host in inventory:
        hypervisor.add_host(host.name, host.uri, host.peer_uri)
    return PreflightRunner(inventory, hypervisor, dirty_rate_window_s=WINDOW_S)


@pytest.fixture
async def planning(lab: LabInfo) -> AsyncIterator[PreflightRunner]:
    p = planning_for(load_inventory(lab.hosts_toml))
    yield p
    await p.hypervisor.close()


def at_home(lab: LabInfo, vm: str) -> None:
    """Put a lab VM where `lab up` leaves it (only hostA; running unless it is `stopped`), resetting it only
    when another test moved or stopped it, and wait until a running guest prints (its memory is dirtied)."""
    want = "shut off" if vm == "stopped" else "running"
    if vm_location(lab, vm) != {A: want}:
        reset_vm(lab, vm)
        if want == "running":
            wait_console_line(lab, vm, timeout_s=90)


def by_name(plan: Plan) -> dict[str, list[CheckResult]]:
    out: dict[str, list[CheckResult]] = {}
    for c in plan.checks:
        out.setdefault(c.name, []).append(c)
    return out


def one(plan: Plan, name: str) -> CheckResult:
    found = by_name(plan).get(name, [])
    assert len(found) == 1, f"expected one {name!r} check, got {found}; all: {plan.checks}"
    return found[0]


def fails(plan: Plan) -> list[str]:
    """The failed checks, except port probes: other test sessions cut the shared lab link at any moment, and
    a plan made then rightly fails network.ports too (test_a_healthy_vm_passes_everything demands them)."""
    return [c.name for c in plan.failures if c.name != "network.ports"]


def show(plan: Plan) -> None:
    for c in plan.checks:
        if c.status is not PASS:
            print(f"{c.status.value.upper()} {c.name}: {c.reason}" + (f" | fix: {c.fix}" if c.fix else ""))
    if plan.prediction:
        print("prediction:", plan.prediction.verdict)


def request(vm: str, dest: str = B, **options: object) -> MigrationRequest:
    return MigrationRequest(vm, dest, MigrationOptions(**options))  # type: ignore[arg-type]


def temp_vm_xml(lab: LabInfo, name: str, nn: str) -> str:
    """vm42's lab XML as a new VM: own name, UUID, MAC and console file."""
    xml = run_lab(lab, "xml", "vm42")
    xml = re.sub(r"<name>[^<]+</name>", f"<name>{name}</name>", xml, count=1)
    xml = re.sub(r"<uuid>[^<]+</uuid>", f"<uuid>6c61622d-706c-4000-8000-0000000000{nn}</uuid>", xml, count=1)
    xml = re.sub(r"<title>[^<]*</title>\s*", "", xml)
    xml = re.sub(r"<mac address='[^']+'/>", f"<mac address='52:54:00:70:6c:{nn}'/>", xml)
    return re.sub(r"console/[^'\"]+\.log", f"console/{name}.log", xml)


def drop_domain(lab: LabInfo, name: str) -> None:
    """Remove a temporary domain from both hosts (running or defined); quiet when it is not there."""
    for host in (A, B):
        virsh(lab, host, "destroy", name, check=False)
        virsh(lab, host, "undefine", name, check=False)
    lab.console_path(name).unlink(missing_ok=True)


def create_transient(lab: LabInfo, tmp_path: Path, name: str, xml: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{name}.xml"
    path.write_text(xml)
    return virsh(lab, A, "create", str(path), check=False)


@pytest.fixture
def restore_link(lab: LabInfo) -> Iterator[None]:
    try:
        yield
    finally:
        link_reset(lab)


# ----- plans that pass ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vm", "storage_words", "network_words"),
    [
        ("vm42", "no disks with media", "hostB has bridge labbr0"),  # a virtio NIC on the VM bridge
        ("shared", "shared with hostB: vda", "no network interfaces"),  # its disk is an NBD export
    ],
)
async def test_a_healthy_vm_passes_everything(
    lab: LabInfo, planning: PreflightRunner, vm: str, storage_words: str, network_words: str
) -> None:
    at_home(lab, vm)
    plan = await planning.make_plan(request(vm))
    show(plan)
    assert plan.executable and not plan.failures, plan.failures
    assert (plan.source, plan.destination, plan.mode) == (A, B, MigrationMode.LIVE)
    # Every family of checks ran (nothing stopped early) and said something an operator can read.
    for name in (
        "hosts.known", "hosts.reachable", "hosts.distinct", "hypervisor", "vm.exists", "vm.state",
        "vm.name_clash", "options", "cpu", "machine", "versions", "storage", "network", "network.ports",
        "capacity.memory", "devices",
    ):  # fmt: skip
        assert name in by_name(plan), f"{name} missing from {[c.name for c in plan.checks]}"
    assert all(c.reason for c in plan.checks)
    assert "KVM" in one(plan, "hypervisor").reason
    assert "kvm64" in one(plan, "cpu").reason and "pc-q35" in one(plan, "machine").reason
    assert storage_words in one(plan, "storage").reason
    assert network_words in one(plan, "network").reason
    assert plan.flags == ("VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST")
    assert plan.params == {"migrate_uri": f"tcp://{lab.host(B).ip}"}
    uuid = virsh(lab, A, "domuuid", vm).stdout.strip()
    assert plan.vm_uuid == uuid and plan.vm_memory_bytes == 64 * 1024 * 1024
    p = plan.prediction
    assert p is not None and p.converges is True, p
    assert p.dirty_rate_mib_s is not None and p.bandwidth_mib_s == 200.0
    assert p.downtime_ms is not None and p.downtime_ms <= MAX_DOWNTIME_MS and p.passes and p.total_s
    assert plan.recommendation is None
    assert len(plan.hash) == 16


async def test_shut_off_vm_plans_an_offline_migration(lab: LabInfo, planning: PreflightRunner) -> None:
    at_home(lab, "stopped")
    plan = await planning.make_plan(request("stopped"))
    show(plan)
    assert fails(plan) == [], plan.failures
    assert plan.mode is MigrationMode.OFFLINE
    assert plan.flags == ("VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST", "VIR_MIGRATE_OFFLINE")
    assert plan.params == {}  # no data connection: only the definition moves
    # Nothing to converge: the estimate is the definition's move, without downtime (issue 12).
    assert plan.prediction is not None and plan.prediction.mode == "offline", plan.prediction
    assert plan.prediction.downtime_ms is None and plan.prediction.total_s and plan.recommendation is None
    assert "offline migration" in one(plan, "vm.state").reason
    assert "network.ports" in by_name(plan)
    # Asking for a live migration of a shut-off VM is refused with the way out.
    live = await planning.make_plan(request("stopped", mode=MigrationMode.LIVE))
    state = one(live, "vm.state")
    assert state.status is FAIL and "shut off" in state.reason and "--live" in (state.fix or "")
    assert not live.executable


async def test_local_disk_needs_copy_storage_and_then_plans_the_copy(lab: LabInfo, planning: PreflightRunner) -> None:
    at_home(lab, "disky")
    plan = await planning.make_plan(request("disky"))
    show(plan)
    storage = one(plan, "storage")
    assert storage.status is FAIL and fails(plan) == ["storage"]
    assert "vda" in storage.reason and "local to hostA" in storage.reason
    assert storage.fix is not None and "--copy-storage all" in storage.fix
    assert "VIR_MIGRATE_NON_SHARED_DISK" not in plan.flags and "migrate_disks" not in plan.params

    copied = await planning.make_plan(request("disky", copy_storage=CopyStorage.ALL))
    show(copied)
    assert fails(copied) == [], copied.failures
    assert "VIR_MIGRATE_NON_SHARED_DISK" in copied.flags and "VIR_MIGRATE_UNSAFE" not in copied.flags
    assert copied.params["migrate_disks"] == ["vda"]
    # The bytes to copy are the image's allocation on hostA, as its pool reports it.
    info = virsh(lab, A, "vol-info", "--bytes", "/var/lib/libvirt/images/disky.qcow2").stdout
    allocation = int(re.search(r"Allocation:\s+(\d+)", info).group(1))  # type: ignore[union-attr]
    space = one(copied, "storage.space")
    assert space.status is PASS and "will copy" in space.reason and human_bytes(allocation) in space.reason
    assert "copied with --copy-storage all: vda" in one(copied, "storage").reason


# ----- plans that fail, one cause each ------------------------------------------------------------------


async def test_cpu_the_destination_cannot_provide(lab: LabInfo, planning: PreflightRunner, tmp_path: Path) -> None:
    name = "pl-cpu"
    xml = temp_vm_xml(lab, name, "c1")
    xml = re.sub(r"<cpu .*?</cpu>", "<cpu mode='custom' match='exact'><model>qemu64</model></cpu>", xml, flags=re.S)
    drop_domain(lab, name)
    try:
        # libvirt's own verdict is the oracle: qemu64 needs features this host (kvm-pvm) lacks.
        refused = create_transient(lab, tmp_path, name, xml)
        assert refused.returncode != 0, "qemu64 started with libvirt's CPU check: the lab CPU changed?"
        named = re.search(r"does not provide required features: ([\w.,\s-]+)", refused.stderr)
        assert named, refused.stderr
        missing = [f.strip() for f in named.group(1).split(",") if f.strip()]
        # check='none' lets QEMU start it anyway (it warns about the features), as on a mixed cluster.
        started = create_transient(lab, tmp_path, name, xml.replace("match='exact'>", "match='exact' check='none'>"))
        assert started.returncode == 0, started.stderr

        plan = await planning.make_plan(request(name))
        show(plan)
        cpu = one(plan, "cpu")
        assert cpu.status is FAIL and not plan.executable
        assert "qemu64" in cpu.reason and all(f in cpu.reason for f in missing), (missing, cpu.reason)
        # The fix is seed 12.9's: the baseline of both hosts, which hostB really can run.
        fix = cpu.fix or ""
        assert "baseline" in fix and f"virsh edit {name}" in fix
        baseline = re.search(r"<cpu [^>]*>.*?</cpu>", fix, flags=re.S)  # the XML, not "its <cpu>"
        assert baseline, fix
        (tmp_path / "baseline.xml").write_text(baseline.group(0))
        verdict = virsh(lab, B, "hypervisor-cpu-compare", str(tmp_path / "baseline.xml"), "--virttype", "kvm")
        assert "identical" in verdict.stdout or "superset" in verdict.stdout, verdict.stdout
    finally:
        drop_domain(lab, name)


def _make_netdev(lab: LabInfo, host: str, name: str, kind: str) -> None:
    """A Linux bridge or a veth (a macvtap parent; no `dummy` module here) inside one lab host's network
    namespace, replacing any old one."""
    host_exec(lab, host, ["ip", "link", "del", name])
    add = ["ip", "link", "add", name, "type", kind] + (["peer", "name", f"{name}p"] if kind == "veth" else [])
    for argv in (add, ["ip", "link", "set", name, "up"]):
        made = host_exec(lab, host, argv)
        assert made.returncode == 0, made.stderr


@pytest.mark.parametrize(
    ("kind", "thing"),
    [("network", "network pl-onlya"), ("bridge", "bridge plbr0"), ("direct", "host interface pldum0 (macvtap)")],
)
async def test_network_the_destination_lacks(
    lab: LabInfo, planning: PreflightRunner, tmp_path: Path, kind: str, thing: str
) -> None:
    """The VM's NIC uses a libvirt network, a Linux bridge or (macvtap) a host interface that only hostA has:
    the plan fails naming it; once hostB has it too, the same check passes (libvirt sees each host's own)."""
    name, net, bridge, parent = f"pl-{kind[:3]}", "pl-onlya", "plbr0", "pldum0"
    xml = temp_vm_xml(lab, name, {"network": "c2", "bridge": "c3", "direct": "c4"}[kind])
    source = {
        "network": f"<source network='{net}'/>",
        "bridge": f"<source bridge='{bridge}'/>",
        "direct": f"<source dev='{parent}' mode='bridge'/>",
    }[kind]
    (tmp_path / "net.xml").write_text(  # a libvirt network bridged onto the lab's VM bridge
        f"<network><name>{net}</name><forward mode='bridge'/><bridge name='{lab.vm_bridge}'/></network>"
    )

    def give(host: str) -> None:
        if kind == "network":
            virsh(lab, host, "net-destroy", net, check=False)
            virsh(lab, host, "net-create", str(tmp_path / "net.xml"))
        else:
            _make_netdev(lab, host, bridge if kind == "bridge" else parent, "bridge" if kind == "bridge" else "veth")

    xml = xml.replace("<interface type='bridge'>", f"<interface type='{kind}'>")
    xml = re.sub(r"<source bridge='[^']+'/>", source, xml)
    drop_domain(lab, name)
    try:
        give(A)
        if kind == "network":
            assert virsh(lab, B, "net-info", net, check=False).returncode != 0  # hostB really lacks it
        else:
            assert host_exec(lab, B, ["ip", "link", "show", bridge if kind == "bridge" else parent]).returncode != 0
        started = create_transient(lab, tmp_path, name, xml)
        assert started.returncode == 0, started.stderr

        plan = await planning.make_plan(request(name))
        show(plan)
        check = one(plan, "network")
        assert check.status is FAIL and fails(plan) == ["network"]
        assert f"hostB lacks {thing}" in check.reason
        assert check.fix and "create it on hostB" in check.fix

        give(B)
        plan = await planning.make_plan(request(name))
        show(plan)
        check = one(plan, "network")
        assert check.status is PASS and fails(plan) == [], check
    finally:
        drop_domain(lab, name)
        for host in (A, B):
            if kind == "network":
                virsh(lab, host, "net-destroy", net, check=False)
            else:
                host_exec(lab, host, ["ip", "link", "del", bridge if kind == "bridge" else parent])


async def test_snapshots_block_the_plan_as_they_block_libvirt(
    lab: LabInfo, planning: PreflightRunner, tmp_path: Path
) -> None:
    """A VM with a snapshot: libvirt itself refuses the migration, so the plan fails first, with the fix."""
    at_home(lab, "vm42")
    domain = virsh(lab, A, "dumpxml", "vm42").stdout
    snapshot = tmp_path / "snap.xml"
    # --redefine records a snapshot without touching the VM: the record is what libvirt's refusal counts.
    snapshot.write_text(
        f"<domainsnapshot><name>pl-snap</name><state>running</state><creationTime>1700000000</creationTime>"
        f"{domain}</domainsnapshot>"
    )
    virsh(lab, A, "snapshot-create", "vm42", str(snapshot), "--redefine")
    try:
        plan = await planning.make_plan(request("vm42"))
        show(plan)
        check = one(plan, "vm.snapshots")
        assert check.status is FAIL and "1 snapshot" in check.reason and not plan.executable
        assert check.fix and "virsh snapshot-delete vm42" in check.fix
        refused = virsh(
            lab, A, "migrate", "vm42", "--live", "--p2p", lab.host(B).peer_uri, f"tcp://{lab.host(B).ip}", check=False
        )
        assert refused.returncode != 0 and "snapshots" in refused.stderr  # libvirt agrees
    finally:
        virsh(lab, A, "snapshot-delete", "vm42", "pl-snap", "--metadata", check=False)
    assert "vm.snapshots" not in by_name(await planning.make_plan(request("vm42")))
    assert vm_location(lab, "vm42") == {A: "running"}


async def test_destination_daemon_down(lab: LabInfo, planning: PreflightRunner) -> None:
    at_home(lab, "vm42")
    kill_daemon(lab, B)
    try:
        assert virsh(lab, B, "hostname", check=False).returncode != 0  # hostB really does not answer
        plan = await planning.make_plan(request("vm42"))
        show(plan)
        reach = one(plan, "hosts.reachable")
        assert reach.status is FAIL and "hostB" in reach.reason and "does not answer" in reach.reason
        assert reach.fix and "libvirtd" in reach.fix
        assert fails(plan) == ["hosts.reachable"] and "cpu" not in by_name(plan)  # one root cause, once
        assert plan.source == A
    finally:
        start_daemon(lab, B)
    # The same planner reconnects once the daemon is back.
    again = await planning.make_plan(request("vm42"))
    assert one(again, "hosts.reachable").status is PASS


async def test_unknown_vm_suggests_the_close_name(lab: LabInfo, planning: PreflightRunner) -> None:
    plan = await planning.make_plan(request("vm43"))
    show(plan)
    exists = one(plan, "vm.exists")
    assert exists.status is FAIL and "'vm43'" in exists.reason
    assert exists.fix and "did you mean vm42" in exists.fix
    assert fails(plan) == ["vm.exists"] and plan.warnings == ()
    assert plan.prediction is None


async def test_same_host(lab: LabInfo, planning: PreflightRunner) -> None:
    at_home(lab, "vm42")
    plan = await planning.make_plan(request("vm42", A))
    show(plan)
    same = one(plan, "hosts.distinct")
    assert same.status is FAIL and "same host" in same.reason and same.fix
    assert fails(plan) == ["hosts.distinct"] and plan.prediction is None


async def test_unknown_destination_host(lab: LabInfo, planning: PreflightRunner) -> None:
    plan = await planning.make_plan(request("vm42", "hostD"))
    show(plan)
    known = one(plan, "hosts.known")
    assert known.status is FAIL and "'hostD' is not in the hosts file" in known.reason
    assert known.fix and "did you mean" in known.fix and "hostB" in known.fix
    assert fails(plan) == ["hosts.known"] and not plan.executable


# ----- the prediction -----------------------------------------------------------------------------------


async def test_busy_vm_will_not_converge_on_a_throttled_link_but_idle_one_will(
    lab: LabInfo, tmp_path: Path, restore_link: None
) -> None:
    text = lab.hosts_toml.read_text()
    throttled = re.sub(r"link_mib_s\s*=\s*\d+(\.\d+)?", f"link_mib_s = {THROTTLED_MIB_S}", text)
    assert throttled.count(f"link_mib_s = {THROTTLED_MIB_S}") == len(lab.hosts), text
    (tmp_path / "hosts.toml").write_text(throttled)
    at_home(lab, "busy")
    at_home(lab, "vm42")
    link_rate(lab, f"{THROTTLED_MIB_S}MiB")
    planning = planning_for(load_inventory(tmp_path / "hosts.toml"))
    try:
        busy = await planning.make_plan(request("busy"))
        idle = await planning.make_plan(request("vm42"))
    finally:
        await planning.hypervisor.close()
    show(busy)
    show(idle)
    p = busy.prediction
    assert p is not None and p.bandwidth_mib_s == THROTTLED_MIB_S
    assert p.dirty_rate_mib_s is not None and p.dirty_rate_mib_s > 0
    assert p.converges is False and p.verdict.startswith("will not converge"), p
    assert fails(busy) == []  # a prediction advises; it does not fail the plan
    advice = busy.recommendation or ""
    assert "--postcopy" in advice and "post-copy" in advice.lower(), advice
    assert "--auto-converge" in advice

    q = idle.prediction
    assert q is not None and q.bandwidth_mib_s == THROTTLED_MIB_S
    assert q.converges is True and q.downtime_ms is not None and q.downtime_ms <= MAX_DOWNTIME_MS, q
    assert q.dirty_rate_mib_s is not None and q.dirty_rate_mib_s < p.dirty_rate_mib_s
    assert idle.recommendation is None


# ----- one owner per VM: definitions of the same VM elsewhere ---------------------------------------------


def _copy_of_vm42_on_b(lab: LabInfo, tmp_path: Path, *, uuid: str | None = None) -> None:
    """Define a shut-off copy of vm42 on hostB (its own old copy, or with another UUID: another VM)."""
    xml = virsh(lab, A, "dumpxml", "--inactive", "vm42").stdout
    if uuid is not None:
        xml = re.sub(r"<uuid>[^<]+</uuid>", f"<uuid>{uuid}</uuid>", xml, count=1)
    path = tmp_path / "vm42-copy.xml"
    path.write_text(xml)
    virsh(lab, B, "define", str(path))


def _undefine_on_b(lab: LabInfo) -> None:
    virsh(lab, B, "undefine", "vm42", check=False)


async def test_own_old_copy_on_the_destination_is_information_and_needs_one_approver(
    lab: LabInfo, planning: PreflightRunner, tmp_path: Path
) -> None:
    from migration_core.dispatch.policy import required_approvals

    at_home(lab, "vm42")
    _copy_of_vm42_on_b(lab, tmp_path)
    try:
        plan = await planning.make_plan(request("vm42"))
        show(plan)
        clash = one(plan, "vm.name_clash")
        assert clash.status is CheckStatus.INFO and "this VM's own copy; the migration replaces it" in clash.reason
        assert one(plan, "vm.other_definitions").status is PASS  # the destination's copy is not a hazard
        assert "vm.name_clash" not in [c.name for c in plan.warnings]
        if not [c for c in plan.warnings if c.name != "network.ports"]:
            assert required_approvals(plan) == 1
    finally:
        _undefine_on_b(lab)


async def test_same_name_with_another_uuid_fails(lab: LabInfo, planning: PreflightRunner, tmp_path: Path) -> None:
    at_home(lab, "vm42")
    _copy_of_vm42_on_b(lab, tmp_path, uuid="6c61622d-766d-4000-8000-0000000000ff")
    try:
        plan = await planning.make_plan(request("vm42"))
        clash = one(plan, "vm.name_clash")
        assert clash.status is FAIL and "a different VM named vm42" in clash.reason and not plan.executable
    finally:
        _undefine_on_b(lab)


async def test_a_definition_on_a_third_host_is_a_split_brain_warning(lab: LabInfo, tmp_path: Path) -> None:
    """hostC, the lab's third host: the VM's copy on hostB is neither the source nor the destination of
    vm42 -> hostC: a hazard, named."""
    at_home(lab, "vm42")
    planning = planning_for(load_inventory(lab.hosts_toml))
    _copy_of_vm42_on_b(lab, tmp_path)
    try:
        plan = await planning.make_plan(MigrationRequest("vm42", "hostC"))
        show(plan)
        hazard = one(plan, "vm.other_definitions")
        assert hazard.status is WARN and "hostB (vm42, shut off)" in hazard.reason and "split-brain" in hazard.reason
        assert hazard.fix and "virsh undefine vm42" in hazard.fix
    finally:
        _undefine_on_b(lab)
        await planning.hypervisor.close()
    assert vm_location(lab, "vm42") == {A: "running"}


async def test_a_stale_image_at_the_destination_path_is_not_taken_for_shared_storage(
    lab: LabInfo, planning: PreflightRunner
) -> None:
    """The copy-storage round trip's second leg, mirrored: an old copy of disky's image sits at the same path
    on hostB (as the first leg leaves it with --keep-source). A file at the same path is no proof of shared
    storage: the probe file tells, the plan keeps --copy-storage and says the old image is replaced."""
    at_home(lab, "disky")
    stale = lab.host(B).images_dir / "disky.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(stale), "64M"], check=True)
    virsh(lab, B, "pool-refresh", "default")
    try:
        plan = await planning.make_plan(request("disky", copy_storage=CopyStorage.ALL))
        show(plan)
        assert fails(plan) == [], plan.failures
        assert "VIR_MIGRATE_NON_SHARED_DISK" in plan.flags and plan.params["migrate_disks"] == ["vda"]
        note = one(plan, "storage.stale_image")
        assert note.status is CheckStatus.INFO and "a stale copy" in note.reason
        assert "copied with --copy-storage all: vda" in one(plan, "storage").reason
        leftovers = list(lab.host(B).images_dir.glob(".migrate-bot-shared-probe-*"))
        assert leftovers == [], f"the probe file was left behind: {leftovers}"
    finally:
        stale.unlink(missing_ok=True)
        virsh(lab, B, "pool-refresh", "default")


async def test_the_recheck_reuses_a_recent_dirty_rate_and_reads_every_other_fact_again(lab: LabInfo) -> None:
    """Issue 13 §2: the re-check before start (reuse_dirty_rate_s > 0) reuses a dirty rate measured less than
    that long ago on the same source host; an older one, a plain preflight, or another VM measure again."""
    now = [1000.0]
    inventory = load_inventory(lab.hosts_toml)
    planning = planning_for(inventory)
    planning._monotonic = lambda: now[0]  # the runner's injected clock, advanced by hand below
    try:
        at_home(lab, "vm42")
        first = await planning.make_plan(request("vm42"))
        assert planning.dirty_rates_measured == 1 and first.prediction is not None
        now[0] += 120.0
        recheck = await planning.make_plan(request("vm42"), reuse_dirty_rate_s=300.0)
        assert planning.dirty_rates_measured == 1  # reused ...
        assert recheck.prediction is not None
        assert recheck.prediction.dirty_rate_mib_s == first.prediction.dirty_rate_mib_s
        assert recheck.hash == first.hash  # ... and the plan an approver agreed to is the same plan
        # Host facts are read again every time: a destination that stops answering is seen at once.
        kill_daemon(lab, B)
        try:
            gone = await planning.make_plan(request("vm42"), reuse_dirty_rate_s=300.0)
            assert one(gone, "hosts.reachable").status is FAIL
        finally:
            start_daemon(lab, B)
        await planning.make_plan(request("vm42"))  # a request (no reuse) always measures
        assert planning.dirty_rates_measured == 2
        now[0] += 301.0  # older than the re-check accepts
        await planning.make_plan(request("vm42"), reuse_dirty_rate_s=300.0)
        assert planning.dirty_rates_measured == 3
        at_home(lab, "busy")
        await planning.make_plan(request("busy"), reuse_dirty_rate_s=300.0)  # another VM: its own measurement
        assert planning.dirty_rates_measured == 4
    finally:
        await planning.hypervisor.close()
