"""Slack Web API sends with a text-only fallback when blocks are rejected, and error triage (retry or not)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from handlers.blocks.ir import Message
from handlers.blocks.slack import fallback_text, message_payload

log = logging.getLogger(__name__)

# Slack answers with these when the request itself is wrong: retrying the same call will not help.
_BLOCKS_REJECTED = frozenset(
    {"invalid_blocks", "msg_too_long", "msg_blocks_too_long", "invalid_blocks_format"}
)
_TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)


def is_transient(err: Exception) -> bool:
    """429, 5xx and network errors are worth retrying; `ok: false` answers mostly are not."""
    if isinstance(err, SlackApiError):
        status = getattr(err.response, "status_code", 200)
        code = error_code(err)
        return status == 429 or status >= 500 or code in _TRANSIENT_ERRORS
    return isinstance(err, (OSError, asyncio.TimeoutError)) or type(err).__module__.startswith("aiohttp")


def error_code(err: SlackApiError) -> str:
    try:
        return str(err.response.get("error", ""))
    except Exception:  # a response that is not JSON
        return ""


async def post_message(
    client: AsyncWebClient, channel: str, msg: Message, *, thread_ts: str | None = None, broadcast: bool = False
) -> str:
    """chat.postMessage (a thread reply with `thread_ts`); text only if Slack rejects the blocks."""
    kwargs: dict[str, Any] = {"channel": channel, **message_payload(msg)}
    if thread_ts:
        kwargs["thread_ts"] = thread_ts
    if broadcast:
        kwargs["reply_broadcast"] = True
    try:
        resp = await client.chat_postMessage(**kwargs)
    except SlackApiError as err:
        if error_code(err) not in _BLOCKS_REJECTED:
            raise
        log.error("slack rejected blocks in %s (%s); sending text only", channel, error_code(err))
        kwargs.pop("blocks")
        resp = await client.chat_postMessage(**kwargs)
    return str(resp["ts"])


async def update_message(client: AsyncWebClient, channel: str, ts: str, msg: Message) -> None:
    """chat.update; falls back to text only if Slack rejects the blocks."""
    try:
        await client.chat_update(channel=channel, ts=ts, **message_payload(msg))
    except SlackApiError as err:
        if error_code(err) not in _BLOCKS_REJECTED:
            raise
        log.error("slack rejected blocks for %s/%s (%s); sending text only", channel, ts, error_code(err))
        await client.chat_update(channel=channel, ts=ts, text=fallback_text(msg), blocks=[])
