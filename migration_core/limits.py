"""The one owner of every numeric limit (max downtime, bandwidth, timeouts, approval TTL): default, range, unit.

The grammar, the Slack modals, the console, the service's controls, the planner and the bot's settings all read
their bounds and defaults here, and all refuse an out-of-range value with the same `LimitError`, whose hint
names the range. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from migration_core.errors import LimitError

N = TypeVar("N", int, float)


class Unit(Enum):
    """What a limit's numbers count; decides how a value and the range are shown to the operator."""

    MS = "ms"
    S = "s"
    MIB_S = "MiB/s"


def human_s(seconds: float) -> str:
    """A duration the way an operator says it.

    >>> human_s(0.001), human_s(60), human_s(1800), human_s(86400)
    ('1 ms', '60 s', '30 min', '24 h')
    """
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds <= 60:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def _show(value: float, unit: Unit) -> str:
    if unit is Unit.MS:
        return human_s(value / 1000)
    if unit is Unit.S:
        return human_s(value)
    if value >= 1024 and value % 1024 == 0:
        return f"{value / 1024:g} GiB/s ({value:g}M)"
    return f"{value:g} MiB/s"


@dataclass(frozen=True)
class Limit:
    """One bounded setting. `default` is None where there is no fixed default (no cap, or computed per job)."""

    name: str  # how the operator calls it: "max downtime"
    unit: Unit
    default: int | float | None
    minimum: int | float
    maximum: int | float
    advice: str = ""  # appended to the hint: what else the operator can do

    def __post_init__(self) -> None:
        if not self.minimum <= self.maximum:
            raise ValueError(f"limit {self.name}: minimum {self.minimum} above maximum {self.maximum}")
        if self.default is not None and not self.contains(self.default):
            raise ValueError(f"limit {self.name}: default {self.default} outside {self.minimum}..{self.maximum}")

    def contains(self, value: float) -> bool:
        return self.minimum <= value <= self.maximum

    @property
    def range_text(self) -> str:
        """'1 ms to 60 s'."""
        return f"{_show(self.minimum, self.unit)} to {_show(self.maximum, self.unit)}"

    def check(self, value: N, where: str = "", shown: str | None = None) -> N:
        """Return `value` if it is within the range; else raise LimitError naming the range.

        `where` is what the operator typed or saw (`--max-downtime`, `max downtime`), `shown` the value as they
        wrote it (default: the value in this limit's unit).

        >>> MAX_DOWNTIME_MS.check(500, "--max-downtime")
        500
        >>> MAX_DOWNTIME_MS.check(90_000, "--max-downtime", "90s")
        Traceback (most recent call last):
        ...
        migration_core.errors.LimitError: --max-downtime 90s is too long (--max-downtime takes 1 ms to 60 s; ...)
        """
        if self.contains(value):
            return value
        where = where or self.name
        shown = shown if shown is not None else _show(value, self.unit)
        if self.unit is Unit.MIB_S:
            problem = "is out of range"
        else:
            problem = "is too short" if value < self.minimum else "is too long"
        hint = f"{where} takes {self.range_text}"
        raise LimitError(f"{where} {shown} {problem}", f"{hint}; {self.advice}" if self.advice else hint)


# The fixed defaults, typed for the code that uses them directly (the planner, the settings); the same numbers
# are the limits' `default`.
DEFAULT_MAX_DOWNTIME_MS: int = 300  # QEMU's own default downtime-limit
DEFAULT_APPROVAL_TTL_S: float = 30 * 60.0
DOWNTIME_STEPS = 5
# When the convergence controller climbs the ramp: at a stalling pass boundary from this pass on, at most once per
# cooldown. The estimate simulates the same climb to know the budget in force at the stop-and-copy.
RAMP_START_ITERATION = 3
RAMP_COOLDOWN_S = 10.0
SHRINKING_PASS = 0.9  # a pass that starts 10 % smaller than the previous one is converging on its own


def downtime_ramp_ms(max_downtime_ms: int, steps: int = DOWNTIME_STEPS) -> tuple[int, ...]:
    """A linear ramp up to the max downtime, like Nova's `downtime_steps` (base = max / steps).

    The controller starts at the first value and moves up one step each time pre-copy stalls; the estimate
    times the stop-and-copy against the same ramp (the one formula: the planner fixes it in the policy).

    >>> downtime_ramp_ms(300), downtime_ramp_ms(500), downtime_ramp_ms(3)
    ((60, 120, 180, 240, 300), (100, 200, 300, 400, 500), (1, 2, 3))
    """
    if max_downtime_ms <= 0:
        return ()
    steps = max(1, steps)
    return tuple(sorted({max(1, round(max_downtime_ms * i / steps)) for i in range(1, steps + 1)}))


MAX_DOWNTIME_MS = Limit(
    "max downtime",
    Unit.MS,
    default=DEFAULT_MAX_DOWNTIME_MS,
    minimum=1,
    maximum=60_000,  # beyond a minute of pause, an offline migration is the honest choice
    advice="a bare number is milliseconds; for a longer pause migrate offline",
)
BANDWIDTH_MIB_S = Limit(
    "bandwidth",
    Unit.MIB_S,
    default=None,  # no cap
    minimum=1,
    maximum=100 * 1024,
    advice="a bare number is MiB/s; leave it out for no cap",
)
TIMEOUT_S = Limit(
    "timeout",
    Unit.S,
    default=None,  # computed from the data to move (planner.default_timeout_s)
    minimum=1.0,
    maximum=86_400.0,
    advice="a bare number is seconds",
)
POSTCOPY_AFTER_S = Limit("post-copy after", Unit.S, None, 1.0, 86_400.0, advice="a bare number is seconds")
APPROVAL_TTL_S = Limit(
    "approval TTL",
    Unit.S,
    default=DEFAULT_APPROVAL_TTL_S,
    minimum=10.0,
    maximum=7 * 86_400.0,
    advice="e.g. 30m or 2h",
)

ALL_LIMITS: tuple[Limit, ...] = (MAX_DOWNTIME_MS, BANDWIDTH_MIB_S, TIMEOUT_S, POSTCOPY_AFTER_S, APPROVAL_TTL_S)
