"""The fake Slack, proven with the real slack_sdk / slack_bolt over real HTTP and WebSocket (slack.md §19)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakeslack import AckTimeout, DriverError, FakeSlack, sign
from tests.fixtures.slack import (
    BOT_USER_ID,
    C_OPS,
    C_RANDOM,
    S_APPROVERS,
    SIGNING_SECRET,
    U_ALICE,
    U_BOB,
    U_CAROL,
    U_MALLORY,
)


def section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if block_id:
        block["block_id"] = block_id
    return block


def approval_blocks(job: str) -> list[dict[str, Any]]:
    return [
        section(f"Approval needed: migrate vm42 to hostB ({job})", "summary"),
        {"type": "actions", "block_id": f"approval:{job}", "elements": [
            {"type": "button", "action_id": "approve", "style": "primary", "value": job,
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": "deny", "style": "danger", "value": job,
             "text": {"type": "plain_text", "text": "Deny"}},
        ]},
    ]


REASON_MODAL = {
    "type": "modal", "callback_id": "reason-modal", "title": {"type": "plain_text", "text": "Reason"},
    "submit": {"type": "plain_text", "text": "Submit"}, "private_metadata": "job-1",
    "blocks": [{"type": "input", "block_id": "reason", "label": {"type": "plain_text", "text": "Reason"},
                "element": {"type": "plain_text_input", "action_id": "reason_input"}}],
}


def web_client(fake: FakeSlack, *handlers: Any, token: str | None = None) -> AsyncWebClient:
    return AsyncWebClient(token=token or fake.bot_token, base_url=fake.api_base_url,
                          retry_handlers=list(handlers))


# ---------------------------------------------------------------------------------------------------
# Pure: the request signature matches Slack's published algorithm (test vector of slack.md §20.5).
# ---------------------------------------------------------------------------------------------------
def test_signature_matches_the_reference_vector() -> None:
    raw = ("token=verification_token_deprecated&team_id=T111&team_domain=test-domain&enterprise_id=E111"
           "&enterprise_name=Org+Name&channel_id=C111&channel_name=ops&user_id=W111&user_name=primary-owner"
           "&command=%2Fmigrate&text=vm42+to+hostB+--postcopy&api_app_id=A111&is_enterprise_install=false"
           "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT111%2F111%2Fxxxxx&trigger_id=111.111.xxx")
    assert sign("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", raw) == (
        "v0=74cefd6dd90aaa90dfb772ec28e06625e36b0106064261cc340c9627575817bd")


# ---------------------------------------------------------------------------------------------------
# Web API with the real AsyncWebClient
# ---------------------------------------------------------------------------------------------------
async def test_post_update_thread_and_broadcast_are_stored_like_slack(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)
    card = await client.chat_postMessage(channel=C_OPS, text="card v1", blocks=approval_blocks("job-1"))
    progress = await client.chat_postMessage(channel=C_OPS, thread_ts=card["ts"], text="progress 10%")
    await client.chat_update(channel=C_OPS, ts=progress["ts"], text="progress 50%")
    await client.chat_update(channel=C_OPS, ts=progress["ts"], text="progress 100%")
    summary = await client.chat_postMessage(channel=C_OPS, thread_ts=card["ts"], text="done",
                                            reply_broadcast=True)

    thread = await fake_slack.thread(C_OPS, card["ts"])
    assert [m["ts"] for m in thread] == [card["ts"], progress["ts"], summary["ts"]]
    assert float(card["ts"]) < float(progress["ts"]) < float(summary["ts"])
    edited = thread[1]
    assert (edited["text"], edited["edits"]) == ("progress 100%", 2)
    assert [v["text"] for v in edited["history"]] == ["progress 10%", "progress 50%"]
    # The channel shows the card and the broadcast summary, not the progress reply.
    assert [m["ts"] for m in await fake_slack.messages(C_OPS)] == [card["ts"], summary["ts"]]
    # Reading a thread needs channels:history, which the default (manifest) scopes do not grant.
    with pytest.raises(SlackApiError) as err:
        await client.conversations_replies(channel=C_OPS, ts=card["ts"])
    assert err.value.response["error"] == "missing_scope"
    assert err.value.response["needed"] == "channels:history"
    await fake_slack.seed(scopes=["chat:write", "channels:history"])
    replies = await client.conversations_replies(channel=C_OPS, ts=card["ts"])
    assert [m["text"] for m in replies["messages"]] == ["card v1", "progress 100%", "done"]
    assert replies["messages"][2]["subtype"] == "thread_broadcast"


async def test_reads_arrive_as_get_query_strings_and_answer_from_the_seed(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)
    user = await client.users_info(user=U_BOB)
    group = await client.usergroups_users_list(usergroup=S_APPROVERS)
    channel = await client.conversations_info(channel=C_OPS)
    assert user["user"]["name"] == "bob"
    assert group["users"] == [U_BOB, U_CAROL]
    assert channel["channel"]["name"] == "ops"
    calls = {c["method"]: c for c in await fake_slack.calls()}
    assert calls["users.info"]["http_method"] == "GET" and calls["users.info"]["args"] == {"user": U_BOB}
    assert calls["users.info"]["token"] == fake_slack.bot_token
    with pytest.raises(SlackApiError) as err:
        await client.users_info(user="U_NOBODY")
    assert err.value.response["error"] == "user_not_found"


@pytest.mark.parametrize(("token", "method", "error"), [
    (None, "auth.test", "not_authed"),
    ("xoxb-not-the-bot", "auth.test", "invalid_auth"),
    ("xapp-fake-app-token", "chat.postMessage", "not_allowed_token_type"),
    ("xoxb-fake-bot-token", "apps.connections.open", "not_allowed_token_type"),
])
async def test_tokens_are_checked(fake_slack: FakeSlack, token: str | None, method: str, error: str) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.post(
            fake_slack.api_base_url + method, json={"channel": C_OPS, "text": "x"}, headers=headers) as resp:
        body = await resp.json()
    assert (resp.status, body["ok"], body["error"]) == (200, False, error)


async def test_injected_429_is_retried_by_the_rate_limit_handler(fake_slack: FakeSlack) -> None:
    card = await web_client(fake_slack).chat_postMessage(channel=C_OPS, text="v1")
    await fake_slack.inject("chat.update", count=1, mode="429", retry_after_s=0)
    without_retry = web_client(fake_slack)
    with pytest.raises(SlackApiError) as err:
        await without_retry.chat_update(channel=C_OPS, ts=card["ts"], text="v2")
    assert err.value.response.status_code == 429 and err.value.response["error"] == "ratelimited"

    await fake_slack.inject("chat.update", count=1, mode="429", retry_after_s=0)
    retrying = web_client(fake_slack, AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    await retrying.chat_update(channel=C_OPS, ts=card["ts"], text="v3")
    updates = await fake_slack.calls("chat.update")
    assert [(c.get("injected"), c["ok"]) for c in updates] == [("429", False), ("429", False), (None, True)]
    assert (await fake_slack.message(C_OPS, card["ts"]))["text"] == "v3"


@pytest.mark.parametrize(("mode", "handler"), [
    ("500", AsyncServerErrorRetryHandler(max_retry_count=1)),
    ("drop", AsyncConnectionErrorRetryHandler(max_retry_count=1)),
])
async def test_injected_server_errors_and_dropped_connections_are_retried(
        fake_slack: FakeSlack, mode: str, handler: Any) -> None:
    await fake_slack.inject("chat.postMessage", count=1, mode=mode)
    response = await web_client(fake_slack, handler).chat_postMessage(channel=C_OPS, text="survives")
    assert response["ok"]
    posts = await fake_slack.calls("chat.postMessage")
    assert [c.get("injected") for c in posts] == [mode, None]
    assert [m["text"] for m in await fake_slack.messages(C_OPS)] == ["survives"]


async def test_update_refuses_other_peoples_messages_and_ephemerals(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)
    human_ts = await fake_slack.post_as_user(C_OPS, U_ALICE, "my own words")
    eph = await client.chat_postEphemeral(channel=C_OPS, user=U_ALICE, text="only you")
    for ts, error in ((human_ts, "cant_update_message"), (eph["message_ts"], "message_not_found"),
                      ("1.000001", "message_not_found")):
        with pytest.raises(SlackApiError) as err:
            await client.chat_update(channel=C_OPS, ts=ts, text="edited by the bot")
        assert err.value.response["error"] == error
    assert (await fake_slack.message(C_OPS, human_ts))["edits"] == 0
    assert [e["text"] for e in await fake_slack.ephemerals(C_OPS, U_ALICE)] == ["only you"]


def _button(text: str, action_id: str = "b") -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": text}}


@pytest.mark.parametrize(("blocks", "valid"), [
    ([section("x")] * 50, True),
    ([section("x")] * 51, False),
    ([section("x" * 3000)], True),
    ([section("x" * 3001)], False),
    ([{"type": "actions", "elements": [_button("y" * 75)]}], True),
    ([{"type": "actions", "elements": [_button("y" * 76)]}], False),
    ([section("a", "same"), section("b", "same")], False),
    ([{"type": "no_such_block"}], False),
    ([{"type": "input", "label": {"type": "plain_text", "text": "l"},
       "element": {"type": "plain_text_input", "action_id": "i"}}], False),  # inputs only in views
])
async def test_block_kit_limits_are_enforced(fake_slack: FakeSlack, blocks: list[Any], valid: bool) -> None:
    client = web_client(fake_slack)
    if valid:
        assert (await client.chat_postMessage(channel=C_OPS, text="t", blocks=blocks))["ok"]
        return
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel=C_OPS, text="t", blocks=blocks)
    assert err.value.response["error"] == "invalid_blocks" and err.value.response["errors"]
    assert await fake_slack.messages(C_OPS) == []


async def test_channel_and_thread_checks(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)
    cases = (({"channel": C_RANDOM}, "not_in_channel"), ({"channel": "C_NOPE"}, "channel_not_found"),
             ({"channel": C_OPS, "thread_ts": "123.000001"}, "thread_not_found"))
    for kwargs, error in cases:
        with pytest.raises(SlackApiError) as err:
            await client.chat_postMessage(text="hello", **kwargs)
        assert err.value.response["error"] == error
    await fake_slack.seed(scopes=["chat:write", "chat:write.public"])
    assert (await client.chat_postMessage(channel=C_RANDOM, text="public channel, no invite needed"))["ok"]


async def test_usergroups_need_a_paid_plan_and_a_real_group(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)
    groups = await client.usergroups_list()
    assert [(g["id"], g["handle"]) for g in groups["usergroups"]] == [(S_APPROVERS, "migration-approvers")]
    with pytest.raises(SlackApiError) as err:
        await client.usergroups_users_list(usergroup="S_NOPE")
    assert err.value.response["error"] == "no_such_subteam"
    await fake_slack.seed(plan="free")
    with pytest.raises(SlackApiError) as err:
        await client.usergroups_users_list(usergroup=S_APPROVERS)
    assert err.value.response["error"] == "plan_upgrade_required"


async def test_views_open_honours_the_three_second_trigger(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)
    stale = await fake_slack.mint_trigger(U_ALICE)
    await fake_slack.advance_clock(3.5)
    with pytest.raises(SlackApiError) as err:
        await client.views_open(trigger_id=stale, view=REASON_MODAL)
    assert err.value.response["error"] == "expired_trigger_id"

    fresh = await fake_slack.mint_trigger(U_ALICE)
    opened = await client.views_open(trigger_id=fresh, view=REASON_MODAL)
    assert opened["view"]["callback_id"] == "reason-modal"
    with pytest.raises(SlackApiError) as err:
        await client.views_open(trigger_id=fresh, view=REASON_MODAL)
    assert err.value.response["error"] == "exchanged_trigger_id"

    for _ in range(2):
        await client.views_push(trigger_id=await fake_slack.mint_trigger(U_ALICE, opened["view"]["id"]),
                                view=REASON_MODAL)
    with pytest.raises(SlackApiError) as err:
        await client.views_push(trigger_id=await fake_slack.mint_trigger(U_ALICE, opened["view"]["id"]),
                                view=REASON_MODAL)
    assert err.value.response["error"] == "push_limit_reached"


async def test_views_publish_keeps_the_latest_home_per_user(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)
    for n in (1, 2):
        await client.views_publish(user_id=U_BOB, view={"type": "home", "blocks": [section(f"home {n}")]})
    with pytest.raises(SlackApiError) as err:
        await client.views_publish(user_id=U_BOB, view={"type": "home", "blocks": [section("x")] * 101})
    assert err.value.response["error"] == "invalid_blocks"
    home = await fake_slack.home_view(U_BOB)
    assert home is not None and home["blocks"][0]["text"]["text"] == "home 2"
    assert (await fake_slack.state())["home_publishes"] == {U_BOB: 2}


async def _post_json(url: str, body: dict[str, Any]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        return resp.status, await resp.text()


async def test_response_url_fails_on_the_sixth_use_and_after_thirty_minutes(fake_slack: FakeSlack) -> None:
    url = await fake_slack.mint_response_url(C_OPS, U_ALICE)
    statuses = [(await _post_json(url, {"text": f"note {n}"}))[0] for n in range(6)]
    assert statuses == [200] * 5 + [404]
    assert [e["text"] for e in await fake_slack.ephemerals(C_OPS, U_ALICE)] == [f"note {n}" for n in range(5)]

    late = await fake_slack.mint_response_url(C_OPS, U_ALICE)
    await fake_slack.advance_clock(30 * 60 + 1)
    assert await _post_json(late, {"text": "too late"}) == (404, "expired_url")
    posts = await fake_slack.response_posts()
    assert [p["error"] for p in posts if not p["accepted"]] == ["used_too_many_times", "expired_url"]


async def test_response_url_replace_original_and_in_channel(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)
    card = await client.chat_postMessage(channel=C_OPS, text="card", blocks=approval_blocks("j"))
    url = await fake_slack.mint_response_url(C_OPS, U_BOB, message_ts=card["ts"])
    assert (await _post_json(url, {"replace_original": True, "text": "Approved by bob"}))[0] == 200
    assert (await _post_json(url, {"response_type": "in_channel", "text": "FYI all"}))[0] == 200
    stored = await fake_slack.message(C_OPS, card["ts"])
    assert (stored["text"], stored["blocks"], stored["edits"]) == ("Approved by bob", None, 1)
    assert [m["text"] for m in await fake_slack.messages(C_OPS)] == ["Approved by bob", "FYI all"]


async def test_optional_rate_limiter_answers_429_with_retry_after(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)
    card = await client.chat_postMessage(channel=C_OPS, text="v0")
    await fake_slack.set_rate_limits(True, limits={"chat.update": 2})
    for n in (1, 2):
        await client.chat_update(channel=C_OPS, ts=card["ts"], text=f"v{n}")
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel=C_OPS, ts=card["ts"], text="v3")
    assert err.value.response.status_code == 429 and int(err.value.response.headers["Retry-After"]) >= 1
    await fake_slack.advance_clock(61)
    assert (await client.chat_update(channel=C_OPS, ts=card["ts"], text="v4"))["ok"]


async def test_socket_protocol_hello_envelope_ack_and_retry_fields(fake_slack: FakeSlack) -> None:
    opened = await web_client(fake_slack, token=fake_slack.app_token).apps_connections_open(
        app_token=fake_slack.app_token)
    assert opened["url"].startswith(f"ws://127.0.0.1:{fake_slack.port}/link?ticket=")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake_slack.base_url}/link?ticket=forged") as refused:
            assert refused.status == 401
        async with session.ws_connect(opened["url"]) as sock:
            hello = await sock.receive_json()
            assert hello["type"] == "hello" and hello["connection_info"]["app_id"]
            payload = await fake_slack.build_event({"type": "app_home_opened", "user": U_BOB, "tab": "home"})
            delivery = asyncio.create_task(
                fake_slack.deliver("events_api", payload, retry_attempt=1, retry_reason="timeout"))
            envelope = await sock.receive_json()
            assert (envelope["type"], envelope["retry_attempt"], envelope["retry_reason"]) == (
                "events_api", 1, "timeout")
            assert envelope["payload"]["event"]["user"] == U_BOB and not envelope["accepts_response_payload"]
            await sock.send_json({"envelope_id": envelope["envelope_id"]})
            ack = await delivery
    assert ack.envelope_id == envelope["envelope_id"] and ack.payload is None and ack.latency_s >= 0


# ---------------------------------------------------------------------------------------------------
# A real Bolt AsyncApp driven through both transports
# ---------------------------------------------------------------------------------------------------
class Seen:
    def __init__(self) -> None:
        self.clicks: list[dict[str, Any]] = []
        self.submissions: list[dict[str, Any]] = []
        self.release_slow_ack = asyncio.Event()
        self.retry_headers: list[Any] = []


def build_bolt_app(fake: FakeSlack, seen: Seen) -> AsyncApp:
    client = web_client(fake, AsyncRateLimitErrorRetryHandler(max_retry_count=2))
    app = AsyncApp(client=client, signing_secret=SIGNING_SECRET)

    @app.command("/migrate")
    async def migrate(ack: Any, command: dict[str, Any], client: AsyncWebClient) -> None:
        text = command["text"]
        if text == "slow":
            await seen.release_slow_ack.wait()
        await ack(text=f"Checks started for: {text}")
        if text.startswith("card"):
            await client.chat_postMessage(channel=command["channel_id"], text="Approval needed",
                                          blocks=approval_blocks("job-7"))
        if text == "modal":
            await client.views_open(trigger_id=command["trigger_id"], view=REASON_MODAL)

    @app.action("approve")
    async def approve(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        seen.clicks.append(body)
        await respond(replace_original=True, text=f"Approved by <@{body['user']['id']}>")

    @app.view("reason-modal")
    async def reason(ack: Any, view: dict[str, Any]) -> None:
        value = view["state"]["values"]["reason"]["reason_input"]["value"]
        seen.submissions.append(view)
        if value.strip() == "?":
            await ack(response_action="errors", errors={"reason": "Give a real reason"})
        else:
            await ack()

    @app.event("app_home_opened")
    async def home(event: dict[str, Any], client: AsyncWebClient, request: Any) -> None:
        seen.retry_headers.append(request.headers.get("x-slack-retry-num"))
        home_view = {"type": "home", "blocks": [section("Queue: empty")]}
        await client.views_publish(user_id=event["user"], view=home_view)

    return app


@pytest.fixture
async def socket_app(fake_slack: FakeSlack) -> AsyncIterator[tuple[AsyncSocketModeHandler, Seen]]:
    seen = Seen()
    handler = AsyncSocketModeHandler(build_bolt_app(fake_slack, seen), fake_slack.app_token)
    await handler.connect_async()
    try:
        yield handler, seen
    finally:
        seen.release_slow_ack.set()
        await handler.close_async()


@pytest.fixture
async def http_app(fake_slack: FakeSlack) -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()
    runner = web.AppRunner(build_bolt_app(fake_slack, seen).web_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        seen.release_slow_ack.set()
        await runner.cleanup()


async def test_socket_mode_slash_command_ack_comes_back_through_deliver(
        fake_slack: FakeSlack, socket_app: Any) -> None:
    ack = await fake_slack.slash_command_socket("vm42 to hostB --postcopy", U_ALICE, C_OPS)
    assert ack.payload == {"text": "Checks started for: vm42 to hostB --postcopy"}
    # Slack shows a slash command's ack text to the invoking user only.
    assert [e["text"] for e in await fake_slack.ephemerals(C_OPS, U_ALICE)] == [ack.payload["text"]]
    envelope = (await fake_slack.state())["envelopes"][0]["envelope"]
    assert envelope["type"] == "slash_commands" and envelope["accepts_response_payload"] is True
    assert envelope["payload"]["response_url"].startswith(fake_slack.base_url + "/response/")


async def test_socket_mode_click_is_built_from_the_stored_message(
        fake_slack: FakeSlack, socket_app: Any) -> None:
    _handler, seen = socket_app
    await fake_slack.slash_command_socket("card please", U_ALICE, C_OPS)
    cards = await fake_slack.wait_for(lambda: fake_slack.messages(C_OPS), what="the approval card")
    with pytest.raises(DriverError):
        await fake_slack.click_socket(C_OPS, cards[0]["ts"], "launch_missiles", U_BOB)
    await fake_slack.click_socket(C_OPS, cards[0]["ts"], "approve", U_BOB)
    click = seen.clicks[0]
    assert (click["user"]["id"], click["actions"][0]["value"], click["actions"][0]["block_id"]) == (
        U_BOB, "job-7", "approval:job-7")
    assert click["message"]["blocks"] == cards[0]["blocks"]

    async def replaced() -> bool:
        return (await fake_slack.message(C_OPS, cards[0]["ts"]))["text"] == f"Approved by <@{U_BOB}>"
    await fake_slack.wait_for(replaced, what="respond(replace_original=True) to edit the card")


async def test_socket_mode_modal_submission_with_errors_keeps_it_open(
        fake_slack: FakeSlack, socket_app: Any) -> None:
    await fake_slack.slash_command_socket("modal", U_CAROL, C_OPS)
    views = await fake_slack.wait_for(lambda: fake_slack.views(U_CAROL), what="views.open from the command")
    view_id = views[0]["id"]
    with pytest.raises(DriverError):
        await fake_slack.submit_view_socket(view_id, U_CAROL, {"nope": {"x": "1"}})
    ack = await fake_slack.submit_view_socket(view_id, U_CAROL, {"reason": {"reason_input": "?"}})
    assert ack.payload == {"response_action": "errors", "errors": {"reason": "Give a real reason"}}
    assert (await fake_slack.view(view_id))["open"] is True
    ack = await fake_slack.submit_view_socket(view_id, U_CAROL, {"reason": {"reason_input": "maintenance"}})
    assert ack.payload is None and (await fake_slack.view(view_id))["open"] is False


async def test_socket_mode_missing_ack_is_a_failure(fake_slack: FakeSlack, socket_app: Any) -> None:
    _handler, seen = socket_app
    payload = await fake_slack.build_slash_command("slow", U_ALICE, C_OPS)
    with pytest.raises(AckTimeout):
        await fake_slack.deliver("slash_commands", payload, timeout_s=0.3)
    seen.release_slow_ack.set()
    failures = await fake_slack.ack_failures()
    assert [f["error"] for f in failures] == ["ack_timeout"]
    acks = await fake_slack.wait_for(lambda: fake_slack.acks(), what="the late ack")
    assert acks[0]["late"] is True


async def test_socket_mode_disconnect_frame_makes_the_client_reconnect(
        fake_slack: FakeSlack, socket_app: Any) -> None:
    await fake_slack.wait_for(fake_slack.connections, what="the first connection")
    assert await fake_slack.disconnect_socket("refresh_requested") == ["conn-1"]

    async def reconnected() -> bool:
        conns = await fake_slack.connections()
        return len(conns) == 2 and conns[1]["closed_t"] is None
    await fake_slack.wait_for(reconnected, what="a second Socket Mode connection")
    opens = await fake_slack.calls("apps.connections.open")
    assert len(opens) == 2 and all(c["ok"] and c["token"] == fake_slack.app_token for c in opens)
    ack = await fake_slack.slash_command_socket("after reconnect", U_ALICE, C_OPS)
    assert ack.payload == {"text": "Checks started for: after reconnect"}


async def test_http_mode_signed_slash_command_is_acked(fake_slack: FakeSlack, http_app: Any) -> None:
    app_url, _seen = http_app
    ack = await fake_slack.slash_command_http(app_url, SIGNING_SECRET, "vm42 to hostB", U_ALICE, C_OPS)
    assert (ack.status, ack.body) == (200, "Checks started for: vm42 to hostB")
    assert ack.payload == {"text": "Checks started for: vm42 to hostB"}
    assert [e["text"] for e in await fake_slack.ephemerals(C_OPS, U_ALICE)] == [ack.body]


@pytest.mark.parametrize(("age_s", "bad_signature"), [(0, True), (301, False)])
async def test_http_mode_rejects_bad_or_stale_signatures(
        fake_slack: FakeSlack, http_app: Any, age_s: int, bad_signature: bool) -> None:
    app_url, _seen = http_app
    ack = await fake_slack.slash_command_http(app_url, SIGNING_SECRET, "vm42 to hostB", U_MALLORY, C_OPS,
                                              timestamp=int(time.time()) - age_s, bad_signature=bad_signature)
    assert ack.status == 401
    assert await fake_slack.ephemerals() == [] and await fake_slack.messages(C_OPS) == []


async def test_http_mode_click_reaches_the_app_with_the_stored_button(
        fake_slack: FakeSlack, http_app: Any) -> None:
    app_url, seen = http_app
    await fake_slack.slash_command_http(app_url, SIGNING_SECRET, "card", U_ALICE, C_OPS)
    cards = await fake_slack.wait_for(lambda: fake_slack.messages(C_OPS), what="the approval card")
    ack = await fake_slack.click_http(app_url, SIGNING_SECRET, C_OPS, cards[0]["ts"], "approve", U_CAROL)
    assert ack.status == 200
    await fake_slack.wait_for(lambda: seen.clicks, what="the approve handler")
    assert seen.clicks[0]["actions"][0]["value"] == "job-7"
    assert seen.clicks[0]["container"]["message_ts"] == cards[0]["ts"]
    assert cards[0]["user"] == BOT_USER_ID


async def test_socket_mode_event_retry_reaches_bolt_and_home_is_published(
        fake_slack: FakeSlack, socket_app: Any) -> None:
    _handler, seen = socket_app
    await fake_slack.event_socket({"type": "app_home_opened", "user": U_BOB, "tab": "home", "channel": "D1"},
                                  retry_attempt=1, retry_reason="timeout")
    home = await fake_slack.wait_for(lambda: fake_slack.home_view(U_BOB), what="views.publish for bob")
    assert home["blocks"][0]["text"]["text"] == "Queue: empty"
    assert seen.retry_headers == [["1"]]
