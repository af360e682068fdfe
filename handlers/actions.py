"""Buttons (approve, deny, abort, post-copy, downtime, bandwidth) and the two value modals.

Every listener acks first. A button's value is never trusted for authority: the job id is read from the
block_id (`approval:<id>` / `controls:<id>`), must agree with the value, and the service looks the job up and
authorises the clicker (raising PolicyError / StateError, whose text the clicker sees ephemerally). Every
refusal is recorded in the job store's event log (kind "refused"): by the service for jobs it looks up, here
for clicks that name no job, name a job that does not exist, or use a control the bot never rendered (a
catch-all listener registered last).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from handlers.blocks.answers import error_message, text_message
from handlers.blocks.ir import SLACK
from handlers.blocks.modals import (
    BANDWIDTH_CALLBACK,
    DOWNTIME_CALLBACK,
    VALUE_ACTION,
    VALUE_BLOCK,
    ModalTarget,
    bandwidth_modal,
    downtime_modal,
    parse_bandwidth_mib_s,
    parse_downtime_ms,
)
from handlers.blocks.slack import message_payload
from handlers.deps import (
    Deps,
    Listener,
    Matcher,
    body_channel,
    body_user,
    bug_reference,
    ephemeral,
    register_table,
)
from handlers.gate import GateKind
from handlers.slack_io import post_message
from migration_core.dispatch.policy import may_control, required_approvals, still_needed
from migration_core.errors import MigrateBotError, RequestError, StateError, UnknownJobError
from migration_core.models import Job, JobState

log = logging.getLogger(__name__)
_BLOCK = re.compile(r"^(approval|controls):([0-9]{1,18})$")
MODAL_ANSWER_WINDOW_S = 2.0  # view_submission must be acked within 3 s
_RECORDED_CHARS = 100  # how much of a forged field the event log keeps (oversized values stay out)
MAX_JOB_ID = 2**63 - 1  # job ids are 64-bit database keys; a bigger number is no job (and would not fit)
STALE_CARD_REFRESH_S = 60.0  # a click on a stale card re-renders it at most this often (refusals never do)


def job_id_of(body: dict[str, Any]) -> int | None:
    """The job a click is about, from the block_id; None when it is missing or disagrees with the value."""
    try:
        action = body["actions"][0]
        m = _BLOCK.match(str(action.get("block_id", "")))
        if m is None:
            return None
        job_id = int(m.group(2))
        value = action.get("value")
        if value is not None and str(value) != str(job_id):
            return None
        return job_id
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        return None


async def _refusal(deps: Deps, body: dict[str, Any], action: str, channel: str) -> str | None:
    """The edge gates for a click or form (channel, rate; handlers.gate): None, or the refusal (recorded)."""
    if deps.gate is None:
        return None
    user = body_user(body)
    verdict = await deps.gate.check(GateKind.CONTROL, user, channel)
    if verdict.allowed:
        return None
    data = {**click_data(body), "channel": channel[:_RECORDED_CHARS], "code": verdict.code}
    await deps.refused(None, user, action, verdict.reason, data)
    return verdict.reason


def click_data(body: dict[str, Any]) -> dict[str, object]:
    """What a refused click asked for, cut short, for the event log."""
    try:
        action = body["actions"][0]
        fields = {k: action.get(k) for k in ("action_id", "block_id", "value")}
    except (KeyError, IndexError, TypeError, AttributeError):
        fields = {}
    return {k: str(v)[:_RECORDED_CHARS] for k, v in fields.items() if v is not None}


async def _say(respond: AsyncRespond | None, text: str) -> None:
    """Ephemeral feedback to the clicker only; never replaces the card."""
    if respond is None:  # a payload without response_url: nobody to tell
        return
    try:
        await respond(replace_original=False, **ephemeral(text))
    except Exception as err:  # Slack's problem (expired response_url...), not ours: no traceback
        log.warning("could not send ephemeral feedback (%s): %s", type(err).__name__, text)


async def _refresh_stale(deps: Deps, job_id: int) -> None:
    """Re-render a card someone clicked while it was stale, at most once per STALE_CARD_REFRESH_S per job."""
    refreshed = deps.stale_card_refreshes
    now = asyncio.get_running_loop().time()
    if now - refreshed.get(job_id, -STALE_CARD_REFRESH_S) < STALE_CARD_REFRESH_S:
        return
    refreshed[job_id] = now
    if len(refreshed) > 1000:  # forged job ids must not grow this forever
        refreshed.clear()
    await deps.refresh_card(job_id)


# What a button does once the click is known to name a job and a person: (deps, job id, user, body, respond, client).
ButtonRun = Callable[[Deps, int, str, dict[str, Any], AsyncRespond | None, AsyncWebClient], Awaitable[None]]


async def _approve(
    deps: Deps, job_id: int, user: str, body: dict[str, Any], respond: AsyncRespond | None, client: AsyncWebClient
) -> None:
    job = await deps.service.approve(job_id, user)
    await deps.refresh_card(job.id)
    if job.state is JobState.AWAITING_APPROVAL:
        if job.plan is not None and job.plan.approval is not None:  # policy file: who is still needed
            text = f"👍 {SLACK.user(user)} approved; still needs {still_needed(job)}"
        else:
            need = required_approvals(job.plan) - len(job.approvers)
            text = f"👍 {SLACK.user(user)} approved; {need} more approval(s) needed from someone else"
        await _thread_reply(client, job, text)


async def _deny(
    deps: Deps, job_id: int, user: str, body: dict[str, Any], respond: AsyncRespond | None, client: AsyncWebClient
) -> None:
    job = await deps.service.deny(job_id, user)
    await deps.refresh_card(job.id)


async def _abort(
    deps: Deps, job_id: int, user: str, body: dict[str, Any], respond: AsyncRespond | None, client: AsyncWebClient
) -> None:
    await deps.service.abort(job_id, user)
    await _say(respond, f"abort of job {job_id} requested; the thread shows when it has stopped")


async def _postcopy(
    deps: Deps, job_id: int, user: str, body: dict[str, Any], respond: AsyncRespond | None, client: AsyncWebClient
) -> None:
    await deps.service.switch_postcopy(job_id, user)
    await _say(respond, f"switch to post-copy of job {job_id} requested; the thread shows the switch")


async def _open_modal(
    kind: str,
    deps: Deps,
    job_id: int,
    user: str,
    body: dict[str, Any],
    respond: AsyncRespond | None,
    client: AsyncWebClient,
) -> None:
    try:
        job = await deps.service.get_job(job_id)
    except UnknownJobError as err:
        await deps.refused(None, user, kind, err.message, {"job_id": job_id, **click_data(body)})
        raise
    verdict = may_control(user, job, await deps.approver_check(user))
    if not verdict.allowed:
        await deps.refused(job.id, user, kind, verdict.reason, click_data(body))
        verdict.raise_if_refused()
    if job.state is not JobState.RUNNING:
        await _say(respond, f"job {job.id} is {job.state.value}, not running: there is nothing to adjust")
        return
    trigger = body.get("trigger_id")
    if not isinstance(trigger, str) or not trigger:
        await _say(respond, "Slack sent no trigger to open the form with; click the button again")
        return
    target = ModalTarget(job.id, job.chat.channel, job.chat.thread)
    view = downtime_modal(job, target) if kind == "downtime" else bandwidth_modal(job, target)
    await client.views_open(trigger_id=trigger, view=view)


# The listeners Bolt calls: module-level, typed with Bolt's own types; `deps` (and a button's `action_id` and
# `run`) are bound by register().


async def on_button(
    ack: AsyncAck,
    body: dict[str, Any],
    respond: AsyncRespond | None,
    client: AsyncWebClient,
    *,
    deps: Deps,
    action_id: str,
    run: ButtonRun,
) -> None:
    """Every button: ack, the edge gates, the job from the block_id, then `run`; refusals go to the clicker."""
    await ack()
    if (refusal := await _refusal(deps, body, action_id, body_channel(body))) is not None:
        await _say(respond, refusal)
        return
    job_id = job_id_of(body)
    user = body_user(body)
    if job_id is None or not user:
        why = "the button does not belong to a migration card"
        await deps.refused(None, user, action_id, why, click_data(body))
        await _say(respond, f"{why}; use `/migrate status`")
        return
    try:
        await run(deps, job_id, user, body, respond, client)
    except UnknownJobError as err:  # recorded by the service; there is no card to refresh
        await _say(respond, str(err))
    except StateError as err:
        deps.count_refusal(action_id, "state")
        await _say(respond, str(err))
        await _refresh_stale(deps, job_id)  # the card may be stale (that is why they could click)
    except MigrateBotError as err:  # a refusal of the person: the card is right as it is, no update
        deps.count_refusal(action_id, "policy")
        await _say(respond, str(err))
    except Exception:
        await _say(respond, bug_reference(f"button {action_id}"))


async def on_downtime(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, *, deps: Deps) -> None:
    if (refusal := await _refusal(deps, body, "downtime form", _modal_channel(body))) is not None:
        await ack(response_action="errors", errors={VALUE_BLOCK: refusal[:150]})
        return
    await handle_value_submission(deps, ack, body, client, parse_downtime_ms, deps.service.set_max_downtime)


async def on_bandwidth(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, *, deps: Deps) -> None:
    if (refusal := await _refusal(deps, body, "bandwidth form", _modal_channel(body))) is not None:
        await ack(response_action="errors", errors={VALUE_BLOCK: refusal[:150]})
        return
    await handle_value_submission(deps, ack, body, client, parse_bandwidth_mib_s, deps.service.set_bandwidth)


async def unknown_action(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond | None, *, deps: Deps) -> None:
    await ack()
    data = click_data(body)
    await deps.refused(None, body_user(body), "unknown control", f"no control {data.get('action_id', '')!r}", data)
    await _say(respond, "that control is not one of this bot's; use `/migrate status`")


async def unknown_view(ack: AsyncAck, body: dict[str, Any], *, deps: Deps) -> None:
    await ack()
    view = body.get("view") or {}
    callback = str(view.get("callback_id", ""))[:_RECORDED_CHARS] if isinstance(view, dict) else ""
    await deps.refused(None, body_user(body), "unknown form", f"no form {callback!r}", {"callback_id": callback})


# The buttons of the card: action_id -> what a click does once it names a job and a person.
BUTTONS: tuple[tuple[str, ButtonRun], ...] = (
    ("approve", _approve),
    ("deny", _deny),
    ("abort", _abort),
    ("postcopy", _postcopy),
    ("downtime", functools.partial(_open_modal, "downtime")),
    ("bandwidth", functools.partial(_open_modal, "bandwidth")),
)
# The catch-alls come last, so they only see what no listener above claimed: controls and forms the bot never
# rendered (forged, or left over from an older version). Acked, refused, recorded.
ACTIONS: tuple[tuple[Matcher, Listener], ...] = (
    *((action_id, functools.partial(on_button, action_id=action_id, run=run)) for action_id, run in BUTTONS),
    (re.compile(r".*"), unknown_action),
)
VIEWS: tuple[tuple[Matcher, Listener], ...] = (
    (DOWNTIME_CALLBACK, on_downtime),
    (BANDWIDTH_CALLBACK, on_bandwidth),
    (re.compile(r".*"), unknown_view),
)


def register(app: AsyncApp, deps: Deps) -> None:
    register_table(app.action, ACTIONS, deps)
    register_table(app.view, VIEWS, deps)


async def _thread_reply(client: AsyncWebClient, job: Job, text: str) -> None:
    if not (job.chat.channel and job.chat.thread):
        return
    try:
        await post_message(client, job.chat.channel, text_message(text, SLACK), thread_ts=job.chat.thread)
    except Exception:
        log.warning("job %s: could not post a thread reply", job.id, exc_info=True)


def _modal_channel(body: dict[str, Any]) -> str:
    """The channel of the card a form was opened from (its private metadata); "" when unknown."""
    try:
        view = body.get("view", {})
        return ModalTarget.load(str(view.get("private_metadata", ""))).channel or ""
    except (ValueError, TypeError, AttributeError, RecursionError):
        return ""


def submitted_value(body: dict[str, Any]) -> str | None:
    try:
        value = body["view"]["state"]["values"][VALUE_BLOCK][VALUE_ACTION]["value"]
        return value if isinstance(value, str) else None
    except (KeyError, TypeError):
        return None


async def handle_value_submission(
    deps: Deps,
    ack: AsyncAck,
    body: dict[str, Any],
    client: AsyncWebClient,
    parse: Callable[[str | None], int],
    apply: Callable[[int, int, str], Awaitable[Job]],
) -> None:
    """Validate -> errors keep the modal open; else apply within the ack window, or close and report later."""
    user = body_user(body)
    try:
        target = ModalTarget.load(str(body.get("view", {}).get("private_metadata", "")))
        if target.job_id > MAX_JOB_ID:  # the metadata came back from the client: no trust in its size either
            raise ValueError("job id out of range")
    except (ValueError, TypeError, AttributeError, RecursionError):
        await ack(response_action="errors", errors={VALUE_BLOCK: "this form lost track of its job; open it again"})
        return
    try:
        value = parse(submitted_value(body))
    except RequestError as err:  # unparseable, or out of range (LimitError, as the grammar and the service say)
        await ack(response_action="errors", errors={VALUE_BLOCK: str(err)[:150]})
        return
    task = asyncio.ensure_future(apply(target.job_id, value, user))
    done, _ = await asyncio.wait({task}, timeout=MODAL_ANSWER_WINDOW_S)
    if done:
        failure = task.exception()
        if isinstance(failure, MigrateBotError):
            await ack(response_action="errors", errors={VALUE_BLOCK: str(failure)[:150]})
            return
        await ack()
        if failure is not None:
            await _tell(client, target, user, bug_reference("modal submission", failure))
        return
    await ack()  # slow hypervisor: close the modal now, report the outcome when it comes
    try:
        await task
    except MigrateBotError as err2:
        await _tell(client, target, user, str(err2))
    except Exception:
        await _tell(client, target, user, bug_reference("modal submission"))


async def _tell(client: AsyncWebClient, target: ModalTarget, user: str, text: str) -> None:
    if not target.channel:
        return
    try:
        payload = message_payload(error_message(text, SLACK))
        await client.chat_postEphemeral(channel=target.channel, user=user, thread_ts=target.thread, **payload)
    except Exception:
        log.warning("could not tell %s: %s", user, text, exc_info=True)
