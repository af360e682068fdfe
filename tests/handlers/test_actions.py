"""Buttons and modals, unit level: the job comes from the block_id; the service authorises the clicker.

The buttons talk to the real MigrationService on the in-memory fleet (tests/bot/fleet_service.py), on
virtual time: an approved job is started by the real dispatcher.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.settings import Settings
from handlers import actions
from handlers.blocks.modals import ModalTarget
from handlers.deps import Deps
from handlers.progress import SlackProgressSink
from migration_core.events import RecordingSink
from migration_core.models import JobState, MigrationOptions, MigrationRequest
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


async def setup(
    fleet: FleetService, *, vm: str = "vm42", postcopy: bool = False, approve_with: tuple[str, ...] = ()
):
    service = fleet.service
    client = RecordingClient()
    sink = SlackProgressSink(client, service, now=lambda: T0)
    deps = Deps(service=service, now=lambda: T0, settings=Settings(), approver_check=_approver, progress=sink)
    app = FakeBoltApp()
    actions.register(app, deps)
    job = await service.submit(MigrationRequest(vm, "hostB", MigrationOptions(postcopy=postcopy)), "U0ALICE")
    await service.set_chat_refs(job.id, channel="C0OPS", thread="1714564800.000100")
    for user in approve_with:
        await service.approve(job.id, user)
    if approve_with:
        await asyncio.sleep(3)  # the dispatcher starts the approved job within a tick
        assert (await service.get_job(job.id)).state is JobState.RUNNING
    return app, service, client


def click(action_id: str, user: str, job_id: int = 1, block: str | None = None, value: str | None = None):
    block = block or (f"approval:{job_id}" if action_id in ("approve", "deny") else f"controls:{job_id}")
    return {
        "type": "block_actions",
        "user": {"id": user},
        "trigger_id": "4916855695380.xxx.yyy",
        "container": {"channel_id": "C0OPS", "message_ts": "1714564800.000100"},
        "actions": [{"action_id": action_id, "block_id": block, "value": value or str(job_id)}],
    }


async def press(app, action_id: str, body: dict[str, Any], client):
    ack, respond = Recorder(), Recorder()
    await app.actions[action_id](ack=ack, body=body, respond=respond, client=client)
    await settle()
    await asyncio.sleep(1)  # virtual: the card refresh reads the store (a worker thread) before it edits
    assert len(ack.calls) == 1  # always acked, exactly once
    return respond


@pytest.mark.parametrize(
    ("block", "value", "expected"),
    [
        ("approval:7", "7", 7),
        ("controls:12", "12", 12),
        ("approval:7", None, 7),
        ("approval:7", "8", None),  # the value disagrees with the block: refuse to guess
        ("approval:x", "7", None),
        ("deploy:7", "7", None),
        ("", "7", None),
    ],
)
def test_job_id_of(block, value, expected):
    body = {"actions": [{"block_id": block, **({"value": value} if value is not None else {})}]}
    assert actions.job_id_of(body) == expected


def test_job_id_of_malformed_payloads():
    for body in ({}, {"actions": []}, {"actions": [None]}, {"actions": "x"}):
        assert actions.job_id_of(body) is None


async def test_self_approval_is_refused_ephemerally_and_changes_nothing(fleet: FleetService):
    app, service, client = await setup(fleet)
    respond = await press(app, "approve", click("approve", "U0ALICE"), client)
    assert "you requested this; another approver must approve it" in respond.text()
    assert respond.calls[0]["replace_original"] is False and respond.calls[0]["response_type"] == "ephemeral"
    assert (await service.get_job(1)).state is JobState.AWAITING_APPROVAL


async def test_approval_moves_the_job_and_refreshes_the_card(fleet: FleetService):
    app, service, client = await setup(fleet)
    respond = await press(app, "approve", click("approve", "U0BOB"), client)
    assert respond.calls == []
    assert (await service.get_job(1)).approvers == ("U0BOB",)
    edits = [kw for kw in client.of("chat_update") if kw["ts"] == "1714564800.000100"]
    assert edits and "approval:1" not in json.dumps(edits[-1]["blocks"])  # buttons gone


async def test_second_click_answers_already_approved(fleet: FleetService):
    app, service, client = await setup(fleet)
    await press(app, "approve", click("approve", "U0BOB"), client)
    respond = await press(app, "approve", click("approve", "U0CAROL"), client)
    assert "already approved by <@U0BOB>" in respond.text()
    assert (await service.get_job(1)).approvers == ("U0BOB",)


async def test_partial_approval_of_a_risky_plan_is_announced_in_the_thread(fleet: FleetService):
    app, service, client = await setup(fleet, postcopy=True)
    await press(app, "approve", click("approve", "U0BOB"), client)
    replies = [kw for kw in client.of("chat_postMessage") if kw.get("thread_ts") == "1714564800.000100"]
    assert any("1 more approval(s) needed" in r["text"] for r in replies)
    assert (await service.get_job(1)).state is JobState.AWAITING_APPROVAL


async def test_a_forged_value_is_not_trusted(fleet: FleetService):
    app, service, client = await setup(fleet)
    respond = await press(app, "approve", click("approve", "U0BOB", block="approval:1", value="2"), client)
    assert "does not belong to a migration card" in respond.text()
    assert (await service.get_job(1)).approvers == ()


async def test_stranger_cannot_deny(fleet: FleetService):
    app, service, client = await setup(fleet)
    respond = await press(app, "deny", click("deny", "U0EVE"), client)
    assert "only approvers" in respond.text() and (await service.get_job(1)).state is JobState.AWAITING_APPROVAL


async def test_abort_by_requester_and_refusal_for_a_stranger(fleet: FleetService):
    app, service, client = await setup(fleet, vm="slowvm", approve_with=("U0BOB",))
    respond = await press(app, "abort", click("abort", "U0EVE"), client)
    assert "only the requester (<@U0ALICE>) or an approver" in respond.text()
    respond = await press(app, "abort", click("abort", "U0ALICE"), client)
    assert "abort of job 1 requested" in respond.text()
    assert (await service.wait(1, timeout_s=60)).state is JobState.ABORTED


async def test_downtime_button_opens_the_modal_only_for_controllers(fleet: FleetService):
    app, _service, client = await setup(fleet, vm="slowvm", approve_with=("U0BOB",))
    respond = await press(app, "downtime", click("downtime", "U0EVE"), client)
    assert "only the requester" in respond.text() and client.of("views_open") == []
    await press(app, "downtime", click("downtime", "U0CAROL"), client)
    (opened,) = client.of("views_open")
    assert opened["trigger_id"] == "4916855695380.xxx.yyy" and opened["view"]["callback_id"] == "set_downtime"
    assert ModalTarget.load(opened["view"]["private_metadata"]).job_id == 1


async def test_buttons_on_a_job_that_is_not_running_explain_why(fleet: FleetService):
    app, _, client = await setup(fleet)
    respond = await press(app, "bandwidth", click("bandwidth", "U0BOB"), client)
    assert "not running" in respond.text() and client.of("views_open") == []


def submission(value: str | None, user: str = "U0BOB", metadata: str | None = None) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "user": {"id": user},
        "view": {
            "callback_id": "set_downtime",
            "private_metadata": metadata if metadata is not None else ModalTarget(1, "C0OPS").dump(),
            "state": {"values": {"value": {"value_input": {"type": "plain_text_input", "value": value}}}},
        },
    }


@pytest.mark.parametrize(
    ("value", "user", "metadata", "error"),
    [
        ("", "U0BOB", None, "enter a max downtime"),
        ("fast", "U0BOB", None, "bad duration"),
        ("0", "U0BOB", None, "max downtime takes 1 ms to 60 s"),
        ("500", "U0BOB", "{}", "lost track of its job"),
        ("500", "U0BOB", "not json", "lost track of its job"),
        ("500", "U0EVE", None, "only the requester"),
    ],
)
async def test_modal_errors_keep_it_open(fleet: FleetService, value, user, metadata, error):
    app, _, client = await setup(fleet, vm="slowvm", approve_with=("U0BOB",))
    ack = Recorder()
    await app.views["set_downtime"](ack=ack, body=submission(value, user, metadata), client=client)
    (answer,) = ack.calls
    assert answer["response_action"] == "errors" and error in answer["errors"]["value"]


async def test_valid_modal_value_is_applied_and_closes_the_modal(fleet: FleetService):
    app, service, client = await setup(fleet, vm="slowvm", approve_with=("U0BOB",))
    seen: list[tuple[int, int, str]] = []
    original = service.set_max_downtime

    async def record(job_id: int, ms: int, actor: str):
        seen.append((job_id, ms, actor))
        return await original(job_id, ms, actor)

    service.set_max_downtime = record  # type: ignore[method-assign]
    ack = Recorder()
    await app.views["set_downtime"](ack=ack, body=submission("1.5s"), client=client)
    assert ack.calls == [{}] and seen == [(1, 1500, "U0BOB")]
