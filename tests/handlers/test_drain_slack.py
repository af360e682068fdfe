"""Drains in Slack, unit level: `/migrate drain` → one card; the buttons (bound to the drain and its plan hash);
the drain's thread (one roll-up edited in place, a line per VM, a broadcast summary); cancel; bad input.

The listeners talk to the real MigrationService on the in-memory fleet with a third host, hostC, holding web1..web3
(tests/bot/fleet_service.py), on virtual time; Slack is a recording Web API client that also notes the (virtual)
time of every call, so the roll-up's edit rhythm can be checked.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from bot.settings import Settings
from handlers import actions, commands, drain_actions
from handlers.blocks.drain_card import APPROVE_DRAIN, DENY_DRAIN
from handlers.deps import Deps
from handlers.drain_progress import SlackDrainSink
from handlers.home import publish_home
from handlers.progress import SlackProgressSink
from migration_core.drains import DrainState, MoveOutcome
from migration_core.events import FanoutSink
from migration_core.models import JobState
from tests.bot.factories import T0
from tests.bot.fleet_service import DRAIN_VMS, FleetService, open_fleet_service
from tests.handlers.fakes import FakeBoltApp, Recorder, RecordingClient, settle, slack_error

pytestmark = pytest.mark.virtual_time

CHANNEL = "C0OPS"


async def _approver(user: str) -> bool:
    return user in ("U0BOB", "U0CAROL")


class TimedClient(RecordingClient):
    """RecordingClient that also remembers the loop's (virtual) time of each post and edit."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    async def chat_postMessage(self, **kw: Any) -> dict[str, Any]:
        resp = await super().chat_postMessage(**kw)
        self.times.append(asyncio.get_running_loop().time())
        return resp

    async def chat_update(self, **kw: Any) -> dict[str, Any]:
        resp = await super().chat_update(**kw)
        self.times.append(asyncio.get_running_loop().time())
        return resp

    def timed(self) -> list[tuple[float, str, dict[str, Any]]]:
        calls = [(m, kw) for m, kw in self.calls if m in ("chat_postMessage", "chat_update")]
        return [(t, m, kw) for t, (m, kw) in zip(self.times, calls, strict=True)]


class Switch:
    """A sink that forwards to whichever drain sink is current (a bot restart replaces it)."""

    def __init__(self, target: SlackDrainSink) -> None:
        self.target = target

    async def emit(self, event: Any) -> None:
        await self.target.emit(event)


@dataclass
class Rig:
    fs: FleetService
    client: TimedClient
    app: FakeBoltApp
    switch: Switch

    @property
    def drains(self) -> SlackDrainSink:
        return self.switch.target

    @property
    def service(self) -> Any:
        return self.fs.service


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    fan = FanoutSink()
    fs = await open_fleet_service(fan, _approver, drain_host=True)
    client = TimedClient()
    jobs = SlackProgressSink(client, fs.service, now=lambda: T0)
    drains = SlackDrainSink(client, fs.service, now=lambda: T0)
    switch = Switch(drains)
    fan.add(jobs)
    fan.add(switch)
    deps = Deps(
        service=fs.service, now=lambda: T0, settings=Settings(), approver_check=_approver, progress=jobs, drains=drains
    )
    app = FakeBoltApp()
    commands.register(app, deps)
    drain_actions.register(app, deps)
    actions.register(app, deps)
    yield Rig(fs, client, app, switch)
    await switch.target.aclose()
    await jobs.aclose()
    await fs.close()


def body(text: str, user: str = "U0ALICE", trigger: str = "111.222.abc") -> dict[str, Any]:
    return {"team_id": "T1", "user_id": user, "channel_id": CHANNEL, "text": text, "trigger_id": trigger}


async def slash(rig: Rig, text: str, user: str = "U0ALICE") -> tuple[Recorder, Recorder]:
    ack, respond = Recorder(), Recorder()
    trigger = f"t-{text}-{user}-{len(rig.client.calls)}"
    await rig.app.commands["/migrate"](ack=ack, body=body(text, user, trigger), respond=respond, client=rig.client)
    await settle()
    assert len(ack.calls) == 1  # always acked, exactly once
    return ack, respond


