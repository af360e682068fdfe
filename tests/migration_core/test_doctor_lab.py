"""`migrate-bot doctor` against the lab: its JSON contract and exit codes over each transport, a host whose
certificates the bot does not trust, and two inventory names for one libvirtd (duplicate host UUID)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.labkit import REPO, LabInfo

sys.path.insert(0, str(REPO / "deploy" / "lab"))
from labtool import access

pytestmark = pytest.mark.lab
BOT = str(REPO / ".venv" / "bin" / "migrate-bot")


def _doctor(hosts: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MIGRATE_BOT_HOSTS=str(hosts), PYTHONPATH=str(REPO))
    return subprocess.run([BOT, "doctor", *extra], capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.mark.parametrize("name", ["hosts.toml", "hosts-ssh.toml", "hosts-tls.toml"])
def test_doctor_json_ready_over_each_transport(lab: LabInfo, name: str) -> None:
    proc = _doctor(lab.root / name, "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report
    assert report["ready"] is True
    hosts = {h["name"]: h for h in report["hosts"]}
    assert {h: (hosts[h]["hostname"], hosts[h]["uuid"]) for h in hosts} == {
        "hostA": ("lab-a", lab.host("hostA").uuid),
        "hostB": ("lab-b", lab.host("hostB").uuid),
        "hostC": ("lab-c", lab.host("hostC").uuid),
    }
    assert all(h["reachable"] and h["libvirt_version"] >= 9_000_000 and h["qemu_version"] for h in hosts.values())
    for f in report["findings"]:
        assert set(f) == {"subject", "check", "status", "detail", "fix"} and f["status"] in ("ok", "warn", "fail")
    checks = {(f["subject"], f["check"]): f for f in report["findings"]}
    assert checks[("hostA->hostB", "ports.migration")]["status"] == "ok"
    assert checks[("hostA->hostC", "ports.migration")]["status"] == "ok"  # every pair: the lab is a switch
    tls = name == "hosts-tls.toml"
    assert checks[("hostB", "tls.migration")]["status"] == ("ok" if tls else "warn")
    assert (("hostA", "tls.listener") in checks) == tls
    # The lab's hosts share the machine's one kernel clock: each offset from the bot's clock, and the skew
    # between them, is the measurement's own error (a local libvirt call), well under the 2 s threshold.
    skew = report["clock_skew"]
    assert skew["verdict"] == "ok" and skew["threshold_s"] == 2.0
    assert len(skew["between"]) == 2 and set(skew["between"]) <= set(lab.hosts)  # the pair with the largest skew
    assert 0 <= skew["max_skew_s"] < 0.1 and skew["uncertainty_s"] < 0.5, skew
    assert all(abs(h["clock_offset_s"]) < 0.1 for h in hosts.values()), hosts
    assert checks[(", ".join(sorted(lab.hosts)), "clock.skew")]["status"] == "ok"


def test_doctor_names_an_untrusted_certificate_and_fails(lab: LabInfo, tmp_path: Path) -> None:
    other = tmp_path / "other-ca"
    access.make_ca(other)
    access.client_pki(other, tmp_path / "bot", access.BOT_CN)
    text = (lab.root / "hosts-tls.toml").read_text()
    bot_pki = str(lab.root / "tls" / "bot")
    # hostB only: its uri line is the second occurrence of the bot's pkipath.
    head, sep, tail = text.partition(f"10.213.7.2/system?pkipath={bot_pki}")
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(head + f"10.213.7.2/system?pkipath={tmp_path / 'bot'}" + tail)
    assert sep
    proc = _doctor(hosts)
    assert proc.returncode == 1, proc.stdout
    assert (
        "[FAIL] hostB connect: the certificate hostB's libvirtd at 10.213.7.2:16514 presents is not signed"
        in proc.stdout
    )
    assert "fix: put the CA certificate" in proc.stdout and "NOT ready" in proc.stdout
    assert "[ok  ] hostA connect" in proc.stdout


def test_doctor_flags_two_names_for_one_host(lab: LabInfo, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.toml"
    ssh_uri = access.ssh_uri(access_paths(lab), access_host("A"))
    hosts.write_text(
        f'[hosts.hostA]\nuri = "{lab.host("hostA").uri}"\n[hosts.alsoA]\nuri = "{ssh_uri}"\n'
        f'peer_uri = "{lab.host("hostA").peer_uri}"\n'
    )
    report = json.loads(_doctor(hosts, "--json").stdout)
    dup = [f for f in report["findings"] if f["check"] == "duplicate.uuid"]
    assert report["ready"] is False and dup and dup[0]["subject"] == "hostA, alsoA"
    assert "host_uuid" in dup[0]["fix"]


def test_doctor_bad_input(tmp_path: Path) -> None:
    proc = _doctor(tmp_path / "missing.toml")
    assert proc.returncode == 1 and "hosts file" in proc.stderr and "does not exist" in proc.stderr
    help_text = subprocess.run([BOT, "doctor", "--help"], capture_output=True, text=True, check=False)
    assert help_text.returncode == 0 and "--json" in help_text.stdout and "Exit 0" in help_text.stdout


def access_paths(lab: LabInfo):  # type: ignore[no-untyped-def]
    from labtool.config import Paths

    return Paths(lab.root, Path("/nonexistent"))


def access_host(letter: str):  # type: ignore[no-untyped-def]
    from labtool.config import host_by_name

    return host_by_name(letter)
