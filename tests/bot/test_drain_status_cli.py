"""`migrate-bot status D7 [--json]` (the drain contract other tools read) and `migrate-bot plan return <host>`.

A drain is run to the end by the real service on the in-memory fleet (virtual time) into a SQLite file; the real
console script then reads that file. Reading a drain's status needs no host, so the inventory's hosts are
sockets that do not exist.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from migration_core.drains import DrainState
from migration_core.events import RecordingSink
from migration_core.models import MigrationOptions
from migration_core.planning.drain import DrainRequest
from tests.bot.fleet_service import DRAIN_VMS, open_fleet_service
from tests.bot.test_cli import one_json, run

pytestmark = pytest.mark.virtual_time

CONTRACT = {"kind", "host", "state", "eta_s", "moves"}
MOVE_CONTRACT = {"job_id", "vm", "destination", "state"}


async def _approver(user: str) -> bool:
    return user in ("bob", "carol")


def _dead_hosts(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.toml"
    path.write_text(
        "".join(
            f'[hosts.{name}]\nuri = "qemu+unix:///system?socket={tmp_path}/nowhere/{name}-sock"\n'
            f'peer_uri = "qemu+tcp://{ip}:16509/system"\nlink_mib_s = 100\n\n'
            for name, ip in (("hostA", "10.213.7.1"), ("hostB", "10.213.7.2"), ("hostC", "10.213.7.3"))
        )
    )
    return path


async def test_status_of_a_finished_drain_as_json_and_text(tmp_path: Path) -> None:
    fs = await open_fleet_service(RecordingSink(), _approver, drain_host=True)
    try:
        drain = await fs.service.request_drain(DrainRequest("hostC", MigrationOptions()), "alice")
        for who in ("bob", "carol"):
            await fs.service.approve_drain(drain.id, who)
        done = await fs.service.wait_drain(drain.id, timeout_s=3600)
        assert done.drain.state is DrainState.DONE
        env = {
            "MIGRATE_BOT_DB": f"sqlite:///{Path(fs.tmp.name) / 'jobs.db'}",
            "MIGRATE_BOT_HOSTS": str(_dead_hosts(tmp_path)),
        }
        proc = run("status", "D1", "--json", env=env)
        assert proc.returncode == 0, proc.stderr
        data = one_json(proc)
        assert set(data) >= CONTRACT and data["kind"] == "drain" and data["host"] == "hostC"
        assert data["state"] == "done" and data["eta_s"] is None and data["id"] == "D1"
        assert {m["vm"] for m in data["moves"]} == set(DRAIN_VMS)
        for m in data["moves"]:
            assert set(m) >= MOVE_CONTRACT and m["state"] == "succeeded" and m["destination"] in ("hostA", "hostB")
            assert m["total_s"] > 0 and m["downtime_ms"] is not None and isinstance(m["job_id"], int)
        text = run("status", "d1", env=env)  # people write it both ways
        assert text.returncode == 0 and "Drain of hostC (D1)" in text.stdout and "Done" in text.stdout
        history = run("history", env=env)
        assert history.returncode == 0 and "Drains" in history.stdout and "D1" in history.stdout
        assert "3 of 3 done" in history.stdout
        assert "D1" not in run("history", "--json", env=env).stdout  # the JSON stays the list of jobs
        for bad, said in (("D999", "there is no drain D999"), ("D0", "`D0` is not a drain")):
            proc = run("status", bad, "--json", env=env)
            assert proc.returncode != 0 and said in proc.stderr, (bad, proc.stderr)
    finally:
        await fs.close()


def test_plan_return_of_a_never_drained_host_says_why(tmp_path: Path) -> None:
    env = {"MIGRATE_BOT_DB": f"sqlite:///{tmp_path / 'bot.db'}", "MIGRATE_BOT_HOSTS": str(_dead_hosts(tmp_path))}
    proc = run("plan", "return", "hostC", "--json", env=env)
    assert proc.returncode == 1
    data = one_json(proc)
    assert data["error"] == "hostC has no completed drain to return from" and "drain" in data["hint"]
    proc = run("plan", "return", "hostZ", "--json", env=env)
    assert proc.returncode == 1 and "unknown host 'hostZ'" in one_json(proc)["error"]
