"""The verification summary: a thread reply broadcast to the channel when a job ends."""

from __future__ import annotations

from handlers.blocks.card import check_lines, status_pointer
from handlers.blocks.fmt import STATE_ICON, cut, fmt_bytes, fmt_duration_s, fmt_ms, fmt_rate_mib_s
from handlers.blocks.ir import Context, Dialect, Fields, Header, Message, Part, Text, paragraphs
from migration_core.models import CheckStatus, Job, JobState, VerificationSummary


def downtime_text(summary: VerificationSummary) -> str:
    """'85 ms (target 300 ms) ✅' — measured against the approved target."""
    if summary.downtime_ms is None:
        return "not measured"
    text = fmt_ms(summary.downtime_ms)
    if summary.downtime_target_ms is not None:
        ok = "✅" if summary.downtime_ms <= summary.downtime_target_ms else "⚠️ over target"
        text += f" (target {fmt_ms(summary.downtime_target_ms)}) {ok}"
    return text


def summary_message(summary: VerificationSummary, job: Job, d: Dialect) -> Message:
    """Outcome, checks, measured numbers, people; on failure the VM's true state and the next step."""
    ok = summary.outcome is JobState.SUCCEEDED
    icon = STATE_ICON.get(summary.outcome, "❌")
    word = "succeeded" if ok else summary.outcome.value
    title = f"{icon} Migration {word}: {job.vm} {job.source} → {job.destination}"
    fields: list[tuple[str, str]] = [
        ("Outcome", f"{icon} {word}"),
        ("Downtime", downtime_text(summary)),
        ("Total time", fmt_duration_s(summary.total_s)),
        ("Data", fmt_bytes(summary.data_bytes)),
        ("Throughput", fmt_rate_mib_s(summary.throughput_mib_s)),
        ("Iterations", str(summary.iterations) if summary.iterations is not None else "–"),
        (f"On {d.esc(job.source)}", cut(d.esc(summary.source_state), 1900)),
        (f"On {d.esc(job.destination)}", cut(d.esc(summary.destination_state), 1900)),
        ("Requested by", d.user(job.requester)),
        ("Approved by", d.users(list(job.approvers))),
    ]
    pointer = status_pointer(job.id)
    parts: list[Part] = [Header(cut(title, 150)), Text(cut(d.esc(summary.headline), 2900, pointer))]
    parts.append(Fields(tuple(fields)))
    if summary.checks:
        n_fail = sum(1 for c in summary.checks if c.status is CheckStatus.FAIL)
        n_skip = sum(1 for c in summary.checks if c.status is CheckStatus.SKIPPED)
        head = "*Verification*" + (f" — {n_fail} check(s) failed" if n_fail else "")
        head += f" ({n_skip} not run)" if n_skip else ""
        lines = [head]
        if summary.evidence:
            lines.append(f"*Guest:* {d.esc(summary.evidence)}")
        parts.extend(paragraphs([*lines, *check_lines(summary.checks, d)], max_parts=2, pointer=pointer))
    if not ok:
        lines = [
            f"*Where the VM is now:* {d.esc(job.source)}: {d.esc(summary.source_state)}; "
            f"{d.esc(job.destination)}: {d.esc(summary.destination_state)}",
        ]
        if job.error:
            lines.append(f"*Error:* {d.esc(job.error)}")
        lines.append(f"*Next step:* {d.esc(summary.next_step) if summary.next_step else 'see ' + pointer}")
        parts.extend(paragraphs(lines, max_parts=1, pointer=pointer))
    ticket = job.plan.request.options.ticket if job.plan else None
    ctx = (f"Job #{job.id}", *([f"ticket {d.esc(ticket)}"] if ticket else []), f"details: {pointer}")
    parts.append(Context(ctx))
    fallback = f"Migration of {job.vm} to {job.destination} {word}: {summary.headline}"
    return Message(cut(fallback, 300), tuple(parts), more=pointer)
