"""`migrate-bot console`: the Slack flow in a terminal — same grammar, policy, cards and progress, no Slack.

Interactive on a terminal (prompt, styled cards, a live progress bar while `wait`ing); scriptable when stdin
is not a terminal: one command per line (see bot.console_commands.CONSOLE_HELP), the output is what a person
would see, and at end of input the console waits for the jobs it started that are past approval and exits 0
only if every migration request it was given was accepted and every job it created ended `succeeded` (a
refused request, e.g. the VM already has an open job, and a job still waiting for approval are failures).

Drains (`drain hostA`, `return hostA`): right after one is requested, `last` means that drain (`approve last`,
`deny last`, `status last`, `cancel last`, `wait last`), and `D7` names any drain. `wait` prints the drain's
roll-up whenever it changes, then every move's outcome and the final line; the moves' own job lines are held
back (the sink folds them into the drain). A drain it requested or waited for counts for the exit code: 0 only
if every one of its moves succeeded.

Approvers: MIGRATE_BOT_APPROVERS when it is set, otherwise every local user except the requester (the
two-person rule still holds: the service refuses self-approval). Build the service with
`console_approver_check(settings)` and a `ConsoleSink`, and pass that sink to `run_console`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TextIO

from rich.progress import BarColumn, Progress, TextColumn

from bot.console_commands import (
    CONSOLE_HELP,
    ActAs,
    Blank,
    ConsoleCommand,
    ConsoleError,
    ConsoleHelp,
    Control,
    DrainRef,
    JobRef,
    Quit,
    SetValue,
    Slash,
    parse_console_line,
)
from bot.console_sink import ConsoleOut, ConsoleSink
from bot.settings import Settings
from handlers.answer import Answer, AnswerContext, Show, answer, creates, working_text
from handlers.blocks.card import status_line
from handlers.blocks.drain_card import move_line, rollup_text
from handlers.blocks.ir import CONSOLE, Message
from handlers.blocks.modals import parse_bandwidth_mib_s, parse_downtime_ms
from handlers.blocks.summary import summary_message
from migration_core.dispatch.drain_policy import still_needed
from migration_core.drains import Drain, DrainState, DrainStatus, MoveOutcome
from migration_core.errors import MigrateBotError, PolicyError, RequestError, StateError
from migration_core.grammar.parser import (
    DrainStatusCommand,
    HelpCommand,
    StatusCommand,
    parse_command,
)
from migration_core.models import Job, JobState, ProgressSample
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
        self.drains: list[int] = []  # drains and returns this console requested
        self.waited: list[int] = []  # other drains it waited for (`wait D5`): they count for the exit code too
        self.last_is_drain = False  # `last` means the drain right after a drain or return request
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
            self.show((await answer(HelpCommand(cmd.topic), self.context())).message)
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
        ref = cmd.job
        if isinstance(ref, DrainRef) or (ref == "last" and self.last_is_drain):
            await self._drain_control(cmd.verb, ref.drain_id if isinstance(ref, DrainRef) else self.drains[-1])
            return
        assert not isinstance(ref, DrainRef)
        job_id = await self.job_id(ref)
        if cmd.verb == "cancel":
            job = await svc.cancel(job_id, self.user)
            self.out.line(f"[job {job.id}] withdrawn by {self.user} ({job.state.value})")
            return
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

    async def _drain_control(self, verb: str, drain_id: int) -> None:
        svc = self.service
        ref = f"D{drain_id}"
        if verb == "approve":
            drain = await svc.approve_drain(drain_id, self.user)
            if self.sink is None:  # else the sink says it (each DrainChanged: an approval, the start)
                self.out.line(f"[{ref}] {_drain_state_line(drain)}")
        elif verb == "deny":
            drain = await svc.deny_drain(drain_id, self.user)
            if self.sink is None:
                self.out.line(f"[{ref}] {_drain_state_line(drain)}")
        elif verb == "cancel":
            report = await svc.cancel_drain(drain_id, self.user)
            self.out.line(f"[{ref}] {report.text}")
        elif verb == "wait":
            status = await self.wait_drain(drain_id)
            if drain_id not in self.drains and drain_id not in self.waited:
                self.waited.append(drain_id)
            if status.drain.state is DrainState.AWAITING_APPROVAL:
                self.out.line(
                    f"[{ref}] is waiting for approval: nothing moves until someone else approves it "
                    f"(`as <user>`, then `approve {ref}`)"
                )
        else:
            self.out.line(f"error: {verb} works on one job; a drain is stopped with `cancel {ref}`")

    async def wait_drain(self, drain_id: int) -> DrainStatus:
        """Block until the drain ends (or waits for approval), printing its roll-up whenever the count, a state
        or a running VM's phase changes; then every move's outcome and the final line."""
        ref = f"D{drain_id}"
        shown: tuple[object, ...] | None = None
        while True:
            status = await self.service.wait_drain(drain_id, timeout_s=WAIT_POLL_S)
            key = (
                status.drain.state,
                tuple((m.vm, m.outcome, m.phase) for m in status.moves),
            )
            if key != shown:
                shown = key
                self.out.line(f"[{ref}] {rollup_text(status)}")
            if status.drain.state.finished or status.drain.state is DrainState.AWAITING_APPROVAL:
                break
        if status.drain.state.finished:
            for m in status.moves:
                self.out.line(f"[{ref}] {move_line(m, CONSOLE)}")
            moved = status.count(MoveOutcome.SUCCEEDED)
            self.out.line(f"[{ref}] ended: {status.drain.state.value} ({moved} of {len(status.moves)} moved)")
        return status

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

    def context(self) -> AnswerContext:
        """How handlers.answer answers this console: its operator sees every host detail (it runs the bot), and
        a job's status shows the last progress sample the sink kept."""
        sample = self.sink.latest.get if self.sink is not None else None
        return AnswerContext(
            self.service, self.user, CONSOLE, self.settings.approval_ttl_s, host_details=True, sample=sample
        )

    async def _slash(self, text: str) -> None:
        """handlers.answer answers; the console prints it, and remembers what it created for `last` and the
        exit code."""
        cmd = parse_command(text)
        if isinstance(cmd, StatusCommand) and cmd.target == "last":  # the console's word, as in `wait last`
            if self.last_is_drain:
                cmd = DrainStatusCommand(self.drains[-1])
            else:
                cmd = StatusCommand(await self.job_id("last"))
        working = working_text(cmd)
        if working is not None:
            self.out.line(working)
        try:
            result = await answer(cmd, self.context())
        except MigrateBotError:
            if creates(cmd):
                self.refused_requests += 1  # said by `run`; it still fails the console's exit code
            raise
        for note in result.notes:
            self.out.line(note)
        if result.show is Show.CARD:
            self._created(result)
        self.show(result.message)
        job = result.job
        summary = self.sink.summaries.get(job.id) if self.sink is not None and job is not None else None
        if summary is not None and job is not None and job.state.terminal:  # no thread here: the summary itself
            self.show(summary_message(summary, job, CONSOLE))

    def _created(self, result: Answer) -> None:
        """A new job or drain: `last` now means it, and the end of input waits for it."""
        if result.job is not None:
            job = result.job
            if job.id not in self.started:
                self.started.append(job.id)
            self.last_is_drain = False
            self.out.line(f"job {job.id} created: {job.vm} {job.source} → {job.destination}, {job.state.value}")
        if result.drain is not None:
            drain = result.drain
            if drain.id not in self.drains:
                self.drains.append(drain.id)
            self.last_is_drain = True
            self.out.line(
                f"{drain.ref} created: {drain.kind.value} of {drain.host}, {len(drain.plan.moves)} move(s), "
                f"{drain.state.value}; `last` now means {drain.ref}"
            )

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
        counted = [*self.drains, *(d for d in self.waited if d not in self.drains)]
        for drain_id in counted:  # every move of every drain it requested or waited for must have succeeded
            try:
                status = await self.service.drain_status(drain_id)
                if status.drain.state in (DrainState.RUNNING, DrainState.CANCELLING):
                    self.out.line(f"[D{drain_id}] waiting for it to finish ({status.drain.state.value})…")
                    status = await self.wait_drain(drain_id)
                if status.drain.state is DrainState.AWAITING_APPROVAL:
                    self.out.line(f"[D{drain_id}] still waiting for approval: nothing moved")
            except MigrateBotError as err:
                self.out.line(f"[D{drain_id}] error: {err}")
                ok = False
                continue
            ok = ok and status.all_succeeded
        if counted:
            said = ", ".join(f"D{d}" for d in counted)
            self.out.line(f"{'every move succeeded' if ok else 'not every move succeeded'} ({said})")
        if self.started:
            states = ", ".join(f"job {j}" for j in self.started)
            self.out.line(f"{'all jobs succeeded' if ok else 'not every job succeeded'} ({states})")
        if self.refused_requests:
            n = self.refused_requests
            self.out.line(f"{n} migration request{'s were' if n > 1 else ' was'} refused")
            ok = False
        return 0 if ok else 1


def _drain_state_line(drain: Drain) -> str:
    if drain.state is DrainState.AWAITING_APPROVAL:
        return f"approved by {', '.join(drain.approvers) or 'nobody yet'}; still needs {still_needed(drain)}"
    return f"{drain.state.value}" + (f": {drain.detail}" if drain.detail else "")


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
