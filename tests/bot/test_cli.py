"""The `migrate-bot` console script as other tools see it: a real subprocess, its stdout JSON and exit codes.

Contracts (issues 2 and 4): `parse TEXT --json` (exact keys; grammar error -> {error, hint}, exit 2),
`plan ... --json` (exit 0 whether executable or not, 2 on a grammar error, 1 when no host answers),
`hosts`, `status`/`history`, `--help` everywhere, and a clear error (never a traceback) for a bad environment.
Tests that need real hosts use the lab; the others run anywhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from migration_core.models import MoveSample
from migration_core.store import Store
from tests.labkit import LabInfo, reset_vm, vm_location

BIN = Path(sys.executable).parent / "migrate-bot"
MIGRATE_KEYS = {
    "command", "vm", "destination", "mode", "persistent", "undefine_source", "keep_source", "postcopy",
    "postcopy_after_s", "auto_converge", "parallel_connections", "max_downtime_ms", "bandwidth_mib_s",
    "copy_storage", "compressed", "tls", "timeout_s", "reason", "ticket", "emergency", "not_before", "not_after",
}  # fmt: skip
PLAN_KEYS = {"executable", "checks", "prediction", "mode", "flags", "params", "recommendation", "hash"}
PREDICTION_KEYS = {"converges", "total_s", "downtime_ms", "dirty_rate_mib_s", "bandwidth_mib_s", "passes"}
SUBCOMMANDS = (
    "serve", "console", "parse", "plan", "status", "history", "export", "hosts", "calibration", "audit", "version",
)  # fmt: skip


def run(*args: str, env: dict[str, str] | None = None, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """The console script with a clean environment: no MIGRATE_BOT_* / SLACK_* from the caller leaks in."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE_BOT_", "SLACK_"))}
    base["MIGRATE_BOT_DIRTY_RATE_WINDOW"] = "1s"
    base.update(env or {})
    proc = subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=timeout_s, env=base, stdin=subprocess.DEVNULL
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def one_json(proc: subprocess.CompletedProcess[str]) -> Any:
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout, got:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(lines[0])


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


# ----- parse ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vm42 to hostB", {"command": "migrate", "vm": "vm42", "destination": "hostB", "mode": None}),
        (
            "vm42 to hostB --postcopy --max-downtime 500 --bandwidth 1G --parallel",
            {"postcopy": True, "max_downtime_ms": 500, "bandwidth_mib_s": 1024, "parallel_connections": 2},
        ),
        (
            "plan disky to hostB --copy-storage all --transient --timeout 5m",
            {"command": "plan", "copy_storage": "all", "persistent": False, "timeout_s": 300.0},
        ),
        ("stopped to hostB --offline --undefine-source", {"mode": "offline", "undefine_source": True}),
        ("vm42 to hostB --keep-source", {"keep_source": True, "undefine_source": False}),
        # From a phone: em/en dashes, curly quotes, doubled spaces.
        (
            "vm42  to hostB —postcopy-after 30s –reason “CHG 42: kernel”  ——auto-converge",
            {"postcopy": True, "postcopy_after_s": 30.0, "reason": "CHG 42: kernel", "auto_converge": True},
        ),
    ],
)
def test_parse_json_migrate_contract(text: str, expected: dict[str, Any]) -> None:
    proc = run("parse", text, "--json")
    assert proc.returncode == 0, proc.stderr
    data = one_json(proc)
    assert set(data) == MIGRATE_KEYS
    assert {k: data[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status 41", {"command": "status", "target": 41}),
        ("cancel 7", {"command": "cancel", "job_id": 7}),
        ("history vm42 --limit 5", {"command": "history", "subject": "vm42", "limit": 5}),
        ("hosts", {"command": "hosts"}),
        ("", {"command": "help", "topic": None}),
    ],
)
def test_parse_json_other_commands(text: str, expected: dict[str, Any]) -> None:
    proc = run("parse", text, "--json")
    assert proc.returncode == 0, proc.stderr
    assert one_json(proc) == expected


