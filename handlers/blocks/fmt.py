"""Number, time and state formatting shared by the Slack blocks and the console (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from migration_core.models import CheckStatus, JobState, MigrationMode, Plan

BAR_WIDTH = 20
_BAR_FULL = "█"
_BAR_EMPTY = "░"

CHECK_ICON = {
    CheckStatus.PASS: "✅",
    CheckStatus.INFO: "ℹ️",
    CheckStatus.SKIPPED: "⏭️",
    CheckStatus.WARN: "⚠️",
    CheckStatus.FAIL: "❌",
}

STATE_ICON = {
    JobState.REQUESTED: "📝",
    JobState.PREFLIGHT: "🔎",
    JobState.AWAITING_APPROVAL: "⏳",
    JobState.APPROVED: "👍",
    JobState.QUEUED: "🕒",
    JobState.RUNNING: "🚚",
    JobState.VERIFYING: "🔍",
    JobState.SUCCEEDED: "✅",
    JobState.FAILED: "❌",
    JobState.ABORTED: "🛑",
    JobState.DENIED: "⛔",
    JobState.EXPIRED: "⌛",
}

STATE_LABEL = {
    JobState.REQUESTED: "requested",
    JobState.PREFLIGHT: "running preflight checks",
    JobState.AWAITING_APPROVAL: "waiting for approval",
    JobState.APPROVED: "approved",
    JobState.QUEUED: "queued",
    JobState.RUNNING: "running",
    JobState.VERIFYING: "verifying",
    JobState.SUCCEEDED: "succeeded",
    JobState.FAILED: "failed",
    JobState.ABORTED: "aborted",
    JobState.DENIED: "denied",
    JobState.EXPIRED: "expired",
}


def bar(percent: float, width: int = BAR_WIDTH) -> str:
    """A fixed-width text progress bar: bar(40) -> '████████░░░░░░░░░░░░'."""
    pct = min(100.0, max(0.0, percent))
    full = int(pct / 100 * width + 1e-9)
    return _BAR_FULL * full + _BAR_EMPTY * (width - full)


def fmt_pct(percent: float) -> str:
    """41.26 -> '41%'; below 1 % shows one decimal so a slow start still moves."""
    return f"{percent:.1f}%" if 0 < percent < 1 else f"{int(percent)}%"


def fmt_bytes(n: int | None) -> str:
    """1536 * 2**20 -> '1.5 GiB'; binary units because libvirt counts in bytes and pages."""
    if n is None:
        return "–"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - loop always returns


def fmt_rate_mib_s(rate: float | None) -> str:
    """112.34 -> '112 MiB/s'; 3.14 -> '3.1 MiB/s'."""
    if rate is None:
        return "–"
    if rate >= 1024:
        return f"{rate / 1024:.1f} GiB/s"
    return f"{rate:.1f} MiB/s" if rate < 100 else f"{rate:.0f} MiB/s"


def fmt_duration_s(seconds: float | None) -> str:
    """75 -> '1 min 15 s'; 3725 -> '1 h 02 min'; 0.4 -> '0.4 s'."""
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{seconds:.1f} s"
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min" if total % 60 == 0 else f"{total // 60} min {total % 60:02d} s"
    return f"{total // 3600} h {(total % 3600) // 60:02d} min"


def fmt_ms(ms: float | None) -> str:
    """Milliseconds: 85 -> '85 ms'; 1500 -> '1.5 s'."""
    if ms is None:
        return "–"
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


def fmt_utc(at: datetime) -> str:
    """A timestamp for plain text: '2024-05-01 12:30 UTC' (naive datetimes are taken as UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def epoch_s(at: datetime) -> int:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp())


def mode_label(plan: Plan | None, fallback: MigrationMode | None = None) -> str:
    """'live (pre-copy)', 'live (post-copy allowed)', 'offline'."""
    mode = plan.mode if plan else fallback
    if mode is None:
        return "decided by the VM's state"
    if mode is MigrationMode.OFFLINE:
        return "offline (VM shut off; definition moves)"
    if plan and (plan.policy.allow_postcopy or plan.request.options.postcopy):
        return "live (post-copy allowed)"
    return "live (pre-copy)"


def checks_summary(plan: Plan | None) -> str:
    """'✅ 9  ⚠️ 1  ❌ 0' — the count per status (information and skipped checks only when there are any)."""
    if plan is None:
        return "not run yet"
    counts = {s: sum(1 for c in plan.checks if c.status is s) for s in CheckStatus}
    shown = [s for s in CheckStatus if counts[s] or s in (CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL)]
    order = (CheckStatus.PASS, CheckStatus.INFO, CheckStatus.SKIPPED, CheckStatus.WARN, CheckStatus.FAIL)
    return "  ".join(f"{CHECK_ICON[s]} {counts[s]}" for s in order if s in shown)


def cut(text: str, limit: int, pointer: str = "") -> str:
    """Cut `text` to at most `limit` characters, ending with '…' and `pointer` when anything was cut."""
    if len(text) <= limit:
        return text
    tail = "…" + (f"\n{pointer}" if pointer else "")
    if len(tail) >= limit:
        return text[: max(0, limit - 1)] + "…"
    return text[: limit - len(tail)].rstrip() + tail
