"""bot/logging_setup.py: redaction (table), JSON and text lines with the job context, exceptions redacted too."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.logging_setup import job_log_context, redact, setup_logging, url_password


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("token xoxb-123-456-abcDEF used", (), "token [redacted] used"),
        ("app token xapp-1-A0B-99-ff", (), "app token [redacted]"),
        ("postgresql+psycopg://bot:s3cr3t@db:5432/x", (), "postgresql+psycopg://bot:[redacted]@db:5432/x"),
        ("host=db password=hunter22 user=bot", (), "host=db password=[redacted] user=bot"),
        ("Authorization: Bearer abc.def.ghi", (), "Authorization: Bearer [redacted]"),
        ("the signing secret is 8f742231b10e", ("8f742231b10e",), "the signing secret is [redacted]"),
        ("short secrets are left alone: abc", ("abc",), "short secrets are left alone: abc"),
        ("no secret here", ("something-else",), "no secret here"),
    ],
)
def test_redact(text, secrets, expected):
    assert redact(text, secrets) == expected


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("postgresql+psycopg://bot:pw@db/x", "pw"),
        ("postgresql+psycopg://bot@db/x", None),
        ("sqlite:///./migrate-bot.db", None),
        ("postgresql://bot:@db/x", None),
        (None, None),
    ],
)
def test_url_password(url, password):
    assert url_password(url) == password


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)


def test_json_lines_carry_the_job_context_and_nothing_secret(captured: io.StringIO):
    setup_logging("INFO", json_lines=True, secrets=("top-secret-value",), stream=captured)
    log = logging.getLogger("test.json")
    log.info("outside any job")
    with job_log_context(job_id=41, vm="vm42", source="hostA", destination="hostB", actor="U_BOB"):
        log.info("inside: %s", "top-secret-value")
        try:
            raise RuntimeError("boom with xoxb-999-secret")
        except RuntimeError:
            log.exception("failed")
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert "job_id" not in lines[0]
    assert {k: lines[1][k] for k in ("job_id", "vm", "source", "destination", "actor")} == {
        "job_id": 41, "vm": "vm42", "source": "hostA", "destination": "hostB", "actor": "U_BOB"}  # fmt: skip
    assert lines[1]["msg"] == "inside: [redacted]"
    assert lines[2]["job_id"] == 41 and "xoxb-999" not in lines[2]["exc"] and "RuntimeError" in lines[2]["exc"]


def test_text_lines_are_human_readable_with_the_context_at_the_end(captured: io.StringIO):
    setup_logging("INFO", json_lines=False, stream=captured)
    with job_log_context(job_id=7, vm="busy"):
        logging.getLogger("test.text").warning("slow")
    line = captured.getvalue().strip()
    assert "WARNING test.text: slow [job_id=7 vm=busy]" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