@pytest.mark.parametrize(
    ("text", "in_error", "in_hint"),
    [
        ("vm42 hostB", "`to`", "vm42 to hostB"),
        ("vm42 to hostB --postcoppy", "--postcoppy", "--postcopy"),
        ("vm42 to hostB --reason 'no end", "unterminated quote", "close the quote"),
        ("vm42 to hostB --offline --postcopy", "--offline", "live"),
        ("vm42 to hostB --max-downtime soon", "soon", ""),
    ],
)
def test_parse_grammar_error_json_exit_2(text: str, in_error: str, in_hint: str) -> None:
    proc = run("parse", text, "--json")
    assert proc.returncode == 2
    data = one_json(proc)
    assert set(data) == {"error", "hint"}
    assert in_error in data["error"] and in_hint in data["hint"], data


def test_parse_text_mode() -> None:
    ok = run("parse", "vm42 to hostB --postcopy")
    assert ok.returncode == 0 and "vm: vm42" in ok.stdout and "postcopy: True" in ok.stdout
    bad = run("parse", "vm42 hostB")
    assert bad.returncode == 2 and bad.stdout == "" and bad.stderr.startswith("error: ") and "hint: " in bad.stderr


# ----- help, version, bad environment -------------------------------------------------------------------


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_subcommand_has_help(sub: str) -> None:
    proc = run(sub, "--help")
    assert proc.returncode == 0 and f"usage: migrate-bot {sub}" in proc.stdout, proc.stderr


def test_top_level_help_lists_every_subcommand_and_version_prints() -> None:
    top = run("--help")
    assert top.returncode == 0 and all(sub in top.stdout for sub in SUBCOMMANDS)
    assert "MIGRATE_BOT_HOSTS" in top.stdout and "MIGRATE_BOT_DB" in top.stdout
    version = run("version")
    assert version.returncode == 0 and version.stdout.startswith("migrate-bot ")


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (("status",), {"MIGRATE_BOT_DB": "mysql://x"}, ["MIGRATE_BOT_DB", "sqlite:///"]),
        (("hosts",), {"MIGRATE_BOT_HOSTS": "/nonexistent/hosts.toml"}, ["/nonexistent/hosts.toml", "does not exist"]),
        (("plan", "vm42", "to", "hostB"), {"MIGRATE_BOT_HOSTS": "/nonexistent"}, ["/nonexistent"]),
        (("history",), {"MIGRATE_BOT_DIRTY_RATE_WINDOW": "forever"}, ["MIGRATE_BOT_DIRTY_RATE_WINDOW", "duration"]),
        (("hosts",), {"MIGRATE_BOT_HOSTS": "@bad-toml"}, ["bad.toml"]),
        (("serve",), {"MIGRATE_BOT_HOSTS": "@bad-toml"}, ["SLACK_BOT_TOKEN", "console"]),
    ],
)
def test_bad_environment_is_a_clear_error(
    args: tuple[str, ...], env: dict[str, str], words: list[str], tmp_path: Path, db_env: dict[str, str]
) -> None:
    if env.get("MIGRATE_BOT_HOSTS") == "@bad-toml":
        bad = tmp_path / "bad.toml"
        bad.write_text("[hosts.hostA]\nuri = qemu:///system\n")  # unquoted string: not TOML
        env = {**env, "MIGRATE_BOT_HOSTS": str(bad)}
    proc = run(*args, env={**db_env, **env})
    assert proc.returncode not in (0, None), proc.stdout
    assert proc.stderr.startswith("error: "), proc.stderr
    assert all(w in proc.stderr for w in words), proc.stderr


# ----- status / history on an empty store ----------------------------------------------------------------


def test_status_and_history_on_an_empty_database(tmp_path: Path, dead_hosts: Path, db_env: dict[str, str]) -> None:
    env = {**db_env, "MIGRATE_BOT_HOSTS": str(dead_hosts)}  # neither needs a host to answer
    for args in (("status", "--json"), ("history", "--json"), ("history", "vm42", "--limit", "5", "--json")):
        proc = run(*args, env=env)
        assert proc.returncode == 0, proc.stderr
        assert one_json(proc) == []
    assert (tmp_path / "bot.db").exists()  # the schema was created on start
    text = run("status", env=env)
    assert text.returncode == 0 and "no active migrations" in text.stdout
    assert "no jobs yet" in run("history", env=env).stdout
    missing = run("status", "41", env=env)
    assert missing.returncode == 1 and "#41" in missing.stderr
    limit = run("history", "--limit", "0", env=env)
    assert limit.returncode == 2 and "--limit" in limit.stderr


