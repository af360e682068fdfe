"""A running drain as messages (pure): its card, the roll-up edited in place, a line per move, the summary.

The card carries Approve/Deny while the drain waits; both buttons name the drain in the block_id
(`drain_approval:<id>`) and carry `<id>:<plan hash>` as their value, so a click is bound to the plan the
clicker saw (handlers/drain_actions.py refuses a click whose hash is not the drain's plan any more).
"""

from __future__ import annotations

from datetime import datetime

from handlers.blocks.fmt import cut, fmt_bytes, fmt_duration_s, fmt_ms
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
from migration_core.dispatch.drain_policy import still_needed
from migration_core.drains import Drain, DrainKind, DrainState, DrainStatus, MoveOutcome, MoveStatus

DRAIN_BLOCK = "drain_approval"  # block_id: drain_approval:<drain id>
APPROVE_DRAIN = "drain_approve"
DENY_DRAIN = "drain_deny"

DRAIN_ICON = {
    DrainState.AWAITING_APPROVAL: "⏳",
    DrainState.RUNNING: "🚚",
    DrainState.CANCELLING: "🛑",
    DrainState.DONE: "✅",
    DrainState.PARTIALLY_DONE: "⚠️",
    DrainState.CANCELLED: "🚫",
    DrainState.DENIED: "⛔",
    DrainState.EXPIRED: "⌛",
    DrainState.FAILED: "❌",
}
DRAIN_LABEL = {
    DrainState.AWAITING_APPROVAL: "Awaiting approval",
    DrainState.RUNNING: "Running",
    DrainState.CANCELLING: "Cancelling",
    DrainState.DONE: "Done",
    DrainState.PARTIALLY_DONE: "Partially done",
    DrainState.CANCELLED: "Cancelled",
    DrainState.DENIED: "Denied",
    DrainState.EXPIRED: "Expired",
    DrainState.FAILED: "Failed",
}
MOVE_ICON = {
    MoveOutcome.PENDING: "·",
    MoveOutcome.WAITING: "⏳",
    MoveOutcome.RUNNING: "🔄",
    MoveOutcome.SUCCEEDED: "✅",
    MoveOutcome.PARKED: "🅿️",
    MoveOutcome.CANCELLED: "🚫",
    MoveOutcome.SKIPPED: "⏭️",
}
_TABLE_CHARS = 2700  # one section holds 3000 characters; a cut code block would lose its closing fence


def approval_value(drain: Drain) -> str:
    """What the drain's buttons carry: the drain and the plan the clicker is shown."""
    return f"{drain.id}:{drain.plan.hash}"


def progress_count(status: DrainStatus) -> str:
    """ "3 of 5 done (1 parked)"."""
    done = status.count(MoveOutcome.SUCCEEDED)
    text = f"{done} of {len(status.moves)} done"
    extra = []
    for outcome in (MoveOutcome.RUNNING, MoveOutcome.PARKED, MoveOutcome.CANCELLED, MoveOutcome.SKIPPED):
        n = status.count(outcome)
        if n:
            extra.append(f"{n} {outcome.value}")
    return text + (f" ({', '.join(extra)})" if extra else "")


def _moves_table(status: DrainStatus, d: Dialect) -> Text | None:
    if not status.moves:
        return None
    rows = [f"{'wave':<5}{'VM':<20}{'to':<14}{'mode':<8}{'predicted':>10}  state"]
    for m in status.moves:
        p = m.planned
        rows.append(
            f"{p.wave:<5}{cut(p.vm, 19):<20}{cut(p.destination, 13):<14}{p.mode.value:<8}"
            f"{fmt_duration_s(p.predicted_total_s):>10}  {MOVE_ICON[m.outcome]} {m.outcome.value}"
        )
    shown: list[str] = []
    size = 0
    for row in rows:
        if size + len(row) > _TABLE_CHARS:
            shown.append(f"… {len(rows) - len(shown)} more: see `migrate-bot status D{status.drain.id} --json`")
            break
        shown.append(row)
        size += len(row) + 1
    return Text(d.pre("\n".join(shown)))


def _approval_actions(drain: Drain) -> Actions | None:
    if drain.state is not DrainState.AWAITING_APPROVAL:
        return None
    value = approval_value(drain)
    where = f"off {drain.host}" if drain.kind is DrainKind.DRAIN else f"back to {drain.host}"
    deny = Button("Deny", DENY_DRAIN, value, style="danger")
    if not drain.plan.executable:
        return Actions(f"{DRAIN_BLOCK}:{drain.id}", (deny,))
    confirm = Confirm(
        title=f"Approve {drain.ref}?",
        text=cut(f"{len(drain.plan.moves)} migration(s) {where}; one approval covers every move.", 300),
        confirm="Approve",
    )
    approve = Button("Approve", APPROVE_DRAIN, value, style="primary", confirm=confirm)
    return Actions(f"{DRAIN_BLOCK}:{drain.id}", (approve, deny))


