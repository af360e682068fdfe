"""Drain dry runs and `to any` plans as messages (pure): the moves table, why each host, left-behind VMs, ETA."""

from __future__ import annotations

from handlers.blocks.card import plan_message
from handlers.blocks.fmt import cut, fmt_duration_s, fmt_ms
from handlers.blocks.ir import Context, Dialect, Fields, Header, Message, Part, Text, paragraphs
from migration_core.planning.drain import DrainPlan, PlacedPlan


def drain_plan_message(plan: DrainPlan, d: Dialect, *, verb: str = "drain") -> Message:
    """`/migrate plan drain <host>`: what would move where, in which wave, how long, and what stays.
    `verb` "return to" for the dry run of a return (the same plan shape, moves back to <host>)."""
    host = d.esc(plan.host)
    n, w = len(plan.moves), plan.waves
    if plan.executable:
        verdict = f"{n} move(s) in {w} wave(s), ETA ~{fmt_duration_s(plan.eta_s)}"
    else:
        verdict = "nothing can move"
    behind = f", {len(plan.left_behind)} left behind" if plan.left_behind else ""
    parts: list[Part] = [
        Header(cut(f"Dry run: {verb} {plan.host}", 150)),
        Text(f"{'✅' if plan.executable else '❌'} *{verdict}*{behind} — nothing was changed"),
        Fields(
            (
                ("Host", host),
                ("Destinations", d.esc(", ".join(plan.destinations)) or "none"),
                ("Moves", f"{n} in {w} wave(s)"),
                ("ETA", f"~{fmt_duration_s(plan.eta_s)}" if plan.moves else "—"),
                ("Left behind", str(len(plan.left_behind))),
                ("Plan hash", f"`{plan.hash}`"),
            )
        ),
    ]
    if plan.moves:
        rows = [f"{'wave':<5}{'VM':<20}{'to':<14}{'mode':<8}{'time':>9}{'downtime':>10}  share"]
        for m in plan.moves:
            flag = "" if m.meets_target else "  ⚠ misses its downtime target"
            downtime = "—" if m.mode.value == "offline" else fmt_ms(m.predicted_downtime_ms)
            rows.append(
                f"{m.wave:<5}{cut(m.vm, 19):<20}{cut(m.destination, 13):<14}{m.mode.value:<8}"
                f"{fmt_duration_s(m.predicted_total_s):>9}{downtime:>10}  {m.share_mib_s:.0f} MiB/s{flag}"
            )
        shown: list[str] = []
        size = 0
        for row in rows:  # one section holds 3000 characters: a cut code block would lose its closing fence
            if size + len(row) > 2700:
                shown.append(f"… {len(rows) - len(shown)} more: see `migrate-bot plan drain {plan.host} --json`")
                break
            shown.append(row)
            size += len(row) + 1
        parts.append(Text(d.pre("\n".join(shown))))
        why = [f"*{d.esc(m.vm)}* → {d.esc(m.why)}" for m in plan.moves]
        parts += paragraphs(["*Why these hosts*", *why], max_parts=2, pointer="`migrate-bot plan drain --json`")
    if plan.left_behind:
        lines = [f"*{d.esc(lb.vm)}*: {d.esc(lb.reason)}\n      fix: {d.esc(lb.fix)}" for lb in plan.left_behind]
        parts += paragraphs(["*Left behind*", *lines], max_parts=2, pointer="`migrate-bot plan drain --json`")
    run = f"/migrate {'drain' if verb == 'drain' else 'return'} {plan.host}"
    parts.append(Context((f"Order: {plan.rule}.", f"To run it: {run} (posts a card to approve).")))
    return Message(f"Dry run: {verb} {plan.host}: {verdict}{behind}", tuple(parts))


def placed_plan_message(placed: PlacedPlan, d: Dialect) -> Message:
    """`/migrate plan <vm> to any`: the single move's report with the placement's reason on top."""
    base = plan_message(placed.plan, d)
    if placed.destination is None:
        head = Text(f"❌ *No host can take {d.esc(placed.plan.request.vm)}*: {d.esc(placed.why)}"
                    + (f"\nfix: {d.esc(placed.fix)}" if placed.fix else ""))  # fmt: skip
        title = f"Plan for {placed.plan.request.vm} to any host: no host can take it"
    else:
        head = Text(f"*Placement* — {d.esc(placed.why)}")
        title = base.text
    return Message(title, (base.parts[0], cut_text(head), *base.parts[1:]))


def cut_text(text: Text) -> Text:
    return Text(cut(text.md, 2900))