def click(action_id: str, user: str, block: str, value: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": user},
        "trigger_id": "4916855695380.xxx.yyy",
        "container": {"channel_id": CHANNEL, "message_ts": "1714565000.000001"},
        "actions": [{"action_id": action_id, "block_id": block, "value": value}],
    }


async def press(rig: Rig, action_id: str, payload: dict[str, Any]) -> Recorder:
    ack, respond = Recorder(), Recorder()
    await rig.app.actions[action_id](ack=ack, body=payload, respond=respond)  # what the listener declares
    await settle()
    await asyncio.sleep(1)  # virtual: the card refresh reads the store before it edits
    assert len(ack.calls) == 1
    return respond


def buttons(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for block in card["blocks"]:
        if block["type"] == "actions":
            for el in block["elements"]:
                out[el["action_id"]] = {**el, "block_id": block["block_id"]}
    return out


def real_click(card: dict[str, Any], action_id: str, user: str) -> dict[str, Any]:
    """The payload Slack sends when `user` clicks that button of that card (block_id and value as rendered)."""
    b = buttons(card)[action_id]
    return click(action_id, user, b["block_id"], b["value"])


async def request_drain(rig: Rig, text: str = "drain hostC --reason CHG-7") -> dict[str, Any]:
    ack, respond = await slash(rig, text)
    assert "Planning the drain of hostC" in ack.calls[0]["text"], ack.text()
    assert respond.calls == [], respond.text()
    (card,) = rig.client.of("chat_postMessage")
    return card


async def idle(rig: Rig) -> None:
    for _ in range(200):
        await settle()
        if not rig.drains.pending():
            return
        await asyncio.sleep(0.5)
    raise AssertionError("the drain sink did not finish its Slack work")


async def test_drain_command_posts_one_card_with_moves_left_behind_eta_and_bound_buttons(rig: Rig):
    card = await request_drain(rig)
    drain = await rig.service.get_drain(1)
    assert drain.state is DrainState.AWAITING_APPROVAL and drain.requester == "U0ALICE"
    assert (drain.chat.channel, drain.chat.thread) == (CHANNEL, card["_ts"])  # the sink edits this message
    text = json.dumps(card["blocks"], ensure_ascii=False)
    assert card["text"] == "Approval needed: Drain of hostC (D1), 3 move(s)"
    for m in drain.plan.moves:
        assert m.vm in text and m.destination in text
    assert set(DRAIN_VMS) == {m.vm for m in drain.plan.moves}
    assert "predicted" in text and "wave" in text and "ETA" in text and drain.plan.hash in text
    assert "needs 2 more approvals" in text and "(needs 2)" in text
    b = buttons(card)
    assert set(b) == {APPROVE_DRAIN, DENY_DRAIN}
    assert {x["block_id"] for x in b.values()} == {"drain_approval:1"}
    assert {x["value"] for x in b.values()} == {f"1:{drain.plan.hash}"}  # bound to the drain AND its plan
    assert await rig.service.history() == []  # no move job exists before the approval


async def test_two_approvers_run_the_drain_with_one_rollup_edited_in_place_lines_and_a_broadcast(rig: Rig):
    card = await request_drain(rig)
    thread = card["_ts"]
    respond = await press(rig, APPROVE_DRAIN, real_click(card, APPROVE_DRAIN, "U0BOB"))
    assert respond.calls == [], respond.text()
    drain = await rig.service.get_drain(1)
    assert drain.state is DrainState.AWAITING_APPROVAL and drain.approvers == ("U0BOB",)
    await idle(rig)
    edited = [kw for kw in rig.client.of("chat_update") if kw["ts"] == thread]
    assert edited and "U0BOB" in json.dumps(edited[-1]["blocks"])  # the card shows the approval
    replies = [kw for kw in rig.client.of("chat_postMessage") if kw.get("thread_ts") == thread]
    assert any("approved by U0BOB" in kw["text"] and "1 more" in kw["text"] for kw in replies)

    await press(rig, APPROVE_DRAIN, real_click(card, APPROVE_DRAIN, "U0CAROL"))
    status = await rig.service.wait_drain(1, timeout_s=3600)
    assert status.drain.state is DrainState.DONE, status.drain.detail
    await idle(rig)
    assert all(rig.fs.fleet.where(vm) in ("hostA", "hostB") for vm in DRAIN_VMS)

    posts = rig.client.of("chat_postMessage")
    # only the card goes to the channel itself; the move jobs post no cards or progress messages of their own
    assert [p for p in posts if "thread_ts" not in p] == [card]
    assert all(p["thread_ts"] == thread for p in posts[1:])
    rollups = [p for p in posts if p["text"].startswith("D1 running")]
    assert len(rollups) == 1, [p["text"] for p in posts]
    rollup_ts = rollups[0]["_ts"]
    assert (await rig.service.get_drain(1)).chat.progress == rollup_ts  # a restart edits the same message
    # the roll-up is edited in place, at least every 10 s (virtual) from its post to its final edit
    timed = [(t, kw) for t, m, kw in rig.client.timed() if kw.get("ts") == rollup_ts or kw.get("_ts") == rollup_ts]
    assert len(timed) >= 3, [kw.get("text") for _, kw in timed]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(timed)]
    assert max(gaps) <= 10.0, gaps
    final = timed[-1][1]
    assert final["text"].startswith("D1 done: 3 of 3 done")
    # a line per VM, then the summary broadcast to the channel
    for vm in DRAIN_VMS:
        lines = [p for p in posts if p["text"].startswith(f"✅ {vm} → host")]
        assert len(lines) == 1, (vm, [p["text"] for p in posts])
    summary = posts[-1]
    assert summary.get("reply_broadcast") is True and "3 of 3 moved" in summary["text"]
    assert sum(1 for p in posts if p.get("reply_broadcast")) == 1
    # the card ends "done" without buttons
    last_card = [kw for kw in rig.client.of("chat_update") if kw["ts"] == thread][-1]
    assert "Done" in json.dumps(last_card["blocks"]) and not buttons(last_card)
    for m in status.moves:
        assert m.outcome is MoveOutcome.SUCCEEDED and m.job is not None and m.job.chat.thread is None


