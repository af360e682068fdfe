"""Freeze and schedule windows, pure: is `now` inside a freeze, until when, and which windows come next.

No clock is read here: `now` (an aware datetime) is always passed in. Weekly windows are computed in their own
time zone, day by day, so "Mon-Fri 08:00-18:00 Europe/Berlin" stays 08:00-18:00 local across a DST change (the
UTC instants move by an hour). A local time that does not exist on a spring-forward day (02:30) is read with
the offset before the change (zoneinfo's fold=0), i.e. an hour later in wall-clock terms; a time that occurs
twice on a fall-back day is read as its first occurrence. Windows are half-open: [start, end).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from migration_core.inventory.policy_file import FreezeWindow, ScheduleRule

# How far ahead `upcoming` looks, and the most steps `frozen_until` takes through touching windows.
HORIZON = timedelta(days=400)
_MAX_CHAIN = 1000


@dataclass(frozen=True)
class Occurrence:
    """One concrete stretch of a window, [start, end) in UTC."""

    window: FreezeWindow
    start: datetime
    end: datetime

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


def _local(day: date, clock: time, window: FreezeWindow) -> datetime:
    """`day` at local `clock` in the window's zone, as UTC (fold=0: the first of two, before a gap)."""
    return datetime.combine(day, clock, tzinfo=window.timezone).astimezone(UTC)


def occurrences(window: FreezeWindow, since: datetime, until: datetime) -> Iterator[Occurrence]:
    """The occurrences of `window` that overlap [since, until), in time order."""
    if window.weekly is None:
        assert window.start is not None and window.end is not None
        if window.start < until and window.end > since:
            yield Occurrence(window, window.start, window.end)
        return
    weekly = window.weekly
    day = since.astimezone(window.timezone).date() - timedelta(days=1)
    last = until.astimezone(window.timezone).date() + timedelta(days=1)
    while day <= last:
        if day.weekday() in weekly.days:
            start = _local(day, weekly.start, window)
            if weekly.end is None:  # 24:00 is the next day's midnight (23 or 25 h away on a DST day)
                end = _local(day + timedelta(days=1), time(0, 0), window)
            else:
                end = _local(day, weekly.end, window)
            if start < until and end > since and end > start:
                yield Occurrence(window, start, end)
        day += timedelta(days=1)


def active(windows: Iterable[FreezeWindow], now: datetime) -> list[Occurrence]:
    """The occurrences that contain `now` (several windows may overlap)."""
    return [o for w in windows for o in occurrences(w, now, now + timedelta(seconds=1)) if o.contains(now)]


def frozen_until(windows: Iterable[FreezeWindow], now: datetime) -> tuple[Occurrence, datetime] | None:
    """None when `now` is outside every freeze; else the window in force and when changes may start again.

    Touching or overlapping windows are followed (Mon-Fri 00:00-24:00 ends on Saturday, not at midnight),
    so the answer is the first instant that no freeze covers.
    """
    windows = tuple(windows)
    current = active(windows, now)
    if not current:
        return None
    first = max(current, key=lambda o: o.end)
    until = first.end
    for _ in range(_MAX_CHAIN):
        more = active(windows, until)
        if not more:
            break
        until = max(o.end for o in more)
    return first, until


def upcoming(windows: Iterable[FreezeWindow], now: datetime, limit: int = 10, per_window: int = 2) -> list[Occurrence]:
    """For `/migrate freezes`: each window's current-or-next occurrences (`per_window`), ordered by start."""
    found = [o for w in windows for o in _first(occurrences(w, now, now + HORIZON), per_window)]
    return sorted(found, key=lambda o: (o.start, o.window.name))[:limit]


def _first(items: Iterator[Occurrence], n: int) -> list[Occurrence]:
    out: list[Occurrence] = []
    for item in items:
        out.append(item)
        if len(out) >= n:
            break
    return out


def resolve_schedule(
    not_before: datetime | None, not_after: datetime | None, rule: ScheduleRule
) -> tuple[datetime | None, datetime | None]:
    """The start window as aware UTC instants: times without a zone are read in the policy's [schedule]
    timezone; `--at TIME` alone may start until TIME + at_grace_minutes."""

    def aware(at: datetime) -> datetime:
        return (at.replace(tzinfo=rule.timezone) if at.tzinfo is None else at).astimezone(UTC)

    if not_before is None:
        return None, None
    start = aware(not_before)
    end = aware(not_after) if not_after is not None else start + timedelta(minutes=rule.at_grace_minutes)
    return start, end


def hold_reason(
    emergency: bool,
    windows: Iterable[FreezeWindow],
    now: datetime,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> str | None:
    """Why an approved move must not start at `now` (not yet its scheduled time; a freeze, unless it is an
    emergency), or None. The dispatcher queues the job with this reason, so its thread says why and until when.
    """
    if not_before is not None and now < not_before:
        latest = f" (it may start until {fmt_instant(not_after)})" if not_after is not None else ""
        return f"scheduled: starts at {fmt_instant(not_before)}{latest}"
    if emergency:
        return None
    frozen = frozen_until(windows, now)
    if frozen is None:
        return None
    occurrence, until = frozen
    return f"change freeze '{occurrence.window.name}' is in force until {fmt_instant(until, occurrence.window)}"


def fmt_instant(at: datetime, window: FreezeWindow | None = None) -> str:
    """'2026-12-21 18:00 CET (17:00 UTC)': the window's local time first, UTC alongside."""
    utc = at.astimezone(UTC)
    if window is None or window.timezone.key == "UTC":
        return utc.strftime("%Y-%m-%d %H:%M UTC")
    local = at.astimezone(window.timezone)
    return f"{local.strftime('%Y-%m-%d %H:%M %Z')} ({utc.strftime('%H:%M UTC')})"


def describe(occurrence: Occurrence, now: datetime) -> str:
    """One line for a listing: name, when, and whether it is on now."""
    w = occurrence.window
    rule = f" (weekly {w.weekly.text} {w.timezone.key})" if w.weekly else ""
    span = f"{fmt_instant(occurrence.start, w)} → {fmt_instant(occurrence.end, w)}"
    state = "in force now, " if occurrence.contains(now) else ""
    return f"{w.name}{rule}: {state}{span}"


__all__ = [
    "Occurrence",
    "active",
    "describe",
    "fmt_instant",
    "frozen_until",
    "hold_reason",
    "occurrences",
    "resolve_schedule",
    "upcoming",
]
