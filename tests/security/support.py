"""Helpers of the security tests: raw signed posts, the bot's event log, a job waiting for approval with its card."""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from handlers.blocks.card import card_message
from handlers.blocks.ir import SLACK
from handlers.blocks.slack import message_payload
from migration_core.models import ChatRefs, Job, JobState
from migration_core.store import EventKind, EventRecord, Store
from tests.bot import factories
from tests.fakeslack import FakeSlack
from tests.fakeslack import payloads as fake_payloads
from tests.security.fuzzkit import signed_headers

FORM = "application/x-www-form-urlencoded"


async def post_raw(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """POST to the bot's /slack/events exactly these bytes and headers; (status, body)."""
    skip = () if "Content-Type" in headers else ("Content-Type",)
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.post(url.rstrip("/") + "/slack/events", data=body, headers=headers, skip_auto_headers=skip) as resp,
    ):
        return resp.status, await resp.text()


async def post_signed(url: str, secret: str, body: bytes, content_type: str | None = FORM) -> tuple[int, str]:
    return await post_raw(url, body, signed_headers(secret, body, content_type))


def interactive(payload: Any) -> bytes:
    return fake_payloads.interactive_body(payload).encode()


async def events(db_url: str, job_id: int | None, kinds: list[EventKind] | None = None) -> list[EventRecord]:
    """The bot's event log for a job (None: the events tied to no job), read from its database."""
    store = await Store.open(db_url)
    try:
        return await store.events(job_id, kinds)
    finally:
        await store.close()


async def job_state(db_url: str, job_id: int) -> JobState:
    store = await Store.open(db_url)
    try:
        return (await store.get_job(job_id)).state
    finally:
        await store.close()


async def job_count(db_url: str) -> int:
    store = await Store.open(db_url)
    try:
        return len(await store.history(None, 1000))
    finally:
        await store.close()


async def seed_awaiting_job(db_url: str, fake: FakeSlack, *, vm: str, requester: str, channel: str) -> tuple[Job, str]:
    """A job waiting for approval (plan from tests/bot/factories) and its card posted by the bot's token in
    `channel`, exactly as the bot would have left them; returns (job, the card's ts)."""
    store = await Store.open(db_url)
    try:
        job = await store.create_job(vm=vm, destination="hostB", requester=requester, chat=ChatRefs(channel=channel))
        job = await store.transition(job.id, JobState.REQUESTED, JobState.PREFLIGHT, actor=requester)
        job = await store.transition(
            job.id, JobState.PREFLIGHT, JobState.AWAITING_APPROVAL, plan=factories.plan(vm=vm), detail="seeded"
        )
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_base_url)
        resp = await client.chat_postMessage(channel=channel, **message_payload(card_message(job, SLACK, ttl_s=1800)))
        ts = str(resp["ts"])
        job = await store.update_job_chat(job.id, ChatRefs(channel=channel, thread=ts))
        return job, ts
    finally:
        await store.close()