async def test_forged_and_stale_drain_buttons_change_nothing(rig: Rig):
    card = await request_drain(rig)
    drain = await rig.service.get_drain(1)
    before = len(rig.client.of("chat_postMessage"))
    block = "drain_approval:1"
    cases = [
        (click(APPROVE_DRAIN, "U0BOB", block, "1:0123456789abcdef"), "this card shows plan `0123456789abcdef`"),
        (click(APPROVE_DRAIN, "U0BOB", block, f"2:{drain.plan.hash}"), "does not belong to a drain card"),
        (click(APPROVE_DRAIN, "U0BOB", "approval:1", f"1:{drain.plan.hash}"), "does not belong to a drain card"),
        (click(APPROVE_DRAIN, "U0BOB", block, "1"), "does not belong to a drain card"),
        (click(APPROVE_DRAIN, "U0BOB", "drain_approval:99", f"99:{drain.plan.hash}"), "99"),
        (real_click(card, APPROVE_DRAIN, "U0ALICE"), "you requested"),  # no self-approval
        (real_click(card, APPROVE_DRAIN, "U0MALLORY"), "approver"),  # not an approver
    ]
    for payload, said in cases:
        respond = await press(rig, APPROVE_DRAIN, payload)
        assert said in respond.text(), (payload["actions"], respond.text())
        assert respond.calls[0]["replace_original"] is False and respond.calls[0]["response_type"] == "ephemeral"
        now = await rig.service.get_drain(1)
        assert now.state is DrainState.AWAITING_APPROVAL and now.approvals == (), payload["actions"]
    # a denial, then a click on the card as it was (stale): refused, the drain stays denied
    await press(rig, DENY_DRAIN, real_click(card, DENY_DRAIN, "U0BOB"))
    assert (await rig.service.get_drain(1)).state is DrainState.DENIED
    respond = await press(rig, APPROVE_DRAIN, real_click(card, APPROVE_DRAIN, "U0CAROL"))
    assert "denied" in respond.text() or "nothing to approve" in respond.text(), respond.text()
    assert (await rig.service.get_drain(1)).state is DrainState.DENIED
    assert await rig.service.history() == []  # no move ever got a job
    await idle(rig)
    assert all(p.get("thread_ts") == card["_ts"] for p in rig.client.of("chat_postMessage")[before:])


