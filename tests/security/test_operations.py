"""Operating the bot: JSON logs with the job on every line, Prometheus metrics that move, /healthz 200 / 503.

Real processes: `migrate-bot serve` (HTTP mode, fake Slack) and `migrate-bot console`. The lab test migrates
the lab's `stopped` VM (an offline migration: instant) from hostA to hostB through Slack clicks, then reads the
bot's JSON log and scrapes /metrics on both listeners. The /healthz test takes PostgreSQL away under the bot.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from migration_core.models import JobState
from migration_core.store import Store
from tests.fakeslack import FakeSlack
from tests.fixtures.slack import C_OPS, C_RANDOM, SIGNING_SECRET, U_ALICE, U_BOB
from tests.labkit import LabInfo, reset_vm, vm_location
from tests.security.botproc import REPO_ROOT, http_get, unreachable_inventory
from tests.security.conftest import StartBot

JOB_FIELDS = ("job_id", "vm", "source", "destination", "actor")


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def json_lines(log: str) -> list[dict[str, Any]]:
    """Every line of a JSON log, parsed (a line that is not JSON fails the test)."""
    return [json.loads(line) for line in log.splitlines() if line.strip()]


def mentions_job(line: dict[str, Any], job_id: int) -> bool:
    return re.search(rf"\bjob #?{job_id}\b", str(line.get("msg", ""))) is not None


async def _latest_job(db: str, vm: str) -> Any:
    store = await Store.open(db)
    try:
        return await store.latest_job_for_vm(vm)
    finally:
        await store.close()


@pytest.mark.lab
async def test_a_migration_through_slack_logs_its_job_on_every_line_and_moves_the_metrics(
    lab: LabInfo, fake_slack: FakeSlack, start_bot: StartBot
):
    reset_vm(lab, "stopped")
    try:
        bot = start_bot({"MIGRATE_BOT_LOG_FORMAT": "json"}, hosts=lab.hosts_toml, metrics=True)
        db = bot.env["MIGRATE_BOT_DB"]
        ack = await fake_slack.slash_command_http(bot.url, SIGNING_SECRET, "stopped to hostB", U_ALICE, C_OPS)
        assert ack.status == 200

        async def awaiting() -> Any:
            job = await _latest_job(db, "stopped")
            return job if job is not None and job.state is JobState.AWAITING_APPROVAL and job.chat.thread else None

        job = await fake_slack.wait_for(awaiting, timeout_s=120, what="the stopped VM's job awaiting approval")
        click = await fake_slack.click_http(bot.url, SIGNING_SECRET, C_OPS, job.chat.thread, "approve", U_BOB)
        assert click.status == 200

        async def finished() -> Any:
            done = await _latest_job(db, "stopped")
            return done if done is not None and done.state.terminal else None

        done = await fake_slack.wait_for(finished, timeout_s=180, what="the migration to end")
        assert done.state is JobState.SUCCEEDED, done.error
        assert vm_location(lab, "stopped").get("hostB") is not None
        await fake_slack.wait_for(lambda: _summary_posted(fake_slack, job.chat.thread), timeout_s=30, what="summary")

        # Metrics, on the metrics port and on the Slack port (HTTP mode).
        for base in (bot.metrics_url, bot.url):
            status, text = http_get(base + "/metrics")
            assert status == 200
            assert metric(text, "migrate_bot_migrations_total", outcome="succeeded") == 1
            assert metric(text, "migrate_bot_job_transitions_total", state="running") == 1
            assert metric(text, "migrate_bot_migration_duration_seconds_count") == 1
            assert metric(text, "migrate_bot_queue_wait_seconds_count") == 1
            assert metric(text, "migrate_bot_queue_length") == 0
        status, health = bot.health()
        assert status == 200 and health["detail"]["hosts_reachable"] == "3/3"

        # The JSON log: every line parses; every line of the job's life names the job, its VM, hosts and actor.
        lines = json_lines(bot.log_text())
        of_job = [line for line in lines if line.get("job_id") == job.id]
        transitions = {line["msg"].split(":")[1].strip() for line in of_job if "->" in line.get("msg", "")}
        assert {"requested -> preflight", "preflight -> awaiting_approval", "awaiting_approval -> approved",
                "running -> verifying", "verifying -> succeeded"} <= transitions, transitions  # fmt: skip
        for line in of_job:
            assert line["vm"] == "stopped" and line["destination"] == "hostB" and line.get("actor"), line
        planned = [line for line in of_job if "requested -> preflight" not in line["msg"]]  # before the plan
        assert planned and all(line.get("source") == "hostA" for line in planned), planned
        unlabelled = [line for line in lines if mentions_job(line, job.id) and line.get("job_id") != job.id]
        assert unlabelled == []
        assert "exc" not in json.dumps(of_job)
    finally:
        reset_vm(lab, "stopped")


async def _summary_posted(fake: FakeSlack, thread_ts: str) -> bool:
    replies = await fake.thread(C_OPS, thread_ts)
    return any("succeeded" in json.dumps(r).lower() for r in replies[1:])


async def test_a_failed_request_and_slack_errors_move_the_counters(fake_slack: FakeSlack, start_bot: StartBot):
    bot = start_bot(metrics=True)
    _, before = http_get(bot.metrics_url + "/metrics")
    assert metric(before, "migrate_bot_migrations_total", outcome="preflight_failed") == 0
    await fake_slack.inject("chat.postMessage", count=1, mode="429", retry_after_s=1)
    ack = await fake_slack.slash_command_http(bot.url, SIGNING_SECRET, "vm42 to hostB", U_ALICE, C_OPS)
    assert ack.status == 200
    await fake_slack.wait_for(lambda: fake_slack.messages(C_OPS), timeout_s=30, what="the card (after one 429)")
    # A channel the bot is not in: Slack answers not_in_channel.
    ack = await fake_slack.slash_command_http(bot.url, SIGNING_SECRET, "busy to hostB", U_ALICE, C_RANDOM)
    assert ack.status == 200

    def scraped() -> str | None:
        _, text = http_get(bot.metrics_url + "/metrics")
        # Refused by their preflight (the hosts are unreachable): their own outcome, not "failed" (issue 16).
        done = metric(text, "migrate_bot_migrations_total", outcome="preflight_failed") == 2
        told = metric(text, "migrate_bot_slack_api_errors_total", method="chat.postMessage", error="not_in_channel")
        return text if done and told else None

    text = await fake_slack.wait_for(scraped, timeout_s=30, what="the counters")
    assert metric(text, "migrate_bot_slack_api_ratelimited_total", method="chat.postMessage") == 1
    assert metric(text, "migrate_bot_preflight_failures_total", check="facts_unavailable") == 2
    assert metric(text, "migrate_bot_libvirt_connection_errors_total", host="hostA") >= 1
    assert metric(text, "migrate_bot_libvirt_connection_errors_total", host="hostB") >= 1
    assert metric(text, "migrate_bot_job_transitions_total", state="preflight") == 2
    assert metric(text, "migrate_bot_migrations_total", outcome="failed") == 0


@pytest.mark.postgres
async def test_healthz_is_200_with_the_database_and_503_without_it(
    fake_slack: FakeSlack, start_bot: StartBot, pg_database_url: str
):
    bot = start_bot(db=pg_database_url, metrics=True)
    for base in (bot.url, bot.metrics_url):
        status, body = http_get(base + "/healthz")
        detail = json.loads(body)["detail"]
        assert status == 200 and detail["database"] == {"ok": True}
        assert detail["hosts_reachable"] == "0/2"  # reported, but unreachable hypervisors are not a restart
        assert detail["hosts"]["hostA"]["ok"] is False and "does not answer" in detail["hosts"]["hostA"]["detail"]

    name = pg_database_url.rsplit("/", 1)[1]
    admin = pg_database_url.replace("postgresql+psycopg://", "postgresql://", 1).rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    for base in (bot.url, bot.metrics_url):
        status, body = http_get(base + "/healthz")
        detail = json.loads(body)["detail"]
        assert status == 503 and detail["database"]["ok"] is False
        assert name in detail["database"]["error"]  # says which database, with the password masked
    _, text = http_get(bot.metrics_url + "/metrics")  # metrics still answer while the database is gone
    assert "migrate_bot_migrations_total" in text

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    status, _ = http_get(bot.url + "/healthz")
    assert status == 200  # back without a restart
    assert bot.alive()


def test_the_console_writes_json_lines_with_the_job_and_text_by_default(tmp_path: Path):
    hosts = unreachable_inventory(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE_BOT_", "SLACK_"))}
    env.update(MIGRATE_BOT_HOSTS=str(hosts), MIGRATE_BOT_DB=f"sqlite:///{tmp_path / 'c.db'}")

    def console(extra: dict[str, str]) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "bot.cli", "console", "--as", "alice"],
            input="/migrate vm42 to hostB\n", capture_output=True, text=True, cwd=REPO_ROOT,
            env={**env, **extra}, timeout=120, check=False,
        )  # fmt: skip
        return done.stderr

    lines = json_lines(console({"MIGRATE_BOT_LOG_FORMAT": "json"}))
    of_job = [line for line in lines if line.get("job_id") == 1]
    assert any("requested -> preflight" in line["msg"] for line in of_job)
    assert any("preflight -> failed" in line["msg"] for line in of_job)
    assert any(line["logger"] == "migration_core.preflight.runner" for line in of_job)  # the preflight's own lines too
    assert all(line["vm"] == "vm42" and line["actor"] == "alice" for line in of_job)
    assert [line for line in lines if mentions_job(line, 1) and line.get("job_id") != 1] == []

    # The text-mode console prints every job event itself, so by default it logs only warnings...
    assert " INFO " not in console({})
    text = console({"MIGRATE_BOT_LOG_LEVEL": "INFO"})  # ...and human-readable lines when asked for INFO
    first = text.splitlines()[0]
    line_re = r"^\d\d:\d\d:\d\d INFO +migration_core\.dispatch\.dispatcher: job \d+: requested -> preflight"
    assert re.match(line_re, first)
    assert "[job_id=" in first
