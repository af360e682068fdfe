"""Fixtures of the security tests: a factory of real `migrate-bot serve` processes pointed at the fake Slack."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakeslack import FakeSlack
from tests.fixtures.slack import APPROVERS_HANDLE, SIGNING_SECRET
from tests.security.botproc import BotProcess, unreachable_inventory

StartBot = Callable[..., BotProcess]


@pytest.fixture
def start_bot(tmp_path: Path, fake_slack: FakeSlack) -> Iterator[StartBot]:
    """start_bot(env=None, *, hosts=None, db=None, metrics=False, signing_secret=SIGNING_SECRET) -> BotProcess.

    Defaults: HTTP mode on 127.0.0.1, the fake Slack's tokens, approvers = the fake's approver group (bob,
    carol), an inventory of unreachable hosts (no migration can start), SQLite in tmp_path. Every process
    started is stopped (by its PID) after the test.
    """
    started: list[BotProcess] = []

    def start(
        env: dict[str, str] | None = None,
        *,
        hosts: Path | str | None = None,
        db: str | None = None,
        metrics: bool = False,
        signing_secret: str = SIGNING_SECRET,
        wait: bool = True,
        nofile: int | None = None,
    ) -> BotProcess:
        full = {
            **fake_slack.env(signing_secret),
            "MIGRATE_BOT_HOSTS": str(hosts or unreachable_inventory(tmp_path)),
            "MIGRATE_BOT_DB": db or f"sqlite:///{tmp_path / 'bot.db'}",
            "MIGRATE_BOT_APPROVER_GROUP": APPROVERS_HANDLE,
            **(env or {}),
        }
        log = tmp_path / f"bot-{len(started)}.log"
        bot = BotProcess.start(full, log, metrics=metrics, wait=wait, nofile=nofile)
        started.append(bot)
        return bot

    yield start
    for bot in started:
        bot.stop()
