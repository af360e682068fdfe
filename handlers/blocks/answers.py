"""Short answers to /migrate status, history, hosts, help, and refusals (ephemeral in Slack)."""

from __future__ import annotations

from handlers.blocks.card import card_message
from handlers.blocks.fmt import STATE_ICON, STATE_LABEL, cut
from handlers.blocks.ir import Actions, Context, Dialect, Header, Message, Part, Text, paragraphs
from handlers.blocks.progress import progress_line
from migration_core.models import Job, ProgressSample
from migration_core.service_api import FreezeStatus, HostStatus, QueuePosition


def job_line(job: Job, d: Dialect) -> str:
    """'✅ #7 vm42 hostA → hostB — succeeded · alice · 2024-05-01 12:30 UTC'."""
    return (
        f"{STATE_ICON[job.state]} *#{job.id}* {d.esc(job.vm)} {d.esc(job.source) or '?'} → "
        f"{d.esc(job.destination)} — {STATE_LABEL[job.state]} · {d.user(job.requester)} · "
        f"{d.date(job.created_at)}"
    )


def jobs_message(title: str, jobs: list[Job], d: Dialect, *, empty: str, pointer: str = "") -> Message:
    """A list of jobs, one line each (history, active jobs)."""
    lines = [job_line(j, d) for j in jobs] or [empty]
    parts: list[Part] = [Header(cut(title, 150)), *paragraphs(lines, max_parts=4, pointer=pointer)]
    parts.append(Context(("Details of one job: `/migrate status <job-id>`",)))
    return Message(f"{title}: {len(jobs)} job(s)", tuple(parts))


def status_message(
    job: Job,
    d: Dialect,
    *,
    ttl_s: float,
    sample: ProgressSample | None = None,
    queue: QueuePosition | None = None,
) -> Message:
    """`/migrate status <id|vm>`: the job's card with the full report, no buttons, plus the last progress."""
    card = card_message(job, d, ttl_s=ttl_s, queue=queue, full=True)
    parts = [p for p in card.parts if not isinstance(p, Actions)]
    if sample is not None:
        parts.insert(2, Text(f"`{progress_line(sample)}`"))
    return Message(card.text, tuple(parts))


def hosts_message(hosts: list[HostStatus], d: Dialect) -> Message:
    """`/migrate hosts`: every inventory host, whether it answers, and its migration slots."""
    lines = []
    for h in hosts:
        icon = "✅" if h.reachable else "❌"
        vms = f", {h.running_vms} running VM(s)" if h.running_vms is not None else ""
        slots = (
            f" · in {h.inbound_active}/{h.limit.max_inbound or '∞'}"
            f" · out {h.outbound_active}/{h.limit.max_outbound or '∞'}"
        )
        uri = f" `{d.esc(h.uri)}`" if h.uri else ""  # left out for people who are not approvers
        lines.append(f"{icon} *{d.esc(h.name)}*{uri} — {d.esc(h.detail)}{vms}{slots}")
    if not lines:
        lines = ["No hosts in the inventory (MIGRATE_BOT_HOSTS)."]
    up = sum(1 for h in hosts if h.reachable)
    parts: list[Part] = [Header("Hosts"), *paragraphs(lines, max_parts=4)]
    return Message(f"Hosts: {up} of {len(hosts)} answer", tuple(parts))


def freezes_message(freezes: list[FreezeStatus], d: Dialect) -> Message:
    """`/migrate freezes`: the change freezes in force now, then the next ones (policy file)."""
    lines = []
    for f in freezes:
        icon = "🧊" if f.in_force else "🗓️"
        rule = f" ({d.esc(f.rule)})" if f.rule else ""
        state = "*in force* until" if f.in_force else f"from {d.date(f.start)} to"
        lines.append(f"{icon} *{d.esc(f.name)}*{rule}: {state} {d.date(f.end)}")
    now = [f for f in freezes if f.in_force]
    if not lines:
        lines = ["No change freeze is in force or planned (MIGRATE_BOT_POLICY, [[freeze]])."]
    parts: list[Part] = [Header("Change freezes"), *paragraphs(lines, max_parts=4)]
    if now:
        parts.append(Context(("During a freeze: `--emergency --reason TEXT` (more approvers), or wait",)))
    summary = f"in force: {', '.join(f.name for f in now)}" if now else "none in force"
    return Message(f"Change freezes: {summary}", tuple(parts))


def text_message(text: str, d: Dialect, *, icon: str = "") -> Message:
    """A plain answer (help, confirmations). `text` is ours (not escaped): it may use mrkdwn."""
    body = f"{icon} {text}" if icon else text
    return Message(cut(body, 300), tuple(paragraphs(body.split("\n"), max_parts=4)))


def error_message(text: str, d: Dialect) -> Message:
    """A refusal or error for the user: what is wrong and what to do (the text comes from the core)."""
    return Message(cut(f"⚠️ {text}", 300), (Text(cut(f"⚠️ {d.esc_refs(text)}", 2900)),))


def help_message(text: str, d: Dialect) -> Message:
    """The grammar's help text, kept aligned (a code block in Slack), split at blank lines to fit sections."""
    chunks: list[str] = []
    for para in text.strip("\n").split("\n\n"):
        if chunks and len(chunks[-1]) + len(para) + 2 <= 2800:
            chunks[-1] += "\n\n" + para
        else:
            chunks.append(cut(para, 2800))
    parts = [Text(d.pre(c)) for c in chunks[:20]]
    first = text.strip().split("\n", 1)[0]
    return Message(cut(first, 300), tuple(parts))
