"""The change-control policy file (TOML, MIGRATE_BOT_POLICY): approvals, groups, owners, freezes, tickets.

Format (deploy/policy.example.toml documents it field by field; the key names are a contract):

    [approvals]      default = 1, risky = 2, emergency = 3
    [groups]         oncall = ["bob", "carol"]          # used where Slack user groups are not available
    [vm_labels]      db = ["db*", "pg-*"]               # VM name globs carrying a label (for owners' match)
    [[owners]]       match = { vm_label = "db" } | { vm = "db*" } | { host = "hostC" }, group = "dba", count = 1
    [[freeze]]       name, start + end (RFC 3339 with a zone) | weekly = "Mon-Fri 08:00-18:00" + timezone
    [ticket]         pattern = "^CHG[0-9]{7}$", required = false

Everything is validated when the file is loaded; every error names the file, the entry and the field, because
a typo in a freeze window otherwise surfaces as a migration started in the middle of the year-end freeze.
Without a policy file the bot behaves as before (`Policy.default()`).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from migration_core.errors import InventoryError
from migration_core.inventory.fields import read_text, reject_unknown

EXAMPLE_FILE = "deploy/policy.example.toml"
ENV_VAR = "MIGRATE_BOT_POLICY"

_TOP_KEYS = ("approvals", "groups", "vm_labels", "owners", "freeze", "ticket", "schedule")
_SCHEDULE_KEYS = ("timezone", "at_grace_minutes")
_APPROVAL_KEYS = ("default", "risky", "emergency")
_OWNER_KEYS = ("match", "group", "count")
_MATCH_KEYS = ("vm_label", "vm", "host")
_FREEZE_KEYS = ("name", "start", "end", "weekly", "timezone")
_TICKET_KEYS = ("pattern", "required")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_WEEKLY = re.compile(
    r"^\s*(?P<d1>[A-Za-z]{3})(?:\s*-\s*(?P<d2>[A-Za-z]{3}))?\s+(?P<t1>\d{1,2}:\d{2})\s*-\s*(?P<t2>\d{1,2}:\d{2})\s*$"
)
_MAX_APPROVALS = 10


@dataclass(frozen=True)
class ApprovalCounts:
    """How many distinct approvers a plan needs: plain, risky (warnings, post-copy, drains), emergency."""

    default: int = 1
    risky: int = 2
    emergency: int = 3


@dataclass(frozen=True)
class OwnerMatch:
    """What an owners' rule applies to; every field given must match (None = not part of the match)."""

    vm_label: str | None = None
    vm: str | None = None  # a glob on the VM name: "db*"
    host: str | None = None  # the source or the destination host

    def describe(self) -> str:
        parts = [f"{k} {v}" for k, v in (("VM label", self.vm_label), ("VM", self.vm), ("host", self.host)) if v]
        return ", ".join(parts)


@dataclass(frozen=True)
class OwnerRule:
    """`count` approvers from `group` are needed for whatever `match` selects."""

    match: OwnerMatch
    group: str
    count: int = 1


@dataclass(frozen=True)
class WeeklyRule:
    """A recurring window: on `days` (0 = Monday) from `start` to `end` local time (`end` None = midnight)."""

    days: frozenset[int]
    start: time
    end: time | None
    text: str


@dataclass(frozen=True)
class FreezeWindow:
    """A change freeze: either absolute (`start`..`end`, aware) or `weekly` in `timezone`."""

    name: str
    timezone: ZoneInfo
    start: datetime | None = None
    end: datetime | None = None
    weekly: WeeklyRule | None = None


@dataclass(frozen=True)
class TicketRule:
    """Change-ticket ids: checked against `pattern` (None = any text) and mandatory when `required`."""

    pattern: re.Pattern[str] | None = None
    required: bool = False


@dataclass(frozen=True)
class ScheduleRule:
    """Scheduled runs: the zone of times given without one, and how long after `--at TIME` a start may wait."""

    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    at_grace_minutes: int = 30


@dataclass(frozen=True)
class Policy:
    """The whole policy file, validated. `Policy.default()` is today's behaviour (no file)."""

    path: str | None
    approvals: ApprovalCounts = ApprovalCounts(1, 2, 3)
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    vm_labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    owners: tuple[OwnerRule, ...] = ()
    freezes: tuple[FreezeWindow, ...] = ()
    ticket: TicketRule = TicketRule()
    schedule: ScheduleRule = field(default_factory=ScheduleRule)

    @staticmethod
    def default() -> Policy:
        return Policy(path=None)

    def members(self, group: str) -> frozenset[str]:
        """The file's members of `group` (empty when the file does not list it)."""
        return self.groups.get(group, frozenset())


