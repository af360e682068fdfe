"""End-to-end helpers: a person acting through the bot's transport, and readers of what the fake Slack
shows (the card, its thread, the progress message, the summary)."""

from __future__ import annotations

import re
from typing import Any

from tests.e2e.botproc import BotProcess
from tests.fakeslack import FakeSlack
from tests.fixtures.slack import BOT_USER_ID, C_OPS, SIGNING_SECRET

FLOW_TIMEOUT_S = 90.0  # preflight + a migration of a small lab VM + verification, with a loaded machine
_PERCENT = re.compile(r"` (\d+(?:\.\d+)?)%")
_TERMINAL = ("succeeded", "failed", "aborted", "denied", "expired")
_JOB_BLOCK = re.compile(r"^(?:approval|controls):(\d+)$")


class SlackUser:
    """One person in the fake workspace, acting through the bot's transport (signed HTTP or Socket Mode)."""

    def __init__(self, fake: FakeSlack, bot: BotProcess, user_id: str, signing_secret: str) -> None:
        self.fake = fake
        self.bot = bot
        self.id = user_id
        self.secret = signing_secret

    async def send(self, kind: str, payload: dict[str, Any], *, retry: int | None = None) -> dict[str, Any] | None:
        """Deliver one payload as Slack would; returns the ack payload (fails on a non-200 or a late ack)."""
        if self.bot.transport == "http":
            assert self.bot.app_url is not None
            ack = await self.fake.post_http(self.bot.app_url, self.secret, kind, payload, retry_num=retry)
            assert ack.status == 200, f"{kind}: HTTP {ack.status} {ack.body!r}\n{self.bot.log_tail()}"
            return ack.payload
        sack = await self.fake.deliver(kind, payload, retry_attempt=retry,
                                       retry_reason="timeout" if retry else None)
        return sack.payload

    async def command(self, text: str, channel: str = C_OPS) -> dict[str, Any] | None:
        """`/migrate <text>`; returns the ack (Slack shows its text to the user only)."""
        return await self.send("slash_commands", await self.fake.build_slash_command(text, self.id, channel))

    async def ask(self, text: str, channel: str = C_OPS, timeout_s: float = 30) -> dict[str, Any]:
        """`/migrate <text>` and wait for the answer only this person sees (the ack's or a later one)."""
        before = len(await self.ephemerals(channel))
        await self.command(text, channel)

        async def new() -> dict[str, Any] | None:
            fresh = (await self.ephemerals(channel))[before:]
            return fresh[-1] if fresh else None

        answer: dict[str, Any] = await self.fake.wait_for(new, timeout_s, 0.1, f"the answer to /migrate {text}")
        return answer

    async def click(self, message_ts: str, action_id: str, channel: str = C_OPS) -> None:
        """Press a button of the message as it is stored now (the driver refuses a button that is not there)."""
        await self.send("interactive", await self.fake.build_click(channel, message_ts, action_id, self.id))

    async def click_stale(self, seen: dict[str, Any], action_id: str) -> None:
        """Press a button of an OLDER version of a message (`seen`, as this person's client still shows it)."""
        from tests.fakeslack import payloads

        channel = seen["channel"]
        ctx = await self.fake._context(self.id, channel)
        block_id, element = payloads.find_action(seen.get("blocks"), action_id)
        message = {"type": "message", "ts": seen["ts"], "text": seen["text"], "user": seen["user"],
                   "bot_id": seen.get("bot_id"), "blocks": seen.get("blocks")}
        payload = payloads.block_actions_payload(
            ctx, message=message, is_ephemeral=False, block_id=block_id, element=element,
            response_url=await self.fake.mint_response_url(channel, self.id, seen["ts"]),
            trigger_id=await self.fake.mint_trigger(self.id))
        await self.send("interactive", payload)

    async def open_home(self) -> None:
        await self.send("events_api", await self.fake.build_event(
            {"type": "app_home_opened", "user": self.id, "channel": "D_HOME", "tab": "home",
             "event_ts": "1.0"}))

    async def ephemerals(self, channel: str = C_OPS) -> list[dict[str, Any]]:
        return await self.fake.ephemerals(channel, self.id)

    async def wait_ephemeral(self, needle: str, channel: str = C_OPS, timeout_s: float = 30) -> dict[str, Any]:
        """The first ephemeral to this user whose text contains `needle` (case-insensitive)."""

        async def find() -> dict[str, Any] | None:
            for e in await self.ephemerals(channel):
                if needle.lower() in everything_text(e).lower():
                    return e
            return None

        found: dict[str, Any] = await self.fake.wait_for(find, timeout_s, 0.1, f"an ephemeral to {self.id} "
                                                                                f"saying {needle!r}")
        return found


async def connected_user(fake: FakeSlack, bot: BotProcess, user: str) -> SlackUser:
    """A person in the workspace acting through `bot`'s transport; for Socket Mode, after it reconnected."""
    if bot.transport == "socket":
        await fake.wait_for(lambda: _open_connection(fake), timeout_s=30, interval_s=0.1,
                            what="the bot to reconnect over Socket Mode after the reset")
    return SlackUser(fake, bot, user, SIGNING_SECRET)


async def _open_connection(fake: FakeSlack) -> bool:
    return any(c.get("closed_t") is None for c in await fake.connections())


# ---- reading what people see -------------------------------------------------------------------------


