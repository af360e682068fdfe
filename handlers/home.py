"""App Home: on `app_home_opened`, publish active migrations, the queue (with reasons) and recent history."""

from __future__ import annotations

import logging
from typing import Any

from bot.blocks.home import home_message
from bot.blocks.ir import SLACK
from bot.blocks.slack import home_view
from handlers.deps import Deps

log = logging.getLogger(__name__)
RECENT_JOBS = 10


async def publish_home(deps: Deps, client: Any, user: str) -> None:
    svc = deps.service
    active = await svc.active_jobs()
    queue = await svc.queue()
    recent = [j for j in await svc.history(None, RECENT_JOBS * 2) if j.state.terminal][:RECENT_JOBS]
    msg = home_message(user, active, queue, recent, SLACK, now=deps.now())
    await client.views_publish(user_id=user, view=home_view(msg))


def register(app: Any, deps: Deps) -> None:
    async def on_home_opened(event: dict[str, Any], client: Any) -> None:
        if event.get("tab", "home") != "home" or not event.get("user"):
            return
        try:
            await publish_home(deps, client, str(event["user"]))
        except Exception:
            log.exception("could not publish the Home tab for %s", event.get("user"))

    app.event("app_home_opened")(on_home_opened)
