"""One command answerer for every front end: each `/migrate` command type is answered here, once, as a Message.

Slack (handlers/commands.py) and the console (bot/console.py) parse, call `answer`, then only show the result
their way: `Show.ASKER` to the person who asked (Slack: ephemeral; console: printed), `Show.CARD` as the card of
the job or drain it created (Slack: posted in the channel and tracked; console: printed, and `last` set). The
words live in handlers.blocks; what differs between the two outputs inline (mentions, dates) is the `Dialect`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from handlers.blocks.answers import (
    freezes_message,
    help_message,
    hosts_message,
    job_line,
    jobs_message,
    status_message,
    text_message,
)
from handlers.blocks.card import card_message, plan_message
from handlers.blocks.drain import drain_plan_message, placed_plan_message
from handlers.blocks.drain_card import drain_card_message, drain_status_message, with_drains
from handlers.blocks.ir import Context, Dialect, Message
from migration_core.drains import Drain
from migration_core.grammar.parser import (
    CancelCommand,
    CancelDrainCommand,
    Command,
    DrainCommand,
    DrainStatusCommand,
    FreezesCommand,
    HelpCommand,
    HistoryCommand,
    HostsCommand,
    MigrateCommand,
    PlaceCommand,
    ReturnCommand,
    StatusCommand,
    help_text,
)
from migration_core.models import Job, JobState, MigrationRequest, ProgressSample
from migration_core.planning.drain import DrainRequest
from migration_core.service_api import MigrationServiceAPI


@dataclass(frozen=True)
class AnswerContext:
    """Who asks, where, and how the answer is written. `host_details`: libvirt URIs and connection errors
    (users, socket and key paths) are shown (Slack: approvers only; the console's operator runs the bot).
    `sample`: the last progress sample of a job, when the front end keeps one (the console's sink does).
    `idempotency_key`: the same key twice submits one job (Slack's retries). `now`: the clock cards are drawn at."""

    service: MigrationServiceAPI
    requester: str
    dialect: Dialect
    approval_ttl_s: float
    channel: str | None = None
    host_details: bool = False
    sample: Callable[[int], ProgressSample | None] | None = None
    idempotency_key: str | None = None
    now: Callable[[], datetime] | None = None

    def at(self) -> datetime | None:
        return self.now() if self.now is not None else None


class Show(StrEnum):
    """How the front end shows an answer."""

    ASKER = "asker"  # to the person who asked only (Slack: ephemeral; console: printed)
    CARD = "card"  # the card of the job or drain just created (Slack: in the channel, tracked; console: printed)


@dataclass(frozen=True)
class Answer:
    """The message and how to show it; the job or drain it is about (created, changed, or asked for: the console
    sets `last` from a created one and shows a finished job's summary under its status, having no thread).
    `notes`: said to the asker before the message (where `to any` sends the VM). `changed`: the command changed
    the job or drain, so its card in the channel must be redrawn."""

    message: Message
    show: Show = Show.ASKER
    job: Job | None = None
    drain: Drain | None = None
    notes: tuple[str, ...] = ()
    changed: bool = False


Answerer = Callable[[Command, AnswerContext], Awaitable[Answer]]


def creates(cmd: Command) -> bool:
    """True for a request that creates a job or a drain (a refusal of one fails the console's exit code)."""
    if isinstance(cmd, MigrateCommand | DrainCommand | PlaceCommand):
        return not cmd.plan_only
    return isinstance(cmd, ReturnCommand)


def working_text(cmd: Command) -> str | None:
    """What to say at once while a slow command runs its live preflight (Slack: the ack), None for a fast one."""
    if isinstance(cmd, MigrateCommand):
        what = "Planning" if cmd.plan_only else "Checking"
        return f"{what} {cmd.request.vm} → {cmd.request.destination}… (preflight checks)"
    if isinstance(cmd, DrainCommand):
        return f"Planning the drain of {cmd.host}… (preflight on every host)"
    if isinstance(cmd, PlaceCommand):
        return f"Finding a host for {cmd.vm}… (preflight on every host)"
    if isinstance(cmd, ReturnCommand):
        return f"Planning the return to {cmd.host}… (preflight on every host)"
    return None


async def answer(cmd: Command, ctx: AnswerContext) -> Answer:
    """The answer to `cmd`. Refusals are raised as the core's MigrateBotError for the front end to say."""
    for kind, answerer in _ANSWERERS:
        if isinstance(cmd, kind):
            return await answerer(cmd, ctx)
    raise AssertionError(f"no answerer for {cmd!r}")  # pragma: no cover - the grammar has no other commands


async def _help(cmd: Command, ctx: AnswerContext) -> Answer:
    assert isinstance(cmd, HelpCommand)
    return Answer(help_message(help_text(cmd.topic), ctx.dialect))


async def _migrate(cmd: Command, ctx: AnswerContext) -> Answer:
    """`plan vm to host`: the report only; `vm to host`: submit (idempotently) and answer with the job's card."""
    assert isinstance(cmd, MigrateCommand)
    if cmd.plan_only:
        return Answer(plan_message(await ctx.service.plan(cmd.request), ctx.dialect))
    return await _submit(cmd.request, ctx)


async def _submit(request: MigrationRequest, ctx: AnswerContext, notes: tuple[str, ...] = ()) -> Answer:
    job = await ctx.service.submit(
        request, ctx.requester, chat_channel=ctx.channel, idempotency_key=ctx.idempotency_key
    )
    card = card_message(job, ctx.dialect, ttl_s=ctx.approval_ttl_s, now=ctx.at())
    return Answer(card, Show.CARD, job=job, notes=notes)


async def _drain(cmd: Command, ctx: AnswerContext) -> Answer:
    """`plan drain host`: the dry run; `drain host`: the drain request and its card."""
    assert isinstance(cmd, DrainCommand)
    svc = ctx.service
    request = DrainRequest(cmd.host, cmd.options, cmd.to, cmd.except_vms, cmd.include_stopped)
    if cmd.plan_only:
        return Answer(drain_plan_message(await svc.plan_drain(request), ctx.dialect))
    drain = await svc.request_drain(request, ctx.requester, chat_channel=ctx.channel)
    return await _drain_card(drain, ctx)


async def _return(cmd: Command, ctx: AnswerContext) -> Answer:
    assert isinstance(cmd, ReturnCommand)
    drain = await ctx.service.request_return(cmd.host, ctx.requester, cmd.reason, chat_channel=ctx.channel)
    return await _drain_card(drain, ctx)


async def _drain_card(drain: Drain, ctx: AnswerContext) -> Answer:
    """The new drain's one card; `drain` is the record as drawn (the front end compares states after posting)."""
    status = await ctx.service.drain_status(drain.id)
    return Answer(drain_card_message(status, ctx.dialect, now=ctx.at()), Show.CARD, drain=status.drain)


async def _place(cmd: Command, ctx: AnswerContext) -> Answer:
    """`vm to any`: the placement when no host can take it (or for `plan`), else the request to the host found."""
    assert isinstance(cmd, PlaceCommand)
    placed = await ctx.service.plan_any(cmd.vm, cmd.options)
    if cmd.plan_only or placed.destination is None:
        return Answer(placed_plan_message(placed, ctx.dialect))
    chosen = MigrationRequest(cmd.vm, placed.destination, cmd.options)
    return await _submit(chosen, ctx, notes=(f"{cmd.vm} goes to {placed.why}",))


async def _cancel(cmd: Command, ctx: AnswerContext) -> Answer:
    assert isinstance(cmd, CancelCommand)
    job = await ctx.service.cancel(cmd.job_id, ctx.requester)
    msg = text_message(f"Job #{job.id} withdrawn ({job.state.value}).", ctx.dialect)
    return Answer(msg, job=job, changed=True)


async def _cancel_drain(cmd: Command, ctx: AnswerContext) -> Answer:
    """The report to the asker; the drain's thread gets it from the drain sink."""
    assert isinstance(cmd, CancelDrainCommand)
    report = await ctx.service.cancel_drain(cmd.drain_id, ctx.requester)
    drain = await ctx.service.get_drain(cmd.drain_id)
    return Answer(text_message(report.text, ctx.dialect), drain=drain, changed=True)


async def _status(cmd: Command, ctx: AnswerContext) -> Answer:
    """Everything active (jobs, then drains; with the newest job when nothing is), or one job by id or VM."""
    assert isinstance(cmd, StatusCommand)
    svc, d = ctx.service, ctx.dialect
    target = cmd.target
    if target is None:
        active = await svc.active_jobs()
        listed = jobs_message("Active migrations", active, d, empty="Nothing active.")
        msg = with_drains(listed, await svc.active_drains(), d)
        newest = [] if active else await svc.history(None, 1)
        if newest:  # "nothing active" alone leaves a person wondering what happened to their job
            latest = f"latest: {job_line(newest[0], d)} (`status {newest[0].id}` for details)"
            msg = dataclasses.replace(msg, parts=(*msg.parts, Context((latest,))))
        return Answer(msg)
    job: Job | None
    if isinstance(target, int):
        job = await svc.get_job(target)
    else:
        job = await svc.latest_job_for_vm(target)
        if job is None:
            return Answer(text_message(f"No migration of `{target}` on record.", d))
    queue = None
    if job.state is JobState.QUEUED:
        queue = next((q for q in await svc.queue() if q.job_id == job.id), None)
    sample = ctx.sample(job.id) if ctx.sample is not None else None
    return Answer(status_message(job, d, ttl_s=ctx.approval_ttl_s, sample=sample, queue=queue), job=job)


async def _drain_status(cmd: Command, ctx: AnswerContext) -> Answer:
    assert isinstance(cmd, DrainStatusCommand)
    return Answer(drain_status_message(await ctx.service.drain_status(cmd.drain_id), ctx.dialect))


async def _history(cmd: Command, ctx: AnswerContext) -> Answer:
    assert isinstance(cmd, HistoryCommand)
    jobs = await ctx.service.history(cmd.subject, cmd.limit)
    title = f"History of {cmd.subject}" if cmd.subject else "History"
    return Answer(jobs_message(title, jobs, ctx.dialect, empty="No migrations yet."))


async def _hosts(cmd: Command, ctx: AnswerContext) -> Answer:
    """Names, reachability and slots for everyone; URIs and connection errors only with `host_details`."""
    hosts = await ctx.service.hosts()
    if not ctx.host_details:
        hosts = [
            dataclasses.replace(h, uri="", detail="answers" if h.reachable else "does not answer") for h in hosts
        ]
    return Answer(hosts_message(hosts, ctx.dialect))


async def _freezes(cmd: Command, ctx: AnswerContext) -> Answer:
    return Answer(freezes_message(await ctx.service.freezes(), ctx.dialect))


# One answerer per command type (`plan …` is a variant of MigrateCommand, DrainCommand and PlaceCommand).
_ANSWERERS: tuple[tuple[type[object], Answerer], ...] = (
    (HelpCommand, _help),
    (MigrateCommand, _migrate),
    (DrainCommand, _drain),
    (ReturnCommand, _return),
    (PlaceCommand, _place),
    (CancelCommand, _cancel),
    (CancelDrainCommand, _cancel_drain),
    (StatusCommand, _status),
    (DrainStatusCommand, _drain_status),
    (HistoryCommand, _history),
    (HostsCommand, _hosts),
    (FreezesCommand, _freezes),
)
