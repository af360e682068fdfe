"""Clock skew between hosts, judged from each host's clock reading (pure: `migrate-bot doctor` does the I/O).

Each reading is a host's offset from the bot's clock with its uncertainty (facts.host.ClockReading).
The skew of a pair is the difference of their offsets; it is known to within the sum of their uncertainties,
so a pair is only a problem when even its smallest possible skew is over MAX_SKEW_S, and "cannot tell" when
the threshold lies inside the uncertainty. The hosts to fix are those far from the median clock (the bot's
own clock votes too), so one host 30 s off is named alone rather than every pair it belongs to.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from migration_core.facts.host import ClockReading

# Hosts whose clocks differ by more than this are not synchronised at all: chrony/NTP keeps hosts within
# milliseconds, and the probe through libvirt measures to within a few ms on a LAN (tenths of a second over a
# slow WAN), so 2 s never fires on jitter. Above it: the source's and destination's logs and libvirt events of
# one migration (a switchover lasts ~0.3 s) no longer line up, the audit trail's times disagree between hosts,
# and a host far behind rejects freshly issued TLS certificates as "not yet valid".
MAX_SKEW_S = 2.0
FIX = "enable time synchronisation on {host} (chrony or systemd-timesyncd against your NTP servers), then re-run doctor"


class Verdict(StrEnum):
    OK = "ok"
    UNSURE = "unsure"  # the threshold lies within the measurement's uncertainty
    TOO_LARGE = "too_large"
    NOT_CHECKED = "not_checked"  # fewer than two hosts could be read


@dataclass(frozen=True)
class SkewJudgement:
    """The largest pairwise skew across the hosts read, and what to do about it."""

    verdict: Verdict
    max_skew_s: float | None
    uncertainty_s: float | None
    between: tuple[str, ...]  # the pair with the largest skew
    to_fix: tuple[str, ...]  # hosts whose clock is far from the others' (and the bot's)
    threshold_s: float = MAX_SKEW_S


def judge(readings: Mapping[str, ClockReading], threshold_s: float = MAX_SKEW_S) -> SkewJudgement:
    """Largest pairwise skew among the hosts read (hosts that could not be read are left out by the caller)."""
    names = sorted(readings)
    if len(names) < 2:
        return SkewJudgement(Verdict.NOT_CHECKED, None, None, (), (), threshold_s)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    a, b = max(pairs, key=lambda p: abs(readings[p[0]].offset_s - readings[p[1]].offset_s))
    skew = abs(readings[a].offset_s - readings[b].offset_s)
    uncertainty = readings[a].uncertainty_s + readings[b].uncertainty_s
    if skew - uncertainty > threshold_s:
        verdict = Verdict.TOO_LARGE
    elif skew + uncertainty > threshold_s:
        verdict = Verdict.UNSURE
    else:
        verdict = Verdict.OK
    to_fix: tuple[str, ...] = ()
    if verdict is not Verdict.OK:
        # Any host more than half the threshold from the median clock: when a pair's skew is over the
        # threshold, at least one of the two is (triangle inequality), so this is never empty then.
        median = statistics.median([0.0, *(r.offset_s for r in readings.values())])
        to_fix = tuple(n for n in names if abs(readings[n].offset_s - median) > threshold_s / 2) or (a, b)
    return SkewJudgement(verdict, skew, uncertainty, (a, b), to_fix, threshold_s)


def offset_text(reading: ClockReading) -> str:
    """offset_text(ClockReading(30.0, 0.002)) == "30.000 s ahead of the bot's clock (± 0.002 s)"."""
    side = "ahead of" if reading.offset_s >= 0 else "behind"
    return f"{abs(reading.offset_s):.3f} s {side} the bot's clock (± {reading.uncertainty_s:.3f} s)"
