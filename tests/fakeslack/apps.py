"""Driving an app the way Slack does: signed HTTP requests to /slack/events, Socket Mode envelopes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiohttp

from . import payloads
from .payloads import DriverError

ACK_TIMEOUT_S = 3.0  # Slack shows the user an error when the app does not ack within 3 s (§4)


class AckTimeout(AssertionError):
    """The app did not acknowledge within Slack's 3 s (the test must fail, slack.md §19.8 step 5)."""


class HttpAck(NamedTuple):
    """The app's HTTP answer to a request from "Slack": status, raw body, and the time it took."""

    status: int
    body: str
    latency_s: float

    @property
    def payload(self) -> dict[str, Any] | None:
        """The ack as Slack reads it: JSON as is, a plain-text body as {"text": ...}, empty as None."""
        if not self.body:
            return None
        try:
            parsed = json.loads(self.body)
        except json.JSONDecodeError:
            return {"text": self.body}
        return parsed if isinstance(parsed, dict) else {"text": self.body}


@dataclass(frozen=True)
class SocketAck:
    """The app's ack of a Socket Mode envelope."""

    envelope_id: str
    payload: dict[str, Any] | None
    latency_s: float
    effect: dict[str, Any]


def events_url(app_url: str) -> str:
    """`http://host:port` or `.../` becomes `http://host:port/slack/events`; a full path is kept."""
    parts = urlsplit(app_url)
    return app_url.rstrip("/") + "/slack/events" if parts.path in ("", "/") else app_url


