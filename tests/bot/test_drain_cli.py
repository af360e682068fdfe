"""The drain dry-run contracts of the CLI: `migrate-bot plan drain <host> --json` and `plan <vm> to any --json`.

Bad input is answered as JSON with a hint and an exit code; the lab tests run the real console script against
the three-host lab. A dry run changes nothing, so the lab is left as found (only vm42 is put home if another
test moved it, as the other lab tests do).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.bot.test_cli import one_json, run
from tests.labkit import LabInfo, reset_vm, virsh, vm_location


@pytest.fixture
def db_env(tmp_path: Path) -> dict[str, str]:
    return {"MIGRATE_BOT_DB": f"sqlite:///{tmp_path / 'bot.db'}"}


@pytest.fixture
def dead_hosts(tmp_path: Path) -> Path:
    """An inventory whose libvirt URIs are UNIX sockets that do not exist: no host can answer."""
    path = tmp_path / "dead.toml"
    path.write_text(
        "".join(
            f'[hosts.{name}]\nuri = "qemu+unix:///system?socket={tmp_path}/nowhere/{name}-sock"\n'
            f'peer_uri = "qemu+tcp://{ip}:16509/system"\nlink_mib_s = 100\n\n'
            for name, ip in (("hostA", "10.213.7.1"), ("hostB", "10.213.7.2"))
        )
    )
    return path


MOVE_KEYS = {"vm", "destination", "mode", "wave", "order", "predicted_total_s", "predicted_downtime_ms", "why"}


def test_unknown_host_and_dead_hosts_answer_json_with_a_hint(db_env: dict[str, str], dead_hosts: Path) -> None:
    env = {**db_env, "MIGRATE_BOT_HOSTS": str(dead_hosts)}
    proc = run("plan", "drain", "hostZ", "--json", env=env)
    assert proc.returncode == 1
    data = one_json(proc)
    assert "unknown host 'hostZ'" in data["error"] and data["hint"]
    proc = run("plan", "drain", "hostA", "--json", env=env)
    assert proc.returncode == 1
    data = one_json(proc)
    assert "hostA does not answer" in data["error"] and "libvirtd" in data["hint"]
    proc = run("plan", "drain", "hostA", "--to", "hostA", "--json", env=env)
    assert proc.returncode == 2 and "the host being drained" in one_json(proc)["error"]


# ----- the lab ------------------------------------------------------------------------------------------


def _on_host(lab: LabInfo, host: str) -> set[str]:
    out = virsh(lab, host, "list", "--all", "--name").stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


@pytest.mark.lab
def test_dry_run_lists_every_vm_of_hostA_with_a_destination_or_a_reason(lab: LabInfo, db_env: dict[str, str]) -> None:
    env = {**db_env, "MIGRATE_BOT_HOSTS": str(lab.hosts_toml)}
    before = {vm: vm_location(lab, vm) for vm in lab.vms}
    on_a = _on_host(lab, "hostA")
    proc = run("plan", "drain", "hostA", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    plan = one_json(proc)
    assert {"executable", "host", "moves", "left_behind", "eta_s", "hash"} <= set(plan)
    assert plan["host"] == "hostA" and re.fullmatch(r"[0-9a-f]{16}", plan["hash"])
    moved = {m["vm"]: m for m in plan["moves"]}
    behind = {lb["vm"]: lb for lb in plan["left_behind"]}
    assert set(moved) | set(behind) == on_a and not set(moved) & set(behind)
    for m in plan["moves"]:
        assert set(m) >= MOVE_KEYS and m["destination"] in ("hostB", "hostC")
        assert m["why"].startswith(f"{m['destination']}: ") and m["predicted_total_s"] > 0
    # hostB cannot hold hostA's VMs after its reserve (lab hosts.toml): the plan spreads over hostB and hostC
    if {"busy", "db1", "web3", "web4"} <= set(moved):
        assert {m["destination"] for m in plan["moves"]} == {"hostB", "hostC"}
    if {"web1", "web2"} <= set(moved):  # one anti-affinity group (their libvirt metadata): never one host
        assert moved["web1"]["destination"] != moved["web2"]["destination"]
    if "pinned" in on_a:  # its NIC's network exists on hostA only
        assert "lacks network labonly" in behind["pinned"]["reason"]
    for lb in plan["left_behind"]:
        assert lb["reason"] and lb["fix"]
    if "disky" in on_a:  # its disk is local to hostA: left behind until the operator asks for the copy
        assert "local to hostA" in behind["disky"]["reason"]
        assert "--copy-storage all" in behind["disky"]["fix"]
    if "stopped" in on_a:
        assert behind["stopped"]["fix"] == "add --include-stopped to move it offline"
    assert plan["executable"] is bool(plan["moves"]) and plan["eta_s"] >= max(
        (m["predicted_total_s"] for m in plan["moves"]), default=0
    )
    # with the copy and the shut-off VMs asked for, both move too
    proc = run("plan", "drain", "hostA", "--copy-storage", "all", "--include-stopped", "--json", env=env)
    wide = {m["vm"]: m for m in one_json(proc)["moves"]}
    if "disky" in on_a:
        assert wide["disky"]["mode"] == "live"
    if "stopped" in on_a:
        assert wide["stopped"]["mode"] == "offline"
    text = run("plan", "drain", "hostA", env=env).stdout
    assert "Dry run: drain hostA" in text and "nothing was changed" in text
    assert {vm: vm_location(lab, vm) for vm in lab.vms} == before  # a dry run changes nothing


@pytest.mark.lab
def test_plan_vm_to_any_picks_hostB_and_says_why(lab: LabInfo, db_env: dict[str, str]) -> None:
    """hostB keeps more memory to give than hostC (hostC's reserve is the larger): hostB wins, hostC is named."""
    if vm_location(lab, "vm42") != {"hostA": "running"}:
        reset_vm(lab, "vm42")
    env = {**db_env, "MIGRATE_BOT_HOSTS": str(lab.hosts_toml)}
    proc = run("plan", "vm42", "to", "any", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    plan = one_json(proc)
    assert plan["vm"] == "vm42" and plan["source"] == "hostA" and plan["destination"] == "hostB"
    assert plan["placement"]["destination"] == "hostB"
    why = plan["placement"]["why"]
    assert why.startswith("hostB: most free memory after the moves already placed") and "hostC: " in why
    assert {"checks", "flags", "params", "hash", "executable"} <= set(plan)
    proc = run("plan", "vm42", "--json", env=env)  # `<vm>` alone means the same
    assert one_json(proc)["placement"]["destination"] == "hostB"


@pytest.mark.lab
def test_a_drain_to_hostB_alone_leaves_vms_behind_for_memory(lab: LabInfo, db_env: dict[str, str]) -> None:
    """The lab's reserves make hostC necessary: hostB alone (768 MiB to give) cannot take hostA's running VMs, and
    what does not fit is left behind with the memory reason, not squeezed in."""
    env = {**db_env, "MIGRATE_BOT_HOSTS": str(lab.hosts_toml)}
    for vm in ("busy", "db1", "web3", "web4", "shared", "vm42"):
        if vm_location(lab, vm) != {"hostA": "running"}:
            reset_vm(lab, vm)
    plan = one_json(run("plan", "drain", "hostA", "--to", "hostB", "--json", env=env))
    assert {m["destination"] for m in plan["moves"]} == {"hostB"}
    placed_mib = sum(lab_vm_mib(lab, m["vm"]) for m in plan["moves"])
    assert placed_mib <= lab.host("hostB").free_memory_mib - lab.host("hostB").memory_reserve_mib
    short = [lb for lb in plan["left_behind"] if "after its reserve" in lb["reason"]]
    assert short and all("hostB" in lb["reason"] and lb["fix"] for lb in short), plan["left_behind"]


def lab_vm_mib(lab: LabInfo, vm: str) -> int:
    """A lab VM's memory size in MiB, as its domain says (dominfo: Max memory in KiB)."""
    info = virsh(lab, "hostA", "dominfo", vm).stdout
    return int(next(line.split()[2] for line in info.splitlines() if line.startswith("Max memory"))) // 1024
