"""Helpers shared by the check families: result builders, the effective mode, human units."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable

from migration_core.facts.gathered import PreflightFacts, VmState
from migration_core.models import CheckResult, CheckStatus, MigrationMode, MigrationRequest

# A check family: facts in, zero or more results out. Never raises (run_checks guards it anyway).
Check = Callable[[PreflightFacts], tuple[CheckResult, ...]]


def passed(name: str, reason: str) -> CheckResult:
    return CheckResult(name, CheckStatus.PASS, reason)


def warned(name: str, reason: str, fix: str | None = None) -> CheckResult:
    return CheckResult(name, CheckStatus.WARN, reason, fix)


def noted(name: str, reason: str) -> CheckResult:
    """Information for the operator, not a risk: it does not make the plan risky (unlike a warning)."""
    return CheckResult(name, CheckStatus.INFO, reason)


def failed(name: str, reason: str, fix: str | None = None) -> CheckResult:
    return CheckResult(name, CheckStatus.FAIL, reason, fix)


def result(name: str, status: CheckStatus, reason: str, fix: str | None = None) -> CheckResult:
    return CheckResult(name, status, reason, fix if status is not CheckStatus.PASS else None)


def effective_mode(request: MigrationRequest, vm_state: VmState | None) -> MigrationMode:
    """The mode the request means: as typed, else from the VM's state (shut off -> offline, else live).

    >>> effective_mode(MigrationRequest("vm", "b"), VmState.SHUTOFF)
    <MigrationMode.OFFLINE: 'offline'>
    """
    if request.options.mode is not None:
        return request.options.mode
    return MigrationMode.OFFLINE if vm_state is VmState.SHUTOFF else MigrationMode.LIVE


def mode_of(facts: PreflightFacts) -> MigrationMode:
    return effective_mode(facts.request, facts.vm_state)


def blocking(facts: PreflightFacts) -> CheckStatus:
    """How bad a "the VM cannot run there" problem is: it fails a live migration, but an offline migration
    only moves the definition, so there it is a warning (the VM will not start on the destination)."""
    return CheckStatus.FAIL if mode_of(facts) is MigrationMode.LIVE else CheckStatus.WARN


def dest_name(facts: PreflightFacts) -> str:
    return facts.destination.name or "the destination"


def src_name(facts: PreflightFacts) -> str:
    return facts.source.name or "the source"


def human_bytes(n: int | float | None) -> str:
    """Bytes in binary units, one decimal.

    >>> human_bytes(3 * 1024**3 + 512 * 1024**2), human_bytes(1536), human_bytes(None)
    ('3.5 GiB', '1.5 KiB', 'unknown')
    """
    if n is None:
        return "unknown"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop always returns


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Close matches, case-insensitive, best first (a case-only difference wins outright).

    >>> did_you_mean("hostb", ["hostA", "hostB", "hostC"]), did_you_mean("vm42", ["vm41", "web01", "vm43"])
    (['hostB'], ['vm41', 'vm43'])
    """
    by_lower: dict[str, str] = {}
    for c in choices:
        by_lower.setdefault(c.lower(), c)
    if word.lower() in by_lower:
        return [by_lower[word.lower()]]
    scored = sorted(
        ((difflib.SequenceMatcher(None, word.lower(), low).ratio(), low) for low in by_lower),
        key=lambda t: (-t[0], t[1]),
    )
    return [by_lower[low] for score, low in scored[:n] if score >= 0.6]


def join(items: Iterable[str], limit: int = 8) -> str:
    """`a, b, c` with at most `limit` items and a count of the rest (keeps Slack messages readable)."""
    listed = list(items)
    if len(listed) <= limit:
        return ", ".join(listed)
    return ", ".join(listed[:limit]) + f" and {len(listed) - limit} more"
