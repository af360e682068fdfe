"""/migrate listener at unit level: ack first, ephemeral answers, one card per request, idempotency.

The listener talks to the real MigrationService on the in-memory fleet (tests/bot/fleet_service.py), on
virtual time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.settings import Settings
from handlers import commands
from handlers.deps import Deps
from handlers.progress import SlackProgressSink
from migration_core.errors import PolicyError
from migration_core.events import RecordingSink
from tests.bot.factories import T0
from tests.bot.fleet_service import FleetService, open_fleet_service
from tests.handlers.fakes import FakeBoltApp, Recorder, RecordingClient, settle

pytestmark = pytest.mark.virtual_time


async def _approver(user: str) -> bool:
    return user in ("U0BOB", "U0CAROL")


@pytest.fixture
async def fleet() -> AsyncIterator[FleetService]:
    fs = await open_fleet_service(RecordingSink(), _approver)
    yield fs
    await fs.close()


def setup(fleet: FleetService, **settings: Any):
    service = fleet.service
    client = RecordingClient()
    sink = SlackProgressSink(client, service, now=lambda: T0)
    deps = Deps(
        service=service,
        now=lambda: T0,
        settings=Settings(**settings),
        approver_check=_approver,
        progress=sink,
    )
    app = FakeBoltApp()
    commands.register(app, deps)
    return app.commands["/migrate"], service, client


def body(text: str, user: str = "U0ALICE", trigger: str = "111.222.abc") -> dict[str, Any]:
    return {"team_id": "T1", "user_id": user, "channel_id": "C0OPS", "text": text, "trigger_id": trigger}


async def call(listener, b, client):
    log: list[tuple[str, dict[str, Any]]] = []
    ack, respond = Recorder(log, "ack"), Recorder(log, "respond")
    await listener(ack=ack, body=b, respond=respond, client=client)
    return ack, respond, log


async def test_grammar_error_is_acked_ephemerally_with_the_hint(fleet: FleetService):
    listener, service, client = setup(fleet)
    ack, respond, _ = await call(listener, body("vm42 too hostB"), client)
    assert len(ack.calls) == 1 and ack.calls[0]["response_type"] == "ephemeral"
    assert "⚠️" in ack.calls[0]["text"]
    assert respond.calls == [] and await service.history() == [] and client.calls == []


async def test_help_is_the_ack(fleet: FleetService):
    listener, _, client = setup(fleet)
    ack, respond, _ = await call(listener, body("help"), client)
    assert "/migrate &lt;vm&gt; to &lt;host&gt; [options]" in ack.text() and respond.calls == []


async def test_request_acks_first_then_posts_one_card_and_remembers_it(fleet: FleetService):
    listener, service, client = setup(fleet)
    _ack, respond, log = await call(listener, body("vm42 to hostB --reason CHG-9"), client)
    assert log[0][0] == "ack" and "Checking vm42 → hostB" in log[0][1]["text"]
    (card,) = client.of("chat_postMessage")
    assert card["channel"] == "C0OPS" and card["text"].startswith("Approval needed: migrate vm42")
    actions = [b for b in card["blocks"] if b["type"] == "actions"]
    assert actions[0]["block_id"] == "approval:1"
    job = await service.get_job(1)
    assert (job.chat.channel, job.chat.thread) == ("C0OPS", card["_ts"])
    keyed = await service.store.find_by_idempotency_key("slack:T1:111.222.abc")
    assert keyed is not None and keyed.id == 1
    assert respond.calls == []


async def test_duplicate_delivery_posts_a_single_card(fleet: FleetService):
    listener, service, client = setup(fleet)
    b = body("vm42 to hostB")
    results = await asyncio.gather(call(listener, b, client), call(listener, dict(b), client))
    await settle()
    assert len(client.of("chat_postMessage")) == 1
    assert len(await service.history()) == 1
    responds = [r for _, r, _ in results]
    assert sum("Already requested: job #1" in r.text() for r in responds) == 1


async def test_refusal_from_the_service_goes_back_ephemerally(fleet: FleetService):
    listener, service, client = setup(fleet)

    async def refuse(*a: Any, **k: Any):
        raise PolicyError("you made 30 migration requests in the last hour (limit 30); try again in 12 min")

    service.submit = refuse  # type: ignore[method-assign]
    _, respond, _ = await call(listener, body("vm42 to hostB"), client)
    assert "try again in 12 min" in respond.text() and respond.calls[0]["response_type"] == "ephemeral"
    assert client.calls == []


async def test_unexpected_error_gets_a_reference_not_a_traceback(fleet: FleetService):
    listener, service, client = setup(fleet)

    async def boom(*a: Any, **k: Any):
        raise RuntimeError("secret internals")

    service.hosts = boom  # type: ignore[method-assign]
    _, respond, _ = await call(listener, body("hosts"), client)
    text = respond.text()
    assert "error reference ERR-" in text and "secret internals" not in text


async def test_plan_status_history_hosts_cancel_answer_ephemerally(fleet: FleetService):
    listener, _service, client = setup(fleet)
    await call(listener, body("vm42 to hostB"), client)
    for text, needle in [
        ("plan vm42 to hostB", "Plan: live migration of vm42"),
        ("status 1", "Change request: live migration of vm42"),
        ("status vm42", "Waiting for approval"),
        ("status nosuchvm", "No migration of `nosuchvm` on record"),
        ("status", "Active migrations"),
        ("history", "#1"),
        ("hosts", "hostA"),
        ("status 99", "there is no job #99"),
    ]:
        _, respond, _ = await call(listener, body(text), client)
        assert needle in respond.text(), (text, respond.text()[:500])
        assert all(c["response_type"] == "ephemeral" for c in respond.calls)
    _, respond, _ = await call(listener, body("cancel 1", user="U0EVE"), client)
    assert "only the requester" in respond.text()
    _, respond, _ = await call(listener, body("cancel 1"), client)
    assert "Job #1 withdrawn (aborted)" in respond.text()


async def test_card_blocks_in_the_post_are_valid_json(fleet: FleetService):
    listener, _, client = setup(fleet)
    await call(listener, body("vm42 to hostB"), client)
    json.dumps(client.of("chat_postMessage")[0]["blocks"])


def test_idempotency_key_prefers_trigger_id_and_falls_back_to_a_minute_window():
    b = body("vm42 to hostB")
    assert commands.idempotency_key(b) == "slack:T1:111.222.abc"
    no_trigger = {k: v for k, v in b.items() if k != "trigger_id"}
    k1 = commands.idempotency_key(no_trigger, now_s=600.0)
    assert k1 == commands.idempotency_key(no_trigger, now_s=659.0)
    assert k1 != commands.idempotency_key(no_trigger, now_s=660.0)
    assert k1 != commands.idempotency_key({**no_trigger, "user_id": "U0BOB"}, now_s=600.0)


async def test_drain_dry_run_and_to_any_answer_ephemerally(fleet: FleetService):
    listener, service, client = setup(fleet)
    ack, respond, _ = await call(listener, body("plan drain hostA"), client)
    assert "Planning the drain of hostA" in ack.calls[0]["text"]
    assert "Dry run: drain hostA" in respond.text() and "Left behind" in respond.text()
    assert all(c["response_type"] == "ephemeral" for c in respond.calls)
    ack, respond, _ = await call(listener, body("plan vm42 to any"), client)
    assert "Finding a host for vm42" in ack.calls[0]["text"] and "*Placement*" in respond.text()
    _, respond, _ = await call(listener, body("plan brokenvm"), client)  # hostB cannot run its CPU model
    assert "No host can take brokenvm" in respond.text()
    assert await service.history() == [] and client.calls == []  # dry runs: nothing posted, nothing created


async def test_vm_to_any_requests_the_move_to_the_chosen_host(fleet: FleetService):
    listener, service, client = setup(fleet)
    _, respond, _ = await call(listener, body("vm42 to any"), client)
    assert "vm42 goes to hostB: the only host that can take it" in respond.text()
    assert "⚠️" not in respond.calls[0]["text"]  # where the VM goes is news, not a warning
    (job,) = await service.history()
    assert (job.vm, job.destination) == ("vm42", "hostB")
    assert len(client.of("chat_postMessage")) == 1  # its card, in the channel


async def test_status_with_nothing_active_names_the_newest_job_as_the_console_does(fleet: FleetService):
    listener, _service, client = setup(fleet)
    await call(listener, body("vm42 to hostB"), client)
    await call(listener, body("cancel 1"), client)
    _, respond, _ = await call(listener, body("status"), client)
    assert "Nothing active." in respond.text() and "latest:" in respond.text() and "#1" in respond.text()


class _Request:
    def __init__(self, headers: dict[str, Any]) -> None:
        self.headers = headers


def test_retry_num_reads_slacks_header_in_both_transports():
    assert commands.retry_num(None) == 0
    assert commands.retry_num(_Request({})) == 0
    assert commands.retry_num(_Request({"x-slack-retry-num": ["2"]})) == 2  # Bolt's normalised headers
    assert commands.retry_num(_Request({"x-slack-retry-num": "1"})) == 1
    assert commands.retry_num(_Request({"x-slack-retry-num": ["x"]})) == 0


async def test_a_retry_of_a_delivery_already_taken_is_acked_silently(fleet: FleetService):
    """Issue 13 §5: Slack's retry (same trigger_id, X-Slack-Retry-Num) must not answer the person twice."""
    listener, service, client = setup(fleet)
    b = body("vm42 to hostB")
    log: list[tuple[str, dict[str, Any]]] = []
    first_ack, first_respond = Recorder(log, "ack"), Recorder(log, "respond")
    await listener(ack=first_ack, body=b, respond=first_respond, client=client)
    retry_ack, retry_respond = Recorder(log, "ack"), Recorder(log, "respond")
    await listener(ack=retry_ack, body=b, respond=retry_respond, client=client,
                   request=_Request({"x-slack-retry-num": ["1"]}))
    await settle()
    assert "Checking" in first_ack.calls[0]["text"]
    assert retry_ack.calls == [{}] and retry_respond.calls == []  # an empty ack, nothing more
    assert len(await service.history()) == 1 and len(client.of("chat_postMessage")) == 1
    # A retry whose first delivery never arrived here is answered like a first delivery.
    other = body("busy to hostB", trigger="333.444.def")
    ack, respond = Recorder(log, "ack"), Recorder(log, "respond")
    await listener(ack=ack, body=other, respond=respond, client=client, request=_Request({"x-slack-retry-num": ["1"]}))
    await settle()
    assert "Checking" in ack.calls[0]["text"] and len(await service.history()) == 2