def test_calibration_per_host_pair(tmp_path: Path, dead_hosts: Path, db_env: dict[str, str]) -> None:
    env = {**db_env, "MIGRATE_BOT_HOSTS": str(dead_hosts)}
    empty = run("calibration", env=env)
    assert empty.returncode == 0 and "no finished migration with a prediction yet" in empty.stdout
    assert one_json(run("calibration", "--json", env=env)) == []

    async def seed() -> None:
        store = await Store.open(db_env["MIGRATE_BOT_DB"])
        now = datetime.now(UTC)
        for n, (measured, ok) in enumerate([(1.0, True), (1.1, True), (0.9, True), (9.0, False)]):
            await store.add_move_sample(
                MoveSample(
                    "u1",
                    "vm42",
                    "hostA",
                    "hostB",
                    "pre-copy",
                    now - timedelta(minutes=n),
                    ok,
                    1.0,
                    40.0,
                    1.0,
                    40.0,
                    measured,
                    50.0,
                    memory_bytes_sent=34 * 2**20,
                    throughput_mib_s=80.0,
                    link_mib_s=100.0,
                )
            )
        await store.close()

    asyncio.run(seed())
    [pair] = one_json(run("calibration", "--json", env=env))
    assert (pair["source"], pair["destination"], pair["migrations"], pair["learned_from"]) == ("hostA", "hostB", 4, 3)
    assert pair["total_error_median"] == round(0.1 / 1.1, 3) and pair["downtime_error_median"] == 0.2
    assert pair["throughput_mib_s"] == 80.0 and pair["efficiency"] == 0.82 and pair["pair_samples"] == 3
    # Three succeeded runs paused 50 ms against a modelled 40: +10 ms, shrunk towards 0 by the defaults' 2 runs.
    assert pair["downtime_offset_ms"] == 6.0
    text = run("calibration", env=env)
    assert text.returncode == 0 and "hostA → hostB" in text.stdout and "80 MiB/s" in text.stdout
    assert "+6 ms" in text.stdout


# ----- plan and hosts: when nothing answers ------------------------------------------------------------


def test_plan_exits_1_when_no_host_answers(dead_hosts: Path, db_env: dict[str, str]) -> None:
    env = {**db_env, "MIGRATE_BOT_HOSTS": str(dead_hosts)}
    proc = run("plan", "vm42", "to", "hostB", "--json", env=env)
    assert proc.returncode == 1
    data = one_json(proc)
    assert set(data) == {"error", "hint"} and "no host" in data["error"] and "nowhere" in data["error"]
    text = run("plan", "vm42", "to", "hostB", env=env)
    assert text.returncode == 1 and "error: no host" in text.stderr and "hint: " in text.stderr


def test_plan_grammar_error_exits_2_before_touching_hosts(dead_hosts: Path, db_env: dict[str, str]) -> None:
    proc = run("plan", "vm42", "hostB", "--json", env={**db_env, "MIGRATE_BOT_HOSTS": str(dead_hosts)})
    assert proc.returncode == 2
    assert set(one_json(proc)) == {"error", "hint"}


def test_hosts_reports_unreachable_hosts(dead_hosts: Path, db_env: dict[str, str]) -> None:
    proc = run("hosts", "--json", env={**db_env, "MIGRATE_BOT_HOSTS": str(dead_hosts)})
    assert proc.returncode == 1
    hosts = one_json(proc)
    assert [h["name"] for h in hosts] == ["hostA", "hostB"]
    assert all(h["reachable"] is False and "does not answer" in h["detail"] for h in hosts)
    keys = ["name", "uri", "reachable", "detail", "running_vms", "inbound_active", "outbound_active", "max_inbound",
            "max_outbound"]  # fmt: skip
    assert all(list(h) == keys for h in hosts), hosts  # the --json contract: flat, in this order
    assert [(h["max_inbound"], h["max_outbound"]) for h in hosts] == [(1, 1), (1, 1)]  # the hosts file's defaults


