"""The live progress message (first thread reply, edited in place), its controls, and thread notices."""

from __future__ import annotations

from datetime import datetime

from handlers.blocks.fmt import (
    STATE_ICON,
    STATE_LABEL,
    bar,
    cut,
    fmt_bytes,
    fmt_duration_s,
    fmt_ms,
    fmt_pct,
    fmt_rate_mib_s,
)
from handlers.blocks.ir import Actions, Button, Confirm, Context, Dialect, Fields, Message, Part, Text
from migration_core.events import Notice, NoticeKind, StateChanged
from migration_core.models import ControlAction, Decision, Job, JobState, Phase, ProgressSample

CONTROLS_BLOCK = "controls"  # block_id prefix: controls:<job_id>

NOTICE_ICON = {
    NoticeKind.INFO: "ℹ️",
    NoticeKind.STALLED: "🐢",
    NoticeKind.POSTCOPY: "🔀",
    NoticeKind.CONTROL: "🎛️",
    NoticeKind.QUEUED: "🕒",
    NoticeKind.FAILURE: "❌",
}

_DECISION_LABEL = {
    ControlAction.CONTINUE: "continue",
    ControlAction.RAISE_DOWNTIME: "raise max downtime",
    ControlAction.SWITCH_POSTCOPY: "switch to post-copy",
    ControlAction.ABORT: "abort",
}


def decision_text(decision: Decision, d: Dialect) -> str:
    what = _DECISION_LABEL[decision.action]
    if decision.action is ControlAction.RAISE_DOWNTIME and decision.downtime_ms is not None:
        what += f" to {fmt_ms(decision.downtime_ms)}"
    return f"🤖 *Controller:* {what} — {d.esc(decision.reason)}"


def progress_line(sample: ProgressSample) -> str:
    """One line for logs and the console: `[████░░…] 40% pre-copy it 3 · 112 MiB/s · ETA 25 s`."""
    eta = f" · ETA {fmt_duration_s(sample.eta_s)}" if sample.eta_s is not None else ""
    if sample.eta_note:
        eta += f" ({sample.eta_note})"
    stalled = f" · STALLED {fmt_duration_s(sample.stalled_for_s)}" if sample.stalled else ""
    return (
        f"[{bar(sample.percent)}] {fmt_pct(sample.percent)} {sample.phase.value} it {sample.iteration} · "
        f"{fmt_bytes(sample.data_processed_bytes)}/{fmt_bytes(sample.data_total_bytes)} · "
        f"{fmt_rate_mib_s(sample.throughput_mib_s)}{eta}{stalled}"
    )


def _controls(job: Job, sample: ProgressSample | None) -> Actions | None:
    """Controls while the migration runs. No Abort in post-copy: aborting then would lose the VM."""
    if job.state is not JobState.RUNNING:
        return None
    value = str(job.id)
    in_postcopy = sample is not None and sample.phase is Phase.POSTCOPY
    buttons: list[Button] = []
    if not in_postcopy:
        buttons.append(
            Button(
                "Abort",
                "abort",
                value,
                style="danger",
                confirm=Confirm(
                    "Abort this migration?",
                    f"The migration of {job.vm} stops and the VM keeps running on {job.source}.",
                    "Abort",
                ),
            )
        )
    if job.plan is not None and job.plan.policy.allow_postcopy and not in_postcopy:
        buttons.append(
            Button(
                "Switch to post-copy",
                "postcopy",
                value,
                confirm=Confirm(
                    "Switch to post-copy now?",
                    f"{job.vm} starts running on {job.destination} at once and pulls the rest of its memory; "
                    "if the link fails after this, the VM is lost on both hosts.",
                    "Switch",
                ),
            )
        )
    if not in_postcopy:
        buttons.append(Button("Raise max downtime", "downtime", value))
    buttons.append(Button("Set bandwidth", "bandwidth", value))
    return Actions(f"{CONTROLS_BLOCK}:{job.id}", tuple(buttons))


