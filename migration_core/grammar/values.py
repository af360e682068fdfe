"""Value parsers of the /migrate grammar: names, job ids, whole numbers, durations and rates (pure)."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import NoReturn

from migration_core.errors import GrammarError

# Characters that phones and Macs put where a hyphen-minus was typed (en/em dash, minus sign, ...).
DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"

# VM and host names. libvirt accepts almost any name, but every name we accept here ends up in Slack
# text, log lines, TOML keys and libvirt API calls, so we take a conservative, documented subset: it
# covers what operators use in practice (vm42, web-01.prod, db_2, ns:vm). The first character must be a
# letter or digit so a name can never look like an option (`-x`) or a relative path (`..`).
NAME_RULE = "1 to 64 characters from A-Z a-z 0-9 _ . : -, starting with a letter or a digit"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", re.ASCII)
_JOB_ID_RE = re.compile(r"#?([0-9]{1,18})", re.ASCII)
_INT_RE = re.compile(r"[+]?([0-9]{1,18})", re.ASCII)
_NUMBER = r"(?:[0-9]{1,15}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})"
_BARE_NUMBER_RE = re.compile(_NUMBER, re.ASCII)
_DURATION_PART_RE = re.compile(rf"({_NUMBER})([a-z]+)", re.ASCII)
_RATE_RE = re.compile(rf"({_NUMBER})([a-z]*)(/s|/sec|ps)?", re.ASCII)

# Seconds per duration unit; each part of a compound duration must use a smaller unit than the last.
_DURATION_UNITS: dict[str, float] = {
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 0.001, "msec": 0.001, "msecs": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
}  # fmt: skip
# MiB/s per rate unit: the rate is in bytes (virsh's --bandwidth is MiB/s).
_RATE_UNITS: dict[str, int] = {"": 1, "m": 1, "mib": 1, "g": 1024, "gib": 1024}

DURATION_HINT = "write a duration like 300ms, 30s, 5m or 1h30m"


def is_valid_name(text: str) -> bool:
    """True when `text` is an acceptable VM or host name (see NAME_RULE)."""
    return _NAME_RE.fullmatch(text) is not None


def check_name(text: str, what: str) -> str:
    """Return `text` if it is a valid VM/host name, else raise GrammarError naming `what` ("VM", "host")."""
    if is_valid_name(text):
        return text
    shown = text if len(text) <= 70 else text[:67] + "..."
    _fail(f"`{shown}` is not a valid {what} name", f"a {what} name is {NAME_RULE}")


def _parse_id(regex: re.Pattern[str], text: str, what: str, hint: str) -> int | None:
    """The id `regex` captures in `text`; None when `text` is not written like one. Zero is rejected."""
    m = regex.fullmatch(text)
    if m is None:
        return None
    ident = int(m.group(1))
    if ident < 1:
        _fail(f"`{text}` is not {what}", hint)
    return ident


def parse_job_id(text: str) -> int | None:
    """`41` or `#41` -> 41; None when `text` does not look like a job id at all. Zero is rejected."""
    return _parse_id(_JOB_ID_RE, text, "a job id", "job ids start at 1, like #41")


_DRAIN_REF_RE = re.compile(r"[dD]([0-9]{1,18})", re.ASCII)


def parse_drain_ref(text: str) -> int | None:
    """`D7` or `d7` -> 7 (how people name a drain); None when `text` is not written like that. D0 is rejected."""
    return _parse_id(_DRAIN_REF_RE, text, "a drain", "drain ids start at 1, like D7 (see /migrate status)")


def looks_like_int(text: str) -> bool:
    """True for an optionally signed whole number (used by `--parallel [N]` to decide whether N is there)."""
    return re.fullmatch(rf"[+{DASHES}]?[0-9]+", text, re.ASCII) is not None


def parse_int(text: str, option: str, lo: int, hi: int) -> int:
    """A whole number within lo..hi for `option`, or GrammarError with the allowed range."""
    rng = f"a whole number from {lo} to {hi}"
    if _starts_with_dash(text):
        _fail(f"{option} cannot be negative (got `{text}`)", f"{option} takes {rng}")
    m = _INT_RE.fullmatch(text)
    if m is None:
        _fail(f"{option} needs a whole number, got `{text}`", f"{option} takes {rng}")
    value = int(m.group(1))
    if not lo <= value <= hi:
        _fail(f"{option} {value} is out of range", f"{option} takes {rng}")
    return value


def parse_duration_s(text: str, option: str, *, bare_unit_s: float = 1.0) -> float:
    """A duration in seconds: `300ms`, `30s`, `5m`, `1h30m`, `1.5h`; a bare number is in `bare_unit_s`.

    >>> parse_duration_s("1h30m", "--timeout")
    5400.0
    >>> parse_duration_s("300", "--max-downtime", bare_unit_s=0.001)
    0.3
    """
    bare = "milliseconds" if bare_unit_s == 0.001 else "seconds"
    hint = f"{DURATION_HINT}; a bare number is {bare}"
    if _starts_with_dash(text):
        _fail(f"{option} must be positive, got `{text}`", hint)
    lowered = text.lower()
    if _BARE_NUMBER_RE.fullmatch(lowered):
        return round(float(lowered) * bare_unit_s, 3)
    total_s = 0.0
    pos = 0
    last_unit_s = math.inf
    for m in _DURATION_PART_RE.finditer(lowered):
        unit_s = _DURATION_UNITS.get(m.group(2))
        if m.start() != pos or unit_s is None:
            break
        if unit_s >= last_unit_s:
            _fail(f"bad duration `{text}` for {option}: units must go from largest to smallest", hint)
        total_s += float(m.group(1)) * unit_s
        last_unit_s = unit_s
        pos = m.end()
    if pos == 0 or pos != len(lowered):
        _fail(f"bad duration `{text}` for {option}", hint)
    return round(total_s, 3)  # millisecond resolution keeps values exact when written back as text


def parse_rate_mib_s(text: str, option: str) -> int:
    """A transfer rate in whole MiB/s: `100`, `100M`, `100MiB/s`, `1G`, `2GiB/s` (bytes, not bits)."""
    hint = "write a rate in bytes per second like 500 (MiB/s), 500M, 500MiB/s, 2G or 2GiB/s"
    if _starts_with_dash(text):
        _fail(f"{option} must be positive, got `{text}`", hint)
    m = _RATE_RE.fullmatch(text.lower())
    if m is None:
        _fail(f"bad rate `{text}` for {option}", hint)
    unit = m.group(2)
    factor = _RATE_UNITS.get(unit)
    if factor is None:
        if unit in ("mb", "gb", "mbit", "gbit", "mbps", "gbps", "kb", "kib", "k"):
            hint = (
                "the rate is in bytes per second (MiB/s): 10 Gbit/s is about 1192M, 1 Gbit/s about 119M; "
                "write 500, 500M, 2G or 2GiB/s"
            )
        _fail(f"unknown rate unit `{unit}` in `{text}` for {option}", hint)
    return round(float(m.group(1)) * factor)


_INSTANT_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:?\d{2})?", re.IGNORECASE)
_CLOCK_RE = re.compile(r"(\d{1,2}):(\d{2})")
INSTANT_HINT = (
    "write a date and time, with a zone or in the policy file's zone: 2026-12-24T22:00Z, "
    "2026-12-24T23:00+01:00 or 2026-12-24T22:00"
)


def parse_instant(text: str, option: str) -> datetime:
    """An ISO date and time: aware when it names a zone (Z, +01:00), naive otherwise (the service then reads it
    in the policy file's [schedule] timezone, UTC by default)."""
    if not _INSTANT_RE.fullmatch(text):
        _fail(f"{option} `{text}` is not a date and time", INSTANT_HINT)
    try:
        return datetime.fromisoformat(text.upper().replace(" ", "T"))
    except ValueError:
        _fail(f"{option} `{text}` is not a valid date and time", INSTANT_HINT)


def parse_window(text: str, option: str) -> tuple[datetime, datetime]:
    """`START/END` (or `START..END`); END may be a bare HH:MM on START's day and in START's zone."""
    for sep in ("/", ".."):
        if sep in text:
            first, _, second = text.partition(sep)
            break
    else:
        _fail(f"{option} `{text}` is not a window", f"write START/END, e.g. 2026-12-24T22:00Z/23:30; {INSTANT_HINT}")
    start = parse_instant(first, option)
    clock = _CLOCK_RE.fullmatch(second)
    if clock:
        hours, minutes = int(clock.group(1)), int(clock.group(2))
        if not (0 <= hours <= 23 and 0 <= minutes <= 59):
            _fail(f"{option} end `{second}` is not a time of day", "use 00:00 to 23:59")
        end = start.replace(hour=hours, minute=minutes, second=0)
    else:
        end = parse_instant(second, option)
    if (start.tzinfo is None) != (end.tzinfo is None):
        _fail(f"{option} `{text}` gives a zone for one end only", "give both ends a zone, or neither")
    if end <= start:
        _fail(f"{option} `{text}` ends before it starts", "the end must come after the start (same day: START/HH:MM)")
    return start, end


def _starts_with_dash(text: str) -> bool:
    return text[:1] != "" and text[:1] in DASHES


def _fail(message: str, hint: str) -> NoReturn:
    raise GrammarError(message, hint)