class AppDrivers:
    """Mixin for FakeSlack: builds payloads from the fake's state and delivers them to an app."""

    async def _get(self, path: str, **query: Any) -> dict[str, Any]:
        raise NotImplementedError

    async def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        raise NotImplementedError

    # ---- building payloads -----------------------------------------------------------------------
    async def _context(self, user_id: str | None, channel_id: str | None) -> dict[str, Any]:
        query = {k: v for k, v in (("user", user_id), ("channel", channel_id)) if v}
        return await self._get("/_test/context", **query)

    async def build_slash_command(self, text: str, user_id: str, channel_id: str, *,
                                  command: str = "/migrate") -> dict[str, str]:
        """Slash-command fields (§20.1) with a fresh trigger_id and a response_url into the fake's sink."""
        ctx = await self._context(user_id, channel_id)
        trigger = await self._post("/_test/trigger", {"user": user_id})
        url = await self._post("/_test/response_url", {"channel": channel_id, "user": user_id})
        return payloads.slash_command_fields(ctx, command=command, text=text, response_url=url["url"],
                                             trigger_id=trigger["trigger_id"])

    async def build_click(self, channel: str, message_ts: str, action_id: str, user_id: str,
                          block_id: str | None = None, value: str | None = None, *,
                          selected_value: str | None = None) -> dict[str, Any]:
        """block_actions (§20.2) from the STORED message; DriverError if the element is not in it."""
        found = await self._get("/_test/message", channel=channel, ts=message_ts)
        message, is_ephemeral = found["slack"], found["is_ephemeral"]
        real_block_id, element = payloads.find_action(message.get("blocks"), action_id, block_id, value)
        ctx = await self._context(user_id, channel)
        trigger = await self._post("/_test/trigger", {"user": user_id})
        url = await self._post("/_test/response_url", {
            "channel": channel, "user": user_id, "message_ts": message_ts, "is_ephemeral": is_ephemeral})
        return payloads.block_actions_payload(
            ctx, message=message, is_ephemeral=is_ephemeral, block_id=real_block_id, element=element,
            response_url=url["url"], trigger_id=trigger["trigger_id"], selected_value=selected_value)

    async def build_view_submission(self, view_id: str, user_id: str,
                                    values: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """view_submission (§20.3) of a view the app opened; values[block_id][action_id] = input."""
        found = await self._get("/_test/view", id=view_id)
        if not found["open"]:
            raise DriverError(f"view {view_id} is closed; nobody can submit it")
        ctx = await self._context(user_id, None)
        trigger = await self._post("/_test/trigger", {"user": user_id, "view_id": view_id})
        return payloads.view_submission_payload(ctx, view=found["view"], values=values or {},
                                                trigger_id=trigger["trigger_id"])

    async def build_event(self, event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        ctx = await self._context(None, None)
        return payloads.event_callback(ctx, event, event_id or f"Ev{uuid.uuid4().hex[:10].upper()}")

    # ---- HTTP mode -------------------------------------------------------------------------------
    async def post_http(self, app_url: str, signing_secret: str, kind: str, payload: dict[str, Any], *,
                        timestamp: int | None = None, bad_signature: bool = False,
                        retry_num: int | None = None, retry_reason: str | None = None,
                        ack_timeout_s: float = ACK_TIMEOUT_S) -> HttpAck:
        """Sign (v0, §12) and POST one request to the app; the answer is recorded in the fake's acks."""
        if kind == "slash_commands":
            raw, content_type = payloads.form_body(payload), "application/x-www-form-urlencoded"
        elif kind == "interactive":
            raw, content_type = payloads.interactive_body(payload), "application/x-www-form-urlencoded"
        elif kind == "events_api":
            raw, content_type = json.dumps(payload), "application/json"
        else:
            raise DriverError(f"kind must be slash_commands, interactive or events_api, got {kind!r}")
        ts = int(time.time()) if timestamp is None else int(timestamp)
        signature = payloads.sign(signing_secret, ts, raw)
        if bad_signature:
            signature = signature[:-4] + ("0000" if not signature.endswith("0000") else "1111")
        headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": str(ts),
                   "X-Slack-Signature": signature}
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        started = time.perf_counter()
        try:
            timeout = aiohttp.ClientTimeout(total=ack_timeout_s)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
                    events_url(app_url), data=raw.encode(), headers=headers) as resp:
                body, status = await resp.text(), resp.status
        except TimeoutError:
            await self._post("/_test/record_ack", {"kind": kind, "payload": payload, "status": None,
                                                   "failure": "ack_timeout"})
            raise AckTimeout(f"the app did not answer {kind} within {ack_timeout_s} s") from None
        ack = HttpAck(status, body, time.perf_counter() - started)
        await self._post("/_test/record_ack", {"kind": kind, "payload": payload, "status": status,
                                               "ack": ack.payload, "latency_s": ack.latency_s})
        return ack

    async def slash_command_http(self, app_url: str, signing_secret: str, text: str, user_id: str,
                                 channel_id: str, timestamp: int | None = None, bad_signature: bool = False,
                                 *, command: str = "/migrate") -> HttpAck:
        payload = await self.build_slash_command(text, user_id, channel_id, command=command)
        return await self.post_http(app_url, signing_secret, "slash_commands", payload, timestamp=timestamp,
                                    bad_signature=bad_signature)

    async def click_http(self, app_url: str, signing_secret: str, channel: str, message_ts: str,
                         action_id: str, user_id: str, block_id: str | None = None,
                         value: str | None = None) -> HttpAck:
        payload = await self.build_click(channel, message_ts, action_id, user_id, block_id, value)
        return await self.post_http(app_url, signing_secret, "interactive", payload)

    async def submit_view_http(self, app_url: str, signing_secret: str, view_id: str, user_id: str,
                               values: dict[str, dict[str, Any]] | None = None) -> HttpAck:
        payload = await self.build_view_submission(view_id, user_id, values)
        return await self.post_http(app_url, signing_secret, "interactive", payload)

    async def event_http(self, app_url: str, signing_secret: str, event: dict[str, Any], *,
                         retry_num: int | None = None, retry_reason: str | None = None) -> HttpAck:
        payload = await self.build_event(event)
        return await self.post_http(app_url, signing_secret, "events_api", payload, retry_num=retry_num,
                                    retry_reason=retry_reason)

    # ---- Socket Mode -----------------------------------------------------------------------------
    async def deliver(self, kind: str, payload: dict[str, Any], *, retry_attempt: int | None = None,
                      retry_reason: str | None = None, timeout_s: float = ACK_TIMEOUT_S,
                      connect_timeout_s: float = 5.0) -> SocketAck:
        """Send one envelope to the connected app; AckTimeout if there is no ack within `timeout_s`."""
        result = await self._post("/_test/deliver", {
            "type": kind, "payload": payload, "retry_attempt": retry_attempt, "retry_reason": retry_reason,
            "timeout_s": timeout_s, "connect_timeout_s": connect_timeout_s})
        if not result["delivered"]:
            raise AckTimeout(f"{kind} envelope {result.get('envelope_id')}: {result.get('error')} "
                             f"(no Socket Mode ack within {timeout_s} s)")
        return SocketAck(result["envelope_id"], result["ack"], result["latency_s"], result["effect"])

    async def slash_command_socket(self, text: str, user_id: str, channel_id: str, *,
                                   command: str = "/migrate", retry_attempt: int | None = None,
                                   retry_reason: str | None = None) -> SocketAck:
        payload = await self.build_slash_command(text, user_id, channel_id, command=command)
        return await self.deliver("slash_commands", payload, retry_attempt=retry_attempt,
                                  retry_reason=retry_reason)

    async def click_socket(self, channel: str, message_ts: str, action_id: str, user_id: str,
                           block_id: str | None = None, value: str | None = None) -> SocketAck:
        payload = await self.build_click(channel, message_ts, action_id, user_id, block_id, value)
        return await self.deliver("interactive", payload)

    async def submit_view_socket(self, view_id: str, user_id: str,
                                 values: dict[str, dict[str, Any]] | None = None) -> SocketAck:
        payload = await self.build_view_submission(view_id, user_id, values)
        return await self.deliver("interactive", payload)

    async def event_socket(self, event: dict[str, Any], *, retry_attempt: int | None = None,
                           retry_reason: str | None = None) -> SocketAck:
        payload = await self.build_event(event)
        return await self.deliver("events_api", payload, retry_attempt=retry_attempt,
                                  retry_reason=retry_reason)

    async def deliver_many(self, kind: str, payloads_: list[dict[str, Any]]) -> list[SocketAck]:
        """Deliver several envelopes at once (concurrent requests, duplicate deliveries)."""
        return list(await asyncio.gather(*(self.deliver(kind, p) for p in payloads_)))
