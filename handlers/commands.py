"""`/migrate …`: ack at once, answer usage and refusals ephemerally, post one card per migration request."""

from __future__ import annotations

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

from handlers.answer import AnswerContext, Show, answer, working_text
from handlers.blocks.answers import (
    text_message,
)
from handlers.blocks.ir import SLACK, Message
from handlers.blocks.slack import message_payload
from handlers.deps import Deps, Listener, Matcher, bug_reference, ephemeral, register_table
from handlers.gate import GateKind, team_of
from handlers.slack_io import post_message
from migration_core.drains import Drain
from migration_core.errors import GrammarError, MigrateBotError
from migration_core.grammar.parser import (
    CancelCommand,
    CancelDrainCommand,
    Command,
    DrainCommand,
    HelpCommand,
    MigrateCommand,
    ReturnCommand,
    parse_command,
)
from migration_core.models import Job

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
    reply = _safe_respond(respond)
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
        await ack(**_ephemeral_msg((await answer(cmd, await _context(deps, body))).message))
        return
    refusal = await _gate(deps, cmd, body)
    if refusal is not None:
        await ack(**ephemeral(refusal))
        return
    working = working_text(cmd)
    if working is not None:
        await ack(response_type="ephemeral", text=working)
    else:
        await ack()
    try:
        await _show(deps, cmd, body, reply, client, retry=retry > 0)
    except MigrateBotError as err:
        await reply(**ephemeral(str(err)))
    except Exception:
        await reply(**ephemeral(bug_reference(f"/migrate {type(cmd).__name__}")))


def _gate_kind(cmd: Command) -> GateKind:
    if isinstance(cmd, MigrateCommand):
        return GateKind.PREFLIGHT  # `plan` too: a live preflight (dirty-rate measurement) on the hypervisors
    if isinstance(cmd, ReturnCommand) or (isinstance(cmd, DrainCommand) and not cmd.plan_only):
        return GateKind.PREFLIGHT  # a drain request plans every move live, like a request
    if isinstance(cmd, CancelCommand | CancelDrainCommand):
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


async def _context(deps: Deps, body: dict[str, Any]) -> AnswerContext:
    """The person and channel of this delivery; libvirt URIs and connection errors (users, socket and key paths)
    only for approvers, who are the ones to act on an unreachable host."""
    user = str(body.get("user_id") or "")
    details = deps.gate is not None and await deps.gate.is_approver(user)
    return AnswerContext(
        deps.service,
        user,
        SLACK,
        deps.settings.approval_ttl_s,
        channel=str(body.get("channel_id") or "") or None,
        host_details=details,
        idempotency_key=idempotency_key(body),
        now=deps.now,
    )


async def _show(
    deps: Deps, cmd: Command, body: dict[str, Any], respond: Respond, client: AsyncWebClient, *, retry: bool = False
) -> None:
    """handlers.answer answers; Slack shows it: notes and answers ephemerally, a new job's or drain's card in the
    channel (tracked from then on), and a changed job's or drain's card redrawn."""
    result = await answer(cmd, await _context(deps, body))
    for note in result.notes:
        await respond(**_ephemeral_msg(text_message(note, SLACK)))
    if result.show is Show.CARD and result.job is not None:
        await _post_job_card(deps, result.job, result.message, body, respond, client, retry=retry)
    elif result.show is Show.CARD and result.drain is not None:
        await _post_drain_card(deps, result.drain, result.message, body, respond, client)
    else:
        await respond(**_ephemeral_msg(result.message))
    if result.changed and result.job is not None:
        await deps.refresh_card(result.job.id)
    if result.changed and result.drain is not None:
        await deps.refresh_drain_card(result.drain.id)  # the thread gets the report from the drain sink


def _not_posted(what: str, ref: str, err: SlackApiError) -> dict[str, Any]:
    """The ephemeral answer when a created job's or drain's card could not be posted in the channel."""
    code = err.response.get("error", "") if err.response is not None else ""
    hint = " Invite me with `/invite @migrate-bot`." if code in ("not_in_channel", "channel_not_found") else ""
    return ephemeral(
        f"{what} was created but I could not post its card here ({code}).{hint} "
        f"Withdraw it with `/migrate cancel {ref}` or see `/migrate status {ref}`."
    )


async def _post_drain_card(
    deps: Deps, drain: Drain, card: Message, body: dict[str, Any], respond: Respond, client: AsyncWebClient
) -> None:
    """The drain's one card in the channel; its ts is stored so the drain sink edits it and threads under it.
    `drain`: the record as the card shows it."""
    channel = str(body.get("channel_id") or "")
    try:
        ts = await post_message(client, channel, card)
    except SlackApiError as err:
        await respond(**_not_posted(drain.ref, drain.ref, err))
        return
    await deps.service.set_drain_refs(drain.id, channel=channel, thread=ts)
    if (await deps.service.get_drain(drain.id)).state is not drain.state:
        await deps.refresh_drain_card(drain.id)  # it moved while the card was being posted


async def _post_job_card(
    deps: Deps,
    job: Job,
    card: Message,
    body: dict[str, Any],
    respond: Respond,
    client: AsyncWebClient,
    *,
    retry: bool = False,
) -> None:
    """Post the card once (`job` as the card shows it); a duplicate delivery (the same idempotency key gave the
    same job) only gets a pointer to it, and a Slack retry whose first delivery another replica took gets
    nothing (that replica answered it)."""
    channel = str(body.get("channel_id") or "")
    rendered_state = job.state
    async with deps.lock(job.id):
        if (await deps.service.get_job(job.id)).chat.thread:
            if retry:
                return
            await respond(
                **_ephemeral_msg(text_message(f"Already requested: job #{job.id} (see its card).", SLACK))
            )
            return
        try:
            ts = await post_message(client, channel, card)
        except SlackApiError as err:
            await respond(**_not_posted(f"job #{job.id}", str(job.id), err))
            return
        job = await deps.service.set_chat_refs(job.id, channel=channel, thread=ts)
    if job.state is not rendered_state:
        await deps.refresh_card(job.id)  # it moved while the card was being posted
