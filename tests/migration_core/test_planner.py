"""planner: mode, exact libvirt flags and typed params per option, convergence policy, advice, plan hash."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from migration_core.errors import PreflightError
from migration_core.facts.gathered import DiskVisibility, VmState
from migration_core.models import (
    CheckResult,
    CheckStatus,
    ConvergencePolicy,
    CopyStorage,
    MigrationMode,
    MigrationOptions,
    MigrationRequest,
    Plan,
    Prediction,
)
from migration_core.planning.planner import (
    assemble_plan,
    build_flags_and_params,
    choose_mode,
    convergence_policy,
    default_timeout_s,
    downtime_ramp_ms,
    make_plan,
    migrate_uri,
    recommend,
)
from migration_core.planning.prediction import predict_precopy
from migration_core.units import GIB, MIB
from tests.migration_core.fixtures.build import facts, vm

URI = "qemu+tcp://10.213.7.2/system"
LIVE, P2P, PERSIST, UNDEF = (
    "VIR_MIGRATE_LIVE",
    "VIR_MIGRATE_PEER2PEER",
    "VIR_MIGRATE_PERSIST_DEST",
    "VIR_MIGRATE_UNDEFINE_SOURCE",
)
LOCAL_VDA = DiskVisibility("vda", same_path_exists=False, shared=False, size_bytes=3 * GIB, destination_pool="default")
SHARED_EXT4 = DiskVisibility("vda", same_path_exists=True, shared=True, shared_fs=False, fs_type="ext4")
SHARED_NFS = DiskVisibility("vda", same_path_exists=True, shared=True, shared_fs=True, fs_type="nfs4")
VM42_VDA = replace(vm("dom_vm42.xml"), disks=vm("dom_vm42.xml").disks[:1])


@pytest.mark.parametrize(
    ("mode", "state", "expected"),
    [
        (None, VmState.RUNNING, MigrationMode.LIVE),
        (None, VmState.SHUTOFF, MigrationMode.OFFLINE),
        (None, VmState.PAUSED, MigrationMode.LIVE),
        (None, None, MigrationMode.LIVE),
        (MigrationMode.OFFLINE, VmState.RUNNING, MigrationMode.OFFLINE),
        (MigrationMode.LIVE, VmState.SHUTOFF, MigrationMode.LIVE),
    ],
)
def test_choose_mode(mode: MigrationMode | None, state: VmState | None, expected: MigrationMode) -> None:
    assert choose_mode(MigrationRequest("vm", "b", MigrationOptions(mode=mode)), state) is expected


FLAGS = [
    # id, options, mode, disks, kwargs, expected flags (without the VIR_MIGRATE_ prefix), expected params
    ("defaults", {}, MigrationMode.LIVE, (), {}, ("LIVE", "PEER2PEER", "PERSIST_DEST"), {}),
    ("transient", {"persistent": False}, MigrationMode.LIVE, (), {}, ("LIVE", "PEER2PEER"), {}),
    (
        "undefine",
        {"undefine_source": True},
        MigrationMode.LIVE,
        (),
        {},
        ("LIVE", "PEER2PEER", "PERSIST_DEST", "UNDEFINE_SOURCE"),
        {},
    ),
    ("offline", {}, MigrationMode.OFFLINE, (), {}, ("PEER2PEER", "PERSIST_DEST", "OFFLINE"), {}),
    (
        "offline-undefine",
        {"undefine_source": True},
        MigrationMode.OFFLINE,
        (),
        {},
        ("PEER2PEER", "PERSIST_DEST", "UNDEFINE_SOURCE", "OFFLINE"),
        {},
    ),
    # offline always persists (libvirt requires it); the address pins no data stream, there is none
    (
        "offline-transient",
        {"persistent": False},
        MigrationMode.OFFLINE,
        (LOCAL_VDA,),
        {"migration_address": "10.0.0.2", "tls": True},
        ("PEER2PEER", "PERSIST_DEST", "OFFLINE"),
        {},
    ),
    (
        "postcopy",
        {"postcopy": True},
        MigrationMode.LIVE,
        (),
        {},
        ("LIVE", "PEER2PEER", "PERSIST_DEST", "POSTCOPY"),
        {},
    ),
    (
        "postcopy-after",
        {"postcopy_after_s": 60.0},
        MigrationMode.LIVE,
        (),
        {},
        ("LIVE", "PEER2PEER", "PERSIST_DEST", "POSTCOPY"),
        {},
    ),
    (
        "postcopy-bandwidth",
        {"postcopy": True, "bandwidth_mib_s": 100},
        MigrationMode.LIVE,
        (),
        {},
        ("LIVE", "PEER2PEER", "PERSIST_DEST", "POSTCOPY"),
        {"bandwidth": 100, "bandwidth.postcopy": 100},
    ),
    (
        "bandwidth",
        {"bandwidth_mib_s": 16},
        MigrationMode.LIVE,
        (),
        {},
        ("LIVE", "PEER2PEER", "PERSIST_DEST"),
        {"bandwidth": 16},
    ),
    (
        "auto-converge",
        {"auto_converge": True},
        MigrationMode.LIVE,
        (),
        {},
        ("LIVE", "PEER2PEER", "PERSIST_DEST", "AUTO_CONVERGE"),
        {"auto_converge.initial": 50, "auto_converge.increment": 25},
    ),
    (
        "parallel",
        {"parallel_connections": 4},
        MigrationMode.LIVE,
        (),
        {},
        ("LIVE", "PEER2PEER", "PERSIST_DEST", "PARALLEL"),
        {"parallel.connections": 4},
    ),
    (
        "compressed",
        {"compressed": True},
        MigrationMode.LIVE,
        (),
        {},
        ("LIVE", "PEER2PEER", "PERSIST_DEST", "COMPRESSED"),
        {"compression": ["xbzrle"]},
    ),
    (
        "tls-option",
        {"tls": True},
        MigrationMode.LIVE,
        (),
        {},
        ("LIVE", "PEER2PEER", "PERSIST_DEST", "TLS"),
        {},
    ),
    (
        "tls-inventory",
        {},
        MigrationMode.LIVE,
        (),
        {"tls": True},
        ("LIVE", "PEER2PEER", "PERSIST_DEST", "TLS"),
        {},
    ),
    (
        "address",
        {},
        MigrationMode.LIVE,
        (),
        {"migration_address": "10.213.7.2"},
        ("LIVE", "PEER2PEER", "PERSIST_DEST"),
        {"migrate_uri": "tcp://10.213.7.2"},
    ),
    (
        "copy-all",
        {"copy_storage": CopyStorage.ALL},
        MigrationMode.LIVE,
        (LOCAL_VDA,),
        {},
        ("LIVE", "PEER2PEER", "PERSIST_DEST", "NON_SHARED_DISK"),
        {"migrate_disks": ["vda"]},
    ),
    (
        "copy-inc",
        {"copy_storage": CopyStorage.INC},
        MigrationMode.LIVE,
        (LOCAL_VDA,),
        {},
        ("LIVE", "PEER2PEER", "PERSIST_DEST", "NON_SHARED_INC"),
        {"migrate_disks": ["vda"]},
    ),
    (
        "copy-nothing-local",
        {"copy_storage": CopyStorage.ALL},
        MigrationMode.LIVE,
        (SHARED_NFS,),
        {},
        ("LIVE", "PEER2PEER", "PERSIST_DEST"),
        {},
    ),
    (
        "copy-unknown-sharing",
        {"copy_storage": CopyStorage.ALL},
        MigrationMode.LIVE,
        (DiskVisibility("vda"),),
        {},
        ("LIVE", "PEER2PEER", "PERSIST_DEST"),
        {},
    ),
    (
        "local-without-copy",
        {},
        MigrationMode.LIVE,
        (LOCAL_VDA,),
        {},
        ("LIVE", "PEER2PEER", "PERSIST_DEST"),
        {},
    ),
    (
        "shared-ext4",
        {},
        MigrationMode.LIVE,
        (SHARED_EXT4,),
        {},
        ("LIVE", "PEER2PEER", "PERSIST_DEST", "UNSAFE"),
        {},
    ),
    ("shared-nfs", {}, MigrationMode.LIVE, (SHARED_NFS,), {}, ("LIVE", "PEER2PEER", "PERSIST_DEST"), {}),
    (
        "everything",
        {
            "undefine_source": True,
            "postcopy": True,
            "auto_converge": True,
            "parallel_connections": 2,
            "bandwidth_mib_s": 500,
            "copy_storage": CopyStorage.ALL,
            "tls": True,
        },
        MigrationMode.LIVE,
        (LOCAL_VDA,),
        {"migration_address": "fe80::2"},
        (
            "LIVE",
            "PEER2PEER",
            "PERSIST_DEST",
            "UNDEFINE_SOURCE",
            "NON_SHARED_DISK",
            "AUTO_CONVERGE",
            "POSTCOPY",
            "TLS",
            "PARALLEL",
        ),
        {
            "migrate_uri": "tcp://[fe80::2]",
            "bandwidth": 500,
            "bandwidth.postcopy": 500,
            "auto_converge.initial": 50,
            "auto_converge.increment": 25,
            "parallel.connections": 2,
            "migrate_disks": ["vda"],
        },
    ),
]


@pytest.mark.parametrize(
    ("case", "opts", "mode", "disks", "kwargs", "flags", "params"), FLAGS, ids=[c[0] for c in FLAGS]
)
def test_flags_and_params(
    case: str,
    opts: dict[str, Any],
    mode: MigrationMode,
    disks: tuple[DiskVisibility, ...],
    kwargs: dict[str, Any],
    flags: tuple[str, ...],
    params: dict[str, Any],
) -> None:
    request = MigrationRequest("vm42", "hostB", MigrationOptions(**opts))  # type: ignore[arg-type]
    got_flags, got_params = build_flags_and_params(request, mode, VM42_VDA, disks, dest_peer_uri=URI, **kwargs)  # type: ignore[arg-type]
    assert got_flags == tuple(f"VIR_MIGRATE_{f}" for f in flags)
    assert got_params == params


def test_migrate_disks_lists_only_local_writable_disks_in_vm_order() -> None:
    v = vm("dom_vm42.xml")  # vda file, vdb rbd, vdc shareable LUN, vdd volume, sda empty CD-ROM
    disks = (
        LOCAL_VDA,
        DiskVisibility("vdc", shared=False),
        replace(LOCAL_VDA, target="vdd"),
    )
    req = MigrationRequest("vm42", "hostB", MigrationOptions(copy_storage=CopyStorage.ALL))
    _, params = build_flags_and_params(req, MigrationMode.LIVE, v, disks, dest_peer_uri=URI)
    assert params["migrate_disks"] == ["vda", "vdd"]


def test_missing_destination_uri_is_a_clear_error() -> None:
    with pytest.raises(PreflightError, match="no libvirt URI for the destination"):
        build_flags_and_params(MigrationRequest("v", "b"), MigrationMode.LIVE, None, (), dest_peer_uri=" ")


@pytest.mark.parametrize(
    ("address", "uri"),
    [
        ("10.0.0.2", "tcp://10.0.0.2"),
        ("fe80::1", "tcp://[fe80::1]"),
        ("hostb-mig", "tcp://hostb-mig"),
        ("hostb-mig:49200", "tcp://hostb-mig:49200"),
        ("tcp://[::1]:4444", "tcp://[::1]:4444"),
        (" 10.0.0.3 ", "tcp://10.0.0.3"),
    ],
)
def test_migrate_uri(address: str, uri: str) -> None:
    assert migrate_uri(address) == uri


@pytest.mark.parametrize(
    ("max_ms", "ramp"),
    [(300, (60, 120, 180, 240, 300)), (500, (100, 200, 300, 400, 500)), (3, (1, 2, 3)), (1, (1,)), (0, ())],
)
def test_downtime_ramp(max_ms: int, ramp: tuple[int, ...]) -> None:
    assert downtime_ramp_ms(max_ms) == ramp


@pytest.mark.parametrize(("data", "timeout"), [(256 * MIB, 120.0), (GIB, 150.0), (16 * GIB, 2400.0), (0, 120.0)])
def test_default_timeout(data: int, timeout: float) -> None:
    assert default_timeout_s(data) == timeout


def test_default_policy() -> None:
    p = convergence_policy(MigrationRequest("vm42", "b"), vm("dom_vm42.xml"), ())
    assert p == ConvergencePolicy(
        max_downtime_ms=300,
        downtime_ramp_ms=(60, 120, 180, 240, 300),
        allow_postcopy=False,
        postcopy_after_s=None,
        timeout_s=300.0,
        stall_timeout_s=60.0,
    )


def test_policy_from_the_request() -> None:
    opts = MigrationOptions(max_downtime_ms=1000, postcopy_after_s=45.0, timeout_s=900.0)
    p = convergence_policy(MigrationRequest("vm42", "b", opts), vm("dom_vm42.xml"), ())
    assert (p.max_downtime_ms, p.downtime_ramp_ms[-1], p.allow_postcopy, p.postcopy_after_s, p.timeout_s) == (
        1000,
        1000,
        True,
        45.0,
        900.0,
    )


def test_policy_budget_counts_copied_disks() -> None:
    p = convergence_policy(MigrationRequest("vm42", "b"), vm("dom_vm42.xml"), (), copy_bytes=6 * GIB)
    assert p.timeout_s == 1200.0  # (2 + 6) GiB x 150 s


@pytest.mark.parametrize(
    ("the_vm", "checks"),
    [
        (vm("dom_gpuvm.xml"), ()),  # vGPU + vIOMMU
        (vm("dom_vm42.xml"), (CheckResult("options.postcopy", CheckStatus.FAIL, "refused"),)),
    ],
)
def test_postcopy_not_allowed_when_devices_or_checks_forbid(the_vm: object, checks: tuple[CheckResult, ...]) -> None:
    req = MigrationRequest("x", "b", MigrationOptions(postcopy=True, postcopy_after_s=30.0))
    p = convergence_policy(req, the_vm, checks)  # type: ignore[arg-type]
    assert not p.allow_postcopy and p.postcopy_after_s is None


def test_offline_policy_has_no_ramp_and_no_postcopy() -> None:
    p = convergence_policy(
        MigrationRequest("v", "b", MigrationOptions(postcopy=True)),
        vm("dom_vm42.xml"),
        (),
        mode=MigrationMode.OFFLINE,
    )
    assert p.downtime_ramp_ms == () and not p.allow_postcopy and p.timeout_s is None


# --- recommendation ---------------------------------------------------------------------------------

BUSY = predict_precopy(256 * MIB, 31.2, 16.0, 300)  # the lab's busy guest on a 16 MiB/s link
TCG = replace(vm("dom_tcgvm.xml"))


@pytest.mark.parametrize(
    "prediction",
    [
        None,
        predict_precopy(256 * MIB, 7.8, 200.0, 300),
        Prediction(None, None, None, None, 200.0, None, "no rate"),
    ],
)
def test_no_advice_when_it_converges_or_is_unknown(prediction: Prediction | None) -> None:
    assert recommend(prediction, MigrationRequest("tcgvm", "b"), TCG, ()) is None


def test_advice_for_a_vm_that_will_not_converge() -> None:
    text = recommend(BUSY, MigrationRequest("tcgvm", "b"), TCG, ())
    assert text is not None
    assert text.startswith("Pre-copy will not converge (will not converge: dirty rate 31.2 MiB/s >= link 16.0 MiB/s")
    assert "add --postcopy" in text and "VIR_MIGRATE_POSTCOPY" in text and "post-copy completes in ~" in text
    assert "add --auto-converge" in text and "50 % vCPU throttle, +25 % per pass" in text and "auto-converge:" in text
    assert "--parallel" not in text  # a 16 MiB/s link gains nothing from more streams
    assert "max downtime" in text


def test_advice_respects_devices_and_what_is_already_asked() -> None:
    g = vm("dom_gpuvm.xml")
    text = recommend(BUSY, MigrationRequest("gpuvm", "b", MigrationOptions(auto_converge=True)), g, ())
    assert text is not None and "Post-copy is not possible for this VM: it has a vGPU (seed 12.7), a vIOMMU" in text
    assert "add --auto-converge" not in text


def test_advice_when_postcopy_already_enabled() -> None:
    text = recommend(BUSY, MigrationRequest("tcgvm", "b", MigrationOptions(postcopy_after_s=60.0)), TCG, ())
    assert text is not None and "switches to post-copy after 60 s of pre-copy" in text


def test_advice_on_a_fast_link_suggests_parallel_connections() -> None:
    fast = predict_precopy(64 * GIB, 5000.0, 4768.0, 300)  # 40 Gbit/s link, dirtier than the link
    big = replace(TCG, memory_bytes=64 * GIB)
    text = recommend(fast, MigrationRequest("tcgvm", "b"), big, ())
    assert fast.converges is False and text is not None
    assert "add --parallel 4" in text and "seed 12.4" in text and "parallel.connections=4" in text


@pytest.mark.parametrize(
    ("memory", "fragment"),
    [
        # 64 MiB dirtied faster than a 100 MiB/s link: every pass resends all 64 MiB (640 ms), so 1 s fits it
        (64 * MIB, "--max-downtime 1000ms would let pre-copy finish"),
        # 1 GiB would need ~10 s of pause: no downtime the bot would suggest helps
        (GIB, "A larger max downtime does not help: even 5000 ms is not enough"),
    ],
)
def test_advice_names_a_downtime_that_converges(memory: int, fragment: str) -> None:
    small = replace(TCG, memory_bytes=memory)
    tight = predict_precopy(memory, 120.0, 100.0, 300)
    text = recommend(tight, MigrationRequest("tcgvm", "b"), small, ())
    assert tight.converges is False and text is not None and fragment in text


# --- the plan ---------------------------------------------------------------------------------------


def _plan(**change: object) -> Plan:
    req = MigrationRequest("vm42", "hostB", MigrationOptions(postcopy=True))
    args: dict[str, Any] = {
        "request": req,
        "source": "hostA",
        "destination": "hostB",
        "mode": MigrationMode.LIVE,
        "checks": (CheckResult("cpu", CheckStatus.PASS, "ok"),),
        "prediction": BUSY,
        "flags": ("VIR_MIGRATE_POSTCOPY", "VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER"),
        "params": {"bandwidth": 16, "bandwidth.postcopy": 16},
        "policy": ConvergencePolicy(),
        "recommendation": None,
        "vm": vm("dom_vm42.xml"),
    }
    args.update(change)
    return assemble_plan(**args)  # type: ignore[arg-type]


def test_assemble_orders_flags_and_records_the_vm() -> None:
    p = _plan()
    assert p.flags == ("VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_POSTCOPY")
    assert (p.vm_memory_bytes, p.vm_uuid) == (2 * GIB, "6c61622d-766d-4000-8000-000000000042")
    assert p.executable


def test_plan_hash_is_stable_for_the_same_inputs() -> None:
    a = _plan()
    b = _plan(
        params={"bandwidth.postcopy": 16, "bandwidth": 16},
        flags=("VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_LIVE", "VIR_MIGRATE_POSTCOPY"),
    )
    assert a.hash == b.hash
    # the measured dirty rate is not part of what an approver agrees to
    assert a.hash == _plan(prediction=predict_precopy(256 * MIB, 30.0, 16.0, 300)).hash
    assert Plan.from_json(a.to_json()).hash == a.hash


@pytest.mark.parametrize(
    "change",
    [
        {"flags": ("VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER")},
        {"params": {"bandwidth": 32, "bandwidth.postcopy": 16}},
        {"policy": ConvergencePolicy(max_downtime_ms=500)},
        {"destination": "hostC"},
        {"checks": (CheckResult("cpu", CheckStatus.FAIL, "no", "fix"),)},
    ],
)
def test_plan_hash_changes_with_what_is_approved(change: dict[str, Any]) -> None:
    assert _plan(**change).hash != _plan().hash


def test_any_failing_check_makes_the_plan_not_executable() -> None:
    p = _plan(
        checks=(
            CheckResult("cpu", CheckStatus.PASS, "ok"),
            CheckResult("storage", CheckStatus.FAIL, "x", "y"),
        )
    )
    assert not p.executable and [c.name for c in p.failures] == ["storage"]


def test_make_plan_for_the_healthy_lab_guest() -> None:
    p = make_plan(
        facts(),
        predict_precopy(256 * MIB, 7.8, 200.0, 300),
        dest_peer_uri=URI,
        migration_address="10.213.7.2",
    )
    assert p.executable and p.mode is MigrationMode.LIVE
    assert p.flags == ("VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST")
    assert p.params == {"migrate_uri": "tcp://10.213.7.2"}
    assert p.recommendation is None and p.policy.timeout_s == 120.0
    assert p.to_json()["checks"][0] == {
        "name": "hosts.known",
        "status": "pass",
        "reason": p.checks[0].reason,
        "fix": None,
    }


def test_make_plan_with_storage_copy_and_a_busy_guest() -> None:
    f = facts(VM42_VDA, disks=(LOCAL_VDA,), options=MigrationOptions(copy_storage=CopyStorage.ALL))
    p = make_plan(f, BUSY, dest_peer_uri=URI)
    assert "VIR_MIGRATE_NON_SHARED_DISK" in p.flags and p.params["migrate_disks"] == ["vda"]
    assert p.policy.timeout_s == 750.0  # (2 GiB RAM + 3 GiB copied) x 150 s
    assert p.recommendation is not None and "add --postcopy" in p.recommendation


def test_make_plan_of_a_shut_off_vm_is_offline_without_advice() -> None:
    p = make_plan(facts("dom_vm42.xml", state=VmState.SHUTOFF), BUSY, dest_peer_uri=URI)
    assert p.mode is MigrationMode.OFFLINE and p.recommendation is None
    assert p.flags == ("VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST", "VIR_MIGRATE_OFFLINE")


def test_make_plan_with_failing_checks_is_not_executable() -> None:
    p = make_plan(facts(VM42_VDA, disks=(LOCAL_VDA,)), None, dest_peer_uri=URI)
    assert not p.executable and any(c.name == "storage" for c in p.failures)
