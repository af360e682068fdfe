"""handlers.answer: each command type answered once, the same words for Slack and the console.

Against the real MigrationService on the in-memory fleet (virtual time); the two dialects only differ inline.
"""

from __future__ import annotations

import pytest

from bot.console_render import render_plain
from handlers.answer import AnswerContext, Show, answer, creates, working_text
from handlers.blocks.ir import CONSOLE, SLACK, Dialect, Message
from handlers.blocks.slack import fallback_text
from migration_core.errors import MigrateBotError
from migration_core.events import RecordingSink
from migration_core.grammar.parser import parse_command
from migration_core.models import JobState, MigrationRequest
from migration_core.service import MigrationService
from tests.bot.fleet_service import open_fleet_service

pytestmark = pytest.mark.virtual_time

READS = [
    "help",
    "plan vm42 to hostB",
    "plan drain hostA",
    "plan vm42 to any",
    "status",
    "status 1",
    "status vm42",
    "status nosuchvm",
    "history",
    "history vm42",
    "hosts",
    "freezes",
]
CREATES = ["vm42 to hostB", "drain hostA", "vm42 to any", "return hostA"]


async def _allow(_user: str) -> bool:
    return True


def _ctx(service: MigrationService, d: Dialect, *, details: bool = False, key: str | None = None) -> AnswerContext:
    return AnswerContext(service, "alice", d, 1800.0, channel="C1", host_details=details, idempotency_key=key)


async def _with_one_job(service: MigrationService) -> None:
    job = await service.submit(MigrationRequest("vm42", "hostB"), "alice")
    assert job.state is JobState.AWAITING_APPROVAL


@pytest.mark.parametrize("text", CREATES)
def test_requests_that_create_a_job_or_drain_are_known_and_say_they_are_working(text: str) -> None:
    cmd = parse_command(text)
    assert creates(cmd) and working_text(cmd)


@pytest.mark.parametrize("text", READS)
def test_reads_create_nothing(text: str) -> None:
    assert not creates(parse_command(text))


async def test_every_read_is_answered_in_both_dialects_with_the_same_fallback() -> None:
    async with await open_fleet_service(RecordingSink(), _allow) as service:
        await _with_one_job(service)
        for text in READS:
            cmd = parse_command(text)
            assert not creates(cmd), text
            slack = (await answer(cmd, _ctx(service, SLACK))).message
            console = (await answer(cmd, _ctx(service, CONSOLE))).message
            assert isinstance(slack, Message) and slack.parts, text
            assert slack.text == console.text, text  # the same words; only inline references differ
            assert fallback_text(slack) and render_plain(console), text


async def test_status_of_a_job_says_its_state_and_returns_the_job() -> None:
    async with await open_fleet_service(RecordingSink(), _allow) as service:
        await _with_one_job(service)
        result = await answer(parse_command("status vm42"), _ctx(service, CONSOLE))
    assert result.job is not None and result.job.id == 1
    text = render_plain(result.message)
    assert "live migration of vm42" in text and "Waiting for approval" in text


async def test_status_of_an_unknown_vm_says_so() -> None:
    async with await open_fleet_service(RecordingSink(), _allow) as service:
        result = await answer(parse_command("status nosuchvm"), _ctx(service, SLACK))
    assert "No migration of `nosuchvm` on record." in fallback_text(result.message)
    assert result.job is None


async def test_status_with_nothing_active_points_at_the_newest_job() -> None:
    async with await open_fleet_service(RecordingSink(), _allow) as service:
        job = await service.submit(MigrationRequest("vm42", "hostB"), "alice")
        await service.cancel(job.id, "alice")
        text = render_plain((await answer(parse_command("status"), _ctx(service, CONSOLE))).message)
    assert "Nothing active." in text and "latest:" in text and "#1 vm42" in text


async def test_hosts_hide_uris_and_errors_unless_host_details_are_allowed() -> None:
    async with await open_fleet_service(RecordingSink(), _allow) as service:
        hosts = await service.hosts()
        uris = [h.uri for h in hosts if h.uri]
        hidden = render_plain((await answer(parse_command("hosts"), _ctx(service, CONSOLE))).message)
        shown = render_plain((await answer(parse_command("hosts"), _ctx(service, CONSOLE, details=True))).message)
    assert uris, "the fleet's hosts have URIs"
    assert all(uri not in hidden for uri in uris)
    assert any(uri in shown for uri in uris)


async def test_history_names_its_subject() -> None:
    async with await open_fleet_service(RecordingSink(), _allow) as service:
        await _with_one_job(service)
        some = (await answer(parse_command("history vm42"), _ctx(service, SLACK))).message
        everything = (await answer(parse_command("history"), _ctx(service, SLACK))).message
    assert some.text.startswith("History of vm42: 1 job(s)")
    assert everything.text.startswith("History: 1 job(s)")


async def test_a_request_answers_with_the_jobs_card_once_per_idempotency_key() -> None:
    async with await open_fleet_service(RecordingSink(), _allow) as service:
        first = await answer(parse_command("vm42 to hostB"), _ctx(service, SLACK, key="k1"))
        again = await answer(parse_command("vm42 to hostB"), _ctx(service, SLACK, key="k1"))
        jobs = await service.history(None, 10)
    assert first.show is Show.CARD and first.job is not None and first.job.chat.channel == "C1"
    assert "Approval needed: migrate vm42 from hostA to hostB" in first.message.text
    assert again.job is not None and again.job.id == first.job.id and len(jobs) == 1  # a retry is one job


async def test_to_any_says_where_the_vm_goes_then_answers_with_the_card() -> None:
    async with await open_fleet_service(RecordingSink(), _allow) as service:
        result = await answer(parse_command("vm42 to any"), _ctx(service, CONSOLE))
    assert result.notes and result.notes[0].startswith("vm42 goes to hostB")
    assert result.show is Show.CARD and result.job is not None and result.job.destination == "hostB"


async def test_a_drain_request_answers_with_the_drains_card() -> None:
    async with await open_fleet_service(RecordingSink(), _allow, drain_host=True) as service:
        result = await answer(parse_command("drain hostC"), _ctx(service, SLACK))
    assert result.show is Show.CARD and result.drain is not None and result.job is None
    assert result.drain.ref == "D1" and result.drain.host == "hostC"


async def test_cancel_withdraws_the_job_and_asks_for_its_card_to_be_redrawn() -> None:
    async with await open_fleet_service(RecordingSink(), _allow) as service:
        await _with_one_job(service)
        result = await answer(parse_command("cancel 1"), _ctx(service, SLACK))
        job = await service.get_job(1)
    assert result.changed and result.show is Show.ASKER and result.job is not None and result.job.id == 1
    assert job.state.terminal and f"Job #1 withdrawn ({job.state.value})." in result.message.text


async def test_a_refused_request_raises_and_creates_nothing() -> None:
    async with await open_fleet_service(RecordingSink(), _allow) as service:
        await _with_one_job(service)
        with pytest.raises(MigrateBotError, match="vm42"):  # one active job per VM
            await answer(parse_command("vm42 to hostB"), _ctx(service, SLACK, key="other"))
        assert [j.id for j in await service.history(None, 10)] == [1]
