"""Unit-test doubles for the Slack layer: a recording Web API client, a manual clock, a fake Bolt app."""

from __future__ import annotations

import asyncio
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from migration_core.hypervisor.fleet import VirtualTimeLoop

SETTLE_VIRTUAL_S = 0.001  # virtual seconds: what one settle() moves the virtual loop's clock by


def slack_error(error: str, status: int = 200) -> SlackApiError:
    resp = AsyncSlackResponse(
        client=None,
        http_verb="POST",
        api_url="http://fake/api/x",
        req_args={},
        data={"ok": False, "error": error},
        headers={},
        status_code=status,
    )
    return SlackApiError(f"The request to the Slack API failed. ({error})", resp)


class RecordingClient:
    """Records chat.postMessage / chat.update / views.* calls; `fail[method]` holds errors to raise next."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail: dict[str, list[Exception]] = {}
        self._seq = 0

    def _maybe_fail(self, method: str) -> None:
        pending = self.fail.get(method)
        if pending:
            raise pending.pop(0)

    async def chat_postMessage(self, **kw: Any) -> dict[str, Any]:
        self._maybe_fail("chat_postMessage")
        self._seq += 1
        ts = f"1714565000.{self._seq:06d}"
        self.calls.append(("chat_postMessage", {**kw, "_ts": ts}))
        return {"ok": True, "ts": ts, "channel": kw["channel"]}

    async def chat_update(self, **kw: Any) -> dict[str, Any]:
        self._maybe_fail("chat_update")
        self.calls.append(("chat_update", kw))
        return {"ok": True, "ts": kw["ts"]}

    async def chat_postEphemeral(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("chat_postEphemeral", kw))
        return {"ok": True, "message_ts": "1.1"}

    async def views_open(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("views_open", kw))
        return {"ok": True}

    async def views_publish(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("views_publish", kw))
        return {"ok": True}

    def of(self, method: str) -> list[dict[str, Any]]:
        return [kw for m, kw in self.calls if m == method]


class FakeTime:
    """A monotonic clock and a sleep() that only returns when the test advances time past its deadline."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, fut))
        await fut

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for deadline, fut in list(self._sleepers):
            if deadline <= self.now + 1e-9 and not fut.done():
                fut.set_result(None)
                self._sleepers.remove((deadline, fut))
        await settle()


async def settle(rounds: int = 60) -> None:
    """Let every ready task run. On the virtual-time loop (the real service on the fleet) also wait until the
    store's worker threads have answered and every task waits again: that loop only moves its clock to a timer
    once nothing is ready and no thread is out, so one short virtual sleep is that barrier."""
    for _ in range(rounds):
        await asyncio.sleep(0)
    if isinstance(asyncio.get_running_loop(), VirtualTimeLoop):
        await asyncio.sleep(SETTLE_VIRTUAL_S)


class FakeBoltApp:
    """Collects the listeners a module's register(app, deps) adds, so tests can call them directly."""

    def __init__(self) -> None:
        self.commands: dict[str, Any] = {}
        self.actions: dict[str, Any] = {}
        self.views: dict[str, Any] = {}
        self.events: dict[str, Any] = {}

    def _collect(self, table: dict[str, Any], key: str) -> Any:
        def deco(fn: Any) -> Any:
            table[key] = fn
            return fn

        return deco

    def command(self, name: str) -> Any:
        return self._collect(self.commands, name)

    def action(self, action_id: str) -> Any:
        return self._collect(self.actions, action_id)

    def view(self, callback_id: str) -> Any:
        return self._collect(self.views, callback_id)

    def event(self, name: str) -> Any:
        return self._collect(self.events, name)


class Recorder:
    """An async callable standing in for ack() / respond(); remembers each call's keyword arguments."""

    def __init__(self, log: list[tuple[str, dict[str, Any]]] | None = None, name: str = "") -> None:
        self.calls: list[dict[str, Any]] = []
        self._log = log
        self._name = name

    async def __call__(self, *args: Any, **kw: Any) -> None:
        if args:
            kw = {"text": args[0], **kw}
        self.calls.append(kw)
        if self._log is not None:
            self._log.append((self._name, kw))

    def text(self) -> str:
        import json

        return json.dumps(self.calls, ensure_ascii=False)
