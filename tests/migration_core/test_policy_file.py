"""The policy file: the documented format loads, and every mistake is named by file, entry and field."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from migration_core.errors import InventoryError
from migration_core.inventory.policy_file import ApprovalCounts, Policy, load_policy, parse_policy

REPO = Path(__file__).resolve().parents[2]
SRC = "test-policy.toml"


def test_example_file_loads_with_every_section() -> None:
    policy = load_policy(REPO / "deploy" / "policy.example.toml")
    assert policy.approvals == ApprovalCounts(1, 2, 3)
    assert policy.members("oncall") == frozenset({"bob", "carol"})
    assert policy.vm_labels["db"] == ("db*", "pg-*")
    (owner,) = policy.owners
    assert (owner.match.vm_label, owner.group, owner.count) == ("db", "dba", 1)
    year_end, business = policy.freezes
    assert year_end.start == datetime(2026, 12, 20, tzinfo=UTC)
    assert year_end.end == datetime(2027, 1, 4, tzinfo=UTC)
    assert business.weekly is not None
    assert business.weekly.days == frozenset(range(5))
    assert (business.weekly.start, business.weekly.end) == (time(8), time(18))
    assert business.timezone.key == "Europe/Berlin"
    assert policy.ticket.pattern is not None and policy.ticket.pattern.match("CHG1234567")
    assert policy.ticket.required is False


def test_no_file_is_todays_behaviour() -> None:
    policy = load_policy(None)
    assert policy == Policy.default()
    assert (policy.approvals, policy.owners, policy.freezes) == (ApprovalCounts(1, 2, 3), (), ())
    assert policy.ticket.pattern is None and not policy.ticket.required


def test_an_empty_file_is_the_defaults_too() -> None:
    assert parse_policy("", SRC).approvals == ApprovalCounts(1, 2, 3)


def test_missing_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as err:
        load_policy(tmp_path / "nope.toml")
    assert "nope.toml does not exist" in err.value.message
    assert "MIGRATE_BOT_POLICY" in err.value.hint


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        ("[approvals]\nemergancy = 3\n", "test-policy.toml: [approvals]: unknown field 'emergancy'", "'emergency'"),
        ("[aprovals]\ndefault = 1\n", "the top level: unknown field 'aprovals'", "'approvals'"),
        ("[approvals]\ndefault = 0\n", "[approvals]: field 'default' must be a whole number 1-10", ""),
        ("[approvals]\ndefault = true\n", "field 'default' must be a whole number", ""),
        ("[approvals]\ndefault = 3\nrisky = 2\n", "field 'risky' (2) is lower than 'default' (3)", "raise 'risky'"),
        ("[approvals]\nemergency = 1\n", "field 'emergency' (1) is lower than 'risky' (2)", ""),
        ('[groups]\noncall = "bob"\n', "[groups]: group 'oncall': must be a list", ""),
        (
            '[groups]\ndba = ["dave"]\n[[owners]]\nmatch = { vm = "db*" }\ngroup = "dab"\n',
            "[[owners]] #1: field 'group': group 'dab' does not exist in [groups]",
            "did you mean 'dba'?",
        ),
        (
            '[groups]\ndba = ["dave"]\n[[owners]]\nmatch = { vm_label = "db" }\ngroup = "dba"\n',
            "[[owners]] #1: field 'match.vm_label': label 'db' is not defined in [vm_labels]",
            "[vm_labels]",
        ),
        (
            '[groups]\ndba = ["dave"]\n[[owners]]\nmatch = { vmname = "db*" }\ngroup = "dba"\n',
            "[[owners]] #1 match: unknown field 'vmname'",
            "",
        ),
        ('[groups]\ndba = ["dave"]\n[[owners]]\ngroup = "dba"\n', "[[owners]] #1: field 'match' is missing", ""),
        (
            '[groups]\ndba = ["dave"]\n[[owners]]\nmatch = { vm = "db*" }\ngroup = "dba"\ncount = 2\n',
            "field 'count' asks for 2 approvers from 'dba', which has 1 member(s)",
            "",
        ),
        (
            '[[freeze]]\nstart = "2026-12-20T00:00:00Z"\nend = "2027-01-04T00:00:00Z"\n',
            "[[freeze]] #1: field 'name' is missing",
            "",
        ),
        (
            '[[freeze]]\nname = "x"\nstart = "2027-01-04T00:00:00Z"\nend = "2026-12-20T00:00:00Z"\n',
            "[[freeze]] #1 'x': field 'end' (2026-12-20T00:00:00+00:00) is not after 'start'",
            "swap them",
        ),
        (
            '[[freeze]]\nname = "x"\nstart = "soon"\nend = "2026-12-20T00:00:00Z"\n',
            "[[freeze]] #1 'x': field 'start': 'soon' is not a date and time",
            "",
        ),
        (
            '[[freeze]]\nname = "x"\nweekly = "Mon-Fri 18:00-08:00"\n',
            "[[freeze]] #1 'x': field 'weekly': 'Mon-Fri 18:00-08:00' ends (08:00) before it starts (18:00)",
            "two",
        ),
        ('[[freeze]]\nname = "x"\nweekly = "Mon-Fry 08:00-18:00"\n', "field 'weekly': 'Fry' is not a weekday", ""),
        ('[[freeze]]\nname = "x"\nweekly = "Mon-Fri 08:00-25:00"\n', "field 'weekly': '25:00' is not a time", ""),
        ('[[freeze]]\nname = "x"\nweekly = "weekdays"\n', "field 'weekly': 'weekdays' is not a weekly window", ""),
        (
            '[[freeze]]\nname = "x"\nweekly = "Mon 08:00-18:00"\ntimezone = "Europe/Berlinn"\n',
            "[[freeze]] #1 'x': field 'timezone': unknown time zone 'Europe/Berlinn'",
            "IANA",
        ),
        ('[[freeze]]\nname = "x"\n', "[[freeze]] #1 'x': needs 'start' and 'end', or 'weekly'", ""),
        (
            '[[freeze]]\nname = "x"\nweekly = "Mon 08:00-18:00"\nstart = "2026-12-20T00:00:00Z"\n',
            "has both 'weekly' and 'start'/'end'",
            "",
        ),
        (
            '[[freeze]]\nname = "x"\nweekly = "Mon 08:00-18:00"\n[[freeze]]\nname = "X"\nweekly = "Tue 08:00-18:00"\n',
            "[[freeze]] #2 'X': field 'name' repeats freeze #1",
            "",
        ),
        (
            '[[freeze]]\nname = "x"\nweekly = "Mon 08:00-18:00"\nzone = "UTC"\n',
            "[[freeze]] #1: unknown field 'zone'",
            "",
        ),
        ('[ticket]\npattern = "^CHG[0-9"\n', "[ticket]: field 'pattern' is not a valid regular expression", ""),
        ('[ticket]\nrequired = "yes"\n', "[ticket]: field 'required' must be true or false", ""),
        ("[approvals\n", "test-policy.toml: TOML syntax error", ""),
    ],
)
def test_every_mistake_names_the_file_the_entry_and_the_field(text: str, message: str, hint: str) -> None:
    with pytest.raises(InventoryError) as err:
        parse_policy(text, SRC)
    assert message in err.value.message
    assert err.value.message.startswith(SRC)
    assert hint in err.value.hint


def test_weekly_day_ranges_wrap_over_the_weekend() -> None:
    policy = parse_policy('[[freeze]]\nname = "w"\nweekly = "Fri-Mon 00:00-24:00"\n', SRC)
    weekly = policy.freezes[0].weekly
    assert weekly is not None
    assert weekly.days == frozenset({4, 5, 6, 0})
    assert weekly.end is None  # 24:00 = the next midnight


def test_a_start_without_offset_is_read_in_the_windows_zone() -> None:
    text = (
        '[[freeze]]\nname = "x"\nstart = 2026-12-20T00:00:00\nend = 2026-12-21T00:00:00\ntimezone = "Europe/Berlin"\n'
    )
    (window,) = parse_policy(text, SRC).freezes
    assert window.start == datetime(2026, 12, 19, 23, tzinfo=UTC)
