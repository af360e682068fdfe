"""`/migrate …`: ack at once, answer usage and refusals ephemerally, post one card per migration request."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.answers import (
    freezes_message,
    help_message,
    hosts_message,
    jobs_message,
    status_message,
    text_message,
)
from bot.blocks.card import card_message, plan_message
from bot.blocks.drain import NOT_YET, drain_plan_message, placed_plan_message
from bot.blocks.ir import SLACK, Message
from bot.blocks.slack import message_payload
from handlers.deps import Deps, Listener, Matcher, bug_reference, ephemeral, register_table
from handlers.gate import GateKind, team_of
from handlers.slack_io import post_message
from migration_core.errors import GrammarError, MigrateBotError
from migration_core.grammar.parser import (
    CancelCommand,
    CancelDrainCommand,
    Command,
    DrainCommand,
    FreezesCommand,
    HelpCommand,
    HistoryCommand,
    HostsCommand,
    MigrateCommand,
    PlaceCommand,
    ReturnCommand,
    StatusCommand,
    help_text,
    parse_command,
)
from migration_core.models import Job, JobState, MigrationRequest

log = logging.getLogger(__name__)
# respond() made safe by _safe_respond: the keyword arguments of AsyncRespond, never raises.
Respond = Callable[..., Awaitable[None]]
DUPLICATE_WINDOW_S = (
    60  # without a trigger_id, the same text from the same user within a minute is one request
)


def idempotency_key(body: dict[str, Any], now_s: float | None = None) -> str:
    """Slack retries and duplicate deliveries carry the same trigger_id; fall back to user+text+minute."""
    team = body.get("team_id") or ""
    trigger = body.get("trigger_id")
    if trigger:
        return f"slack:{team}:{trigger}"
    now_s = time.time() if now_s is None else now_s
    bucket = int(now_s // DUPLICATE_WINDOW_S)
    raw = f"{team}|{body.get('user_id')}|{body.get('channel_id')}|{body.get('text')}|{bucket}"
    return "slack-h:" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def _ephemeral_msg(msg: Message) -> dict[str, Any]:
    return {"response_type": "ephemeral", **message_payload(msg)}


def retry_num(request: AsyncBoltRequest | None) -> int:
    """Slack's X-Slack-Retry-Num of this delivery (0 for a first delivery); Bolt mirrors Socket Mode's
    retry_attempt into the same header."""
    headers = getattr(request, "headers", None) or {}
    value = headers.get("x-slack-retry-num")
    value = value[0] if isinstance(value, list | tuple) and value else value
    try:
        return max(0, int(str(value))) if value is not None else 0
    except ValueError:
        return 0


async def on_migrate(
    ack: AsyncAck,
    body: dict[str, Any],
    respond: AsyncRespond | None,
    client: AsyncWebClient,
    request: AsyncBoltRequest | None = None,
    *,
    deps: Deps,
) -> None:
    await handle_migrate(deps, ack, body, respond, client, retry=retry_num(request))


async def unknown_command(ack: AsyncAck, body: dict[str, Any], *, deps: Deps) -> None:
    # Another command pointed at this app's URL (a manifest typo, a forged request): say what works.
    command = str(body.get("command", ""))[:40]
    await ack(**ephemeral(f"this app answers /migrate only, not {command!r}; try `/migrate help`"))


# The catch-all comes after /migrate, so it only sees what /migrate did not take.
COMMANDS: tuple[tuple[Matcher, Listener], ...] = (
    ("/migrate", on_migrate),
    (re.compile(r".*"), unknown_command),
)


def register(app: AsyncApp, deps: Deps) -> None:
    register_table(app.command, COMMANDS, deps)


def _safe_respond(respond: AsyncRespond | None) -> Respond:
    """`respond` that cannot fail the listener: a used-up or missing response_url is Slack's state, not a bug."""

    async def safe(**kwargs: Any) -> None:
        if respond is None:
            log.warning("no response_url to answer on: %s", str(kwargs.get("text", ""))[:200])
            return
        try:
            await respond(**kwargs)
        except Exception as err:
            log.warning("could not answer on the response_url (%s): %s", type(err).__name__, err)

    return safe


