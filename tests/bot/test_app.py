"""Wiring: build_app over real HTTP (health, signature checks) and the cached approver check."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import aiohttp
import pytest
from slack_bolt.async_app import AsyncApp

from bot.app import SlackApproverCheck, build_app, build_slack, make_web_client
from bot.settings import Settings, Transport
from bot.slack_runner import run_http
from migration_core.events import RecordingSink
from tests.bot.fleet_service import open_fleet_service
from tests.fixtures.slack import APPROVERS_HANDLE, DEFAULT_WORKSPACE, U_BOB, U_CAROL, U_MALLORY
from tests.handlers.fakes import slack_error

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


async def _nobody(user: str) -> bool:
    return False


def settings(**kw: Any) -> Settings:
    base = {
        "transport": Transport.HTTP,
        "http_port": 0,
        "slack_bot_token": "xoxb-test",
        "slack_signing_secret": SECRET,
        "slack_api_url": "http://127.0.0.1:9/api/",
    }
    return Settings(**{**base, **kw})


def test_web_client_uses_the_configured_base_url_and_retry_handlers():
    client = make_web_client(settings())
    assert client.base_url == "http://127.0.0.1:9/api/"
    names = {type(h).__name__ for h in client.retry_handlers}
    assert names == {
        "AsyncRateLimitErrorRetryHandler",
        "AsyncConnectionErrorRetryHandler",
        "AsyncServerErrorRetryHandler",
    }
    rate = next(h for h in client.retry_handlers if type(h).__name__ == "AsyncRateLimitErrorRetryHandler")
    assert rate.max_retry_count >= 2


async def test_build_app_registers_every_listener():
    # the real service (on the in-memory fleet), not started: these tests only wire and serve HTTP
    async with await open_fleet_service(RecordingSink(), _nobody, start=False) as service:
        app = build_app(settings(), service, approver_check=_nobody)
    assert isinstance(app, AsyncApp)
    # /migrate, 6 buttons, 2 modals, the 2 drain buttons, app_home_opened, and the catch-alls for unknown
    # commands, controls, forms and events
    assert len(app._async_listeners) == 1 + 6 + 2 + 2 + 1 + 4


def _sign(body: str, ts: int, secret: str = SECRET) -> str:
    base = f"v0:{ts}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


async def test_http_mode_health_and_signature_checks():
    s = settings()
    fs = await open_fleet_service(RecordingSink(), _nobody, start=False)
    app = build_app(s, fs.service, approver_check=_nobody)
    stop = asyncio.Event()
    port_box: list[int] = []
    server = asyncio.create_task(run_http(app, s, host="127.0.0.1", stop=stop, on_listening=port_box.append))
    for _ in range(200):
        if port_box:
            break
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{port_box[0]}"
    body = "command=%2Fmigrate&text=help&user_id=U1&channel_id=C1&team_id=T1&trigger_id=1.2.3"
    now = int(time.time())
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/healthz") as r:
                assert r.status == 200 and (await r.json())["ok"] is True
            async with http.post(base + "/slack/events", data=body, headers=form) as r:
                assert r.status == 401  # unsigned
            bad = {
                **form,
                "X-Slack-Request-Timestamp": str(now),
                "X-Slack-Signature": _sign(body, now, "wrong"),
            }
            async with http.post(base + "/slack/events", data=body, headers=bad) as r:
                assert r.status == 401
            old = now - 301
            stale = {**form, "X-Slack-Request-Timestamp": str(old), "X-Slack-Signature": _sign(body, old)}
            async with http.post(base + "/slack/events", data=body, headers=stale) as r:
                assert r.status == 401
    finally:
        stop.set()
        await server
        await fs.close()


class GroupClient:
    """usergroups.* stand-in: counts calls; `error` makes usergroups.users.list fail like Slack does."""

    def __init__(self, members: list[str], error: str | None = None) -> None:
        self.members = members
        self.error = error
        self.list_calls = 0
        self.users_calls = 0

    async def usergroups_list(self, **kw: Any) -> dict[str, Any]:
        self.list_calls += 1
        return {"ok": True, "usergroups": [{"id": "S0SRE", "handle": "sre-leads", "name": "SRE leads"}]}

    async def usergroups_users_list(self, **kw: Any) -> dict[str, Any]:
        self.users_calls += 1
        assert kw["usergroup"] == "S0SRE"
        if self.error:
            raise slack_error(self.error)
        return {"ok": True, "users": list(self.members)}


async def test_group_membership_is_resolved_once_and_cached():
    now = [0.0]
    client = GroupClient(["U0BOB"])
    check = SlackApproverCheck(client, group="sre-leads", allowlist=("U0ALLOW",), clock=lambda: now[0])  # type: ignore[arg-type]
    assert await check("U0BOB") and not await check("U0ALLOW")  # the group decides when it is available
    assert (client.list_calls, client.users_calls) == (1, 1)
    client.members = ["U0CAROL"]
    now[0] = 59
    assert await check("U0BOB")  # still cached
    now[0] = 61
    assert await check("U0CAROL") and not await check("U0BOB")
    assert (client.list_calls, client.users_calls) == (1, 2)


@pytest.mark.parametrize("error", ["plan_upgrade_required", "no_such_subteam"])
async def test_group_errors_fall_back_to_the_allowlist(error):
    client = GroupClient(["U0BOB"], error=error)
    check = SlackApproverCheck(client, group="S0SRE", allowlist=("U0ALLOW",))  # type: ignore[arg-type]
    assert await check("U0ALLOW") and not await check("U0BOB")


async def test_unknown_group_and_no_group_use_the_allowlist():
    client = GroupClient(["U0BOB"])
    check = SlackApproverCheck(client, group="nope", allowlist=("U0ALLOW",))  # type: ignore[arg-type]
    assert await check("U0ALLOW") and not await check("U0BOB")
    plain = SlackApproverCheck(client, group=None, allowlist=())  # type: ignore[arg-type]
    assert not await plain("U0BOB")  # nothing configured: nobody approves in Slack


async def test_owners_groups_use_the_slack_user_group_with_that_handle_else_the_policy_file():
    from bot.app import SlackGroupCheck

    client = GroupClient(["U0BOB"])
    policy_groups = {"sre-leads": frozenset({"U0FILE"}), "dba": frozenset({"U0DAVE"})}
    check = SlackGroupCheck(client, lambda g: policy_groups.get(g, frozenset()))  # type: ignore[arg-type]
    assert await check("U0BOB", "sre-leads") is True  # the Slack group decides where it exists
    assert await check("U0FILE", "sre-leads") is False
    assert await check("U0DAVE", "dba") is True  # no Slack group @dba: the policy file's [groups]
    assert await check("U0BOB", "dba") is False


async def test_build_slack_gives_the_service_one_approvers_object_asking_slack_then_the_policy_file(fake_slack):
    """`serve`'s wiring: the service (single moves and drains alike: see test_drain_fleet) learns who approves
    and who is in an owners' group from Slack user groups, else from the policy file's [groups] lists."""
    dba = {"id": "S_DBA", "handle": "dba", "name": "DBAs", "users": [U_CAROL]}
    fake_slack.reset_sync()
    fake_slack.seed_sync({**DEFAULT_WORKSPACE, "usergroups": [*DEFAULT_WORKSPACE["usergroups"], dba]})
    file_groups = {"dba": frozenset({"U_DAVE"}), "storage": frozenset({U_MALLORY})}
    handed = []
    async with await open_fleet_service(RecordingSink(), _nobody, start=False) as service:

        def make_service(sink: Any, approvers: Any) -> Any:
            handed.append(approvers)
            return service

        s = settings(slack_api_url=fake_slack.api_base_url, slack_bot_token=fake_slack.bot_token,
                     approver_group=APPROVERS_HANDLE)  # fmt: skip
        build_slack(s, make_service, group_members=lambda g: file_groups.get(g, frozenset()))
        (approvers,) = handed
        assert await approvers.is_approver(U_BOB) and not await approvers.is_approver(U_MALLORY)
        assert await approvers.in_group(U_CAROL, "dba")  # Slack's @dba decides where it exists...
        assert not await approvers.in_group("U_DAVE", "dba")  # ...over the file's list
        assert await approvers.in_group(U_MALLORY, "storage")  # no Slack group @storage: the file's list
        assert not await approvers.in_group(U_CAROL, "storage")