async def test_cancel_mid_drain_says_which_move_is_which_in_the_thread_within_seconds(rig: Rig):
    rig.fs.fleet.vms["web3"].max_speed_mib_s = 1  # web3 never finishes on its own: it is in pre-copy at the cancel
    card = await request_drain(rig)
    for user in ("U0BOB", "U0CAROL"):
        await press(rig, APPROVE_DRAIN, real_click(card, APPROVE_DRAIN, user))
    for _ in range(600):
        status = await rig.service.drain_status(1)
        if any(m.vm == "web3" and m.outcome is MoveOutcome.RUNNING for m in status.moves):
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError("web3 never started")
    await asyncio.sleep(2)
    loop = asyncio.get_running_loop()
    asked = loop.time()
    _ack, respond = await slash(rig, "cancel D1", user="U0BOB")
    assert "D1 is being cancelled" in respond.text() and "web3" in respond.text(), respond.text()
    assert respond.calls[0]["response_type"] == "ephemeral"
    await idle(rig)
    report = [
        (t, kw)
        for t, m, kw in rig.client.timed()
        if m == "chat_postMessage" and kw.get("thread_ts") == card["_ts"] and "being cancelled" in kw["text"]
    ]
    assert len(report) == 1, [kw["text"] for kw in rig.client.of("chat_postMessage")]
    t, kw = report[0]
    assert t - asked <= 10.0 and "Aborted in pre-copy (they stay on their host): web3" in kw["text"]
    status = await rig.service.wait_drain(1, timeout_s=3600)
    assert status.drain.state is DrainState.CANCELLED
    assert rig.fs.fleet.where("web3") == "hostC"
    await idle(rig)
    summary = rig.client.of("chat_postMessage")[-1]
    assert summary.get("reply_broadcast") is True and "cancelled" in summary["text"].lower()


async def test_status_of_a_drain_and_the_app_home_list_it(rig: Rig):
    await request_drain(rig)
    _ack, respond = await slash(rig, "status D1")
    text = respond.text()
    assert "Drain of hostC (D1)" in text and all(vm in text for vm in DRAIN_VMS)
    assert respond.calls[0]["response_type"] == "ephemeral"
    _ack, respond = await slash(rig, "status")  # everything active: the drains too
    assert "*Drains*" in respond.text() and "*D1*" in respond.text() and "0 of 3 done" in respond.text()
    deps = Deps(service=rig.service, now=lambda: T0, settings=Settings(), approver_check=_approver)
    await publish_home(deps, rig.client, "U0BOB")
    (view,) = rig.client.of("views_publish")
    home = json.dumps(view["view"], ensure_ascii=False)
    assert "Drains awaiting approval" in home and "D1" in home and "0 of 3 done" in home


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("cancel D999", "D999"),
        ("status D0", "`D0` is not a drain"),
        ("drain", "`drain` needs the host to empty"),
        ("return hostC", "hostC has no completed drain to return from"),
        ("drain hostZ", "unknown host"),
        ("status D999", "D999"),
    ],
)
async def test_bad_drain_input_gets_a_clear_error_and_changes_nothing(rig: Rig, text: str, said: str):
    ack, respond = await slash(rig, text)
    answer = ack.text() + respond.text()
    assert said in answer, answer
    assert "Traceback" not in answer and "something went wrong" not in answer
    assert await rig.service.recent_drains() == [] and await rig.service.history() == []
    assert rig.client.of("chat_postMessage") == [] and rig.client.of("chat_update") == []
    assert {vm: rig.fs.fleet.where(vm) for vm in DRAIN_VMS} == dict.fromkeys(DRAIN_VMS, "hostC")
    assert (await rig.service.host_marks()) == {}


