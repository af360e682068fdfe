"""The console parser the lab tests rely on: last status line, lost memory and CPU faults (pure, no lab)."""

from __future__ import annotations

import pytest

from tests.labkit import ConsoleStatus, parse_console

BANNER = "\x1bc\x1b[?7lSeaBIOS (version 1.16.2)\nBooting from ROM..dirtier: start=4MiB mem=32MiB rate=1000 pages/s\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        (BANNER, None),
        (
            BANNER + "t=1 pass=0 rate=990 total=990 err=0\n",
            ConsoleStatus(1, 0, 990, 990, 0, False, False, ()),
        ),
        (
            BANNER + "t=1 pass=0 rate=990 total=990 err=0\nt=2 pass=0 rate=1000 total=1990 err=0\n",
            ConsoleStatus(2, 0, 1000, 1990, 0, False, False, ()),
        ),
        # A partial last line (the guest is mid-write) does not count; the previous line does.
        (
            "t=7 pass=3 rate=1000 total=7000 err=0\nt=8 pass=3 ra",
            ConsoleStatus(7, 3, 1000, 7000, 0, False, False, ()),
        ),
        (
            "t=11 pass=13 rate=20000 total=217200 err=0\nCORRUPT page=15360 have=11 want=10\n"
            "t=12 pass=14 rate=20000 total=237200 err=16384\n",
            ConsoleStatus(12, 14, 20000, 237200, 16384, True, False, ("CORRUPT page=15360 have=11 want=10",)),
        ),
        (
            "t=3 pass=0 rate=1000 total=3000 err=0\n\nFAULT: CPU exception in the dirtier guest; halted\n",
            ConsoleStatus(3, 0, 1000, 3000, 0, False, True, ()),
        ),
    ],
)
def test_parse_console(text: str, expected: ConsoleStatus | None) -> None:
    assert parse_console(text) == expected


@pytest.mark.parametrize(
    ("status", "ok"),
    [
        (ConsoleStatus(5, 1, 1000, 5000, 0, False, False, ()), True),
        (ConsoleStatus(5, 1, 1000, 5000, 3, False, False, ()), False),
        (ConsoleStatus(5, 1, 1000, 5000, 0, True, False, ("CORRUPT page=1 have=0 want=1",)), False),
        (ConsoleStatus(5, 1, 1000, 5000, 0, False, True, ()), False),
    ],
)
def test_ok_means_no_errors_no_corruption_no_fault(status: ConsoleStatus, ok: bool) -> None:
    assert status.ok is ok
