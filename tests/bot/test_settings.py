"""Settings from the environment: every variable's parsing, its error (variable, bad value, fix), the README table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.settings import SETTINGS, LogFormat, Settings, SettingsError, Transport, load_settings, readme_table
from migration_core.errors import RequestError
from migration_core.limits import APPROVAL_TTL_S

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MIGRATE_BOT_MODE", "smoke", "MIGRATE_BOT_MODE='smoke' is not valid (expected 'socket' (default) or 'http')"),
        ("MIGRATE_BOT_PORT", "0", "MIGRATE_BOT_PORT='0' is not valid (expected a TCP port number 1-65535)"),
        ("MIGRATE_BOT_PORT", "http", "MIGRATE_BOT_PORT='http' is not valid (expected a TCP port number 1-65535)"),
        ("SLACK_BOT_TOKEN", "xapp-1", "SLACK_BOT_TOKEN=(hidden) is not valid (expected a token starting with xoxb-)"),
        ("SLACK_APP_TOKEN", "xoxb-1", "SLACK_APP_TOKEN=(hidden) is not valid (expected a token starting with xapp-)"),
        (
            "SLACK_API_URL",
            "ftp://x",
            "SLACK_API_URL='ftp://x' is not valid (expected an http(s) URL such as https://slack.com/api/)",
        ),
        (
            "MIGRATE_BOT_APPROVERS",
            "U1AB,bob",
            "MIGRATE_BOT_APPROVERS='U1AB,bob' is not valid "
            "(expected comma-separated Slack user ids like U012ABC (not 'bob'))",
        ),
        (
            "MIGRATE_BOT_REQUESTERS",
            "carol",
            "MIGRATE_BOT_REQUESTERS='carol' is not valid (expected comma-separated Slack user ids (not 'carol'))",
        ),
        (
            "MIGRATE_BOT_CHANNELS",
            "C0OPS,#ops",
            "MIGRATE_BOT_CHANNELS='C0OPS,#ops' is not valid "
            "(expected comma-separated Slack channel ids like C012ABC (not '#ops'))",
        ),
        (
            "MIGRATE_BOT_APPROVAL_TTL",
            "soon",
            "MIGRATE_BOT_APPROVAL_TTL='soon' is not valid (expected a duration such as 30s, 5m or 1h)",
        ),
        (
            "MIGRATE_BOT_APPROVAL_TTL",
            "5s",
            "MIGRATE_BOT_APPROVAL_TTL='5s' is not valid (expected a duration between 10 s and 168 h)",
        ),
        (
            "MIGRATE_BOT_DIRTY_RATE_WINDOW",
            "2m",
            "MIGRATE_BOT_DIRTY_RATE_WINDOW='2m' is not valid (expected a duration between 1 s and 60 s)",
        ),
        ("MIGRATE_BOT_LEASE", "1s", "MIGRATE_BOT_LEASE='1s' is not valid (expected a duration between 3 s and 10 min)"),
        (
            "MIGRATE_BOT_RATE_LIMIT",
            "0",
            "MIGRATE_BOT_RATE_LIMIT='0' is not valid (expected requests per user per hour, 1-10000)",
        ),
        # a digit to str.isdigit() but not to int(): refused like any other bad number, not a traceback
        (
            "MIGRATE_BOT_RATE_LIMIT",
            "²",
            "MIGRATE_BOT_RATE_LIMIT='²' is not valid (expected requests per user per hour, 1-10000)",
        ),
        ("MIGRATE_BOT_LOG_FORMAT", "xml", "MIGRATE_BOT_LOG_FORMAT='xml' is not valid (expected 'text' or 'json')"),
        (
            "MIGRATE_BOT_LOG_LEVEL",
            "loud",
            "MIGRATE_BOT_LOG_LEVEL='loud' is not valid (expected DEBUG, INFO, WARNING or ERROR)",
        ),
        (
            "MIGRATE_BOT_METRICS_PORT",
            "70000",
            "MIGRATE_BOT_METRICS_PORT='70000' is not valid (expected a TCP port number 1-65535)",
        ),
        (
            "MIGRATE_BOT_BIND",
            "localhost",
            "MIGRATE_BOT_BIND='localhost' is not valid "
            "(expected an IP address to listen on, e.g. 0.0.0.0 (all) or 127.0.0.1)",
        ),
        (
            "MIGRATE_BOT_HTTP_MAX_CONNECTIONS",
            "15",
            "MIGRATE_BOT_HTTP_MAX_CONNECTIONS='15' is not valid (expected a number of connections, 16-100000)",
        ),
        (
            "MIGRATE_BOT_REPLICA_ID",
            "a b",
            "MIGRATE_BOT_REPLICA_ID='a b' is not valid (expected 1-64 letters, digits, '.', '_' or '-')",
        ),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_the_fix(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({variable: value})
    assert str(info.value) == message
    assert isinstance(info.value, RequestError)  # part of the one exception tree: answered, not a traceback


def test_a_bad_database_url_is_shown_without_its_password() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"MIGRATE_BOT_DB": "mysql://bot:s3cret@db/migrations"})
    text = str(info.value)
    assert text.startswith("MIGRATE_BOT_DB='mysql://bot:***@db/migrations' is not valid")
    assert "postgresql+psycopg://user:password@host/dbname" in text and "s3cret" not in text


def test_values_are_parsed_trimmed_and_normalised() -> None:
    s = load_settings(
        {
            "MIGRATE_BOT_DB": "postgresql://u:p@h/db",
            "SLACK_API_URL": "http://x/api",
            "MIGRATE_BOT_MODE": "HTTP",
            "MIGRATE_BOT_APPROVER_GROUP": "@ops",
            "MIGRATE_BOT_LOG_LEVEL": "debug",
            "MIGRATE_BOT_LOG_FORMAT": " JSON ",
            "MIGRATE_BOT_APPROVAL_TTL": "1h30m",
            "MIGRATE_BOT_APPROVERS": " U1, U2 ,",
            "MIGRATE_BOT_PORT": "  ",  # blank is unset
            "MIGRATE_BOT_LEASE": "45",
            "MIGRATE_BOT_METRICS_PORT": "9464",
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_SIGNING_SECRET": "abc",
            "MIGRATE_BOT_HOSTS": "/etc/migrate-bot/hosts.toml",
            "MIGRATE_BOT_REPLICA_ID": "bot-a.1",
            "MIGRATE_BOT_RATE_LIMIT": "12",
        }
    )
    assert s.database_url == "postgresql+psycopg://u:p@h/db"
    assert s.slack_api_url == "http://x/api/"
    assert s.transport is Transport.HTTP and s.log_format is LogFormat.JSON
    assert s.approver_group == "ops" and s.log_level == "DEBUG"
    assert s.approval_ttl_s == 5400.0 and s.lease_s == 45.0
    assert s.approvers == ("U1", "U2") and s.http_port == 3000 and s.metrics_port == 9464
    assert s.slack_bot_token == "xoxb-1" and s.slack_signing_secret == "abc"
    assert s.hosts_file == "/etc/migrate-bot/hosts.toml" and s.replica_id == "bot-a.1"
    assert s.requests_per_user_per_hour == 12
    assert "xoxb-1" not in repr(s) and "abc" not in repr(s)


def test_nothing_set_gives_the_defaults() -> None:
    assert load_settings({}) == Settings()


def test_the_approval_ttl_range_is_the_limit_owners() -> None:
    row = next(r for r in SETTINGS if r.variable == "MIGRATE_BOT_APPROVAL_TTL")
    assert row.field == "approval_ttl_s"
    assert load_settings({row.variable: "168h"}).approval_ttl_s == APPROVAL_TTL_S.maximum


def test_every_row_names_a_settings_field_once() -> None:
    fields = set(Settings.__dataclass_fields__)
    assert all(r.field in fields for r in SETTINGS)
    assert len({r.variable for r in SETTINGS}) == len(SETTINGS)
    assert len({r.field for r in SETTINGS}) == len(SETTINGS)


def _readme_variables() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("| variable |") :]
    section = section[: section.index("\n\n")]
    return set(re.findall(r"^\| `([A-Z_]+)` \|", section, flags=re.MULTILINE))


def test_the_readme_settings_table_lists_exactly_the_variables_of_the_table() -> None:
    assert _readme_variables() == {r.variable for r in SETTINGS}


def test_the_readme_settings_table_is_the_one_rendered_from_the_table() -> None:
    # After a change to bot.settings.SETTINGS: python -c 'import bot.settings as s; print(s.readme_table())'
    assert readme_table() in README.read_text(encoding="utf-8")
