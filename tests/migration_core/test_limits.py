"""One owner per limit: every limit's default sits in its range, and every front end refuses the same value alike.

The grammar, the Slack modals (and the console, which uses the same parsers), the service's controls, the
executor's controls and the bot's settings all take their range from migration_core.limits and refuse with
LimitError, whose hint names the range.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.settings import SettingsError, load_settings
from handlers.blocks.modals import parse_bandwidth_mib_s, parse_downtime_ms
from migration_core.errors import GrammarError, LimitError, RequestError
from migration_core.events import RecordingSink
from migration_core.grammar.parser import parse_command
from migration_core.limits import (
    ALL_LIMITS,
    APPROVAL_TTL_S,
    BANDWIDTH_MIB_S,
    DEFAULT_APPROVAL_TTL_S,
    DEFAULT_MAX_DOWNTIME_MS,
    MAX_DOWNTIME_MS,
    POSTCOPY_AFTER_S,
    TIMEOUT_S,
    Limit,
)
from migration_core.models import ConvergencePolicy
from migration_core.planning.estimate import MoveInputs
from migration_core.service import ServiceConfig
from tests.bot.fleet_service import open_fleet_service

IDS = [limit.name for limit in ALL_LIMITS]


@pytest.mark.parametrize("limit", ALL_LIMITS, ids=IDS)
def test_default_is_inside_the_range(limit: Limit) -> None:
    assert limit.minimum <= limit.maximum
    if limit.default is not None:
        assert limit.check(limit.default) == limit.default
    assert limit.check(limit.minimum) == limit.minimum
    assert limit.check(limit.maximum) == limit.maximum


@pytest.mark.parametrize("limit", ALL_LIMITS, ids=IDS)
@pytest.mark.parametrize("side", ["below", "above"])
def test_out_of_range_is_one_error_class_with_the_range_in_the_hint(limit: Limit, side: str) -> None:
    step = 1 if isinstance(limit.minimum, int) else 0.5
    value = limit.minimum - step if side == "below" else limit.maximum + step
    with pytest.raises(LimitError) as info:
        limit.check(value, "the value")
    err = info.value
    assert isinstance(err, GrammarError) and isinstance(err, RequestError)  # every front end answers it as bad input
    assert err.message.startswith("the value ")
    assert err.hint.startswith(f"the value takes {limit.range_text}")
    assert limit.range_text in str(err)


def test_a_limit_with_its_default_outside_the_range_is_refused_at_import() -> None:
    with pytest.raises(ValueError, match="default"):
        Limit("broken", MAX_DOWNTIME_MS.unit, default=0, minimum=1, maximum=10)


def test_the_defaults_have_one_owner() -> None:
    assert MAX_DOWNTIME_MS.default == DEFAULT_MAX_DOWNTIME_MS == 300
    assert ConvergencePolicy().max_downtime_ms == DEFAULT_MAX_DOWNTIME_MS
    assert MoveInputs.__dataclass_fields__["max_downtime_ms"].default == DEFAULT_MAX_DOWNTIME_MS
    assert APPROVAL_TTL_S.default == DEFAULT_APPROVAL_TTL_S
    assert ServiceConfig().approval_ttl_s == DEFAULT_APPROVAL_TTL_S
    assert load_settings({}).approval_ttl_s == DEFAULT_APPROVAL_TTL_S


# ----- every front end refuses the same value with the same class ------------------------------------------

# (limit, the grammar's option, a value out of range as typed, its value in the limit's unit)
OUT_OF_RANGE: list[tuple[Limit, str, str, float]] = [
    (MAX_DOWNTIME_MS, "--max-downtime", "61s", 61_000),
    (MAX_DOWNTIME_MS, "--max-downtime", "0", 0),
    (BANDWIDTH_MIB_S, "--bandwidth", "101G", 101 * 1024),
    (BANDWIDTH_MIB_S, "--bandwidth", "0", 0),
    (TIMEOUT_S, "--timeout", "25h", 25 * 3600),
    (POSTCOPY_AFTER_S, "--postcopy-after", "0s", 0),
]


@pytest.mark.parametrize(("limit", "option", "typed", "value"), OUT_OF_RANGE)
def test_grammar_refuses_with_the_limit(limit: Limit, option: str, typed: str, value: float) -> None:
    with pytest.raises(LimitError) as info:
        parse_command(f"vm42 to hostB {option} {typed}")
    assert info.value.message.startswith(f"{option} {typed} is ")
    assert limit.range_text in info.value.hint


MODAL_PARSERS: dict[str, Callable[[str | None], int]] = {
    MAX_DOWNTIME_MS.name: parse_downtime_ms,
    BANDWIDTH_MIB_S.name: parse_bandwidth_mib_s,
}


@pytest.mark.parametrize(
    ("limit", "typed"), [(lim, typed) for lim, _, typed, _ in OUT_OF_RANGE if lim.name in MODAL_PARSERS]
)
def test_modal_refuses_with_the_limit(limit: Limit, typed: str) -> None:
    with pytest.raises(LimitError) as info:
        MODAL_PARSERS[limit.name](typed)
    assert limit.range_text in info.value.hint


@pytest.mark.parametrize("parse", MODAL_PARSERS.values())
@pytest.mark.parametrize("typed", ["", "fast"])
def test_modal_refuses_nonsense_as_bad_input(parse: Callable[[str | None], int], typed: str) -> None:
    with pytest.raises(RequestError):
        parse(typed)


@pytest.mark.virtual_time
@pytest.mark.parametrize(
    ("limit", "value"), [(lim, int(v)) for lim, _, _, v in OUT_OF_RANGE if lim.name in MODAL_PARSERS]
)
async def test_service_and_executor_controls_refuse_with_the_limit(limit: Limit, value: int) -> None:
    async def anyone(_user: str) -> bool:
        return True

    fs = await open_fleet_service(RecordingSink(), anyone, start=False)
    try:
        service = fs.service
        control = service.set_max_downtime if limit is MAX_DOWNTIME_MS else service.set_bandwidth
        with pytest.raises(LimitError) as info:
            await control(1, value, "U0BOB")
        assert limit.range_text in info.value.hint
        executor = service.executor
        raw = executor.set_max_downtime if limit is MAX_DOWNTIME_MS else executor.set_bandwidth
        with pytest.raises(LimitError):
            await raw(1, value, "U0BOB")
    finally:
        await fs.close()


@pytest.mark.parametrize("typed", ["5s", "169h"])
def test_settings_take_the_approval_ttl_range(typed: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"MIGRATE_BOT_APPROVAL_TTL": typed})
    assert "10 s" in str(info.value) and "168 h" in str(info.value)


def test_settings_accept_the_approval_ttl_bounds() -> None:
    assert load_settings({"MIGRATE_BOT_APPROVAL_TTL": "10s"}).approval_ttl_s == APPROVAL_TTL_S.minimum
    assert load_settings({"MIGRATE_BOT_APPROVAL_TTL": "168h"}).approval_ttl_s == APPROVAL_TTL_S.maximum
