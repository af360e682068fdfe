"""App Home: active migrations, the queue with reasons, and recent history."""

from __future__ import annotations

from datetime import datetime

from handlers.blocks.answers import job_line
from handlers.blocks.drain_card import drain_home_line
from handlers.blocks.ir import Context, Dialect, Divider, Header, Message, Part, Text, paragraphs
from migration_core.drains import DrainState, DrainStatus
from migration_core.models import Job, JobState
from migration_core.service_api import QueuePosition


def home_message(
    user: str,
    active: list[Job],
    queue: list[QueuePosition],
    recent: list[Job],
    d: Dialect,
    *,
    now: datetime,
    drains: list[DrainStatus] | None = None,
) -> Message:
    """The Home tab for `user`: what waits for them, what runs, what waits for a slot, what happened; and the
    drains awaiting approval or in progress, each with its roll-up line (only when there are drains)."""
    waiting = [j for j in active if j.state is JobState.AWAITING_APPROVAL]
    mine = [j for j in waiting if j.requester == user]
    others = [j for j in waiting if j.requester != user and user not in j.approvers]
    running = [j for j in active if j.state in (JobState.RUNNING, JobState.VERIFYING, JobState.APPROVED)]
    by_id = {j.id: j for j in active}
    parts: list[Part] = [Header("Live migrations")]

    def section(title: str, lines: list[str], empty: str) -> None:
        parts.append(Text(f"*{title}*"))
        parts.extend(paragraphs(lines or [f"_{empty}_"], max_parts=3, pointer="`/migrate history`"))

    section("Waiting for your approval", [job_line(j, d) for j in others], "nothing to approve")
    section("Your requests waiting for approval", [job_line(j, d) for j in mine], "none")
    parts.append(Divider())
    if drains:
        waiting_drains = [s for s in drains if s.drain.state is DrainState.AWAITING_APPROVAL]
        moving = [s for s in drains if s.drain.state is not DrainState.AWAITING_APPROVAL]
        section("Drains awaiting approval", [drain_home_line(s, d) for s in waiting_drains], "none")
        section("Drains in progress", [drain_home_line(s, d) for s in moving], "none")
        parts.append(Divider())
    section("Running", [job_line(j, d) for j in running], "no migration is running")
    queued_lines = []
    for q in sorted(queue, key=lambda q: q.place):
        job = by_id.get(q.job_id)
        head = job_line(job, d) if job else f"*#{q.job_id}*"
        queued_lines.append(f"{q.place}. {head}\n      ↳ {d.esc(q.why)}")
    section("Queue", queued_lines, "empty")
    scheduled = []
    for j in active:
        opts = j.plan.request.options if j.plan else None
        if opts is not None and opts.not_before is not None and opts.not_before > now:
            end = f" – {d.date(opts.not_after)}" if opts.not_after is not None else ""
            scheduled.append(f"🕘 {job_line(j, d)}\n      ↳ starts {d.date(opts.not_before)}{end}")
    if scheduled:  # only when something is scheduled: the Home tab of a bot without schedules stays as it was
        section("Scheduled", scheduled, "nothing scheduled")
    parts.append(Divider())
    section("Recent", [job_line(j, d) for j in recent], "no migrations yet")
    parts.append(Context((f"Updated {d.date(now)}", "Type `/migrate help` in a channel to start")))
    return Message("Live migrations", tuple(parts))
