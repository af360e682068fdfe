"""Wiring of the Slack bot: the Web API client, the approver check, the Bolt AsyncApp and its listeners.

Typical use (the `serve` command):

    bot = build_slack(settings, lambda sink, approvers: MigrationService(..., sink=sink,
                      approver_check=approvers.is_approver, group_check=approvers.in_group),
                      group_members=policy.members)
    await run_socket_mode(bot.app, settings)      # or run_http(...)

`build_app` is the lower-level piece when the service, client and sink already exist.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings, Transport
from handlers import actions, commands, drain_actions, home
from handlers.deps import Deps
from handlers.drain_progress import SlackDrainSink
from handlers.gate import EdgeGate, WorkspaceBinding, foreign_problem, team_of
from handlers.progress import SlackProgressSink
from migration_core.events import EventSink, FanoutSink
from migration_core.service_api import ApproverCheck, Approvers, MigrationServiceAPI

log = logging.getLogger(__name__)

RATE_LIMIT_RETRIES = 3
MEMBERSHIP_TTL_S = 60.0


def make_web_client(settings: Settings) -> AsyncWebClient:
    """The Web API client: base URL from SLACK_API_URL; retries 429 (Retry-After), 5xx, connection errors."""
    return AsyncWebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        retry_handlers=[
            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
            AsyncConnectionErrorRetryHandler(),
            AsyncServerErrorRetryHandler(),
        ],
    )


class SlackApproverCheck:
    """Is this user an approver? Members of a Slack user group (cached), else the static allowlist.

    The group (MIGRATE_BOT_APPROVER_GROUP: a handle like `sre-leads` or an id like `S0123`) is resolved once
    with usergroups.list; its members come from usergroups.users.list (Tier 2) and are cached for `ttl_s`.
    When user groups cannot be used (free plan -> `plan_upgrade_required`, unknown group, Slack down), the
    static allowlist (MIGRATE_BOT_APPROVERS) decides. With neither configured, nobody can approve in Slack.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        group: str | None,
        allowlist: tuple[str, ...] | list[str],
        ttl_s: float = MEMBERSHIP_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        fallback: str = "MIGRATE_BOT_APPROVERS",
    ) -> None:
        self._fallback = fallback  # what decides when the group cannot be used (named in the log)
        self._client = client
        self._group = group
        self._allowlist = frozenset(allowlist)
        self._ttl_s = ttl_s
        self._clock = clock
        self._group_id: str | None = None
        self._members: frozenset[str] | None = None
        self._fetched_at = 0.0

    async def __call__(self, user: str) -> bool:
        members = await self._group_members()
        if members is None:
            return user in self._allowlist
        return user in members

    async def _group_members(self) -> frozenset[str] | None:
        if not self._group:
            return None
        if self._members is not None and self._clock() - self._fetched_at < self._ttl_s:
            return self._members
        try:
            group_id = await self._resolve_group()
            if group_id is None:
                return None
            resp = await self._client.usergroups_users_list(usergroup=group_id)
            users: list[str] = list(resp.get("users", []))
            self._members = frozenset(str(u) for u in users)
            self._fetched_at = self._clock()
            return self._members
        except SlackApiError as err:
            code = err.response.get("error", "") if err.response is not None else ""
            log.warning(
                "user group %s unavailable (%s); using %s instead", self._group, code, self._fallback
            )
        except Exception as err:  # network trouble: fall back rather than lock everybody out
            log.warning(
                "user group %s unavailable (%s); using %s instead", self._group, err, self._fallback
            )
        # Keep a recent membership list through a short outage rather than flipping to the allowlist.
        if self._members is not None and self._clock() - self._fetched_at < 10 * self._ttl_s:
            return self._members
        return None

    async def _resolve_group(self) -> str | None:
        if self._group_id is not None:
            return self._group_id
        assert self._group is not None
        resp = await self._client.usergroups_list()
        groups: list[dict[str, str]] = list(resp.get("usergroups", []))
        for g in groups:
            if self._group in (g.get("id"), g.get("handle"), g.get("name")):
                self._group_id = str(g["id"])
                return self._group_id
        log.warning("no Slack user group named %r; using %s instead", self._group, self._fallback)
        return None


