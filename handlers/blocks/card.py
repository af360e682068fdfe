"""The approval card (one per job, in the channel) and the plan report it carries, for every job state."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from handlers.blocks.fmt import CHECK_ICON, STATE_ICON, checks_summary, cut, fmt_duration_s, fmt_ms, mode_label
from handlers.blocks.ir import (
    Actions,
    Button,
    Confirm,
    Context,
    Dialect,
    Fields,
    Header,
    Message,
    Part,
    Text,
    paragraphs,
)
from migration_core.dispatch.policy import approval_expires_at, required_approvals, risk_reasons, still_needed
from migration_core.models import CheckResult, CheckStatus, Job, JobState, MigrationMode, Plan
from migration_core.service_api import QueuePosition

APPROVAL_BLOCK = "approval"  # block_id prefix: approval:<job_id>


def status_pointer(job_id: int) -> str:
    return f"`/migrate status {job_id}`"


def _kind(plan: Plan | None) -> str:
    return "offline migration" if plan and plan.mode is MigrationMode.OFFLINE else "live migration"


def check_lines(checks: tuple[CheckResult, ...], d: Dialect) -> list[str]:
    """Fails first, then warnings, each with its fix, then information and skipped checks (with why: a check
    that did not run is never folded into the passes); passes folded into one line."""
    lines: list[str] = []
    for status in (CheckStatus.FAIL, CheckStatus.WARN, CheckStatus.INFO, CheckStatus.SKIPPED):
        for c in checks:
            if c.status is status:
                skipped = "skipped — " if status is CheckStatus.SKIPPED else ""
                lines.append(f"{CHECK_ICON[status]} *{d.esc(c.name)}*: {skipped}{d.esc(c.reason)}")
                if c.fix:
                    lines.append(f"      ↳ _fix:_ {d.esc(c.fix)}")
    passed = [d.esc(c.name) for c in checks if c.status is CheckStatus.PASS]
    if passed:
        lines.append(f"{CHECK_ICON[CheckStatus.PASS]} passed: {', '.join(passed)}")
    return lines


def plan_lines(plan: Plan, d: Dialect) -> list[str]:
    """The exact plan: libvirt flags, typed params, and what the controller may do (all approved)."""
    pol = plan.policy
    flags = " ".join(f"`{d.esc(f)}`" for f in plan.flags) or "none"
    params = " ".join(f"`{d.esc(k)}={d.esc(str(v))}`" for k, v in sorted(plan.params.items())) or "none"
    ctrl = [f"max downtime {fmt_ms(pol.max_downtime_ms)}"]
    if pol.downtime_ramp_ms:
        ctrl.append("ramp " + "→".join(str(x) for x in pol.downtime_ramp_ms) + " ms")
    if pol.allow_postcopy:
        after = f" after {fmt_duration_s(pol.postcopy_after_s)}" if pol.postcopy_after_s else ""
        ctrl.append(f"post-copy allowed{after}")
    if pol.timeout_s:
        ctrl.append(f"timeout {fmt_duration_s(pol.timeout_s)}")
    ctrl.append(f"abort when stalled for {fmt_duration_s(pol.stall_timeout_s)}")
    return [
        f"*Plan* `{plan.hash}`",
        f"flags: {flags}",
        f"params: {params}",
        f"controller: {', '.join(ctrl)}",
    ]


def prediction_text(plan: Plan | None, d: Dialect) -> str:
    """The estimate's one line: point, p10-p90 range, downtime, and what it rests on (planning/estimate.py).

    Plans stored before the calibrated estimate have a verdict without a basis: it is shown as it was."""
    if plan is None or plan.prediction is None:
        return "no prediction (the VM's memory or the link bandwidth is unknown)"
    p = plan.prediction
    text = p.verdict
    if p.basis and p.basis not in text:
        text = f"{text}; {p.basis}"
    return cut(d.esc(text), 1900)


def report_parts(plan: Plan, d: Dialect, *, pointer: str = "", max_parts: int = 2) -> list[Part]:
    """The preflight report, the plan and the recommendation, within the given number of sections."""
    parts: list[Part] = [
        *paragraphs(
            [f"*Preflight* {checks_summary(plan)}", *check_lines(plan.checks, d)],
            max_parts=max_parts,
            pointer=pointer,
        ),
        *paragraphs(plan_lines(plan, d), max_parts=1, pointer=pointer),
    ]
    if plan.recommendation:
        parts.append(Text(cut(f"💡 *Recommendation:* {d.esc(plan.recommendation)}", 2900, pointer)))
    return parts


def plan_message(plan: Plan, d: Dialect) -> Message:
    """`/migrate plan …`: the report only; nothing to approve."""
    verdict = "executable" if plan.executable else f"NOT executable ({len(plan.failures)} check(s) failed)"
    vm = d.esc(plan.request.vm)
    fields = Fields(
        (
            ("VM", vm),
            ("Route", f"{d.esc(plan.source) or '?'} → {d.esc(plan.destination)}"),
            ("Mode", mode_label(plan)),
            ("Prediction", prediction_text(plan, d)),
            ("Checks", checks_summary(plan)),
            ("Approvals needed", str(required_approvals(plan))),
        )
    )
    parts: list[Part] = [
        Header(cut(f"Plan: {_kind(plan)} of {plan.request.vm} → {plan.destination}", 150)),
        Text(f"{'✅' if plan.executable else '❌'} *{verdict}* — nothing was changed"),
        fields,
        *report_parts(plan, d, max_parts=3),
    ]
    return Message(f"Plan for {plan.request.vm} → {plan.destination}: {verdict}", tuple(parts))


def _approvals_so_far(job: Job, d: Dialect) -> str:
    need = required_approvals(job.plan)
    got = job.approvers
    if not got:
        return f"0 of {need}"
    return f"{len(got)} of {need}: {d.users(list(got))}"


def _deniers(job: Job) -> list[str]:
    return [a.actor for a in job.approvals if not a.approved]


def status_line(job: Job, d: Dialect, ttl_s: float, queue: QueuePosition | None = None) -> str:
    """One line that says where the job is and what happens next (the top of the card)."""
    icon = STATE_ICON[job.state]
    s = job.state
    by = d.users(list(job.approvers))
    err = f": {d.esc_refs(cut(job.error, 1500))}" if job.error else ""
    if s in (JobState.REQUESTED, JobState.PREFLIGHT):
        return f"{icon} *Running preflight checks…*"
    if s is JobState.AWAITING_APPROVAL:
        need = required_approvals(job.plan)
        left = need - len(job.approvers)
        expires = d.date(approval_expires_at(job, ttl_s))
        if job.plan is not None and job.plan.approval is not None:  # policy file: say who is still needed
            needed = d.esc(still_needed(job)) or "no more approvals"
            return (
                f"{icon} *Waiting for approval* — needs {needed} "
                f"(approved so far: {_approvals_so_far(job, d)}). Expires {expires}."
            )
        return (
            f"{icon} *Waiting for approval* — {left} more approval(s) needed "
            f"(approved so far: {_approvals_so_far(job, d)}). Expires {expires}."
        )
    if s is JobState.APPROVED:
        return f"{icon} *Approved* by {by} — starting"
    if s is JobState.QUEUED:
        why = (
            f" — waiting (place {queue.place}): {d.esc(queue.why)}" if queue else " — waiting for a free slot"
        )
        return f"{icon} *Queued*, approved by {by}{why}"
    if s is JobState.RUNNING:
        return f"{icon} *Running*, approved by {by} — live progress in the thread"
    if s is JobState.VERIFYING:
        return f"{icon} *Verifying* on both hosts, approved by {by}"
    if s is JobState.SUCCEEDED:
        return f"{icon} *Succeeded*, approved by {by} — summary in the thread"
    if s is JobState.DENIED:
        return f"{icon} *Denied* by {d.users(_deniers(job))}{err}"
    if s is JobState.EXPIRED:
        closed = d.date(approval_expires_at(job, ttl_s))
        return (
            f"{icon} *Expired* at {closed}: not approved within {ttl_s / 60:g} min. "
            "Run `/migrate` again if it is still needed."
        )
    if s is JobState.FAILED and job.plan is not None and not job.plan.executable:
        n = len(job.plan.failures)
        return f"{icon} *Not executable*: {n} check(s) failed. Fix them (see below) and run `/migrate` again."
    if s is JobState.ABORTED:
        return f"{icon} *Aborted*{err}"
    return f"{icon} *Failed*{err}"


def _approval_actions(job: Job) -> Actions | None:
    """Approve/Deny while the job waits; Deny only when the plan cannot run; nothing otherwise."""
    if job.state is not JobState.AWAITING_APPROVAL:
        return None
    value = str(job.id)
    deny = Button("Deny", "deny", value, style="danger")
    if job.plan is None or not job.plan.executable:
        return Actions(f"{APPROVAL_BLOCK}:{job.id}", (deny,))
    risks = risk_reasons(job.plan)
    confirm = None
    if risks:
        confirm = Confirm(
            title="Approve a risky migration?",
            text=cut("Risky: " + "; ".join(risks), 300),
            confirm="Approve",
        )
    approve = Button("Approve", "approve", value, style="primary", confirm=confirm)
    return Actions(f"{APPROVAL_BLOCK}:{job.id}", (approve, deny))


def _change_fields(job: Job, d: Dialect) -> list[tuple[str, str]]:
    """The ticket and an emergency marker (policy file), only when set: a card holds at most 10 fields."""
    opts = job.plan.request.options if job.plan else None
    if opts is None or (opts.ticket is None and not opts.emergency):
        return []
    value = d.esc(opts.ticket) if opts.ticket else "_none_"
    if opts.emergency:
        value += " · 🚨 emergency (freeze bypass)"
    return [("Ticket", value)]


def _schedule_fields(job: Job, d: Dialect) -> list[tuple[str, str]]:
    """When a scheduled move may start (--at / --window), only when it has a schedule."""
    opts = job.plan.request.options if job.plan else None
    if opts is None or opts.not_before is None:
        return []
    end = f" and {d.date(opts.not_after)}" if opts.not_after is not None else ""
    return [("Scheduled", f"🕘 starts between {d.date(opts.not_before)}{end}")]


def card_message(
    job: Job,
    d: Dialect,
    *,
    ttl_s: float,
    queue: QueuePosition | None = None,
    full: bool = False,
    now: datetime | None = None,
) -> Message:
    """The approval card in its current state. `full=True` (status answers) allows a longer report.

    With `now`, a job still waiting after its approval window is shown as expired (no buttons) even if the
    service has not recorded the expiry yet: nobody should be invited to click something that will refuse.
    """
    if now is not None and job.state is JobState.AWAITING_APPROVAL and now >= approval_expires_at(job, ttl_s):
        job = replace(job, state=JobState.EXPIRED)
    plan = job.plan
    pointer = status_pointer(job.id)
    vm = d.esc(job.vm)
    route = f"{d.esc(job.source) or '?'} → {d.esc(job.destination)}"
    if job.state is JobState.AWAITING_APPROVAL:
        title = f"Change request: {_kind(plan)} of {job.vm}"
    elif job.state in (JobState.REQUESTED, JobState.PREFLIGHT):
        title = f"Checking: {_kind(plan)} of {job.vm}"
    else:
        title = f"{STATE_ICON[job.state]} {_kind(plan).capitalize()} of {job.vm}: {job.state.value}"
    fields: list[tuple[str, str]] = [
        ("VM", vm),
        ("Route", route),
        ("Mode", mode_label(plan, job.plan.request.options.mode if job.plan else None)),
        ("Requester", d.user(job.requester)),
        ("Reason", cut(d.esc(job.reason), 1900) if job.reason else "_none given_"),
        *_change_fields(job, d),
        *_schedule_fields(job, d),
        ("Prediction", prediction_text(plan, d)),
        ("Checks", checks_summary(plan)),
        ("Approvals", _approvals_so_far(job, d)),
    ]
    parts: list[Part] = [
        Header(cut(title, 150)),
        Text(status_line(job, d, ttl_s, queue)),
        Fields(tuple(fields)),
    ]
    if plan is not None and job.state is JobState.AWAITING_APPROVAL and plan.approval is not None:
        if plan.approval.reasons:
            text = f"⚠️ *{plan.approval.total} approvers needed:* " + d.esc("; ".join(plan.approval.reasons))
            parts.append(Text(cut(text, 2900, pointer)))
    elif plan is not None and job.state is JobState.AWAITING_APPROVAL:
        risks = risk_reasons(plan)
        if risks:
            parts.append(Text(cut("⚠️ *Two approvers needed:* " + d.esc("; ".join(risks)), 2900, pointer)))
    if plan is not None:
        parts.extend(report_parts(plan, d, pointer=pointer, max_parts=4 if full else 2))
    ctx = [f"Job #{job.id}", f"requested {d.date(job.created_at)} by {d.user(job.requester)}"]
    if plan is not None:
        ctx.append(f"plan `{plan.hash}`")
    if job.state is JobState.AWAITING_APPROVAL:
        ctx.append(f"expires {d.date(approval_expires_at(job, ttl_s))}")
    parts.append(Context(tuple(ctx)))
    actions = _approval_actions(job)
    if actions is not None:
        parts.append(actions)
    if job.state is JobState.AWAITING_APPROVAL:
        fallback = f"Approval needed: migrate {job.vm} from {job.source} to {job.destination}"
    else:
        fallback = f"Migration of {job.vm} to {job.destination}: {job.state.value}"
    return Message(f"{fallback} (job {job.id})", tuple(parts), more=pointer)