def progress_message(
    job: Job, sample: ProgressSample | None, decision: Decision | None, d: Dialect, *, now: datetime
) -> Message:
    """The progress message. With `job` terminal it becomes the final state and the controls disappear."""
    route = f"{d.esc(job.vm)} {d.esc(job.source)} → {d.esc(job.destination)}"
    parts: list[Part] = []
    if job.state.terminal or job.state is JobState.VERIFYING:
        pct = (
            100.0
            if job.state in (JobState.SUCCEEDED, JobState.VERIFYING)
            else (sample.percent if sample else 0)
        )
        head = f"{STATE_ICON[job.state]} *{STATE_LABEL[job.state].capitalize()}*"
        parts.append(Text(f"{head}\n`{bar(pct)}` {fmt_pct(pct)}"))
    elif sample is None:
        parts.append(Text(f"*Phase:* starting…\n`{bar(0)}` 0%"))
    else:
        phase = f"*Phase:* {sample.phase.value} · iteration {sample.iteration}"
        parts.append(Text(f"{phase}\n`{bar(sample.percent)}` {fmt_pct(sample.percent)}"))
    if sample is not None:
        fields = [
            (
                "Transferred",
                f"{fmt_bytes(sample.data_processed_bytes)} of {fmt_bytes(sample.data_total_bytes)}",
            ),
            ("Remaining", fmt_bytes(sample.data_remaining_bytes)),
            ("Throughput", fmt_rate_mib_s(sample.throughput_mib_s)),
            ("Dirty rate", fmt_rate_mib_s(sample.dirty_rate_mib_s)),
            ("Elapsed", fmt_duration_s(sample.elapsed_s)),
            ("ETA", fmt_duration_s(sample.eta_s) if not job.state.terminal else "–"),
            ("Expected downtime", fmt_ms(sample.expected_downtime_ms)),
        ]
        if sample.phase is Phase.POSTCOPY:
            fields.append(("Post-copy page requests", str(sample.postcopy_requests)))
        if sample.auto_converge_throttle_pct:
            fields.append(("Auto-converge throttle", f"{sample.auto_converge_throttle_pct}%"))
        parts.append(Fields(tuple(fields)))
        if sample.eta_note and not job.state.terminal:
            parts.append(Text(f"⏱ *ETA:* {d.esc(sample.eta_note)}"))
        if sample.stalled and not job.state.terminal:
            parts.append(
                Text(
                    f"⚠️ *Stalled* for {fmt_duration_s(sample.stalled_for_s)}: the remaining data is not "
                    "shrinking (the guest dirties memory as fast as the link sends it)"
                )
            )
    if decision is not None:
        parts.append(Text(cut(decision_text(decision, d), 2900)))
    parts.append(Context((f"Job #{job.id}", route, f"updated {d.date(now)}")))
    controls = _controls(job, sample)
    if controls is not None:
        parts.append(controls)
    pct_txt = fmt_pct(sample.percent) if sample else "0%"
    fallback = f"Progress of {job.vm} → {job.destination}: {STATE_LABEL[job.state]}"
    if job.state is JobState.RUNNING:
        fallback += f", {pct_txt}"
    return Message(fallback, tuple(parts), more=f"`/migrate status {job.id}`")


def notice_message(notice: Notice, d: Dialect) -> Message:
    """A thread reply for an important moment (stall, post-copy switch, operator control, failure)."""
    icon = NOTICE_ICON[notice.kind]
    text = cut(f"{icon} {d.esc_refs(notice.text)}", 2900)
    return Message(
        cut(f"{icon} {notice.text}", 300),
        (Text(text), Context((f"Job #{notice.job_id}", d.date(notice.at)))),
    )


def _and(users: tuple[str, ...], d: Dialect) -> str:
    """`alice`, `alice and bob`, `alice, bob and carol`."""
    names = [d.user(u) for u in users]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def state_change_message(event: StateChanged, d: Dialect) -> Message | None:
    """A thread reply for the state changes that are decisions (approved, denied, expired, cancelled...)."""
    who = d.user(event.actor) if event.actor else None
    detail = f": {d.esc_refs(event.detail)}" if event.detail else ""
    by = f" by {who}" if who else ""
    # Two approvers gave the approval together: credit both, not only the one whose click completed it.
    approved_by = f" by {_and(event.approvers, d)}" if event.approvers else by
    texts = {
        JobState.APPROVED: f"👍 Approved{approved_by}; starting as soon as a slot is free",
        JobState.QUEUED: f"🕒 Queued{detail}",
        JobState.DENIED: f"⛔ Denied{by}{detail}",
        JobState.EXPIRED: f"⌛ Expired: nobody approved in time{detail}",
        JobState.ABORTED: f"🛑 Aborted{by}{detail}",
        JobState.AWAITING_APPROVAL: f"🔁 The plan changed before start; it needs approval again{detail}",
    }
    text = texts.get(event.new)
    replanned = event.old in (JobState.APPROVED, JobState.QUEUED)
    if text is None or (event.new is JobState.AWAITING_APPROVAL and not replanned):
        return None
    return Message(
        cut(text, 300),
        (Text(cut(text, 2900)), Context((f"Job #{event.job_id}", d.date(event.at)))),
    )
