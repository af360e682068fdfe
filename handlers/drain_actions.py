"""The drain card's Approve and Deny buttons, bound to the drain AND the plan the clicker saw.

As for the job buttons (handlers/actions.py), nothing in a click is trusted for authority: the drain id comes
from the block_id (`drain_approval:<id>`) and must agree with the value (`<id>:<plan hash>`); the hash must be
the drain's plan now (a card left over from an older plan, or a forged value, changes nothing); the service
looks the drain up and authorises the clicker (PolicyError / StateError, whose text the clicker sees
ephemerally). Refusals the service never sees (no drain, a wrong hash, a malformed click) are recorded here.
Registered before handlers.actions, whose catch-all listener refuses every control it does not know.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond

from handlers.blocks.drain_card import APPROVE_DRAIN, DENY_DRAIN, DRAIN_BLOCK
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
from migration_core.errors import MigrateBotError, StateError, UnknownDrainError

log = logging.getLogger(__name__)
_BLOCK = re.compile(rf"^{DRAIN_BLOCK}:([0-9]{{1,18}})$")
_VALUE = re.compile(r"^([0-9]{1,18}):([0-9a-f]{16})$")
_RECORDED_CHARS = 100


@dataclass(frozen=True)
class DrainClick:
    """What a well-formed drain button names: the drain and the hash of the plan on the card."""

    drain_id: int
    plan_hash: str


def drain_click(body: dict[str, Any]) -> DrainClick | None:
    """The drain and plan hash a click is about; None when the block_id and the value disagree or are
    malformed (pure)."""
    try:
        action = body["actions"][0]
        block = _BLOCK.match(str(action.get("block_id", "")))
        value = _VALUE.match(str(action.get("value", "")))
        if block is None or value is None or block.group(1) != value.group(1):
            return None
        return DrainClick(int(block.group(1)), value.group(2))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        return None


def _click_data(body: dict[str, Any]) -> dict[str, object]:
    try:
        action = body["actions"][0]
        fields = {k: action.get(k) for k in ("action_id", "block_id", "value")}
    except (KeyError, IndexError, TypeError, AttributeError):
        fields = {}
    return {k: str(v)[:_RECORDED_CHARS] for k, v in fields.items() if v is not None}


async def _say(respond: AsyncRespond | None, text: str) -> None:
    """Ephemeral feedback to the clicker only; never replaces the card."""
    if respond is None:
        return
    try:
        await respond(replace_original=False, **ephemeral(text))
    except Exception as err:
        log.warning("could not send ephemeral feedback (%s): %s", type(err).__name__, text)


DrainDecision = Callable[[Deps, int, str], Awaitable[object]]


async def _approve(deps: Deps, drain_id: int, user: str) -> None:
    await deps.service.approve_drain(drain_id, user)


async def _deny(deps: Deps, drain_id: int, user: str) -> None:
    await deps.service.deny_drain(drain_id, user)


async def on_drain_button(
    ack: AsyncAck,
    body: dict[str, Any],
    respond: AsyncRespond | None,
    *,
    deps: Deps,
    action_id: str,
    decide: DrainDecision,
) -> None:
    """Approve / Deny of a drain card: ack, the edge gates, the drain and the plan hash from the click, then
    the service decides; every refusal goes to the clicker, ephemerally, and changes nothing."""
    await ack()
    user = body_user(body)
    if deps.gate is not None:
        verdict = await deps.gate.check(GateKind.CONTROL, user, body_channel(body))
        if not verdict.allowed:
            await deps.refused(None, user, action_id, verdict.reason, {**_click_data(body), "code": verdict.code})
            await _say(respond, verdict.reason)
            return
    click = drain_click(body)
    if click is None or not user:
        why = "the button does not belong to a drain card"
        await deps.refused(None, user, action_id, why, _click_data(body))
        await _say(respond, f"{why}; nothing was changed. Use `/migrate status`")
        return
    try:
        drain = await deps.service.get_drain(click.drain_id)
    except UnknownDrainError as err:
        await deps.refused(None, user, action_id, err.message, _click_data(body))
        await _say(respond, f"{err}; nothing was changed")
        return
    if drain.plan.hash != click.plan_hash:
        why = (
            f"this card shows plan `{click.plan_hash}`, but {drain.ref}'s plan is `{drain.plan.hash}`: "
            f"nothing was changed; look at the card again (or `/migrate status {drain.ref}`)"
        )
        await deps.refused(None, user, action_id, why, {**_click_data(body), "drain": drain.id})
        await deps.refresh_drain_card(drain.id)
        await _say(respond, why)
        return
    try:
        await decide(deps, drain.id, user)
    except StateError as err:
        deps.count_refusal(action_id, "state")
        await _say(respond, str(err))
        await deps.refresh_drain_card(drain.id)  # the card may be stale: that is why they could click
        return
    except MigrateBotError as err:  # recorded by the service; the card is right as it is
        deps.count_refusal(action_id, "policy")
        await _say(respond, str(err))
        return
    except Exception:
        await _say(respond, bug_reference(f"button {action_id}"))
        return
    await deps.refresh_drain_card(drain.id)


ACTIONS: tuple[tuple[Matcher, Listener], ...] = tuple(
    (action_id, functools.partial(on_drain_button, action_id=action_id, decide=decide))
    for action_id, decide in ((APPROVE_DRAIN, _approve), (DENY_DRAIN, _deny))
)


def register(app: AsyncApp, deps: Deps) -> None:
    """Before handlers.actions: its catch-all refuses every control registered after it."""
    register_table(app.action, ACTIONS, deps)
