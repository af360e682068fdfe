"""Settings from the environment: the only place in the project that reads os.environ.

Every variable is one row of SETTINGS (variable, Settings field, parser with its range, README line), applied by
one loop in load_settings; README.md's table is rendered from it. A wrong value raises SettingsError naming the
variable, the bad value (secrets are never echoed, a database password is masked) and what a valid one looks like.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from migration_core.errors import SettingsError as SettingsError  # raised here; part of the core's one tree
from migration_core.limits import APPROVAL_TTL_S, DEFAULT_APPROVAL_TTL_S, human_s


class Transport(StrEnum):
    """How the bot talks to Slack."""

    SOCKET = "socket"
    HTTP = "http"


class LogFormat(StrEnum):
    """Human-readable lines (default on a terminal) or one JSON object per line."""

    TEXT = "text"
    JSON = "json"


SLACK_DEFAULT_API_URL = "https://slack.com/api/"
_DURATION = re.compile(r"^\s*(?:(\d+)h)?\s*(?:(\d+)m(?!s))?\s*(?:(\d+)s)?\s*(?:(\d+)ms)?\s*$")
_USER_ID = re.compile(r"^[UW][A-Z0-9_]{1,40}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9_]{1,40}$")


@dataclass(frozen=True)
class Settings:
    """Everything the bot is configured with. Secrets are kept out of repr()."""

    hosts_file: str = "./hosts.toml"
    # The change-control policy file (approvals, groups, owners, freezes, tickets); None = built-in rules.
    policy_file: str | None = None
    database_url: str = "sqlite:///./migrate-bot.db"
    transport: Transport = Transport.SOCKET
    http_port: int = 3000
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_api_url: str = SLACK_DEFAULT_API_URL
    approvers: tuple[str, ...] = ()
    approver_group: str | None = None
    requesters: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    approval_ttl_s: float = DEFAULT_APPROVAL_TTL_S
    dirty_rate_window_s: float = 3.0
    requests_per_user_per_hour: int = 30
    log_format: LogFormat = LogFormat.TEXT
    # None: INFO, except WARNING for the text-mode console (job events are already on screen there).
    log_level: str | None = None
    metrics_port: int | None = None
    bind_host: str = "0.0.0.0"
    # HTTP listeners: open connections at most (lowered further to fit the open-files limit).
    http_max_connections: int = 512
    replica_id: str | None = None
    lease_s: float = 30.0

    def require_slack(self) -> None:
        """Raise a clear error when the tokens the chosen transport needs are missing."""
        missing = []
        if not self.slack_bot_token:
            missing.append("SLACK_BOT_TOKEN (xoxb-...)")
        if self.transport is Transport.SOCKET and not self.slack_app_token:
            missing.append("SLACK_APP_TOKEN (xapp-..., needed for Socket Mode)")
        if self.transport is Transport.HTTP and not self.slack_signing_secret:
            missing.append("SLACK_SIGNING_SECRET (needed for HTTP mode)")
        if missing:
            raise SettingsError(
                "cannot connect to Slack: missing " + ", ".join(missing),
                "set them in the environment (see README 'Slack app set-up'), or run `migrate-bot console` "
                "to use the bot without Slack",
            )


def parse_duration_s(text: str) -> float:
    """'30m' -> 1800.0, '1h30m' -> 5400.0, '45' -> 45.0 (bare number = seconds), '300ms' -> 0.3."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    m = _DURATION.match(text)
    if not text or not m or not any(m.groups()):
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h30m)")
    h, mnt, s, ms = (int(g) if g else 0 for g in m.groups())
    return h * 3600 + mnt * 60 + s + ms / 1000


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


# A parser turns the variable's trimmed, non-empty text into the Settings field's value, or raises
# ValueError(what a valid value looks like): the fix the operator reads after "expected".
Parser = Callable[[str], object]


def _text(value: str) -> str:
    return value


def _user_group(value: str) -> str:
    return value.lstrip("@")


def _database_url(value: str) -> str:
    if not re.match(r"^(sqlite|postgresql(\+psycopg)?)://", value):
        raise ValueError(
            "a database URL: sqlite:///./migrate-bot.db or postgresql+psycopg://user:password@host/dbname"
        )
    return value.replace("postgresql://", "postgresql+psycopg://", 1)


def _slack_api_url(value: str) -> str:
    if not re.match(r"^https?://[^\s]+$", value):
        raise ValueError("an http(s) URL such as https://slack.com/api/")
    return value if value.endswith("/") else value + "/"


def _log_level(value: str) -> str:
    if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("DEBUG, INFO, WARNING or ERROR")
    return value.upper()


def _ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("an IP address to listen on, e.g. 0.0.0.0 (all) or 127.0.0.1") from None
    return value


