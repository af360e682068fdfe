"""End-to-end fixtures: `migrate-bot serve` as a real separate process, pointed at the fake Slack and the lab.

One bot process per transport per module (`bot_http`, `bot_socket`, or `bot_factory(transport, **env)`), one
SQLite database per process; the fake Slack is reset and re-seeded before every test by the `fake_slack`
fixture (support.connected_user waits until a Socket Mode bot has reconnected after that reset). A failed
test's report carries what the fake shows and the bot's log.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.e2e.botproc import BotFactory, BotProcess, start_bot
from tests.fakeslack import FakeSlack
from tests.fixtures.slack import DEFAULT_WORKSPACE
from tests.labkit import LabInfo

_RUNNING: list[BotProcess] = []  # for failure reports


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed e2e test shows the bot's own log (what it did and why), not only the test's traceback."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _RUNNING:
        report.sections.append(("what the fake Slack shows", _fake_summary(item)))
        for bot in _RUNNING:
            if bot.process.poll() is None or report.when == "call":
                report.sections.append((f"migrate-bot ({bot.transport}) log tail", bot.log_tail(80)))


def _fake_summary(item: pytest.Item) -> str:
    """Messages (with edit counts) and ephemerals the fake holds, one line each, for a failure report."""
    fake = item.funcargs.get("fake_slack") if hasattr(item, "funcargs") else None
    if not isinstance(fake, FakeSlack):
        return "(no fake Slack in this test)"
    try:
        with urllib.request.urlopen(fake.base_url + "/_test/state", timeout=5) as resp:
            state = json.loads(resp.read())
    except (OSError, ValueError) as err:
        return f"(could not read the fake's state: {err})"
    lines = [f"msg {m['ts']} thread={m.get('thread_ts')} edits={m['edits']}: {m['text'][:160]!r}"
             for m in state.get("messages", [])]
    lines += [f"ephemeral to {e['user']}: {e['text'][:160]!r}" for e in state.get("ephemerals", [])]
    return "\n".join(lines) or "(nothing)"


@pytest.fixture(scope="module")
def bot_factory(fake_slack_server: FakeSlack, lab: LabInfo,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotFactory]:
    """start(transport, **env) -> BotProcess; every process started is stopped (by its PID) after the module."""
    started: list[BotProcess] = []

    def start(transport: str, **extra_env: str) -> BotProcess:
        workdir = tmp_path_factory.mktemp(f"bot-{transport}")
        fake_slack_server.reset_sync()  # a clean, seeded workspace for the bot's first calls
        fake_slack_server.seed_sync(DEFAULT_WORKSPACE)
        bot = start_bot(fake_slack_server, lab, workdir, transport, **extra_env)
        started.append(bot)
        _RUNNING.append(bot)
        return bot

    yield start
    for bot in started:
        bot.stop()
        _RUNNING.remove(bot)


@pytest.fixture(scope="module")
def bot_http(bot_factory: BotFactory) -> BotProcess:
    return bot_factory("http")


@pytest.fixture(scope="module")
def bot_socket(bot_factory: BotFactory) -> BotProcess:
    return bot_factory("socket")
