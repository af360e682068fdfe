"""Per-user rate limit on migration requests (MIGRATE_BOT_RATE_LIMIT=2): the third is refused ephemerally,
in the ack itself (the edge gate, handlers.gate, counts it before anything runs), and `plan` counts too.

The hosts are unreachable, so each accepted request fails its preflight at once (a job is created and ends
`failed`), which frees the VM for the next request: only the rate limit can refuse the third one.
"""

from __future__ import annotations

from migration_core.store import EventKind, Store
from tests.fakeslack import FakeSlack
from tests.fixtures.slack import C_OPS, SIGNING_SECRET, U_ALICE, U_CAROL
from tests.security.conftest import StartBot
from tests.security.support import events, job_count


async def _request(fake: FakeSlack, url: str, user: str, db: str, expect_jobs: int) -> None:
    ack = await fake.slash_command_http(url, SIGNING_SECRET, "vm42 to hostB", user, C_OPS)
    assert ack.status == 200

    async def settled() -> bool:
        return await job_count(db) == expect_jobs and not await _active(db)

    await fake.wait_for(settled, what=f"{expect_jobs} finished job(s)")


async def _active(db: str) -> bool:
    store = await Store.open(db)
    try:
        return bool(await store.active_jobs())
    finally:
        await store.close()


async def test_the_third_request_within_the_hour_is_refused_with_a_clear_ephemeral_message(
    fake_slack: FakeSlack, start_bot: StartBot
):
    bot = start_bot({"MIGRATE_BOT_RATE_LIMIT": "2"})
    db = bot.env["MIGRATE_BOT_DB"]
    await _request(fake_slack, bot.url, U_ALICE, db, expect_jobs=1)
    await _request(fake_slack, bot.url, U_ALICE, db, expect_jobs=2)

    ack = await fake_slack.slash_command_http(bot.url, SIGNING_SECRET, "vm42 to hostB", U_ALICE, C_OPS)
    assert ack.status == 200 and ack.payload is not None
    text = str(ack.payload.get("text", ""))
    assert "2 migration requests" in text and "limit 2" in text and "try again in" in text
    assert ack.payload.get("response_type") == "ephemeral"  # only alice sees it
    assert await job_count(db) == 2  # no third job
    refused = [r for r in await events(db, None, [EventKind.REFUSED]) if r.actor == U_ALICE]
    assert refused and refused[-1].data.get("action") == "/migrate (preflight)"
    assert refused[-1].data.get("code") == "rate_limited"

    # The limit is per user: carol still gets her request in.
    await _request(fake_slack, bot.url, U_CAROL, db, expect_jobs=3)


async def test_plan_counts_against_the_same_limit(fake_slack: FakeSlack, start_bot: StartBot):
    bot = start_bot({"MIGRATE_BOT_RATE_LIMIT": "2"})
    db = bot.env["MIGRATE_BOT_DB"]
    for _ in range(2):  # two live preflights (they fail at once: the hosts are unreachable)
        ack = await fake_slack.slash_command_http(bot.url, SIGNING_SECRET, "plan vm42 to hostB", U_ALICE, C_OPS)
        assert ack.payload is not None and "limit 2" not in str(ack.payload.get("text"))
    ack = await fake_slack.slash_command_http(bot.url, SIGNING_SECRET, "vm42 to hostB", U_ALICE, C_OPS)
    assert ack.payload is not None and "limit 2" in str(ack.payload.get("text"))
    assert await job_count(db) == 0