def load_policy(path: str | os.PathLike[str] | None) -> Policy:
    """Read and validate the policy file (None: no file, today's behaviour); errors are InventoryError."""
    if path is None:
        return Policy.default()
    source = os.fspath(path)
    file = Path(source)
    if not file.is_file():
        what = "is a directory" if file.is_dir() else "does not exist"
        raise InventoryError(
            f"policy file {source} {what}",
            f"copy {EXAMPLE_FILE} to {source} and edit it, or unset {ENV_VAR} to run without a policy file",
        )
    return parse_policy(read_text(source, "policy file"), source)


def parse_policy(text: str, source: str) -> Policy:
    """Validate policy-file `text`; `source` (a path or a label) is named in every error message."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(
            f"{source}: TOML syntax error: {exc}", f"fix the TOML at that spot; {EXAMPLE_FILE} shows the format"
        ) from None
    reject_unknown(data, _TOP_KEYS, source, "the top level")
    approvals = _approvals(_table(data, "approvals", source, "[approvals]"), source)
    groups = _groups(_table(data, "groups", source, "[groups]"), source)
    vm_labels = _vm_labels(_table(data, "vm_labels", source, "[vm_labels]"), source)
    owners = tuple(
        _owner(i, entry, source, groups, vm_labels) for i, entry in enumerate(_array(data, "owners", source), 1)
    )
    freezes = tuple(_freeze(i, entry, source) for i, entry in enumerate(_array(data, "freeze", source), 1))
    names: dict[str, int] = {}
    for i, window in enumerate(freezes, 1):
        if window.name.lower() in names:
            raise InventoryError(
                f"{source}: [[freeze]] #{i} '{window.name}': field 'name' repeats freeze #{names[window.name.lower()]}",
                "give every freeze window its own name (it is shown to the people it refuses)",
            )
        names[window.name.lower()] = i
    ticket = _ticket(_table(data, "ticket", source, "[ticket]"), source)
    schedule = _schedule(_table(data, "schedule", source, "[schedule]"), source)
    return Policy(source, approvals, groups, vm_labels, owners, freezes, ticket, schedule)


# ----- sections ----------------------------------------------------------------------------------------------


def _approvals(table: Mapping[str, Any], source: str) -> ApprovalCounts:
    reject_unknown(table, _APPROVAL_KEYS, source, "[approvals]")
    values = {}
    for key in _APPROVAL_KEYS:
        if key not in table:
            continue
        value = table[key]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= _MAX_APPROVALS:
            raise InventoryError(
                f"{source}: [approvals]: field '{key}' must be a whole number 1-{_MAX_APPROVALS}, not {value!r}",
                "the number of distinct people who must approve (the requester never counts)",
            )
        values[key] = value
    counts = ApprovalCounts(**values)
    if counts.risky < counts.default:
        raise InventoryError(
            f"{source}: [approvals]: field 'risky' ({counts.risky}) is lower than 'default' ({counts.default})",
            "a risky plan needs at least as many approvers as a plain one: raise 'risky'",
        )
    if counts.emergency < counts.risky:
        raise InventoryError(
            f"{source}: [approvals]: field 'emergency' ({counts.emergency}) is lower than 'risky' ({counts.risky})",
            "bypassing a freeze needs at least as many approvers as a risky plan: raise 'emergency'",
        )
    return counts


def _groups(table: Mapping[str, Any], source: str) -> dict[str, frozenset[str]]:
    groups: dict[str, frozenset[str]] = {}
    for name, members in table.items():
        where = f"{source}: [groups]: group '{name}'"
        if not _NAME.match(name):
            raise InventoryError(
                f"{where}: invalid group name", "letters, digits, '.', '_' or '-' (like a Slack handle)"
            )
        if not isinstance(members, list) or not all(isinstance(m, str) and m.strip() for m in members):
            raise InventoryError(f"{where}: must be a list of user names or Slack ids", f'{name} = ["bob", "U012ABC"]')
        groups[name] = frozenset(m.strip() for m in members)
    return groups


def _vm_labels(table: Mapping[str, Any], source: str) -> dict[str, tuple[str, ...]]:
    labels: dict[str, tuple[str, ...]] = {}
    for name, globs in table.items():
        where = f"{source}: [vm_labels]: label '{name}'"
        if not _NAME.match(name):
            raise InventoryError(f"{where}: invalid label", "letters, digits, '.', '_' or '-'")
        if not isinstance(globs, list) or not globs or not all(isinstance(g, str) and g.strip() for g in globs):
            raise InventoryError(f"{where}: must be a non-empty list of VM name globs", f'{name} = ["db*", "pg-01"]')
        labels[name] = tuple(g.strip() for g in globs)
    return labels


def _owner(
    index: int,
    entry: object,
    source: str,
    groups: Mapping[str, frozenset[str]],
    vm_labels: Mapping[str, tuple[str, ...]],
) -> OwnerRule:
    where = f"{source}: [[owners]] #{index}"
    if not isinstance(entry, dict):
        raise InventoryError(f"{where}: must be a table", 'write [[owners]] then match = { vm = "db*" }, group = "dba"')
    reject_unknown(entry, _OWNER_KEYS, source, f"[[owners]] #{index}")
    match = entry.get("match")
    if not isinstance(match, dict) or not match:
        raise InventoryError(
            f"{where}: field 'match' is missing or empty",
            'say what the owners own: match = { vm_label = "db" }, { vm = "db*" } or { host = "hostC" }',
        )
    reject_unknown(match, _MATCH_KEYS, source, f"[[owners]] #{index} match")
    for key, value in match.items():
        if not isinstance(value, str) or not value.strip():
            raise InventoryError(f"{where}: field 'match.{key}' must be a non-empty string", f'{key} = "db"')
    label = match.get("vm_label")
    if label is not None and label not in vm_labels:
        known = ", ".join(vm_labels) or "none defined"
        raise InventoryError(
            f"{where}: field 'match.vm_label': label '{label}' is not defined in [vm_labels] (known: {known})",
            f'add [vm_labels] {label} = ["<vm name glob>", ...] to say which VMs carry it',
        )
    group = entry.get("group")
    if not isinstance(group, str) or not group.strip():
        raise InventoryError(f"{where}: field 'group' is missing", 'name the owners\' group: group = "dba"')
    group = group.strip().lstrip("@")
    if group not in groups:
        close = difflib.get_close_matches(group, list(groups), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f'define it: [groups] {group} = ["alice", ...]'
        raise InventoryError(f"{where}: field 'group': group '{group}' does not exist in [groups]", hint)
    count = entry.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= _MAX_APPROVALS:
        raise InventoryError(f"{where}: field 'count' must be a whole number 1-{_MAX_APPROVALS}", "count = 1")
    if count > len(groups[group]):
        raise InventoryError(
            f"{where}: field 'count' asks for {count} approvers from '{group}', "
            f"which has {len(groups[group])} member(s)",
            "lower 'count' or add members to the group, or no request it covers could ever be approved",
        )
    return OwnerRule(OwnerMatch(label, match.get("vm"), match.get("host")), group, count)


def _freeze(index: int, entry: object, source: str) -> FreezeWindow:
    where = f"{source}: [[freeze]] #{index}"
    if not isinstance(entry, dict):
        raise InventoryError(f"{where}: must be a table", "write [[freeze]] then name = ..., start/end or weekly")
    reject_unknown(entry, _FREEZE_KEYS, source, f"[[freeze]] #{index}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InventoryError(
            f"{where}: field 'name' is missing", 'every window has a name people see: name = "year-end"'
        )
    name = name.strip()
    where = f"{where} '{name}'"
    zone = _zone(entry.get("timezone", "UTC"), f"{where}: field 'timezone'")
    absolute = "start" in entry or "end" in entry
    if absolute and "weekly" in entry:
        raise InventoryError(
            f"{where}: has both 'weekly' and 'start'/'end'",
            "a window is either recurring (weekly) or absolute: split it",
        )
    if absolute:
        start = _instant(entry.get("start"), zone, f"{where}: field 'start'")
        end = _instant(entry.get("end"), zone, f"{where}: field 'end'")
        if end <= start:
            raise InventoryError(
                f"{where}: field 'end' ({end.isoformat()}) is not after 'start' ({start.isoformat()})",
                "swap them, or fix the date",
            )
        return FreezeWindow(name, zone, start=start, end=end)
    if "weekly" not in entry:
        raise InventoryError(
            f"{where}: needs 'start' and 'end', or 'weekly'",
            'e.g. start = "2026-12-20T00:00:00Z" and end = "2027-01-04T00:00:00Z", or weekly = "Mon-Fri 08:00-18:00"',
        )
    return FreezeWindow(name, zone, weekly=parse_weekly(entry["weekly"], f"{where}: field 'weekly'"))


def _ticket(table: Mapping[str, Any], source: str) -> TicketRule:
    reject_unknown(table, _TICKET_KEYS, source, "[ticket]")
    pattern = table.get("pattern")
    compiled = None
    if pattern is not None:
        if not isinstance(pattern, str) or not pattern:
            raise InventoryError(
                f"{source}: [ticket]: field 'pattern' must be a non-empty string", 'pattern = "^CHG[0-9]{7}$"'
            )
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise InventoryError(
                f"{source}: [ticket]: field 'pattern' is not a valid regular expression: {exc}",
                "TOML basic strings need backslashes doubled; use a literal string: pattern = '^CHG\\d{7}$'",
            ) from None
    required = table.get("required", False)
    if not isinstance(required, bool):
        raise InventoryError(f"{source}: [ticket]: field 'required' must be true or false", "required = false")
    return TicketRule(compiled, required)


def _schedule(table: Mapping[str, Any], source: str) -> ScheduleRule:
    reject_unknown(table, _SCHEDULE_KEYS, source, "[schedule]")
    zone = _zone(table.get("timezone", "UTC"), f"{source}: [schedule]: field 'timezone'")
    grace = table.get("at_grace_minutes", 30)
    if not isinstance(grace, int) or isinstance(grace, bool) or not 1 <= grace <= 1440:
        raise InventoryError(
            f"{source}: [schedule]: field 'at_grace_minutes' must be a whole number 1-1440, not {grace!r}",
            "how long after --at TIME a move may still start (a full queue, a freeze) before it expires",
        )
    return ScheduleRule(zone, grace)


# ----- values ------------------------------------------------------------------------------------------------


def parse_weekly(value: object, where: str) -> WeeklyRule:
    """'Mon-Fri 08:00-18:00' -> WeeklyRule; 'Sat 00:00-24:00' is a whole Saturday. Day ranges may wrap (Fri-Mon)."""
    if not isinstance(value, str):
        raise InventoryError(f"{where}: must be a string", 'weekly = "Mon-Fri 08:00-18:00"')
    m = _WEEKLY.match(value)
    if not m:
        raise InventoryError(
            f"{where}: '{value}' is not a weekly window",
            'write DAY[-DAY] HH:MM-HH:MM, e.g. "Mon-Fri 08:00-18:00" or "Sat 00:00-24:00"',
        )
    first = _day(m["d1"], where)
    last = _day(m["d2"], where) if m["d2"] else first
    days = frozenset((first + i) % 7 for i in range((last - first) % 7 + 1))
    start = _clock(m["t1"], where, allow_24=False) or time(0, 0)  # never None: 24:00 is refused as a start
    end = _clock(m["t2"], where, allow_24=True)
    if end is not None and end <= start:
        raise InventoryError(
            f"{where}: '{value}' ends ({m['t2']}) before it starts ({m['t1']})",
            "a window runs forward within one day; for a night window write two: "
            '"Mon-Fri 22:00-24:00" and "Tue-Sat 00:00-06:00"',
        )
    return WeeklyRule(days, start, end, value.strip())


def _day(text: str, where: str) -> int:
    for i, day in enumerate(DAYS):
        if text.lower() == day.lower():
            return i
    raise InventoryError(f"{where}: '{text}' is not a weekday", f"use {', '.join(DAYS)}")


def _clock(text: str, where: str, *, allow_24: bool) -> time | None:
    hours, minutes = (int(p) for p in text.split(":"))
    if allow_24 and hours == 24 and minutes == 0:
        return None  # midnight at the end of the day
    if not (0 <= hours <= 23 and 0 <= minutes <= 59):
        raise InventoryError(f"{where}: '{text}' is not a time of day", "use 00:00 to 23:59 (24:00 only as an end)")
    return time(hours, minutes)


def _zone(value: object, where: str) -> ZoneInfo:
    if not isinstance(value, str) or not value.strip():
        raise InventoryError(f"{where}: must be a time zone name", 'timezone = "Europe/Berlin" (an IANA name)')
    try:
        return ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise InventoryError(
            f"{where}: unknown time zone '{value}'",
            'use an IANA name such as "Europe/Berlin", "America/New_York" or "UTC"',
        ) from None


def _instant(value: object, zone: ZoneInfo, where: str) -> datetime:
    """A TOML datetime or an RFC 3339 string; without an offset it is read in the window's `timezone`."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InventoryError(f"{where}: '{value}' is not a date and time", 'e.g. "2026-12-20T00:00:00Z"') from None
    if not isinstance(value, datetime):
        raise InventoryError(f"{where}: missing or not a date and time", 'e.g. start = "2026-12-20T00:00:00Z"')
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _table(data: Mapping[str, Any], key: str, source: str, where: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise InventoryError(f"{source}: {where} must be a table", f"write it as a {where} section")
    return value


def _array(data: Mapping[str, Any], key: str, source: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise InventoryError(f"{source}: '{key}' must be an array of tables", f"write each entry as [[{key}]]")
    return value


__all__ = [
    "ApprovalCounts",
    "FreezeWindow",
    "OwnerMatch",
    "OwnerRule",
    "Policy",
    "ScheduleRule",
    "TicketRule",
    "WeeklyRule",
    "load_policy",
    "parse_policy",
    "parse_weekly",
]
