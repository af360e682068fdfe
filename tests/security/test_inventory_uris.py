"""Issue 16, items 6 and 7: passwords in hosts-file URIs are never printed, dangerous libvirt parameters are refused.

`migrate-bot hosts` runs as a real process on a hosts file holding the attack; its output (stdout and stderr,
i.e. the journal) must name the file, host and field, never the secret, and nothing may be run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.security.botproc import REPO_ROOT

SECRET = "pw-SECRET1"


def _hosts(tmp_path: Path, uri: str) -> tuple[int, str]:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(f'[hosts.kvm1]\nuri = "{uri}"\n\n[hosts.kvm2]\nuri = "qemu+ssh://root@kvm2/system"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE_BOT_", "SLACK_"))}
    env |= {"MIGRATE_BOT_HOSTS": str(hosts), "MIGRATE_BOT_DB": f"sqlite:///{tmp_path / 'bot.db'}"}
    script = Path(sys.executable).parent / "migrate-bot"
    cmd = [str(script), "hosts"] if script.exists() else [sys.executable, "-m", "bot.cli", "hosts"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "uri",
    [
        f"qemu+tls://user:{SECRET}@kvm1.example.com/system",
        f"qemu+ssh://root@kvm1.example.com/system?password={SECRET}",
        f"qemu+ssh://root@kvm1.example.com/system?keyfile=/etc/migrate-bot/id&passwd={SECRET}",
        f"qemu+tcp://u:{SECRET}$@kvm1/system",  # a shell character as well: still masked
    ],
)
def test_a_password_in_a_uri_is_refused_without_being_printed(tmp_path: Path, uri: str):
    code, out = _hosts(tmp_path, uri)
    assert code != 0
    assert SECRET not in out
    assert "hosts.toml" in out and "kvm1" in out and "field 'uri'" in out and "password" in out


@pytest.mark.parametrize(
    ("param", "why"),
    [
        ("command={marker}", "command"),
        ("netcat=/usr/bin/nc", "netcat"),
        ("proxy=netcat", "proxy"),
        ("no_verify=1", "no_verify"),
        ("known_hosts_verify=ignore", "known_hosts_verify"),
        ("keyfile=/home/mallory/id_rsa", "keyfile"),
        ("keyfile=/etc/migrate-bot/../../home/mallory/id_rsa", "keyfile"),
    ],
)
def test_dangerous_libvirt_parameters_are_refused_at_load(tmp_path: Path, param: str, why: str):
    marker = tmp_path / "ran"
    runner = tmp_path / "fake-ssh"
    runner.write_text(f"#!/bin/sh\ntouch {marker}\n")
    runner.chmod(0o755)
    code, out = _hosts(tmp_path, f"qemu+ssh://root@kvm1.example.com/system?{param.format(marker=runner)}")
    assert code != 0
    assert "hosts.toml" in out and "host 'kvm1'" in out and "field 'uri'" in out and why in out
    assert not marker.exists()  # `command=` ran /bin/sh on the bot's machine before the fix


def test_an_allowed_keyfile_is_accepted(tmp_path: Path):
    _code, out = _hosts(tmp_path, "qemu+ssh://root@kvm1.example.com/system?keyfile=/etc/migrate-bot/id_ed25519")
    assert "field 'uri'" not in out  # loaded; the hosts just do not answer