async def test_job_sink_posts_nothing_for_a_move_job(rig: Rig):
    """Decision: a drain's move jobs are folded into the drain's thread: they get no card (no chat thread), so
    the job sink has nothing to mirror for them."""
    card = await request_drain(rig)
    for user in ("U0BOB", "U0CAROL"):
        await press(rig, APPROVE_DRAIN, real_click(card, APPROVE_DRAIN, user))
    await rig.service.wait_drain(1, timeout_s=3600)
    await idle(rig)
    jobs = await rig.service.history()
    assert len(jobs) == 3 and all(j.drain_id == 1 and j.state is JobState.SUCCEEDED for j in jobs)
    texts = [p["text"] for p in rig.client.of("chat_postMessage")]
    assert not any("Migration succeeded" in t or "Approval needed: migrate" in t for t in texts), texts


async def test_a_new_sink_after_a_restart_keeps_editing_the_same_rollup(rig: Rig):
    rig.fs.fleet.vms["web1"].max_speed_mib_s = 20  # the last move takes a while: the restart happens before it
    card = await request_drain(rig)
    for user in ("U0BOB", "U0CAROL"):
        await press(rig, APPROVE_DRAIN, real_click(card, APPROVE_DRAIN, user))
    for _ in range(600):
        if (await rig.service.drain_status(1)).count(MoveOutcome.SUCCEEDED) >= 1:
            break
        await asyncio.sleep(0.5)
    await idle(rig)
    rollup_ts = (await rig.service.get_drain(1)).chat.progress
    assert rollup_ts is not None
    # the restart: the old sink is gone, a new one (no memory of the roll-up) gets the events from now on
    await rig.drains.aclose()
    rig.switch.target = SlackDrainSink(rig.client, rig.service, now=lambda: T0)
    before = len(rig.client.calls)
    status = await rig.service.wait_drain(1, timeout_s=3600)
    assert status.drain.state is DrainState.DONE
    await idle(rig)
    posts = rig.client.of("chat_postMessage")
    assert sum(1 for p in posts if p["text"].startswith("D1 running")) == 1  # never a second roll-up
    after = [kw["text"] for m, kw in rig.client.calls[before:] if m == "chat_postMessage"]
    assert any(t.startswith("✅ web1 → host") for t in after), after  # a move ended after the restart
    later = [kw for m, kw in rig.client.calls[before:] if m == "chat_update" and kw["ts"] == rollup_ts]
    assert later and later[-1]["text"].startswith("D1 done: 3 of 3 done")
    assert sum(1 for p in posts if p.get("reply_broadcast")) == 1


async def test_rate_limited_edits_are_retried_and_the_rollup_still_ends_right(rig: Rig):
    card = await request_drain(rig)
    for user in ("U0BOB", "U0CAROL"):
        await press(rig, APPROVE_DRAIN, real_click(card, APPROVE_DRAIN, user))
    rig.client.fail["chat_update"] = [slack_error("ratelimited", 429) for _ in range(3)]
    rig.client.fail["chat_postMessage"] = [slack_error("ratelimited", 429)]
    status = await rig.service.wait_drain(1, timeout_s=3600)
    assert status.drain.state is DrainState.DONE
    await idle(rig)
    assert rig.client.fail["chat_update"] == [] and rig.client.fail["chat_postMessage"] == []  # all were hit
    posts = rig.client.of("chat_postMessage")
    for vm in DRAIN_VMS:  # no line was lost to the 429
        assert sum(1 for p in posts if p["text"].startswith(f"✅ {vm} → host")) == 1
    rollup_ts = (await rig.service.get_drain(1)).chat.progress
    edits = [kw for kw in rig.client.of("chat_update") if kw["ts"] == rollup_ts]
    assert edits[-1]["text"].startswith("D1 done: 3 of 3 done")
    assert sum(1 for p in posts if p.get("reply_broadcast")) == 1