async def handle_migrate(
    deps: Deps,
    ack: AsyncAck,
    body: dict[str, Any],
    respond: AsyncRespond | None,
    client: AsyncWebClient,
    *,
    retry: int = 0,
) -> None:
    """The whole /migrate listener; `ack` is always called first and exactly once. `retry`: Slack's retry
    number; a retry of a delivery this process already took is acked silently (it answered the first)."""
    if not deps.deliveries.first_time(idempotency_key(body)) and retry > 0:
        await ack()
        return
    answer = _safe_respond(respond)
    text = str(body.get("text") or "")
    try:
        cmd = parse_command(text)
    except GrammarError as err:
        await ack(**ephemeral(str(err)))
        return
    except Exception:
        await ack(**ephemeral(bug_reference("parse_command")))
        return
    if isinstance(cmd, HelpCommand):
        await ack(**_ephemeral_msg(help_message(help_text(cmd.topic), SLACK)))
        return
    refusal = await _gate(deps, cmd, body)
    if refusal is not None:
        await ack(**ephemeral(refusal))
        return
    if isinstance(cmd, MigrateCommand):
        req = cmd.request
        what = "Planning" if cmd.plan_only else "Checking"
        await ack(response_type="ephemeral", text=f"{what} {req.vm} → {req.destination}… (preflight checks)")
    elif isinstance(cmd, DrainCommand) and cmd.plan_only:
        await ack(response_type="ephemeral", text=f"Planning the drain of {cmd.host}… (preflight on every host)")
    elif isinstance(cmd, PlaceCommand):
        await ack(response_type="ephemeral", text=f"Finding a host for {cmd.vm}… (preflight on every host)")
    elif isinstance(cmd, DrainCommand | ReturnCommand | CancelDrainCommand):
        await ack(**ephemeral(_not_yet(cmd)))  # nothing is changed
        return
    else:
        await ack()
    try:
        await _answer(deps, cmd, body, answer, client, retry=retry > 0)
    except MigrateBotError as err:
        await answer(**ephemeral(str(err)))
    except Exception:
        await answer(**ephemeral(bug_reference(f"/migrate {type(cmd).__name__}")))


def _gate_kind(cmd: Command) -> GateKind:
    if isinstance(cmd, MigrateCommand):
        return GateKind.PREFLIGHT  # `plan` too: a live preflight (dirty-rate measurement) on the hypervisors
    if isinstance(cmd, CancelCommand):
        return GateKind.CONTROL
    return GateKind.READ


async def _gate(deps: Deps, cmd: Command, body: dict[str, Any]) -> str | None:
    """The edge gates (channel, people, rate; handlers.gate): None to go on, else the refusal, recorded."""
    if deps.gate is None:
        return None
    user = str(body.get("user_id") or "")
    channel = str(body.get("channel_id") or "")
    kind = _gate_kind(cmd)
    verdict = await deps.gate.check(kind, user, channel)
    if verdict.allowed:
        return None
    team, _enterprise = team_of(body)
    data = {"command": type(cmd).__name__, "channel": channel[:40], "team_id": str(team)[:40], "code": verdict.code}
    await deps.refused(None, user, f"/migrate ({kind.value})", verdict.reason, data)
    return verdict.reason


async def _hosts_for(deps: Deps, user: str) -> Message:
    """Names, reachability and slots for everyone; libvirt URIs and errors (users, socket and key paths)
    only for approvers, who are the ones to act on an unreachable host."""
    hosts = await deps.service.hosts()
    if deps.gate is None or not await deps.gate.is_approver(user):
        hosts = [
            dataclasses.replace(h, uri="", detail="answers" if h.reachable else "does not answer") for h in hosts
        ]
    return hosts_message(hosts, SLACK)


