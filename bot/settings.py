"""Settings from the environment: the only place in the project that reads os.environ.

Every variable is documented in README.md. A wrong value raises SettingsError naming the variable, the bad value
(secrets are never echoed) and what a valid one looks like.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from migration_core.errors import RequestError
from migration_core.limits import APPROVAL_TTL_S, DEFAULT_APPROVAL_TTL_S, human_s


class SettingsError(RequestError):
    """An environment variable has a value the bot cannot use."""


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


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment (or the mapping given, for tests)."""
    env = os.environ if env is None else env

    def get(name: str) -> str | None:
        value = env.get(name)
        return value.strip() if value is not None and value.strip() else None

    def bad(name: str, value: str, want: str, secret: bool = False) -> SettingsError:
        shown = "(hidden)" if secret else repr(value)
        return SettingsError(f"{name}={shown} is not valid", f"expected {want}")

    kwargs: dict[str, object] = {}
    if (v := get("MIGRATE_BOT_HOSTS")) is not None:
        kwargs["hosts_file"] = v
    if (v := get("MIGRATE_BOT_POLICY")) is not None:
        kwargs["policy_file"] = v
    if (v := get("MIGRATE_BOT_DB")) is not None:
        if not re.match(r"^(sqlite|postgresql(\+psycopg)?)://", v):
            raise SettingsError(
                "MIGRATE_BOT_DB must be a database URL",
                "use sqlite:///./migrate-bot.db or postgresql+psycopg://user:password@host/dbname",
            )
        kwargs["database_url"] = v.replace("postgresql://", "postgresql+psycopg://", 1)
    if (v := get("MIGRATE_BOT_MODE")) is not None:
        try:
            kwargs["transport"] = Transport(v.lower())
        except ValueError:
            raise bad("MIGRATE_BOT_MODE", v, "'socket' (default) or 'http'") from None
    if (v := get("MIGRATE_BOT_PORT")) is not None:
        if not v.isdigit() or not 1 <= int(v) <= 65535:
            raise bad("MIGRATE_BOT_PORT", v, "a TCP port number 1-65535")
        kwargs["http_port"] = int(v)
    for name, key, prefix in (
        ("SLACK_BOT_TOKEN", "slack_bot_token", "xoxb-"),
        ("SLACK_APP_TOKEN", "slack_app_token", "xapp-"),
    ):
        if (v := get(name)) is not None:
            if not v.startswith(prefix):
                raise bad(name, v, f"a token starting with {prefix}", secret=True)
            kwargs[key] = v
    if (v := get("SLACK_SIGNING_SECRET")) is not None:
        kwargs["slack_signing_secret"] = v
    if (v := get("SLACK_API_URL")) is not None:
        if not re.match(r"^https?://[^\s]+$", v):
            raise bad("SLACK_API_URL", v, "an http(s) URL such as https://slack.com/api/")
        kwargs["slack_api_url"] = v if v.endswith("/") else v + "/"
    if (v := get("MIGRATE_BOT_APPROVERS")) is not None:
        users = _csv(v)
        wrong = [u for u in users if not _USER_ID.match(u)]
        if wrong:
            raise bad("MIGRATE_BOT_APPROVERS", v, f"comma-separated Slack user ids like U012ABC (not {wrong[0]!r})")
        kwargs["approvers"] = users
    if (v := get("MIGRATE_BOT_APPROVER_GROUP")) is not None:
        kwargs["approver_group"] = v.lstrip("@")
    if (v := get("MIGRATE_BOT_REQUESTERS")) is not None:
        users = _csv(v)
        wrong = [u for u in users if not _USER_ID.match(u)]
        if wrong:
            raise bad("MIGRATE_BOT_REQUESTERS", v, f"comma-separated Slack user ids (not {wrong[0]!r})")
        kwargs["requesters"] = users
    if (v := get("MIGRATE_BOT_CHANNELS")) is not None:
        chans = _csv(v)
        wrong = [c for c in chans if not _CHANNEL_ID.match(c)]
        if wrong:
            raise bad("MIGRATE_BOT_CHANNELS", v, f"comma-separated Slack channel ids like C012ABC (not {wrong[0]!r})")
        kwargs["channels"] = chans
    for name, key, lo, hi in (
        ("MIGRATE_BOT_APPROVAL_TTL", "approval_ttl_s", APPROVAL_TTL_S.minimum, APPROVAL_TTL_S.maximum),
        ("MIGRATE_BOT_DIRTY_RATE_WINDOW", "dirty_rate_window_s", 1.0, 60.0),
        # A replica renews its leases every second; a dead one's jobs are taken over after this long.
        ("MIGRATE_BOT_LEASE", "lease_s", 3.0, 600.0),
    ):
        if (v := get(name)) is not None:
            try:
                seconds = parse_duration_s(v)
            except ValueError:
                raise bad(name, v, "a duration such as 30s, 5m or 1h") from None
            if not lo <= seconds <= hi:
                raise bad(name, v, f"a duration between {human_s(lo)} and {human_s(hi)}")
            kwargs[key] = seconds
    if (v := get("MIGRATE_BOT_RATE_LIMIT")) is not None:
        if not v.isdigit() or not 1 <= int(v) <= 10000:
            raise bad("MIGRATE_BOT_RATE_LIMIT", v, "requests per user per hour, 1-10000")
        kwargs["requests_per_user_per_hour"] = int(v)
    if (v := get("MIGRATE_BOT_LOG_FORMAT")) is not None:
        try:
            kwargs["log_format"] = LogFormat(v.lower())
        except ValueError:
            raise bad("MIGRATE_BOT_LOG_FORMAT", v, "'text' or 'json'") from None
    if (v := get("MIGRATE_BOT_LOG_LEVEL")) is not None:
        if v.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise bad("MIGRATE_BOT_LOG_LEVEL", v, "DEBUG, INFO, WARNING or ERROR")
        kwargs["log_level"] = v.upper()
    if (v := get("MIGRATE_BOT_METRICS_PORT")) is not None:
        if not v.isdigit() or not 1 <= int(v) <= 65535:
            raise bad("MIGRATE_BOT_METRICS_PORT", v, "a TCP port number 1-65535")
        kwargs["metrics_port"] = int(v)
    if (v := get("MIGRATE_BOT_BIND")) is not None:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise bad("MIGRATE_BOT_BIND", v, "an IP address to listen on, e.g. 0.0.0.0 (all) or 127.0.0.1") from None
        kwargs["bind_host"] = v
    if (v := get("MIGRATE_BOT_HTTP_MAX_CONNECTIONS")) is not None:
        if not v.isdigit() or not 16 <= int(v) <= 100000:
            raise bad("MIGRATE_BOT_HTTP_MAX_CONNECTIONS", v, "a number of connections, 16-100000")
        kwargs["http_max_connections"] = int(v)
    if (v := get("MIGRATE_BOT_REPLICA_ID")) is not None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v):
            raise bad("MIGRATE_BOT_REPLICA_ID", v, "1-64 letters, digits, '.', '_' or '-'")
        kwargs["replica_id"] = v
    return Settings(**kwargs)  # type: ignore[arg-type]