async def test_a_move_whose_recheck_differs_gets_its_own_card_and_the_drain_waits_for_it(rig: Rig):
    card = await request_drain(rig)
    vm = rig.fs.fleet.vms["web2"]  # the guest grows after the plan: its re-check before start differs
    vm.spec = replace(vm.spec, memory_mib=8192, transferable_mib=6000)
    for user in ("U0BOB", "U0CAROL"):
        await press(rig, APPROVE_DRAIN, real_click(card, APPROVE_DRAIN, user))
    own: list[dict[str, Any]] = []
    for _ in range(600):
        own = [p for p in rig.client.of("chat_postMessage") if "thread_ts" not in p and p is not card and p != card]
        if own:
            break
        await asyncio.sleep(0.5)
    assert len(own) == 1, [p["text"] for p in rig.client.of("chat_postMessage")]
    job = next(j for j in await rig.service.history() if j.vm == "web2")
    assert job.state is JobState.AWAITING_APPROVAL and job.drain_id == 1
    assert own[0]["text"].startswith("Approval needed") and "web2" in own[0]["text"]
    assert (job.chat.channel, job.chat.thread) == (CHANNEL, own[0]["_ts"])
    await idle(rig)
    said = [p["text"] for p in rig.client.of("chat_postMessage") if p.get("thread_ts") == card["_ts"]]
    assert any("web2 needs a new approval" in t and f"job #{job.id}" in t for t in said), said
    assert (await rig.service.drain_status(1)).drain.state is DrainState.RUNNING  # it waits for that move
    # the move's own buttons, as rendered on its card, by the approvers it needs
    job_buttons = buttons(own[0])
    for user in ("U0BOB", "U0CAROL"):
        if (await rig.service.get_job(job.id)).state is not JobState.AWAITING_APPROVAL:
            break
        b = job_buttons["approve"]
        ack, respond = Recorder(), Recorder()
        payload = click("approve", user, b["block_id"], b["value"])
        await rig.app.actions["approve"](ack=ack, body=payload, respond=respond, client=rig.client)
        await settle()
    status = await rig.service.wait_drain(1, timeout_s=3600)
    assert status.drain.state is DrainState.DONE, status.drain.detail
    assert rig.fs.fleet.where("web2") in ("hostA", "hostB")
    await idle(rig)
    # from its approval on, that move is an ordinary Slack job: its summary goes to its own card's thread
    in_own_thread = [p["text"] for p in rig.client.of("chat_postMessage") if p.get("thread_ts") == own[0]["_ts"]]
    assert any("succeeded" in t.lower() for t in in_own_thread), in_own_thread


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("drain hostA", "preflight"),  # plans every move live: counted like a request
        ("return hostA", "preflight"),
        ("plan drain hostA", "read"),
        ("cancel D7", "control"),
        ("cancel drain 7", "control"),
        ("status D7", "read"),
    ],
)
def test_drain_commands_pass_the_edge_gate_as(text: str, kind: str) -> None:
    from handlers.commands import _gate_kind
    from migration_core.grammar.parser import parse_command

    assert _gate_kind(parse_command(text)).value == kind


H = "0123456789abcdef"


@pytest.mark.parametrize(
    ("block", "value", "expected"),
    [
        ("drain_approval:7", f"7:{H}", (7, H)),
        ("drain_approval:7", f"8:{H}", None),  # the value names another drain than the block: refuse to guess
        ("drain_approval:7", "7", None),  # no plan hash: not bound to a plan
        ("drain_approval:7", f"7:{H.upper()}", None),
        ("drain_approval:7", f"7:{H}0", None),
        ("approval:7", f"7:{H}", None),  # a job's block
        ("drain_approval:x", f"7:{H}", None),
        ("", f"7:{H}", None),
    ],
)
def test_drain_click_reads_the_drain_and_the_plan_hash(block: str, value: str, expected: object) -> None:
    click = drain_actions.drain_click({"actions": [{"block_id": block, "value": value}]})
    assert (None if click is None else (click.drain_id, click.plan_hash)) == expected


def test_drain_click_of_malformed_payloads() -> None:
    for payload in ({}, {"actions": []}, {"actions": [None]}, {"actions": "x"}, {"actions": [{"value": 7}]}):
        assert drain_actions.drain_click(payload) is None
