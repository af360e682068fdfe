"""The workspace-wide edit gate (pure, fake clock), Retry-After parsing, and the edit client's retry handlers."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from handlers.slack_rate import EditGate, edit_client, is_rate_limited, retry_after_s
from tests.handlers.fakes import FakeTime


def error(status: int, headers: dict[str, object]) -> SlackApiError:
    resp = AsyncSlackResponse(client=None, http_verb="POST", api_url="http://fake/api/chat.update", req_args={},
                              data={"ok": False, "error": "ratelimited"}, headers=headers, status_code=status)
    return SlackApiError("ratelimited", resp)


def test_a_burst_goes_at_once_then_edits_are_paced():
    t = FakeTime()
    gate = EditGate(60, burst=3, clock=t.clock)  # one a second after a burst of three
    waits = [gate.reserve() for _ in range(6)]
    assert waits == [0, 0, 0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize(("per_min", "burst"), [(45, 4), (60, 1), (30, 10)])
def test_no_minute_ever_holds_more_than_burst_plus_rate(per_min, burst):
    t = FakeTime()
    gate = EditGate(per_min, burst=burst, clock=t.clock)
    starts = []
    for _ in range(300):  # everyone asks at once: the gate spreads them out
        starts.append(t.now + gate.reserve())
    for s in starts:
        assert sum(1 for x in starts if s <= x < s + 60) <= burst + per_min


def test_priority_edits_do_not_queue_but_use_up_budget():
    t = FakeTime()
    gate = EditGate(60, burst=1, clock=t.clock)
    assert gate.reserve() == 0
    assert gate.reserve(priority=True) == 0  # a card changing state goes out now...
    assert gate.reserve() == 2.0  # ...and the next progress edit waits for the budget it used


def test_a_429_holds_every_edit_until_retry_after():
    t = FakeTime()
    gate = EditGate(600, burst=10, clock=t.clock)
    gate.penalize(7)
    assert gate.reserve() == 7 and gate.reserve(priority=True) == 7
    gate.penalize(None)  # no header: slack-sdk's default of 1 s (does not shorten the longer pause)
    assert gate.reserve() == 7


@pytest.mark.parametrize(
    ("err", "expected", "limited"),
    [
        (error(429, {"Retry-After": "12"}), 12.0, True),
        (error(429, {"retry-after": ["3"]}), 3.0, True),
        (error(429, {}), None, True),
        (error(429, {"Retry-After": "soon"}), None, True),
        (error(200, {"Retry-After": "12"}), None, False),
        (ConnectionResetError(), None, False),
    ],
)
def test_retry_after_is_read_from_a_429(err, expected, limited):
    assert retry_after_s(err) == expected
    assert is_rate_limited(err) is limited


def test_the_edit_client_keeps_every_retry_but_the_429_one():
    client = AsyncWebClient(token="xoxb-1", base_url="http://127.0.0.1:9/api/", timeout=7, retry_handlers=[
        AsyncRateLimitErrorRetryHandler(max_retry_count=3), AsyncConnectionErrorRetryHandler(),
        AsyncServerErrorRetryHandler()])
    edits = edit_client(client)
    assert (edits.token, edits.base_url, edits.timeout) == ("xoxb-1", "http://127.0.0.1:9/api/", 7)
    assert {type(h) for h in edits.retry_handlers} == {AsyncConnectionErrorRetryHandler,
                                                       AsyncServerErrorRetryHandler}
    assert len(client.retry_handlers) == 3  # the shared client is left alone
    double = object()
    assert edit_client(double) is double