def build_app(
    settings: Settings,
    service: MigrationServiceAPI,
    *,
    approver_check: ApproverCheck,
    client: AsyncWebClient | None = None,
    progress_sink: SlackProgressSink | None = None,
    drain_sink: SlackDrainSink | None = None,
    workspace: WorkspaceBinding | None = None,
    on_refusal: Callable[[str, str], None] | None = None,
) -> AsyncApp:
    """The Bolt AsyncApp with every listener registered (commands, actions, views, App Home)."""
    http = settings.transport is Transport.HTTP
    app = AsyncApp(
        client=client or make_web_client(settings),
        # In Socket Mode there is no signature to check (the WebSocket is authenticated); in HTTP mode Bolt
        # answers 401 to anything not signed with this secret within 5 minutes.
        signing_secret=settings.slack_signing_secret or "",
        request_verification_enabled=http,
        process_before_response=False,
        raise_error_for_unhandled_request=False,
    )
    gate = EdgeGate(
        requesters=settings.requesters,
        channels=settings.channels,
        per_hour=settings.requests_per_user_per_hour,
        approver_check=approver_check,
    )
    deps = Deps(
        service=service,
        settings=settings,
        approver_check=approver_check,
        progress=progress_sink,
        drains=drain_sink,
        gate=gate,
        on_refusal=on_refusal,
    )
    app.use(workspace_gate(workspace or WorkspaceBinding(), deps))
    commands.register(app, deps)
    drain_actions.register(app, deps)  # before actions: its catch-all refuses every control it does not know
    actions.register(app, deps)
    home.register(app, deps)
    return app


def workspace_gate(binding: WorkspaceBinding, deps: Deps) -> Callable[..., Awaitable[BoltResponse]]:
    """Bolt middleware: every request and click from another team (or org) than auth.test's is refused (403)
    and recorded in the event log with the team it claimed."""

    async def gate(
        body: dict[str, Any], client: AsyncWebClient, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        bound = binding.workspace or await binding.bind(client)
        team, enterprise = team_of(body)
        problem = foreign_problem(bound, team, enterprise)
        if problem is None:
            return await next()
        user = body.get("user_id") or body.get("user") or ""
        user_id = str(user.get("id", "") if isinstance(user, dict) else user)[:40]
        data = {
            "team_id": str(team)[:40],
            "enterprise_id": str(enterprise)[:40],
            "type": str(body.get("type", "command"))[:40],
        }
        await deps.refused(None, user_id, "foreign workspace", problem, data)
        return BoltResponse(status=403, body="this app serves another Slack workspace")

    return gate


class SlackGroupCheck:
    """Is this user in group G (an owners' group of the policy file)? The Slack user group with that handle
    where user groups are available, else the policy file's [groups] list (one SlackApproverCheck per group)."""

    def __init__(self, client: AsyncWebClient, members: Callable[[str], frozenset[str]]) -> None:
        self._client = client
        self._members = members
        self._checks: dict[str, SlackApproverCheck] = {}

    async def __call__(self, user: str, group: str) -> bool:
        check = self._checks.get(group)
        if check is None:
            check = SlackApproverCheck(
                self._client,
                group=group,
                allowlist=tuple(self._members(group)),
                fallback=f"the policy file's [groups] {group}",
            )
            self._checks[group] = check
        return await check(user)


@dataclass
class SlackBot:
    """Everything `build_slack` made, for the runner and for tests."""

    app: AsyncApp
    client: AsyncWebClient
    service: MigrationServiceAPI
    sink: SlackProgressSink
    approver_check: SlackApproverCheck
    workspace: WorkspaceBinding
    drain_sink: SlackDrainSink | None = None

    async def bind_workspace(self) -> None:
        """Bind the team from auth.test now (at start), so that a bad token fails the start, not a request."""
        await self.workspace.bind(self.client)


def build_slack(
    settings: Settings,
    make_service: Callable[[EventSink, Approvers], MigrationServiceAPI],
    *,
    group_members: Callable[[str], frozenset[str]] = lambda _group: frozenset(),
    extra_sinks: tuple[EventSink, ...] = (),
    on_refusal: Callable[[str, str], None] | None = None,
) -> SlackBot:
    """Build the client, approver check, service (via `make_service(sink, approvers)`), sink and app.

    `approvers` asks Slack: the approver user group (else MIGRATE_BOT_APPROVERS) and, for the policy file's owners'
    groups, the Slack user group of that handle (else `group_members(group)`, the file's [groups] list). Single
    moves and drains get the same object, so both judge a person the same way.
    """
    settings.require_slack()
    client = make_web_client(settings)
    approver_check = SlackApproverCheck(client, group=settings.approver_group, allowlist=settings.approvers)
    fanout = FanoutSink(*extra_sinks)
    service = make_service(fanout, Approvers(approver_check, SlackGroupCheck(client, group_members)))
    sink = SlackProgressSink(client, service, ttl_s=settings.approval_ttl_s)
    fanout.add(sink)
    # Drains: one card, one roll-up edited in place, a line per VM; edits share the workspace's budget.
    drain_sink = SlackDrainSink(client, service, gate=sink.edit_gate, ttl_s=settings.approval_ttl_s)
    fanout.add(drain_sink)
    workspace = WorkspaceBinding()
    app = build_app(
        settings,
        service,
        approver_check=approver_check,
        client=client,
        progress_sink=sink,
        drain_sink=drain_sink,
        workspace=workspace,
        on_refusal=on_refusal,
    )
    return SlackBot(app, client, service, sink, approver_check, workspace, drain_sink)
