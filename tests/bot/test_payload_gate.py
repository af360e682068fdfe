"""The HTTP gate in front of Bolt: Slack's signature rule (pure) and the payload shape check (pure), tables."""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

import pytest

from bot.payload_gate import payload_problem, shape_problem
from bot.slack_runner import signature_problem
from tests.fakeslack.payloads import sign

SECRET = "gate-secret-0123456789"
NOW = 1_700_000_000
BODY = b"command=%2Fmigrate&text=help"
FORM = "application/x-www-form-urlencoded"


def _sig(ts: int | str, body: bytes = BODY, secret: str = SECRET) -> str:
    return sign(secret, ts, body.decode())


@pytest.mark.parametrize(
    ("timestamp", "signature", "accepted"),
    [
        (str(NOW), _sig(NOW), True),
        (str(NOW - 300), _sig(NOW - 300), True),  # exactly at the edge of the window
        (str(NOW + 300), _sig(NOW + 300), True),
        (str(NOW - 301), _sig(NOW - 301), False),
        (str(NOW + 301), _sig(NOW + 301), False),
        (str(NOW), _sig(NOW, secret="another-secret-123"), False),
        (str(NOW), _sig(NOW - 1), False),
        (str(NOW), _sig(NOW, body=BODY + b"x"), False),
        (None, _sig(NOW), False),
        (str(NOW), None, False),
        ("", "", False),
        ("12.5", _sig("12.5"), False),
        ("-1", _sig("-1"), False),
        ("１７００", _sig("１７００"), False),  # full-width digits are digits to str.isdigit, not to Slack
        ("9" * 40, _sig("9" * 40), False),
        (str(NOW), "v0=" + "0" * 64, False),
        (str(NOW), "v0=zz\u00e9", False),
    ],
)
def test_signature_rule(timestamp, signature, accepted):
    problem = signature_problem(SECRET, BODY, timestamp, signature, float(NOW))
    assert (problem is None) is accepted, problem


def test_no_configured_secret_accepts_nothing():
    assert signature_problem("", BODY, str(NOW), sign("", NOW, BODY.decode()), float(NOW)) is not None


CLICK = {
    "type": "block_actions", "user": {"id": "U1"}, "team": {"id": "T1"}, "channel": {"id": "C1"},
    "actions": [{"action_id": "approve", "block_id": "approval:1", "value": "1"}],
    "response_url": "https://hooks.slack.com/actions/T1/1/abc",
}  # fmt: skip
VIEW = {
    "type": "view_submission", "user": {"id": "U1"},
    "view": {"type": "modal", "callback_id": "set_downtime", "private_metadata": "{}", "state": {"values": {}}},
}  # fmt: skip


def _with(base: dict[str, object], **changes: object) -> dict[str, object]:
    out = json.loads(json.dumps(base))
    out.update(changes)
    return out


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        (CLICK, False),
        (VIEW, False),
        ({"command": "/migrate", "text": "help", "user_id": "U1"}, False),
        ({"type": "event_callback", "event": {"type": "app_home_opened", "user": "U1"}}, False),
        ({"type": "url_verification", "challenge": "abc"}, False),
        ([], True),
        ("text", True),
        (_with(CLICK, actions=[]), True),
        (_with(CLICK, actions="approve"), True),
        (_with(CLICK, actions=[{"action_id": 5}]), True),
        (_with(CLICK, actions=[{"action_id": "approve", "value": ["1"]}]), True),
        (_with(CLICK, user="U1"), True),
        (_with(CLICK, user={"id": 5}), True),
        (_with(CLICK, team=[1]), True),
        (_with(CLICK, channel={"id": {"x": 1}}), True),
        (_with(CLICK, response_url="http://evil.example/steal"), True),
        (_with(CLICK, response_url=5), True),
        (_with(VIEW, view={"callback_id": "set_downtime"}), True),  # no view.type: Bolt would crash
        (_with(VIEW, view="x"), True),
        (_with(VIEW, response_urls=[{"response_url": "https://evil.example/"}]), True),
        ({"type": "event_callback", "event": "x"}, True),
        ({"type": "event_callback", "event": {"user": "U1"}}, True),
        ({"type": "workflow_step_edit", "callback_id": "x"}, True),  # no listener: refused, not left to Bolt
        ({"type": "interactive_message", "callback_id": "x"}, True),
        ({"type": 5}, True),
        ({"command": "/migrate", "text": "help"}, True),
    ],
)
def test_shape_gate(body, refused):
    problem = shape_problem(body, slack_api_url="https://slack.com/api/")
    assert (problem is not None) is refused, problem


@pytest.mark.parametrize(
    ("response_url", "api_url", "accepted"),
    [
        ("http://127.0.0.1:5555/response/abc", "http://127.0.0.1:5555/api/", True),
        ("http://127.0.0.1:5556/response/abc", "http://127.0.0.1:5555/api/", False),  # another port
        ("https://hooks.slack-gov.com/actions/1", "https://slack-gov.com/api/", True),  # a subdomain
        ("http://hooks.slack-gov.com/actions/1", "https://slack-gov.com/api/", False),  # not https
        ("https://evilslack-gov.com/actions/1", "https://slack-gov.com/api/", False),  # not a subdomain
        ("https://slack-gov.com.evil.example/x", "https://slack-gov.com/api/", False),
        ("https://hooks.slack.com/commands/1", "https://slack-gov.com/api/", True),
        ("https://hooks.slack.com.evil.example/x", "https://slack.com/api/", False),
        ("http://[::1/x", "https://slack.com/api/", False),  # not even a URL
    ],
)
def test_response_urls_must_point_to_slack_or_the_configured_slack_host(response_url, api_url, accepted):
    problem = shape_problem(_with(CLICK, response_url=response_url), slack_api_url=api_url)
    assert (problem is None) is accepted, problem


@pytest.mark.parametrize(
    ("text", "content_type", "refused"),
    [
        ("payload=" + quote(json.dumps(CLICK)), FORM, False),
        (urlencode({"command": "/migrate", "text": "help", "user_id": "U1"}), FORM, False),
        ("", None, True),  # empty: nothing Slack sends
        ("ssl_check=1&token=x", FORM, False),  # Slack's certificate check: Bolt answers it
        ("a=1&b=2", FORM, True),  # a form that is no slash command
        ("payload=%7Bbroken", FORM, True),
        ("{broken", "application/json", True),
        ("[" * 100_000, "application/json", True),
        ("payload=" + quote("[" * 100_000), None, True),
        ("9" * 5000, "application/json", True),
        (json.dumps([CLICK]), "application/json", True),
    ],
)
def test_payload_gate_parses_like_bolt_and_refuses_what_bolt_would_choke_on(text, content_type, refused):
    problem = payload_problem(text, content_type, slack_api_url="https://slack.com/api/")
    assert (problem is not None) is refused, problem
