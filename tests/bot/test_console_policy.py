"""The real `migrate-bot console` with a policy file (issue 15): freezes, emergencies, tickets, bad files.

No host needs to answer for these: a request during a freeze or with a bad ticket is refused before any
preflight, and `freezes` reads only the policy file. (Approvals by owners' groups after a real preflight are
proven against the lab in tests/lab/test_policy_lab.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "migrate-bot"
# Frozen all week, every week: whatever the wall clock says when the test runs, a freeze is in force.
ALWAYS_FROZEN = """
[approvals]
emergency = 3
[[freeze]]
name = "change-freeze"
weekly = "Mon-Sun 00:00-24:00"
timezone = "Europe/Berlin"
[ticket]
pattern = "^CHG[0-9]{7}$"
"""


def console(script: str, env: dict[str, str], user: str = "alice") -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE_BOT_", "SLACK_"))}
    base.update(env)
    proc = subprocess.run(
        [str(BIN), "console", "--as", user],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        env=base,
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(
        "".join(
            f'[hosts.{name}]\nuri = "qemu+unix:///system?socket={tmp_path}/nowhere/{name}-sock"\n'
            for name in ("hostA", "hostB")
        )
    )
    policy = tmp_path / "policy.toml"
    policy.write_text(ALWAYS_FROZEN)
    return {
        "MIGRATE_BOT_HOSTS": str(hosts),
        "MIGRATE_BOT_DB": f"sqlite:///{tmp_path / 'bot.db'}",
        "MIGRATE_BOT_POLICY": str(policy),
    }


def test_a_request_during_a_freeze_is_refused_naming_the_window_and_its_end(env: dict[str, str]) -> None:
    proc = console("vm42 to hostB\n", env)
    out = proc.stdout
    assert "changes are frozen: 'change-freeze' is in force until " in out, out
    assert "CET" in out or "CEST" in out  # the end in the window's own time zone (and UTC alongside)
    assert '--emergency --reason "why" (it then needs 3 approvers)' in out
    assert "job 1 created" not in out


def test_freezes_lists_the_window_in_force(env: dict[str, str]) -> None:
    out = console("freezes\n", env).stdout
    assert "Change freezes" in out and "change-freeze" in out and "in force" in out, out
    assert "weekly Mon-Sun 00:00-24:00 Europe/Berlin" in out


def test_a_ticket_that_does_not_match_the_pattern_is_refused(env: dict[str, str]) -> None:
    out = console('vm42 to hostB --ticket CHG12 --emergency --reason "INC-1"\n', env).stdout
    assert "refused: ticket CHG12 does not match the policy's pattern ^CHG[0-9]{7}$" in out, out
    assert "job 1 created" not in out


def test_an_emergency_without_a_reason_is_a_grammar_error(env: dict[str, str]) -> None:
    out = console("vm42 to hostB --emergency\n", env).stdout
    assert "--emergency needs --reason" in out, out


def test_a_bad_policy_file_stops_the_console_at_start_naming_file_entry_and_field(
    env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad-policy.toml"
    bad.write_text('[groups]\ndba = ["dave"]\n[[owners]]\nmatch = { vm = "db*" }\ngroup = "dbas"\n')
    proc = console("status\n", {**env, "MIGRATE_BOT_POLICY": str(bad)})
    assert proc.returncode != 0
    assert f"{bad}: [[owners]] #1: field 'group': group 'dbas' does not exist in [groups]" in proc.stderr
    assert "did you mean 'dba'?" in proc.stderr


def test_a_missing_policy_file_is_a_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    proc = console("status\n", {**env, "MIGRATE_BOT_POLICY": str(tmp_path / "nope.toml")})
    assert proc.returncode != 0
    assert "policy file" in proc.stderr and "does not exist" in proc.stderr and "MIGRATE_BOT_POLICY" in proc.stderr
