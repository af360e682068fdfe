"""The gates every Slack command and click passes before it reaches the service (issue 16).

- Workspace: the team (and Enterprise Grid org, when there is one) is bound once, at start, from `auth.test`;
  a request or click from any other team is refused and recorded with that team (`WorkspaceBinding`).
- Channel: with MIGRATE_BOT_CHANNELS set, only those channels; an empty or missing channel (a DM, the App
  Home, a forged `channel_id=""`) is NOT one of them.
- People: with MIGRATE_BOT_REQUESTERS set, reads and plans are for requesters and approvers only (the service
  still decides who may request, approve and control).
- Rate: per user and hour, `plan` and requests share MIGRATE_BOT_RATE_LIMIT (a plan is a live preflight on
  the hypervisors, as costly as a request); reads and clicks have their own, READ_FACTOR times larger, limit.

`edge_verdict` is the pure rule; `EdgeGate` adds the approver lookup and the rate limiters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from migration_core.dispatch.policy import RateLimiter, Verdict, VerdictCode
from migration_core.service_api import ApproverCheck

log = logging.getLogger(__name__)

READ_FACTOR = 4  # reads (status, history, hosts) and clicks: this many times MIGRATE_BOT_RATE_LIMIT per hour
APPROVER_LOOKUP_S = 1.5  # the gate runs before the 3 s ack: an approver lookup slower than this counts as "no"


class GateKind(StrEnum):
    """What is being asked: a live preflight (request or plan), a read, or a click / control."""

    PREFLIGHT = "preflight"
    READ = "read"
    CONTROL = "control"


_OK = Verdict(True, VerdictCode.OK)


def edge_verdict(
    kind: GateKind,
    user: str,
    channel: str | None,
    is_approver: bool,
    requesters: tuple[str, ...],
    channels: tuple[str, ...],
) -> Verdict:
    """Channel and people rules of the edge (pure). `channel` None or "" is "no channel"."""
    if not user:
        return Verdict(False, VerdictCode.NOT_ALLOWED, "the request names no Slack user")
    if channels and (not channel or channel not in channels):
        where = ", ".join(f"<#{c}>" for c in channels)
        return Verdict(
            False, VerdictCode.WRONG_CHANNEL, f"this bot answers in {where} only (MIGRATE_BOT_CHANNELS); use it there"
        )
    if kind is not GateKind.CONTROL and requesters and user not in requesters and not is_approver:
        return Verdict(
            False,
            VerdictCode.NOT_ALLOWED,
            "you are not on the list of people who may use this bot (MIGRATE_BOT_REQUESTERS); ask an operator",
        )
    return _OK


class EdgeGate:
    """`await gate.check(kind, user, channel)` -> Verdict; counts the request against the user's rate limit."""

    def __init__(
        self,
        *,
        requesters: tuple[str, ...],
        channels: tuple[str, ...],
        per_hour: int,
        approver_check: ApproverCheck,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.requesters = requesters
        self.channels = channels
        self._approver_check = approver_check
        self._limits = {
            GateKind.PREFLIGHT: RateLimiter(per_hour, 3600.0, clock),
            GateKind.READ: RateLimiter(per_hour * READ_FACTOR, 3600.0, clock),
            GateKind.CONTROL: RateLimiter(per_hour * READ_FACTOR, 3600.0, clock),
        }

    async def is_approver(self, user: str) -> bool:
        try:
            return bool(await asyncio.wait_for(self._approver_check(user), APPROVER_LOOKUP_S))
        except Exception as err:  # slow or failing lookup: the safe answer is "not an approver"
            log.warning("approver lookup for %s failed at the gate (%s); treated as not an approver", user, err)
            return False

    async def check(self, kind: GateKind, user: str, channel: str | None) -> Verdict:
        approver = bool(self.requesters) and kind is not GateKind.CONTROL and await self.is_approver(user)
        verdict = edge_verdict(kind, user, channel, approver, self.requesters, self.channels)
        if not verdict.allowed:
            return verdict
        rate = self._limits[kind].hit(user)
        if not rate.allowed:
            return Verdict(False, VerdictCode.RATE_LIMITED, rate.reason)
        return _OK


@dataclass(frozen=True)
class Workspace:
    """The Slack team (and Enterprise Grid org) the bot is installed in."""

    team_id: str
    enterprise_id: str | None = None


def foreign_problem(bound: Workspace, team_id: str | None, enterprise_id: str | None) -> str | None:
    """Why a request does not come from the bound workspace (None when it does). Pure.

    >>> foreign_problem(Workspace("T1"), "T2", None)
    "team 'T2' is not this bot's workspace (T1)"
    >>> foreign_problem(Workspace("T1"), "T1", None) is None
    True
    """
    if not team_id:
        return "the request names no team"
    if team_id != bound.team_id:
        return f"team {team_id[:40]!r} is not this bot's workspace ({bound.team_id})"
    if (enterprise_id or None) != bound.enterprise_id:
        return f"enterprise {str(enterprise_id)[:40]!r} is not this bot's org ({bound.enterprise_id or 'none'})"
    return None


class WorkspaceBinding:
    """The workspace from `auth.test`, fetched once (at start; lazily if start did not)."""

    def __init__(self) -> None:
        self.workspace: Workspace | None = None
        self._lock = asyncio.Lock()

    async def bind(self, client: AsyncWebClient) -> Workspace:
        async with self._lock:
            if self.workspace is None:
                resp = await client.auth_test()
                team = resp.get("team_id")
                if not isinstance(team, str) or not team:
                    raise RuntimeError("auth.test named no team_id; is SLACK_BOT_TOKEN a bot token?")
                enterprise = resp.get("enterprise_id")
                self.workspace = Workspace(team, enterprise if isinstance(enterprise, str) and enterprise else None)
                log.info("bound to Slack team %s%s", team, f" (org {enterprise})" if enterprise else "")
            return self.workspace


def team_of(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(team id, enterprise id) a payload claims, wherever its kind puts them."""

    def ident(value: Any) -> str | None:
        if isinstance(value, dict):
            value = value.get("id")
        return value if isinstance(value, str) and value else None

    team = ident(body.get("team_id")) or ident(body.get("team"))
    user = body.get("user")
    if team is None and isinstance(user, dict):
        team = ident(user.get("team_id"))
    enterprise = ident(body.get("enterprise_id")) or ident(body.get("enterprise"))
    return team, enterprise
