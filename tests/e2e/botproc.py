"""End-to-end plumbing: `migrate-bot serve` as a separate process (environment, start, readiness, stop),
its database, and waiting for the shared lab to be usable."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from migration_core.store import Store
from tests.fakeslack import FakeSlack
from tests.fixtures.slack import APPROVERS_HANDLE, SIGNING_SECRET
from tests.labkit import LabInfo, reset_vm, run_lab

REPO = Path(__file__).resolve().parents[2]
BOT_BIN = REPO / ".venv" / "bin" / "migrate-bot"
START_TIMEOUT_S = 30.0


@dataclass
class BotProcess:
    """A running `migrate-bot serve` (stopped by its PID)."""

    transport: str  # "http" | "socket"
    process: subprocess.Popen[bytes]
    log_path: Path
    db_url: str
    app_url: str | None  # http://127.0.0.1:<port> in HTTP mode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def assert_alive(self) -> None:
        assert self.process.poll() is None, f"the bot exited ({self.process.returncode}):\n{self.log_tail()}"


def bot_env(fake: FakeSlack, lab: LabInfo, *, transport: str, db_url: str, port: int | None, replica: str,
            **extra: str) -> dict[str, str]:
    """The bot's environment: the fake's URL and tokens, the lab inventory, a private database."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MIGRATE_BOT_"))}
    env = {
        **base,
        **fake.env(SIGNING_SECRET),
        "MIGRATE_BOT_HOSTS": str(lab.hosts_toml),
        "MIGRATE_BOT_DB": db_url,
        "MIGRATE_BOT_APPROVER_GROUP": APPROVERS_HANDLE,
        "MIGRATE_BOT_DIRTY_RATE_WINDOW": "1s",
        "MIGRATE_BOT_MODE": transport,
        "MIGRATE_BOT_RATE_LIMIT": "1000",  # many requests by the same seeded user in one module
        "MIGRATE_BOT_REPLICA_ID": replica,
        "MIGRATE_BOT_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    if port is not None:
        env["MIGRATE_BOT_PORT"] = str(port)
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _socket_connected(fake: FakeSlack) -> bool:
    """The fake holds an open Socket Mode connection (the bot called apps.connections.open and connected)."""
    try:
        with urllib.request.urlopen(fake.base_url + "/_test/state", timeout=2) as resp:
            state = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return any(c.get("closed_t") is None for c in state.get("connections", []))


def start_bot(fake: FakeSlack, lab: LabInfo, workdir: Path, transport: str, **extra_env: str) -> BotProcess:
    """Start `migrate-bot serve` and wait until it serves (HTTP: /healthz answers; Socket Mode: the fake holds
    its connection). Needs a seeded fake with no other app connected."""
    workdir.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{workdir / 'bot.db'}"
    port = _free_port() if transport == "http" else None
    env = bot_env(fake, lab, transport=transport, db_url=db_url, port=port, replica=workdir.name, **extra_env)
    log_path = workdir / "bot.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen([str(BOT_BIN), "serve"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    bot = BotProcess(transport, process, log_path, db_url, f"http://127.0.0.1:{port}" if port else None)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise AssertionError(f"migrate-bot serve exited with {process.returncode}:\n{bot.log_tail()}")
        if bot.app_url is not None and _healthy(bot.app_url):
            return bot
        if bot.app_url is None and _socket_connected(fake):
            return bot
        if time.monotonic() > deadline:
            bot.stop()
            raise AssertionError(f"migrate-bot serve did not come up in {START_TIMEOUT_S:g} s:\n{bot.log_tail()}")
        time.sleep(0.1)


class BotFactory(Protocol):
    """The `bot_factory` fixture: start(transport, **extra_env) -> a running bot (stopped after the module)."""

    def __call__(self, transport: str, **extra_env: str) -> BotProcess: ...


def wait_lab_usable(lab: LabInfo, timeout_s: float = 240.0) -> None:
    """Wait (bounded) until both lab daemons run and the migration link is up: other suites cut the link
    and kill daemons on the shared lab for a while; a migration test started then proves nothing."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = json.loads(run_lab(lab, "status", "--json"))
        hosts = status.get("hosts", {})
        ok = bool(hosts) and all(h.get("running") and h.get("link", {}).get("admin_up") for h in hosts.values())
        if ok:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the lab stayed unusable for {timeout_s:g} s (link down or daemon dead): {hosts}")
        time.sleep(1.0)


async def fresh_vm(lab: LabInfo, vm: str) -> None:
    """Once the lab is usable, put `vm` back as `lab up` made it (running on hostA)."""

    def run() -> None:
        wait_lab_usable(lab)
        reset_vm(lab, vm)

    await asyncio.to_thread(run)


@asynccontextmanager
async def open_store(bot: BotProcess) -> AsyncIterator[Store]:
    store = await Store.open(bot.db_url)
    try:
        yield store
    finally:
        await store.close()