def everything_text(message: dict[str, Any]) -> str:
    """The message's fallback text and every text inside its blocks, one string (for `in` assertions)."""
    out = [str(message.get("text") or "")]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    out.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(message.get("blocks") or [])
    return "\n".join(out)


def action_ids(message: dict[str, Any]) -> list[str]:
    """The action_ids of every button a person can press on the message."""
    ids = []
    for block in message.get("blocks") or []:
        if block.get("type") == "actions":
            ids += [e["action_id"] for e in block.get("elements", []) if "action_id" in e]
        if isinstance(block.get("accessory"), dict) and "action_id" in block["accessory"]:
            ids.append(block["accessory"]["action_id"])
    return ids


def job_id_of(message: dict[str, Any]) -> int | None:
    for block in message.get("blocks") or []:
        m = _JOB_BLOCK.match(str(block.get("block_id", "")))
        if m:
            return int(m.group(1))
    m = re.search(r"\(job (\d+)\)", str(message.get("text") or ""))
    return int(m.group(1)) if m else None


def percent_of(version: dict[str, Any]) -> float | None:
    """The percentage a progress message (or one of its earlier versions) shows: "`[███░…]` 42%"."""
    m = _PERCENT.search(everything_text(version))
    return float(m.group(1)) if m else None


async def cards(fake: FakeSlack, vm: str, channel: str = C_OPS) -> list[dict[str, Any]]:
    """Top-level bot messages in the channel about `vm` (its approval cards)."""
    return [m for m in await fake.messages(channel) if m["user"] == BOT_USER_ID and not m.get("thread_ts")
            and f" {vm} " in f" {m['text']} "]


async def wait_card(fake: FakeSlack, vm: str, *, contains: str = "", timeout_s: float = 60,
                    channel: str = C_OPS) -> dict[str, Any]:
    """The (only) card about `vm`, once its text/blocks contain `contains`."""

    async def find() -> dict[str, Any] | None:
        found = await cards(fake, vm, channel)
        assert len(found) <= 1, f"more than one card for {vm}: {[m['text'] for m in found]}"
        if found and contains.lower() in everything_text(found[0]).lower():
            return found[0]
        if found and found[0]["text"].endswith(f": failed (job {job_id_of(found[0])})"):
            raise AssertionError(f"the job failed instead (lab disturbed?):\n{everything_text(found[0])}")
        return None

    card: dict[str, Any] = await fake.wait_for(find, timeout_s, 0.1, f"the card for {vm} saying {contains!r}")
    return card


async def replies(fake: FakeSlack, card: dict[str, Any]) -> list[dict[str, Any]]:
    """The card's thread replies (without the card), oldest first."""
    return [m for m in await fake.thread(card["channel"], card["ts"]) if m["ts"] != card["ts"]]


async def progress_message(fake: FakeSlack, card: dict[str, Any]) -> dict[str, Any] | None:
    found = [m for m in await replies(fake, card) if m["text"].startswith("Progress of ")]
    assert len(found) <= 1, f"more than one progress message: {[m['text'] for m in found]}"
    return found[0] if found else None


async def wait_progress(fake: FakeSlack, card: dict[str, Any], *, contains: str = "",
                        timeout_s: float = FLOW_TIMEOUT_S) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        m = await progress_message(fake, card)
        return m if m is not None and contains.lower() in everything_text(m).lower() else None

    msg: dict[str, Any] = await fake.wait_for(find, timeout_s, 0.2, f"a progress message saying {contains!r}")
    return msg


async def summaries(fake: FakeSlack, card: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in await replies(fake, card) if m["text"].startswith("Migration of ") and m["reply_broadcast"]]


async def wait_summary(fake: FakeSlack, card: dict[str, Any], timeout_s: float = FLOW_TIMEOUT_S) -> dict[str, Any]:
    async def find() -> list[dict[str, Any]]:
        return await summaries(fake, card)

    found: list[dict[str, Any]] = await fake.wait_for(find, timeout_s, 0.2, "the summary in the card's thread")
    return found[0]


async def wait_card_state(fake: FakeSlack, card: dict[str, Any], state: str,
                          timeout_s: float = FLOW_TIMEOUT_S) -> dict[str, Any]:
    """The card once its fallback text says `state` (e.g. 'succeeded', 'denied', 'expired')."""

    async def find() -> dict[str, Any] | None:
        m = await fake.message(card["channel"], card["ts"])
        if m["text"].endswith(f": {state} (job {job_id_of(card)})"):
            return m
        ended = [s for s in _TERMINAL if m["text"].endswith(f": {s} (job {job_id_of(card)})")]
        if ended:  # it will not change any more: say what happened instead of waiting out the timeout
            thread = "\n".join(r["text"] for r in await replies(fake, card))
            raise AssertionError(f"the job ended {ended[0]}, not {state} (lab disturbed?):\n"
                                 f"{everything_text(m)}\n--- thread:\n{thread}")
        return None

    msg: dict[str, Any] = await fake.wait_for(find, timeout_s, 0.2, f"the card to say {state}")
    return msg


def progress_percents(message: dict[str, Any]) -> list[float]:
    """Every percentage the progress message showed, oldest first (its edit history, then now)."""
    versions = [*message.get("history", []), message]
    return [p for p in (percent_of(v) for v in versions) if p is not None]
