"""Runs fuzz cases (tests/security/fuzzgen.py) against a running bot over real, correctly signed HTTP.

Used by the slow test (tests/security/test_fuzz.py, a few hundred cases) and by bench/bench_fuzz.py
(10,000). `run_fuzz` returns a `FuzzReport` with the status of every case by category; `report.problems()`
lists what counts as a failure: any 5xx, any request that got no HTTP answer, a well-formed /migrate that
was not answered with 200 (or 413 over the 256 KiB body limit), and (checked by the caller) a dead bot or a
traceback in its log.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.slack_runner import MAX_BODY_BYTES
from tests.fakeslack import FakeSlack
from tests.fakeslack import payloads as fake_payloads
from tests.security.fuzzgen import RESPONSE_URL_PLACEHOLDER, Base, Case, cases

RESPONSE_URL_POOL = 400  # each fake response_url takes 5 uses; rotating a pool keeps most answers deliverable


def signed_headers(secret: str, body: bytes, content_type: str | None, ts: int | None = None) -> dict[str, str]:
    """Slack's v0 signature over the raw bytes, with the timestamp it covers."""
    ts = int(time.time()) if ts is None else ts
    digest = hmac.new(secret.encode(), b"v0:" + str(ts).encode() + b":" + body, hashlib.sha256).hexdigest()
    headers = {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": "v0=" + digest}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


async def post(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    skip = () if "Content-Type" in headers else ("Content-Type",)
    async with session.post(url, data=body, headers=headers, skip_auto_headers=skip) as resp:
        return resp.status, await resp.text()


async def build_base(fake: FakeSlack, *, user: str, channel: str) -> Base:
    """Real payloads from the fake's workspace (a click on an approval card of job 1, a downtime form...)."""
    ctx = await fake._get("/_test/context", user=user, channel=channel)
    slash = fake_payloads.slash_command_fields(
        ctx, command="/migrate", text="help", response_url=RESPONSE_URL_PLACEHOLDER, trigger_id="1.2.fuzz"
    )
    label = {"type": "plain_text", "text": "Approve"}
    element = {"type": "button", "action_id": "approve", "value": "1", "text": label}
    message = {
        "ts": "1700000000.000100",
        "type": "message",
        "text": "card",
        "blocks": [{"type": "actions", "block_id": "approval:1", "elements": [element]}],
    }
    click = fake_payloads.block_actions_payload(
        ctx,
        message=message,
        is_ephemeral=False,
        block_id="approval:1",
        element=element,
        response_url=RESPONSE_URL_PLACEHOLDER,
        trigger_id="1.3.fuzz",
    )
    view: dict[str, Any] = {
        "type": "view_submission", "team": {"id": ctx["team"]["id"], "domain": ctx["team"]["domain"]},
        "user": fake_payloads.user_json(ctx["user"], ctx["team"]["id"]), "api_app_id": ctx["bot"]["app_id"],
        "trigger_id": "1.4.fuzz", "response_urls": [],
        "view": {"id": "V_FUZZ", "type": "modal", "callback_id": "set_downtime",
                 "private_metadata": '{"job": 1, "channel": "C_OPS", "thread": "1700000000.000100"}',
                 "state": {"values": {"value": {"value_input": {"type": "plain_text_input", "value": "500"}}}}},
    }  # fmt: skip
    event = fake_payloads.event_callback(
        ctx, {"type": "app_home_opened", "user": user, "channel": "D_FUZZ", "tab": "home"}, "Ev_FUZZ"
    )
    return Base(slash=dict(slash), click=click, view=view, event=event)


@dataclass
class FuzzReport:
    """What happened to every case."""

    sent: int = 0
    by_category: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    no_answer: list[tuple[str, str]] = field(default_factory=list)
    server_errors: list[tuple[str, int, str]] = field(default_factory=list)
    unanswered_commands: list[tuple[int, str]] = field(default_factory=list)
    elapsed_s: float = 0.0

    def status_classes(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for statuses in self.by_category.values():
            for status, count in statuses.items():
                out[f"{status // 100}xx"] += count
        out["no answer"] = len(self.no_answer)
        return out

    def problems(self) -> list[str]:
        found = [f"{cat}: HTTP {status}: {text[:200]}" for cat, status, text in self.server_errors]
        found += [f"{cat}: no answer ({err})" for cat, err in self.no_answer]
        found += [f"/migrate answered {status}: {text[:200]}" for status, text in self.unanswered_commands]
        return found

    def table(self) -> str:
        lines = [f"{'category':<20} {'sent':>6}  statuses"]
        for cat in sorted(self.by_category):
            statuses = self.by_category[cat]
            shown = ", ".join(f"{s}: {c}" for s, c in sorted(statuses.items()))
            lines.append(f"{cat:<20} {sum(statuses.values()):>6}  {shown}")
        classes = self.status_classes()
        lines.append(f"{'total':<20} {self.sent:>6}  " + ", ".join(f"{k}: {v}" for k, v in sorted(classes.items())))
        return "\n".join(lines)


async def settle(fake: FakeSlack, *, quiet_s: float = 3.0, max_s: float = 180.0) -> int:
    """Wait until the bot's background work (preflights, cards, answers) stops reaching Slack: the fake has
    seen no new Web API call or response_url post for `quiet_s`. Returns how many calls it recorded."""
    deadline = time.monotonic() + max_s
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        state = await fake.state()
        seen = len(await fake.calls()) + len(state.get("response_posts", []))
        if seen != last:
            last, quiet_since = seen, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            break
        await asyncio.sleep(0.5)
    return last


async def _response_urls(fake: FakeSlack, channel: str, user: str, count: int) -> list[str]:
    return [await fake.mint_response_url(channel=channel, user_id=user) for _ in range(count)]


async def run_fuzz(
    fake: FakeSlack,
    bot_url: str,
    secret: str,
    *,
    n: int,
    seed: int,
    user: str,
    channel: str,
    concurrency: int = 8,
    timeout_s: float = 30.0,
) -> FuzzReport:
    """Send `n` signed cases (at most `concurrency` at a time); the bot must answer each with 2xx or 4xx."""
    base = await build_base(fake, user=user, channel=channel)
    pool = [quote(u, safe="").encode() for u in await _response_urls(fake, channel, user, RESPONSE_URL_POOL)]
    report = FuzzReport()
    queue: asyncio.Queue[tuple[int, Case] | None] = asyncio.Queue(maxsize=concurrency * 4)
    url = bot_url.rstrip("/") + "/slack/events"
    started = time.monotonic()

    async def worker(session: aiohttp.ClientSession) -> None:
        while (item := await queue.get()) is not None:
            i, case = item
            body = case.body.replace(RESPONSE_URL_PLACEHOLDER.encode(), pool[i % len(pool)])
            try:
                status, text = await post(session, url, body, signed_headers(secret, body, case.content_type))
            except (aiohttp.ClientError, TimeoutError) as err:
                report.no_answer.append((case.category, f"{type(err).__name__}: {err}"))
                continue
            report.by_category[case.category][status] += 1
            if status >= 500:
                report.server_errors.append((case.category, status, text))
            elif case.well_formed_command and status != 200 and not (status == 413 and len(body) > MAX_BODY_BYTES):
                # Over the body limit (256 KiB; Slack's own payloads are tens of KB) a 413 is the answer.
                report.unanswered_commands.append((status, text))

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        workers = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
        for i, case in enumerate(cases(n, seed, base)):
            await queue.put((i, case))
            report.sent += 1
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    report.elapsed_s = time.monotonic() - started
    return report