# ----- plan and hosts against the lab ---------------------------------------------------------------------


def _lab_env(lab: LabInfo, db_env: dict[str, str]) -> dict[str, str]:
    return {**db_env, "MIGRATE_BOT_HOSTS": str(lab.hosts_toml)}


def _at_home(lab: LabInfo, vm: str) -> None:
    if vm_location(lab, vm) != {"hostA": "running"}:
        reset_vm(lab, vm)


@pytest.mark.lab
def test_plan_json_contract_on_the_lab(lab: LabInfo, db_env: dict[str, str]) -> None:
    _at_home(lab, "vm42")
    proc = run("plan", "vm42", "to", "hostB", "--postcopy", "--json", env=_lab_env(lab, db_env))
    assert proc.returncode == 0, proc.stderr
    plan = one_json(proc)
    assert set(plan) >= PLAN_KEYS
    assert isinstance(plan["executable"], bool) and plan["mode"] == "live"
    assert plan["checks"] and all(set(c) == {"name", "status", "reason", "fix"} for c in plan["checks"])
    assert {c["status"] for c in plan["checks"]} <= {"pass", "info", "skipped", "warn", "fail"}
    assert all(isinstance(c["reason"], str) and c["reason"] for c in plan["checks"])
    assert set(plan["prediction"]) >= PREDICTION_KEYS
    assert plan["prediction"]["bandwidth_mib_s"] == 200.0 and isinstance(plan["prediction"]["converges"], bool)
    assert {"VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_POSTCOPY"} <= set(plan["flags"])
    assert plan["params"]["migrate_uri"] == f"tcp://{lab.host('hostB').ip}"
    assert isinstance(plan["hash"], str) and len(plan["hash"]) == 16
    assert plan["recommendation"] is None or isinstance(plan["recommendation"], str)


@pytest.mark.lab
def test_plan_that_is_not_executable_still_exits_0(lab: LabInfo, db_env: dict[str, str]) -> None:
    _at_home(lab, "disky")
    proc = run("plan", "disky", "to", "hostB", "--json", env=_lab_env(lab, db_env))
    assert proc.returncode == 0, proc.stderr
    plan = one_json(proc)
    assert plan["executable"] is False
    storage = next(c for c in plan["checks"] if c["name"] == "storage")
    assert storage["status"] == "fail" and "--copy-storage all" in storage["fix"]


@pytest.mark.lab
def test_plan_text_report_and_unknown_host(lab: LabInfo, db_env: dict[str, str]) -> None:
    env = _lab_env(lab, db_env)
    _at_home(lab, "vm42")
    text = run("plan", "vm42", "to", "hostB", env=env)
    assert text.returncode == 0, text.stderr
    assert "vm42" in text.stdout and "hostB" in text.stdout and "{" not in text.stdout.splitlines()[0]
    # An unknown destination is a plan that is not executable (exit 0, as the contract says), not an error.
    unknown = run("plan", "vm42", "to", "hostD", "--json", env=env)
    assert unknown.returncode == 0, unknown.stderr
    data = one_json(unknown)
    assert data["executable"] is False
    known = next(c for c in data["checks"] if c["name"] == "hosts.known")
    assert known["status"] == "fail" and "hostD" in known["reason"] and "hostB" in known["fix"]