async def _answer(
    deps: Deps, cmd: Command, body: dict[str, Any], respond: Respond, client: AsyncWebClient, *, retry: bool = False
) -> None:
    svc = deps.service
    user = str(body.get("user_id") or "")
    if isinstance(cmd, MigrateCommand) and cmd.plan_only:
        plan = await svc.plan(cmd.request)
        await respond(**_ephemeral_msg(plan_message(plan, SLACK)))
    elif isinstance(cmd, MigrateCommand):
        await _request(deps, cmd, body, respond, client, retry=retry)
    elif isinstance(cmd, DrainCommand):
        drain = await svc.plan_drain(
            cmd.host, cmd.options, to=cmd.to, except_vms=cmd.except_vms, include_stopped=cmd.include_stopped
        )
        await respond(**_ephemeral_msg(drain_plan_message(drain, SLACK)))
    elif isinstance(cmd, PlaceCommand):
        placed = await svc.plan_any(cmd.vm, cmd.options)
        if cmd.plan_only or placed.destination is None:
            await respond(**_ephemeral_msg(placed_plan_message(placed, SLACK)))
        else:
            await respond(**ephemeral(f"{cmd.vm} goes to {placed.why}"))
            chosen = MigrateCommand(MigrationRequest(cmd.vm, placed.destination, cmd.options))
            await _request(deps, chosen, body, respond, client, retry=retry)
    elif isinstance(cmd, StatusCommand):
        await respond(**_ephemeral_msg(await _status(deps, cmd)))
    elif isinstance(cmd, HistoryCommand):
        jobs = await svc.history(cmd.subject, cmd.limit)
        title = f"History of {cmd.subject}" if cmd.subject else "History"
        await respond(**_ephemeral_msg(jobs_message(title, jobs, SLACK, empty="No migrations yet.")))
    elif isinstance(cmd, HostsCommand):
        await respond(**_ephemeral_msg(await _hosts_for(deps, user)))
    elif isinstance(cmd, FreezesCommand):
        await respond(**_ephemeral_msg(freezes_message(await svc.freezes(), SLACK)))
    elif isinstance(cmd, CancelCommand):
        job = await svc.cancel(cmd.job_id, user)
        await deps.refresh_card(job.id)
        await respond(**_ephemeral_msg(text_message(f"Job #{job.id} withdrawn ({job.state.value}).", SLACK)))
    else:  # pragma: no cover - the grammar has no other commands
        raise AssertionError(f"unhandled command {cmd!r}")


def _not_yet(cmd: DrainCommand | ReturnCommand | CancelDrainCommand) -> str:
    """Executing drains comes in the next round: say so plainly, point at the dry run, change nothing."""
    if isinstance(cmd, DrainCommand):
        return f"{NOT_YET} (e.g. `/migrate plan drain {cmd.host}`). Nothing was changed."
    if isinstance(cmd, ReturnCommand):
        return f"return is not available yet: it needs drain execution. Nothing was changed. ({NOT_YET})"
    return f"there are no drains to cancel yet: {NOT_YET}. Nothing was changed."


async def _status(deps: Deps, cmd: StatusCommand) -> Message:
    svc = deps.service
    ttl_s = deps.settings.approval_ttl_s
    target = cmd.target
    if target is None:
        jobs = await svc.active_jobs()
        return jobs_message("Active migrations", jobs, SLACK, empty="No migration is active.")
    job: Job | None
    if isinstance(target, int):
        job = await svc.get_job(target)
    else:
        job = await svc.latest_job_for_vm(target)
        if job is None:
            return text_message(f"No migration of `{target}` on record.", SLACK)
    queue = None
    if job.state is JobState.QUEUED:
        queue = next((q for q in await svc.queue() if q.job_id == job.id), None)
    return status_message(job, SLACK, ttl_s=ttl_s, queue=queue)


async def _request(
    deps: Deps,
    cmd: MigrateCommand,
    body: dict[str, Any],
    respond: Respond,
    client: AsyncWebClient,
    *,
    retry: bool = False,
) -> None:
    """Submit (idempotently) and post the card once; a duplicate delivery only gets a pointer to it, and a
    Slack retry whose first delivery another replica took gets nothing (that replica answered it)."""
    user = str(body.get("user_id") or "")
    channel = str(body.get("channel_id") or "")
    job = await deps.service.submit(
        cmd.request, user, chat_channel=channel or None, idempotency_key=idempotency_key(body)
    )
    async with deps.lock(job.id):
        job = await deps.service.get_job(job.id)
        if job.chat_thread:
            if retry:
                return
            await respond(
                **_ephemeral_msg(text_message(f"Already requested: job #{job.id} (see its card).", SLACK))
            )
            return
        card = card_message(job, SLACK, ttl_s=deps.settings.approval_ttl_s, now=deps.now())
        try:
            ts = await post_message(client, channel, card)
        except SlackApiError as err:
            code = err.response.get("error", "") if err.response is not None else ""
            hint = (
                " Invite me with `/invite @migrate-bot`."
                if code in ("not_in_channel", "channel_not_found")
                else ""
            )
            await respond(
                **ephemeral(
                    f"job #{job.id} was created but I could not post its card here ({code}).{hint} "
                    f"Withdraw it with `/migrate cancel {job.id}` or see `/migrate status {job.id}`."
                )
            )
            return
        rendered_state = job.state
        job = await deps.service.set_chat_refs(job.id, channel=channel, thread=ts)
    if job.state is not rendered_state:
        await deps.refresh_card(job.id)  # it moved while the card was being posted