def drain_card_message(status: DrainStatus, d: Dialect, *, now: datetime | None = None) -> Message:
    """The drain's one card in the channel: state, moves (VM → host, mode, predicted time, wave), what stays
    behind and why, the ETA, the approvals, and Approve/Deny while it waits."""
    drain = status.drain
    plan = drain.plan
    eta = status.eta_s if status.eta_s is not None else plan.eta_s
    approvers = d.users(list(drain.approvers)) if drain.approvers else "none yet"
    fields: list[tuple[str, str]] = [
        ("Host", d.esc(drain.host)),
        ("Requested by", d.user(drain.requester)),
        ("Moves", f"{len(plan.moves)} in {plan.waves} wave(s); {progress_count(status)}"),
        ("ETA", "—" if drain.state.finished else f"~{fmt_duration_s(eta)}"),
        ("Approvals", f"{approvers} (needs {drain.requirement.total})"),
        ("Plan hash", f"`{plan.hash}`"),
    ]
    if drain.reason:
        fields.append(("Reason", d.esc(drain.reason)))
    if drain.returns_drain:
        fields.append(("Returns", f"D{drain.returns_drain}"))
    parts: list[Part] = [
        Header(cut(drain.title, 150)),
        Text(cut(state_text(drain, d), 2900)),
        Fields(tuple(fields)),
    ]
    table = _moves_table(status, d)
    if table is not None:
        parts.append(table)
    if plan.left_behind:
        lines = [f"*{d.esc(lb.vm)}*: {d.esc(lb.reason)}\n      fix: {d.esc(lb.fix)}" for lb in plan.left_behind]
        parts += paragraphs(["*Left behind*", *lines], max_parts=1, pointer=f"`/migrate status {drain.ref}`")
    parked = [m for m in status.moves if m.outcome is MoveOutcome.PARKED]
    if parked:
        lines = [f"🅿️ *{d.esc(m.vm)}*: {d.esc(m.why)}" for m in parked]
        parts += paragraphs(["*Parked*", *lines], max_parts=1, pointer=f"`/migrate status {drain.ref}`")
    actions = _approval_actions(drain)
    if actions is not None:
        parts.append(actions)
    small = [f"Order: {plan.rule}.", f"Status: /migrate status {drain.ref} · cancel: /migrate cancel {drain.ref}"]
    if now is not None:
        small.append(f"Updated {d.date(now)}")
    parts.append(Context(tuple(small)))
    text = f"{drain.title}: {DRAIN_LABEL[drain.state].lower()}, {progress_count(status)}"
    if drain.state is DrainState.AWAITING_APPROVAL:
        text = f"Approval needed: {drain.title}, {len(plan.moves)} move(s)"
    return Message(text, tuple(parts), more=f"/migrate status {drain.ref}")


def state_text(drain: Drain, d: Dialect) -> str:
    """ "⏳ Awaiting approval — needs 1 more approval" and the like."""
    head = f"{DRAIN_ICON[drain.state]} *{DRAIN_LABEL[drain.state]}*"
    if drain.state is DrainState.AWAITING_APPROVAL:
        return f"{head} — needs {d.esc(still_needed(drain)) or 'no more approvals'}"
    return f"{head} — {d.esc(drain.detail)}" if drain.detail else head


def running_line(m: MoveStatus, d: Dialect) -> str:
    """ "web1 → hostB: precopy, 120 MiB left, ETA 20 s"."""
    bits = [d.esc(m.phase or "starting")]
    if m.remaining_bytes is not None:
        bits.append(f"{fmt_bytes(m.remaining_bytes)} left")
    if m.eta_s is not None:
        bits.append(f"ETA {fmt_duration_s(m.eta_s)}")
    return f"🔄 *{d.esc(m.vm)}* → {d.esc(m.planned.destination)}: {', '.join(bits)}"


def rollup_text(status: DrainStatus) -> str:
    """The roll-up in one line (console, App Home): "D7 running: 2 of 5 done (1 running), ETA ~3 min"."""
    drain = status.drain
    text = f"{drain.ref} {DRAIN_LABEL[drain.state].lower()}: {progress_count(status)}"
    if status.eta_s is not None and not drain.state.finished and drain.state is not DrainState.AWAITING_APPROVAL:
        text += f", ETA ~{fmt_duration_s(status.eta_s)}"
    running = [m for m in status.moves if m.outcome is MoveOutcome.RUNNING]
    for m in running:
        left = f" {fmt_bytes(m.remaining_bytes)} left" if m.remaining_bytes is not None else ""
        text += f"; {m.vm} {m.phase or 'starting'}{left}"
    return text