@pytest.mark.lab
def test_hosts_on_the_lab(lab: LabInfo, db_env: dict[str, str]) -> None:
    env = _lab_env(lab, db_env)
    proc = run("hosts", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    hosts = {h["name"]: h for h in one_json(proc)}
    assert set(hosts) == {"hostA", "hostB", "hostC"}
    for name, h in hosts.items():
        assert h["reachable"] is True and lab.host(name).hostname in h["detail"], h
        assert h["uri"] == lab.host(name).uri
    text = run("hosts", env=env)
    assert text.returncode == 0 and "hostA" in text.stdout and "lab-b" in text.stdout


# ----- console exit codes (a real subprocess reading a script on stdin) -----------------------------------


def run_console(script: str, env: dict[str, str], *, user: str = "alice") -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE_BOT_", "SLACK_"))}
    proc = subprocess.run(
        [str(BIN), "console", "--as", user],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "MIGRATE_BOT_DIRTY_RATE_WINDOW": "1s", **env},
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def test_console_exits_1_when_its_only_request_is_refused(dead_hosts: Path, db_env: dict[str, str]) -> None:
    """Issue 13 §5: a request the service refuses (the requester is not allowed) is not a success."""
    env = {**db_env, "MIGRATE_BOT_HOSTS": str(dead_hosts), "MIGRATE_BOT_REQUESTERS": "U012BOB"}
    proc = run_console("vm42 to hostB\n", env)
    assert proc.returncode == 1, proc.stdout
    assert "refused:" in proc.stdout and "1 migration request was refused" in proc.stdout
    assert "job 1 created" not in proc.stdout


def test_console_exits_1_when_the_vm_already_has_an_open_job(
    tmp_path: Path, dead_hosts: Path, db_env: dict[str, str]
) -> None:
    """The case of the issue: the VM already had an open job, the console's only request was refused."""
    import asyncio

    from migration_core.store import Store

    async def open_job() -> int:
        store = await Store.open(db_env["MIGRATE_BOT_DB"])
        try:
            return (await store.create_job(vm="vm42", destination="hostB", requester="carol", source="hostA")).id
        finally:
            await store.close()

    job_id = asyncio.run(open_job())
    proc = run_console("vm42 to hostB\n", {**db_env, "MIGRATE_BOT_HOSTS": str(dead_hosts)})
    assert proc.returncode == 1, proc.stdout
    assert f"already has job #{job_id}" in proc.stdout and "1 migration request was refused" in proc.stdout


def test_console_with_no_request_at_all_exits_0(dead_hosts: Path, db_env: dict[str, str]) -> None:
    proc = run_console("help\nstatus\n", {**db_env, "MIGRATE_BOT_HOSTS": str(dead_hosts)})
    assert proc.returncode == 0, proc.stdout


# ----- the job's whole record: status --json and export (issue 13 §6) ------------------------------------

RECORD_KEYS = {"plan", "approvals", "outcome", "verification", "events"}
OUTCOME_KEYS = {"total_s", "downtime_ms", "data_bytes", "iterations", "throughput_mib_s"}


def _fill_store(db_url: str) -> tuple[int, int]:
    """A real SQLite store with one job that is approved and waiting and one that was denied (no lab)."""
    import asyncio

    from migration_core.models import JobState
    from migration_core.store import Store
    from tests.bot.factories import plan

    async def fill() -> tuple[int, int]:
        store = await Store.open(db_url)
        try:
            ids = []
            for vm, end in (("vm42", JobState.APPROVED), ("busy", JobState.DENIED)):
                p = plan(vm=vm)
                job = await store.create_job(vm=vm, destination="hostB", requester="alice", reason="CHG-7")
                await store.transition(job.id, JobState.REQUESTED, JobState.PREFLIGHT, actor="alice", detail="pf")
                await store.transition(job.id, JobState.PREFLIGHT, JobState.AWAITING_APPROVAL, actor=None,
                                       detail="preflight passed", plan=p)
                await store.add_approval(job.id, "bob", end is JobState.APPROVED, p.hash)
                await store.transition(job.id, JobState.AWAITING_APPROVAL, end, actor="bob", detail=f"{end} by bob")
                ids.append(job.id)
            return ids[0], ids[1]
        finally:
            await store.close()

    return asyncio.run(fill())


def test_status_json_is_the_whole_record_with_a_null_outcome_before_it_ran(
    dead_hosts: Path, db_env: dict[str, str]
) -> None:
    approved, denied = _fill_store(db_env["MIGRATE_BOT_DB"])
    env = {**db_env, "MIGRATE_BOT_HOSTS": str(dead_hosts)}
    record = one_json(run("status", str(approved), "--json", env=env))
    assert set(record) >= RECORD_KEYS | {"id", "vm", "state", "requester", "approvers", "plan_hash"}
    assert record["id"] == approved and record["state"] == "approved" and record["vm"] == "vm42"
    assert set(record["plan"]) >= PLAN_KEYS and record["plan"]["hash"] == record["plan_hash"]
    assert set(record["plan"]["prediction"]) >= {"total_s", "downtime_ms"}
    assert [a["user"] for a in record["approvals"]] == ["bob"] and record["approvals"][0]["at"].startswith("20")
    assert record["outcome"] is None and record["verification"] == []  # it has not run
    assert all(set(e) == {"at", "kind", "actor", "text"} for e in record["events"])
    assert [e["kind"] for e in record["events"]].count("state") == 4
    assert any(e["kind"] == "approval" and e["actor"] == "bob" for e in record["events"])
    # A denial is no approval; the VM name finds its latest job too.
    by_vm = one_json(run("status", "busy", "--json", env=env))
    assert by_vm["id"] == denied and by_vm["approvals"] == [] and by_vm["state"] == "denied"


def test_export_jsonl_and_csv_with_since(dead_hosts: Path, db_env: dict[str, str]) -> None:
    import csv
    import io

    approved, denied = _fill_store(db_env["MIGRATE_BOT_DB"])
    env = {**db_env, "MIGRATE_BOT_HOSTS": str(dead_hosts)}
    proc = run("export", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [r["id"] for r in lines] == [approved, denied]  # oldest first
    assert lines[0] == one_json(run("status", str(approved), "--json", env=env))  # the same record
    rows = list(csv.DictReader(io.StringIO(run("export", "--format", "csv", env=env).stdout)))
    assert [int(r["id"]) for r in rows] == [approved, denied]
    assert rows[0]["approvers"] == "bob" and rows[0]["total_s"] == "" and rows[1]["state"] == "denied"
    assert run("export", "--since", "2999-01-01", env=env).stdout == ""
    assert len(run("export", "--since", "2000-01-01T00:00+02:00", env=env).stdout.splitlines()) == 2


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("export", "--since", "yesterday"), ["'yesterday' is not a date", "YYYY-MM-DD"]),
        (("export", "--since", "2026-13-01"), ["is not a date"]),
        (("export", "--format", "xml"), ["--format", "jsonl", "csv"]),
    ],
)
def test_export_bad_arguments_exit_2_with_a_clear_error(
    args: tuple[str, ...], words: list[str], dead_hosts: Path, db_env: dict[str, str]
) -> None:
    proc = run(*args, env={**db_env, "MIGRATE_BOT_HOSTS": str(dead_hosts)})
    assert proc.returncode == 2 and proc.stdout == ""
    assert all(w in proc.stderr for w in words), proc.stderr


