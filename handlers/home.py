"""App Home: on `app_home_opened`, publish active migrations, the queue (with reasons) and recent history."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from handlers.blocks.home import home_message
from handlers.blocks.ir import SLACK
from handlers.blocks.slack import home_view
from handlers.deps import Deps, Listener, Matcher, register_table
from handlers.slack_io import error_code
from migration_core.drains import DrainState
from migration_core.models import JobState

log = logging.getLogger(__name__)
RECENT_JOBS = 10


async def publish_home(deps: Deps, client: AsyncWebClient, user: str) -> None:
    svc = deps.service
    active = await svc.active_jobs()
    if not await _is_approver(deps, user):  # approval requests are shown to those who can approve (and own)
        active = [j for j in active if j.state is not JobState.AWAITING_APPROVAL or j.requester == user]
    queue = await svc.queue()
    recent = [j for j in await svc.history(None, RECENT_JOBS * 2) if j.state.terminal][:RECENT_JOBS]
    drains = await svc.active_drains()
    if not await _is_approver(deps, user):  # like jobs: drain approval requests go to those who can approve
        drains = [s for s in drains if s.drain.state is not DrainState.AWAITING_APPROVAL or s.drain.requester == user]
    msg = home_message(user, active, queue, recent, SLACK, now=deps.now(), drains=drains)
    await client.views_publish(user_id=user, view=home_view(msg))


async def _is_approver(deps: Deps, user: str) -> bool:
    if deps.gate is not None:
        return await deps.gate.is_approver(user)
    try:
        return bool(await deps.approver_check(user))
    except Exception:
        return False


async def on_home_opened(event: dict[str, Any], client: AsyncWebClient, *, deps: Deps) -> None:
    user = event.get("user")
    if event.get("tab", "home") != "home" or not isinstance(user, str) or not user:
        return
    try:
        await publish_home(deps, client, user)
    except SlackApiError as err:  # Slack said no (unknown user, rate limit...): not a bug, no traceback
        log.warning("could not publish the Home tab for %s: %s", user[:40], error_code(err) or err)
    except Exception:
        log.exception("could not publish the Home tab for %s", user[:40])


async def other_event(event: dict[str, Any], *, deps: Deps) -> None:
    # Subscribed or not, other events get an ack (Bolt sends it) and nothing else; without this listener
    # Bolt answers 404 and logs a code suggestion, with the event's (user-controlled) type in it.
    return None


# The catch-all comes after app_home_opened, so it only sees the events no listener above took.
EVENTS: tuple[tuple[Matcher, Listener], ...] = (
    ("app_home_opened", on_home_opened),
    (re.compile(r".*"), other_event),
)


def register(app: AsyncApp, deps: Deps) -> None:
    register_table(app.event, EVENTS, deps)