def _replica_id(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise ValueError("1-64 letters, digits, '.', '_' or '-'")
    return value


def _choice(kind: type[StrEnum], want: str) -> Parser:
    """One of an enum's values, in any case."""

    def parse(value: str) -> StrEnum:
        try:
            return kind(value.lower())
        except ValueError:
            raise ValueError(want) from None

    return parse


def _integer(minimum: int, maximum: int, want: str) -> Parser:
    """A whole number within [minimum, maximum]."""

    def parse(value: str) -> int:
        # isascii: str.isdigit() is also true for digits int() refuses, such as "²"
        if not (value.isascii() and value.isdigit()) or not minimum <= int(value) <= maximum:
            raise ValueError(want)
        return int(value)

    return parse


def _token(prefix: str) -> Parser:
    def parse(value: str) -> str:
        if not value.startswith(prefix):
            raise ValueError(f"a token starting with {prefix}")
        return value

    return parse


def _slack_ids(pattern: re.Pattern[str], want: str) -> Parser:
    """Comma-separated Slack ids; the error names the first one that is not an id."""

    def parse(value: str) -> tuple[str, ...]:
        ids = _csv(value)
        wrong = [i for i in ids if not pattern.match(i)]
        if wrong:
            raise ValueError(f"{want} (not {wrong[0]!r})")
        return ids

    return parse


def _duration(minimum: float, maximum: float) -> Parser:
    """A duration (30s, 5m, 1h30m; a bare number is seconds) within [minimum, maximum], in seconds."""

    def parse(value: str) -> float:
        try:
            seconds = parse_duration_s(value)
        except ValueError:
            raise ValueError("a duration such as 30s, 5m or 1h") from None
        if not minimum <= seconds <= maximum:
            raise ValueError(f"a duration between {human_s(minimum)} and {human_s(maximum)}")
        return seconds

    return parse


def _hidden(value: str) -> str:
    return "(hidden)"


def _without_password(value: str) -> str:
    """A database URL as it may be shown: the password replaced by ***."""
    return repr(re.sub(r"^([^:/]+://[^:/@]*):[^@]*@", r"\1:***@", value))


_PORT = "a TCP port number 1-65535"


@dataclass(frozen=True)
class Setting:
    """One environment variable: the Settings field it sets, its parser, and its line in the README table."""

    variable: str
    field: str
    parse: Parser
    default: str  # as the README shows it (Markdown)
    meaning: str  # the README's explanation (Markdown)
    show: Callable[[str], str] = repr  # how a bad value is echoed in the error (secrets: not at all)

    def read(self, value: str) -> object:
        """The field's value from the variable's text, or SettingsError naming the variable, value and fix."""
        try:
            return self.parse(value)
        except ValueError as err:
            raise SettingsError(f"{self.variable}={self.show(value)} is not valid", f"expected {err}") from None


# Every environment variable the bot reads, in the README's order (the README table is rendered from this one;
# tests/bot/test_settings.py keeps them equal). Ranges owned by migration_core.limits are taken from there.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "MIGRATE_BOT_HOSTS",
        "hosts_file",
        _text,
        "`./hosts.toml`",
        "the hosts inventory file (format: `deploy/hosts.example.toml`)",
    ),
    Setting(
        "MIGRATE_BOT_POLICY",
        "policy_file",
        _text,
        "—",
        "the change-control policy file (format: `deploy/policy.example.toml`); without it: 1 approver, 2 for "
        "risky plans, no freezes, no tickets",
    ),
    Setting(
        "MIGRATE_BOT_DB",
        "database_url",
        _database_url,
        "`sqlite:///./migrate-bot.db`",
        "job store; `postgresql+psycopg://user:pw@host/db` for PostgreSQL (needed for two replicas)",
        show=_without_password,
    ),
    Setting(
        "SLACK_BOT_TOKEN", "slack_bot_token", _token("xoxb-"), "—", "bot token `xoxb-…` (`serve` only)", show=_hidden
    ),
    Setting(
        "SLACK_APP_TOKEN",
        "slack_app_token",
        _token("xapp-"),
        "—",
        "app-level token `xapp-…` with `connections:write` (Socket Mode)",
        show=_hidden,
    ),
    Setting("SLACK_SIGNING_SECRET", "slack_signing_secret", _text, "—", "signing secret (HTTP mode)", show=_hidden),
    Setting(
        "SLACK_API_URL",
        "slack_api_url",
        _slack_api_url,
        f"`{SLACK_DEFAULT_API_URL}`",
        "Web API base URL (point it at another server, e.g. the tests' fake Slack)",
    ),
    Setting(
        "MIGRATE_BOT_MODE",
        "transport",
        _choice(Transport, "'socket' (default) or 'http'"),
        "`socket`",
        "`socket` (no public endpoint) or `http`",
    ),
    Setting(
        "MIGRATE_BOT_PORT",
        "http_port",
        _integer(1, 65535, _PORT),
        "`3000`",
        "HTTP mode port; the endpoint is `/slack/events`, health at `/healthz`",
    ),
    Setting(
        "MIGRATE_BOT_APPROVER_GROUP",
        "approver_group",
        _user_group,
        "—",
        "Slack user group (handle or id) whose members may approve",
    ),
    Setting(
        "MIGRATE_BOT_APPROVERS",
        "approvers",
        _slack_ids(_USER_ID, "comma-separated Slack user ids like U012ABC"),
        "—",
        "comma-separated user ids allowed to approve (fallback when user groups are unavailable, e.g. free plans)",
    ),
    Setting(
        "MIGRATE_BOT_REQUESTERS",
        "requesters",
        _slack_ids(_USER_ID, "comma-separated Slack user ids"),
        "everyone",
        "comma-separated user ids allowed to request migrations; when set, `plan`, `status`, `history` and "
        "`hosts` are for them and the approvers only",
    ),
    Setting(
        "MIGRATE_BOT_CHANNELS",
        "channels",
        _slack_ids(_CHANNEL_ID, "comma-separated Slack channel ids like C012ABC"),
        "any",
        "comma-separated channel ids where `/migrate` and the buttons are accepted (a DM or an empty channel is "
        "not one of them)",
    ),
    Setting(
        "MIGRATE_BOT_APPROVAL_TTL",
        "approval_ttl_s",
        _duration(APPROVAL_TTL_S.minimum, APPROVAL_TTL_S.maximum),
        "`30m`",
        "how long an approval card stays valid",
    ),
    Setting(
        "MIGRATE_BOT_DIRTY_RATE_WINDOW",
        "dirty_rate_window_s",
        _duration(1.0, 60.0),
        "`3s`",
        "dirty-rate measurement window for the prediction",
    ),
    Setting(
        "MIGRATE_BOT_RATE_LIMIT",
        "requests_per_user_per_hour",
        _integer(1, 10000, "requests per user per hour, 1-10000"),
        "`30`",
        "migration requests and `plan`s (together) per user per hour; reads and clicks get 4 times as many",
    ),
    Setting(
        "MIGRATE_BOT_HTTP_MAX_CONNECTIONS",
        "http_max_connections",
        _integer(16, 100000, "a number of connections, 16-100000"),
        "`512`",
        "open connections per HTTP listener at most (lowered to the open-files limit minus 64)",
    ),
    Setting(
        "MIGRATE_BOT_REPLICA_ID",
        "replica_id",
        _replica_id,
        "the host name",
        "this replica's name in leases; a restarted bot resumes the jobs leased to its name (give each replica "
        "its own)",
    ),
    Setting(
        "MIGRATE_BOT_LEASE",
        "lease_s",
        # A replica renews its leases every second; a dead one's jobs are taken over after this long.
        _duration(3.0, 600.0),
        "`30s`",
        "lease on a running job, renewed every second; when a replica dies, another takes its jobs over after "
        "this long (3 s to 10 min)",
    ),
    Setting(
        "MIGRATE_BOT_LOG_FORMAT",
        "log_format",
        _choice(LogFormat, "'text' or 'json'"),
        "`text`",
        "`text` or `json` (one object per line)",
    ),
    Setting(
        "MIGRATE_BOT_LOG_LEVEL",
        "log_level",
        _log_level,
        "`INFO` (`WARNING` in the text-mode console)",
        "`DEBUG`, `INFO`, `WARNING`, `ERROR`",
    ),
    Setting(
        "MIGRATE_BOT_METRICS_PORT",
        "metrics_port",
        _integer(1, 65535, _PORT),
        "—",
        "port of the operations listener: `/metrics` (Prometheus) and `/healthz`; in HTTP mode both are also on "
        "`MIGRATE_BOT_PORT`",
    ),
    Setting(
        "MIGRATE_BOT_BIND",
        "bind_host",
        _ip_address,
        "`0.0.0.0`",
        "IP address the HTTP-mode and metrics listeners bind to (`127.0.0.1` behind a local proxy)",
    ),
)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment (or the mapping given, for tests); a blank variable is unset."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for setting in SETTINGS:
        text = (env.get(setting.variable) or "").strip()
        if text:
            values[setting.field] = setting.read(text)
    return Settings(**values)  # type: ignore[arg-type]


def readme_table() -> str:
    """The README's table of environment variables, rendered from SETTINGS."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{s.variable}` | {s.default} | {s.meaning} |" for s in SETTINGS]
    return "\n".join(lines)