@pytest.mark.lab
def test_record_of_a_real_console_run(lab: LabInfo, db_env: dict[str, str]) -> None:
    """A store filled by a real console run on the lab: the console exits 0 (its only request succeeded), and
    `status --json` / `export` give the plan, the approval, libvirt's measured outcome and the verification."""
    env = _lab_env(lab, db_env)
    _at_home(lab, "vm42")
    try:
        proc = run_console("vm42 to hostB\nas bob\napprove last\nwait last\n", env)
        assert proc.returncode == 0, proc.stdout
        assert "all jobs succeeded (job 1)" in proc.stdout
        record = one_json(run("status", "1", "--json", env=env))
    finally:
        reset_vm(lab, "vm42")
    assert record["state"] == "succeeded" and record["source"] == "hostA" and record["destination"] == "hostB"
    assert set(record["plan"]) >= PLAN_KEYS and "VIR_MIGRATE_LIVE" in record["plan"]["flags"]
    assert [a["user"] for a in record["approvals"]] == ["bob"]
    outcome = record["outcome"]
    assert set(outcome) == OUTCOME_KEYS
    assert outcome["total_s"] > 0 and outcome["data_bytes"] > 0 and outcome["iterations"] >= 1
    assert outcome["downtime_ms"] >= 0 and outcome["throughput_mib_s"] > 0
    names = {c["name"]: c for c in record["verification"]}
    assert names and all(set(c) == {"name", "status", "reason"} for c in record["verification"])
    assert all(c["status"] != "fail" for c in record["verification"]), record["verification"]
    states = [e["text"] for e in record["events"] if e["kind"] == "state"]
    assert len(states) >= 6 and all(set(e) == {"at", "kind", "actor", "text"} for e in record["events"])
    exported = [json.loads(x) for x in run("export", env=env).stdout.splitlines()]
    assert exported == [record]