def drain_rollup_message(status: DrainStatus, d: Dialect) -> Message:
    """The one message in the drain's thread that is edited in place while it runs (and once at the end)."""
    drain = status.drain
    head = f"{DRAIN_ICON[drain.state]} *{drain.ref}: {progress_count(status)}*"
    if status.eta_s is not None and not drain.state.finished:
        head += f" — ETA ~{fmt_duration_s(status.eta_s)}"
    elif drain.state.finished:
        head += f" — {DRAIN_LABEL[drain.state].lower()} after {fmt_duration_s(status.elapsed_s)}"
    lines = [head]
    for m in status.moves:
        if m.outcome is MoveOutcome.RUNNING:
            lines.append(running_line(m, d))
        elif m.outcome is MoveOutcome.WAITING:
            why = f": {d.esc(m.why)}" if m.why else ""
            lines.append(f"⏳ *{d.esc(m.vm)}* waiting{why}")
    pending = status.count(MoveOutcome.PENDING)
    if pending and not drain.state.finished:
        lines.append(f"· {pending} not started yet")
    parts: list[Part] = list(paragraphs(lines, max_parts=2, pointer=f"`/migrate status {drain.ref}`"))
    parts.append(Context((f"elapsed {fmt_duration_s(status.elapsed_s)}",)))
    return Message(rollup_text(status), tuple(parts))


def move_line(m: MoveStatus, d: Dialect) -> str:
    """One VM's outcome, said once in the thread when its move ends."""
    vm, dest = d.esc(m.vm), d.esc(m.planned.destination)
    if m.outcome is MoveOutcome.SUCCEEDED:
        took = f" in {fmt_duration_s(m.total_s)}" if m.total_s is not None else ""
        pause = f" (downtime {fmt_ms(m.downtime_ms)})" if m.downtime_ms is not None else ""
        return f"{MOVE_ICON[m.outcome]} *{vm}* → {dest}{took}{pause}"
    why = f": {d.esc(m.why)}" if m.why else ""
    return f"{MOVE_ICON[m.outcome]} *{vm}* {m.outcome.value}{why}"


def drain_move_message(m: MoveStatus, d: Dialect) -> Message:
    line = move_line(m, d)
    return Message(line.replace("*", ""), (Text(cut(line, 2900)),))


def drain_summary_message(status: DrainStatus, d: Dialect) -> Message:
    """The end of the drain, broadcast to the channel: how many moved, in how long, what stays and why."""
    drain = status.drain
    moved = status.count(MoveOutcome.SUCCEEDED)
    head = (
        f"{DRAIN_ICON[drain.state]} *{d.esc(drain.title)} {DRAIN_LABEL[drain.state].lower()}*: "
        f"{moved} of {len(status.moves)} moved in {fmt_duration_s(status.elapsed_s)}"
    )
    lines = [head]
    lines += [move_line(m, d) for m in status.moves if m.outcome is not MoveOutcome.SUCCEEDED]
    if drain.plan.left_behind:
        lines.append("Left behind: " + ", ".join(d.esc(lb.vm) for lb in drain.plan.left_behind))
    if drain.kind is DrainKind.DRAIN and drain.state in (DrainState.DONE, DrainState.PARTIALLY_DONE):
        lines.append(f"{d.esc(drain.host)} stays marked drained until `/migrate return {d.esc(drain.host)}`.")
    parts = paragraphs(lines, max_parts=2, pointer=f"`/migrate status {drain.ref}`")
    return Message(f"{drain.title} {DRAIN_LABEL[drain.state].lower()}: {moved} of {len(status.moves)} moved",
                   tuple(parts))  # fmt: skip


def drain_status_message(status: DrainStatus, d: Dialect) -> Message:
    """`/migrate status D7`: the card without buttons, and the roll-up while it runs."""
    card = drain_card_message(status, d)
    parts: list[Part] = [p for p in card.parts if not isinstance(p, Actions)]
    if status.drain.state in (DrainState.RUNNING, DrainState.CANCELLING):
        parts += list(drain_rollup_message(status, d).parts)
    return Message(card.text, tuple(parts), more=card.more)


def drain_home_line(status: DrainStatus, d: Dialect) -> str:
    """App Home: one drain in one line (with its roll-up)."""
    drain = status.drain
    line = f"{DRAIN_ICON[drain.state]} *{drain.ref}* {d.esc(drain.title)} — {d.esc(rollup_text(status))}"
    if drain.state is DrainState.AWAITING_APPROVAL:
        line += f"\n      ↳ requested by {d.user(drain.requester)}; needs {d.esc(still_needed(drain))}"
    return line


def with_drains(msg: Message, drains: list[DrainStatus], d: Dialect) -> Message:
    """`/migrate status` (everything active): the jobs, then the drains awaiting approval or running."""
    if not drains:
        return msg
    lines = [drain_home_line(s, d) for s in drains]
    extra = paragraphs(["*Drains*", *lines], max_parts=2, pointer="`/migrate status D<id>`")
    return Message(f"{msg.text}; {len(drains)} drain(s)", (*msg.parts, *extra), more=msg.more)
