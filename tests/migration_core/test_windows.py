"""Freeze windows, pure: edge minutes, time zones, DST changes, touching windows, listings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from migration_core.dispatch import windows
from migration_core.inventory.policy_file import FreezeWindow, parse_policy

BERLIN = ZoneInfo("Europe/Berlin")


def freezes(body: str) -> tuple[FreezeWindow, ...]:
    return parse_policy(body, "t.toml").freezes


BUSINESS = freezes('[[freeze]]\nname = "business hours"\nweekly = "Mon-Fri 08:00-18:00"\ntimezone = "Europe/Berlin"\n')
YEAR_END = freezes('[[freeze]]\nname = "year-end"\nstart = "2026-12-20T00:00:00Z"\nend = "2027-01-04T00:00:00Z"\n')


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("now", "frozen"),
    [
        (berlin(2026, 12, 7, 7, 59), False),  # Monday, a minute before
        (berlin(2026, 12, 7, 8, 0), True),  # the first minute is inside
        (berlin(2026, 12, 7, 17, 59), True),
        (berlin(2026, 12, 7, 18, 0), False),  # the end is outside (half-open)
        (berlin(2026, 12, 11, 12, 0), True),  # Friday
        (berlin(2026, 12, 12, 12, 0), False),  # Saturday
        (berlin(2026, 12, 13, 12, 0), False),  # Sunday
        (datetime(2026, 12, 7, 7, 30, tzinfo=UTC), True),  # 08:30 in Berlin (CET = UTC+1)
        (datetime(2026, 12, 7, 6, 59, tzinfo=UTC), False),  # 07:59 in Berlin
    ],
)
def test_weekly_window_edges_in_its_own_time_zone(now: datetime, frozen: bool) -> None:
    assert (windows.frozen_until(BUSINESS, now) is not None) is frozen


def test_until_when_is_the_end_of_the_local_day() -> None:
    got = windows.frozen_until(BUSINESS, berlin(2026, 12, 7, 9, 0))
    assert got is not None
    occurrence, until = got
    assert occurrence.window.name == "business hours"
    assert until == datetime(2026, 12, 7, 17, 0, tzinfo=UTC)


def test_absolute_window_edges() -> None:
    assert windows.frozen_until(YEAR_END, datetime(2026, 12, 19, 23, 59, 59, tzinfo=UTC)) is None
    assert windows.frozen_until(YEAR_END, datetime(2026, 12, 20, tzinfo=UTC)) is not None
    got = windows.frozen_until(YEAR_END, datetime(2027, 1, 3, 23, 59, tzinfo=UTC))
    assert got is not None and got[1] == datetime(2027, 1, 4, tzinfo=UTC)
    assert windows.frozen_until(YEAR_END, datetime(2027, 1, 4, tzinfo=UTC)) is None


def test_spring_forward_keeps_local_hours_and_moves_utc() -> None:
    # Europe/Berlin goes from UTC+1 to UTC+2 on Sunday 2027-03-28. Monday before: 07:00 UTC; after: 06:00 UTC.
    before = windows.frozen_until(BUSINESS, berlin(2027, 3, 26, 9, 0))
    after = windows.frozen_until(BUSINESS, berlin(2027, 3, 29, 9, 0))
    assert before is not None and after is not None
    assert before[0].start == datetime(2027, 3, 26, 7, 0, tzinfo=UTC)
    assert after[0].start == datetime(2027, 3, 29, 6, 0, tzinfo=UTC)
    assert windows.frozen_until(BUSINESS, datetime(2027, 3, 29, 6, 0, tzinfo=UTC)) is not None
    assert windows.frozen_until(BUSINESS, datetime(2027, 3, 29, 5, 59, tzinfo=UTC)) is None


def test_a_whole_day_window_on_the_dst_days_is_23_and_25_hours_long() -> None:
    sundays = freezes('[[freeze]]\nname = "sunday"\nweekly = "Sun 00:00-24:00"\ntimezone = "Europe/Berlin"\n')
    spring = windows.frozen_until(sundays, berlin(2027, 3, 28, 12, 0))
    autumn = windows.frozen_until(sundays, berlin(2026, 10, 25, 12, 0))
    assert spring is not None and autumn is not None
    assert spring[0].end - spring[0].start == timedelta(hours=23)
    assert autumn[0].end - autumn[0].start == timedelta(hours=25)


def test_a_window_starting_in_the_spring_forward_gap_starts_at_the_jump() -> None:
    # 02:30 does not exist in Berlin on 2027-03-28; fold=0 reads it with the winter offset: 01:30 UTC = 03:30 CEST.
    gap = freezes('[[freeze]]\nname = "night"\nweekly = "Sun 02:30-04:00"\ntimezone = "Europe/Berlin"\n')
    got = windows.frozen_until(gap, datetime(2027, 3, 28, 1, 30, tzinfo=UTC))
    assert got is not None
    assert got[0].start == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)
    assert got[1] == datetime(2027, 3, 28, 2, 0, tzinfo=UTC)  # 04:00 CEST


def test_touching_windows_are_followed_to_the_first_free_instant() -> None:
    weekdays = freezes('[[freeze]]\nname = "weekdays"\nweekly = "Mon-Fri 00:00-24:00"\n')
    got = windows.frozen_until(weekdays, datetime(2026, 12, 7, 23, 59, tzinfo=UTC))  # Monday night
    assert got is not None
    assert got[1] == datetime(2026, 12, 12, tzinfo=UTC)  # Saturday 00:00, not Tuesday 00:00


def test_overlapping_windows_wait_for_the_later_end() -> None:
    both = BUSINESS + YEAR_END
    got = windows.frozen_until(both, berlin(2026, 12, 21, 9, 0))
    assert got is not None
    assert got[1] == datetime(2027, 1, 4, tzinfo=UTC)


def test_upcoming_lists_the_current_window_first_then_the_next_ones() -> None:
    now = berlin(2026, 12, 11, 17, 30)  # Friday, inside business hours
    listed = windows.upcoming(BUSINESS + YEAR_END, now, limit=3)
    assert [o.window.name for o in listed] == ["business hours", "business hours", "year-end"]
    assert listed[0].contains(now)
    assert listed[1].start == datetime(2026, 12, 14, 7, 0, tzinfo=UTC)  # next Monday 08:00 CET
    line = windows.describe(listed[0], now)
    assert line.startswith("business hours (weekly Mon-Fri 08:00-18:00 Europe/Berlin): in force now, ")
    assert "2026-12-11 18:00 CET (17:00 UTC)" in line


def test_past_absolute_windows_are_not_listed() -> None:
    assert windows.upcoming(YEAR_END, datetime(2027, 2, 1, tzinfo=UTC)) == []


@freeze_time("2026-12-24 10:00:00", tz_offset=0)
def test_with_the_wall_clock_frozen_inside_the_year_end_freeze() -> None:
    got = windows.frozen_until(YEAR_END, datetime.now(UTC))
    assert got is not None and got[0].window.name == "year-end"


def test_schedule_times_without_a_zone_are_read_in_the_policys_zone_and_at_gets_the_grace() -> None:
    rule = parse_policy('[schedule]\ntimezone = "Europe/Berlin"\nat_grace_minutes = 20\n', "t.toml").schedule
    start, end = windows.resolve_schedule(datetime(2026, 12, 24, 22, 0), None, rule)
    assert start == datetime(2026, 12, 24, 21, 0, tzinfo=UTC)
    assert end == datetime(2026, 12, 24, 21, 20, tzinfo=UTC)
    aware = datetime(2026, 12, 24, 22, 0, tzinfo=UTC)
    assert windows.resolve_schedule(aware, aware + timedelta(hours=1), rule) == (aware, aware + timedelta(hours=1))
    assert windows.resolve_schedule(None, None, rule) == (None, None)


def test_a_scheduled_move_is_held_until_its_start_minute() -> None:
    start = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
    end = start + timedelta(minutes=30)
    assert windows.hold_reason(False, (), start - timedelta(minutes=1), start, end) == (
        "scheduled: starts at 2026-12-01 22:00 UTC (it may start until 2026-12-01 22:30 UTC)"
    )
    assert windows.hold_reason(False, (), start, start, end) is None
    # At its time but inside a freeze: the freeze holds it (an emergency is not held by the freeze).
    assert windows.hold_reason(False, YEAR_END, datetime(2026, 12, 24, tzinfo=UTC)) is not None
    assert windows.hold_reason(True, YEAR_END, datetime(2026, 12, 24, tzinfo=UTC)) is None
