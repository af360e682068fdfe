"""Pure helpers of the store: credential masking, the retry schedule, the retry loop, host load."""

from __future__ import annotations

import pytest

from migration_core.store import NO_RETRY, HostLimit, HostLoad, RetryPolicy, mask_secrets, mask_url, retry_async
from migration_core.store.leases import fits


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+psycopg://bot:s3cret@db.example/migratebot", "postgresql+psycopg://bot:***@db.example/migratebot"),
        ("postgresql://bot:p%40ss@db:5432/x", "postgresql://bot:***@db:5432/x"),
        ("postgresql://bot:p@ss@db/x", "postgresql://bot:***@db/x"),  # an unencoded '@' in the password
        ("postgresql://bot@db/x", "postgresql://bot@db/x"),
        ("postgresql://db/x?password=hunter2&sslmode=require", "postgresql://db/x?password=***&sslmode=require"),
        ("sqlite:///./migrate-bot.db", "sqlite:///./migrate-bot.db"),
        ("sqlite://", "sqlite://"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_secrets_removes_the_password_wherever_it_appears() -> None:
    url = "postgresql+psycopg://bot:Xy9-secret@db/x"
    text = 'connect to "postgresql+psycopg://bot:Xy9-secret@db/x" failed; password was Xy9-secret'
    out = mask_secrets(text, url)
    assert "Xy9-secret" not in out
    assert "bot:***@db/x" in out


@pytest.mark.parametrize(
    ("policy", "delays"),
    [
        (RetryPolicy(base_delay_s=0.1, max_delay_s=5, budget_s=1.5), [0.1, 0.2, 0.4, 0.8]),
        (RetryPolicy(base_delay_s=1, max_delay_s=2, budget_s=7), [1, 2, 2, 2]),
        (RetryPolicy(base_delay_s=1, max_delay_s=4, budget_s=2.5), [1, 1.5]),  # the rest of the budget
        (RetryPolicy(base_delay_s=0.5, max_delay_s=1, budget_s=0), []),
        (NO_RETRY, []),
    ],
)
def test_retry_schedule(policy: RetryPolicy, delays: list[float]) -> None:
    got = list(policy.delays_s())
    assert got == pytest.approx(delays)
    assert sum(got) <= policy.budget_s + 1e-9


def test_default_policy_rides_out_a_restart_but_is_bounded() -> None:
    delays = list(RetryPolicy().delays_s())
    assert sum(delays) == pytest.approx(30.0)
    assert max(delays) <= 5.0


class Flaky(Exception):
    pass


class Broken(Exception):
    pass


async def test_retry_async_retries_transient_failures_then_succeeds() -> None:
    attempts: list[int] = []
    slept: list[float] = []
    reported: list[tuple[str, float, int]] = []

    async def op(attempt: int) -> str:
        attempts.append(attempt)
        if attempt < 2:
            raise Flaky(f"down {attempt}")
        return "ok"

    async def sleep(delay_s: float) -> None:
        slept.append(delay_s)

    result = await retry_async(
        op,
        policy=RetryPolicy(base_delay_s=0.1, max_delay_s=1, budget_s=10),
        is_transient=lambda e: isinstance(e, Flaky),
        on_retry=lambda e, d, n: reported.append((str(e), d, n)),
        sleep=sleep,
    )
    assert result == "ok"
    assert attempts == [0, 1, 2]
    assert slept == pytest.approx([0.1, 0.2])
    assert reported == [("down 0", 0.1, 1), ("down 1", 0.2, 2)]


async def test_retry_async_does_not_retry_permanent_failures() -> None:
    calls = 0

    async def op(_attempt: int) -> None:
        nonlocal calls
        calls += 1
        raise Broken("wrong password")

    async def sleep(_delay_s: float) -> None:
        raise AssertionError("must not sleep")

    with pytest.raises(Broken):
        await retry_async(op, policy=RetryPolicy(), is_transient=lambda e: isinstance(e, Flaky), sleep=sleep)
    assert calls == 1


async def test_retry_async_gives_up_when_the_budget_is_spent() -> None:
    calls = 0

    async def op(_attempt: int) -> None:
        nonlocal calls
        calls += 1
        raise Flaky("still down")

    async def sleep(_delay_s: float) -> None:
        return None

    with pytest.raises(Flaky, match="still down"):
        await retry_async(
            op, policy=RetryPolicy(base_delay_s=1, max_delay_s=1, budget_s=3), is_transient=lambda e: True, sleep=sleep
        )
    assert calls == 4  # the first try and three retries (1 s each, 3 s budget)


@pytest.mark.parametrize(
    ("source", "destination", "expected"),
    [
        ("hostA", "hostB", False),  # hostB already receives its 1
        ("hostA", "hostC", True),  # hostC has no limits
        ("hostB", "hostA", True),  # hostB sends nothing yet; hostA receives nothing yet
        ("hostD", "hostA", True),
        ("hostA", "hostD", False),  # hostD takes no inbound migrations at all
    ],
)
def test_fits_host_slots(source: str, destination: str, expected: bool) -> None:
    load = {"hostA": HostLoad("hostA", (), (41,)), "hostB": HostLoad("hostB", (41,), ())}
    limits = {
        "hostA": HostLimit(max_inbound=2, max_outbound=2),
        "hostB": HostLimit(max_inbound=1, max_outbound=1),
        "hostD": HostLimit(max_inbound=0, max_outbound=1),
    }
    assert fits(source, destination, load, limits) is expected
