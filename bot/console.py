"""`migrate-bot console`: the Slack flow in a terminal — same grammar, policy, cards and progress, no Slack.

Interactive on a terminal (prompt, styled cards, a live progress bar while `wait`ing); scriptable when stdin
is not a terminal: one command per line (see bot.console_commands.CONSOLE_HELP), the output is what a person
would see, and at end of input the console waits for the jobs it started that are past approval and exits 0
only if every migration request it was given was accepted and every job it created ended `succeeded` (a
refused request, e.g. the VM already has an open job, and a job still waiting for approval are failures).

Approvers: MIGRATE_BOT_APPROVERS when it is set, otherwise every local user except the requester (the
two-person rule still holds: the service refuses self-approval). Build the service with
`console_approver_check(settings)` and a `ConsoleSink`, and pass that sink to `run_console`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TextIO

from rich.progress import BarColumn, Progress, TextColumn

from bot.blocks.answers import (
    freezes_message,
    help_message,
    hosts_message,
    job_line,
    jobs_message,
    status_message,
    text_message,
)
from bot.blocks.card import card_message, plan_message, status_line
from bot.blocks.drain import NOT_YET, drain_plan_message, placed_plan_message
from bot.blocks.ir import CONSOLE, Message
from bot.blocks.modals import parse_bandwidth_mib_s, parse_downtime_ms
from bot.blocks.summary import summary_message
from bot.console_commands import (
    CONSOLE_HELP,
    ActAs,
    Blank,
    ConsoleCommand,
    ConsoleError,
    ConsoleHelp,
    Control,
    JobRef,
    Quit,
    SetValue,
    Slash,
    parse_console_line,
)
from bot.console_sink import ConsoleOut, ConsoleSink
from bot.settings import Settings
from migration_core.errors import MigrateBotError, PolicyError, RequestError, StateError
from migration_core.grammar.parser import (
    CancelCommand,
    CancelDrainCommand,
    DrainCommand,
    FreezesCommand,
    HelpCommand,
    HistoryCommand,
    HostsCommand,
    MigrateCommand,
    PlaceCommand,
    ReturnCommand,
    StatusCommand,
    command_to_text,
    help_text,
    parse_command,
)
from migration_core.models import Job, JobState, MigrationRequest, ProgressSample
from migration_core.service_api import ApproverCheck, MigrationServiceAPI

log = logging.getLogger(__name__)

# Jobs in these states will run without anyone doing anything more: the end of input waits for them.
_WILL_RUN = frozenset({JobState.APPROVED, JobState.QUEUED, JobState.RUNNING, JobState.VERIFYING})
SUMMARY_GRACE_S = 10.0
WAIT_POLL_S = 1.0  # how often `wait` looks whether the job stopped to wait for an approval

__all__ = ["ConsoleSink", "console_approver_check", "run_console"]


def console_approver_check(settings: Settings) -> ApproverCheck:
    """MIGRATE_BOT_APPROVERS when set; otherwise anyone (the service still refuses self-approval)."""
    approvers = frozenset(settings.approvers)

    async def check(user: str) -> bool:
        return user in approvers if approvers else True

    return check


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False


class _Session:
    """The state of one console run: who acts, which jobs it started, the output."""

    def __init__(
        self,
        service: MigrationServiceAPI,
        settings: Settings,
        out: ConsoleOut,
        user: str,
        sink: ConsoleSink | None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.out = out
        self.user = user
        self.sink = sink
        self.started: list[int] = []
        self.refused_requests = 0  # migration requests the service did not accept (they count against exit 0)

    def show(self, msg: Message) -> None:
        self.out.message(msg)

    async def job_id(self, ref: JobRef) -> int:
        """`last` is the newest job this console started, else the newest job on record (another console's)."""
        if ref != "last":
            return ref
        if self.started:
            return self.started[-1]
        newest = await self.service.history(None, 1)
        if not newest:
            raise RequestError("there is no job yet", "request one with /migrate <vm> to <host>")
        return newest[0].id

    async def run(self, cmd: ConsoleCommand) -> None:
        try:
            await self._run(cmd)
        except MigrateBotError as err:
            self.out.line(f"refused: {err}" if isinstance(err, PolicyError | StateError) else f"error: {err}")
        except Exception:
            log.exception("console command failed: %r", cmd)
            self.out.line("error: something went wrong on our side; the log has the details")

    async def _run(self, cmd: ConsoleCommand) -> None:
        svc = self.service
        if isinstance(cmd, Blank | Quit):
            return
        if isinstance(cmd, ConsoleError):
            self.out.line(f"error: {cmd.message}")
        elif isinstance(cmd, ActAs):
            self.user = cmd.user
            self.out.line(f"acting as {cmd.user}")
        elif isinstance(cmd, ConsoleHelp):
            if cmd.topic is None:
                self.out.line(CONSOLE_HELP)
            self.show(help_message(help_text(cmd.topic), CONSOLE))
        elif isinstance(cmd, Control):
            await self._control(cmd)
        elif isinstance(cmd, SetValue):
            job_id = await self.job_id(cmd.job)
            # A RequestError (LimitError when out of range) is answered like any other refusal.
            value = parse_downtime_ms(cmd.value) if cmd.verb == "downtime" else parse_bandwidth_mib_s(cmd.value)
            if cmd.verb == "downtime":
                await svc.set_max_downtime(job_id, value, self.user)
                self.out.line(f"[job {job_id}] max downtime set to {value} ms by {self.user}")
            else:
                await svc.set_bandwidth(job_id, value, self.user)
                self.out.line(f"[job {job_id}] bandwidth set to {value} MiB/s by {self.user}")
        elif isinstance(cmd, Slash):
            await self._slash(cmd.text)

    async def _control(self, cmd: Control) -> None:
        svc = self.service
        job_id = await self.job_id(cmd.job)
        ttl_s = self.settings.approval_ttl_s
        if cmd.verb == "approve":
            job = await svc.approve(job_id, self.user)
            if job.state is JobState.AWAITING_APPROVAL or self.sink is None:  # else the sink shows the move
                self.out.line(f"[job {job.id}] {status_line(job, CONSOLE, ttl_s)}")
        elif cmd.verb == "deny":
            job = await svc.deny(job_id, self.user)
            if self.sink is None:
                self.out.line(f"[job {job.id}] {status_line(job, CONSOLE, ttl_s)}")
        elif cmd.verb == "abort":
            await svc.abort(job_id, self.user)
            self.out.line(f"[job {job_id}] abort requested by {self.user}")
        elif cmd.verb == "postcopy":
            await svc.switch_postcopy(job_id, self.user)
            self.out.line(f"[job {job_id}] switch to post-copy requested by {self.user}")
        else:
            job = await self.wait(job_id)
            if job.state.terminal:
                self.out.line(f"[job {job.id}] ended: {job.state.value}")
            else:  # waiting would block this console for good: nobody else types here
                self.out.line(
                    f"[job {job.id}] is waiting for approval: nothing runs until someone else approves it "
                    f"(`as <user>`, then `approve {job.id}`)"
                )

    async def wait(self, job_id: int) -> Job:
        """Block until the job ends (or stops to wait for an approval); then until its summary is shown.
        On a terminal, show a live progress bar meanwhile."""
        job = await self._wait_live(job_id)
        if self.sink is not None and job.state.terminal and job_id in _ran(self.sink):
            await self.sink.wait_summary(job_id, SUMMARY_GRACE_S)  # the summary before "ended", once
        return job

    async def _until_end(self, job_id: int) -> Job:
        while True:
            job = await self.service.get_job(job_id)
            if job.state.terminal or job.state is JobState.AWAITING_APPROVAL:
                return job
            try:
                job = await self.service.wait(job_id, timeout_s=WAIT_POLL_S)
            except TimeoutError:
                continue
            if job.state.terminal:
                return job

    async def _wait_live(self, job_id: int) -> Job:
        if not (self.out.tty and self.out.rich is not None and self.sink is not None):
            return await self._until_end(job_id)
        sink = self.sink
        with Progress(
            TextColumn(f"job {job_id}"), BarColumn(), TextColumn("{task.description}"), console=self.out.rich
        ) as bar:
            task = bar.add_task("waiting…", total=100)

            def update(sample: ProgressSample) -> None:
                bar.update(task, completed=sample.percent, description=_live_text(sample))

            sink.live[job_id] = update
            try:
                return await self._until_end(job_id)
            finally:
                sink.live.pop(job_id, None)

    async def _slash(self, text: str) -> None:
        svc = self.service
        cmd = parse_command(text)
        if isinstance(cmd, HelpCommand):
            self.show(help_message(help_text(cmd.topic), CONSOLE))
        elif isinstance(cmd, MigrateCommand) and cmd.plan_only:
            self.show(plan_message(await svc.plan(cmd.request), CONSOLE))
        elif isinstance(cmd, MigrateCommand):
            await self._submit(cmd.request)
        elif isinstance(cmd, StatusCommand):
            await self._status(cmd)
        elif isinstance(cmd, HistoryCommand):
            jobs = await svc.history(cmd.subject, cmd.limit)
            self.show(jobs_message("History", jobs, CONSOLE, empty="No migrations yet."))
        elif isinstance(cmd, HostsCommand):
            self.show(hosts_message(await svc.hosts(), CONSOLE))
        elif isinstance(cmd, FreezesCommand):
            self.show(freezes_message(await svc.freezes(), CONSOLE))
        elif isinstance(cmd, CancelCommand):
            job = await svc.cancel(cmd.job_id, self.user)
            self.out.line(f"[job {job.id}] withdrawn by {self.user} ({job.state.value})")
        elif isinstance(cmd, DrainCommand) and cmd.plan_only:
            self.out.line(f"planning the drain of {cmd.host}… (preflight on every host)")
            drain = await svc.plan_drain(
                cmd.host, cmd.options, to=cmd.to, except_vms=cmd.except_vms, include_stopped=cmd.include_stopped
            )
            self.show(drain_plan_message(drain, CONSOLE))
        elif isinstance(cmd, PlaceCommand) and cmd.plan_only:
            self.show(placed_plan_message(await svc.plan_any(cmd.vm, cmd.options), CONSOLE))
        elif isinstance(cmd, PlaceCommand):
            await self._place(cmd)
        elif isinstance(cmd, DrainCommand | ReturnCommand | CancelDrainCommand):
            self.out.line(f"{NOT_YET}. Nothing was changed.")

    async def _submit(self, request: MigrationRequest) -> None:
        self.out.line(f"checking {request.vm} → {request.destination}…")
        try:
            job = await self.service.submit(request, self.user)
        except MigrateBotError:
            self.refused_requests += 1  # said by `run`; it still fails the console's exit code
            raise
        if job.id not in self.started:
            self.started.append(job.id)
        self.out.line(f"job {job.id} created: {job.vm} {job.source} → {job.destination}, {job.state.value}")
        self.show(card_message(job, CONSOLE, ttl_s=self.settings.approval_ttl_s))

    async def _place(self, cmd: PlaceCommand) -> None:
        placed = await self.service.plan_any(cmd.vm, cmd.options)
        if placed.destination is None:
            self.show(placed_plan_message(placed, CONSOLE))
        else:
            self.out.line(f"{cmd.vm} goes to {placed.why}")
            chosen = MigrateCommand(MigrationRequest(cmd.vm, placed.destination, cmd.options))
            await self._slash(command_to_text(chosen))  # the same request as typed with that host

    async def _status(self, cmd: StatusCommand) -> None:
        svc = self.service
        if cmd.target is None:
            active = await svc.active_jobs()
            self.show(jobs_message("Active migrations", active, CONSOLE, empty="Nothing active."))
            newest = [] if active else await svc.history(None, 1)
            if newest:  # "nothing active" alone leaves a person wondering what happened to their job
                self.out.line(f"latest: {job_line(newest[0], CONSOLE)} (`status {newest[0].id}` for details)")
            return
        job: Job | None
        if isinstance(cmd.target, int):
            job = await svc.get_job(cmd.target)
        elif cmd.target == "last":  # the console's word for the newest job, as in `wait last`
            job = await svc.get_job(await self.job_id("last"))
        else:
            job = await svc.latest_job_for_vm(cmd.target)
        if job is None:
            self.show(text_message(f"No migration of {cmd.target} on record.", CONSOLE))
            return
        sample = self.sink.latest.get(job.id) if self.sink else None
        self.show(status_message(job, CONSOLE, ttl_s=self.settings.approval_ttl_s, sample=sample))
        summary = self.sink.summaries.get(job.id) if self.sink else None
        if summary is not None and job.state.terminal:  # there is no thread here: show the summary itself
            self.show(summary_message(summary, job, CONSOLE))

    async def finish(self) -> int:
        """End of input: wait for jobs that will run, report each, and compute the exit code."""
        ok = True
        for job_id in self.started:
            try:
                job = await self.service.get_job(job_id)
                if job.state in _WILL_RUN:
                    self.out.line(f"[job {job_id}] waiting for it to finish ({job.state.value})…")
                    job = await self.wait(job_id)
                if job.state is JobState.AWAITING_APPROVAL:
                    self.out.line(f"[job {job_id}] still waiting for approval: it did not run")
                if self.sink is not None and job.state.terminal and job_id in _ran(self.sink):
                    await self.sink.wait_summary(job_id, SUMMARY_GRACE_S)
            except MigrateBotError as err:
                self.out.line(f"[job {job_id}] error: {err}")
                ok = False
                continue
            ok = ok and job.state is JobState.SUCCEEDED
        if self.started:
            states = ", ".join(f"job {j}" for j in self.started)
            self.out.line(f"{'all jobs succeeded' if ok else 'not every job succeeded'} ({states})")
        if self.refused_requests:
            n = self.refused_requests
            self.out.line(f"{n} migration request{'s were' if n > 1 else ' was'} refused")
            ok = False
        return 0 if ok else 1


def _ran(sink: ConsoleSink) -> set[int]:
    """Jobs that produced progress (and so will produce a summary)."""
    return set(sink.latest) | set(sink.summaries)


def _live_text(sample: ProgressSample) -> str:
    text = f"{sample.percent:.0f}% {sample.phase.value} · {sample.throughput_mib_s:.0f} MiB/s"
    if sample.eta_s is not None:
        text += f" · ETA {sample.eta_s:.0f} s"
    return text + (" · STALLED" if sample.stalled else "")


async def run_console(
    service: MigrationServiceAPI,
    settings: Settings,
    *,
    user: str,
    stdin: TextIO,
    stdout: TextIO,
    sink: ConsoleSink | None = None,
) -> int:
    """Read commands until end of input or `quit`; return the exit code (0 = every migration request was
    accepted and every job it created succeeded)."""
    tty = _isatty(stdin) and _isatty(stdout)
    out = ConsoleOut(stdout, tty=tty)
    if sink is not None:
        sink.attach(out, service)
    session = _Session(service, settings, out, user, sink)
    if tty:
        out.line(f"migrate-bot console — acting as *{user}*. Type `help` for commands, `quit` to leave.")
    while True:
        if tty:
            stdout.write(f"{session.user}> ")
            stdout.flush()
        line = await asyncio.to_thread(stdin.readline)
        if line == "":
            break
        cmd = parse_console_line(line)
        if not tty and not isinstance(cmd, Blank):
            out.raw(f"{session.user}> {line.strip()}")  # a transcript reads like the terminal would
        if isinstance(cmd, Quit):
            break
        await session.run(cmd)
    return await session.finish()
