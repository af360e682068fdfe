"""The console at unit level: its command words, scripted runs against the real service, rendering.

Scripted runs talk to the real MigrationService on the in-memory fleet (tests/bot/fleet_service.py), on virtual
time; the end-to-end proof drives the real service against the lab.
"""

from __future__ import annotations

import asyncio
import io

import pytest

from bot.console import console_approver_check, run_console
from bot.console_commands import (
    ActAs,
    Blank,
    ConsoleError,
    ConsoleHelp,
    Control,
    Quit,
    SetValue,
    Slash,
    parse_console_line,
)
from bot.console_render import render_plain
from bot.console_sink import ConsoleOut, ConsoleSink
from bot.settings import Settings
from handlers.blocks.card import card_message
from handlers.blocks.ir import CONSOLE
from migration_core.events import ProgressUpdated, SummaryReady
from migration_core.models import Job, MigrationRequest, Phase
from tests.bot.factories import job, sample
from tests.bot.fleet_service import open_fleet_service

pytestmark = pytest.mark.virtual_time


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", Blank()),
        ("   # a comment", Blank()),
        ("/migrate vm42 to hostB --postcopy", Slash("vm42 to hostB --postcopy")),
        ("vm42 to hostB", Slash("vm42 to hostB")),
        ("status 7", Slash("status 7")),
        ("as bob", ActAs("bob")),
        ("as", ConsoleError("usage: as <user> (a user name like alice or a Slack id like U012ABC)")),
        ("approve last", Control("approve", "last")),
        ("APPROVE #12", Control("approve", 12)),
        ("deny 3", Control("deny", 3)),
        ("abort last", Control("abort", "last")),
        ("postcopy 4", Control("postcopy", 4)),
        ("wait last", Control("wait", "last")),
        ("downtime 7 500", SetValue("downtime", 7, "500")),
        ("bandwidth last 1G", SetValue("bandwidth", "last", "1G")),
        ("help", ConsoleHelp(None)),
        ("help options", ConsoleHelp("options")),
        ("quit", Quit()),
        ("exit", Quit()),
        (
            "/deploy now",
            ConsoleError("unknown command `/deploy`: the console understands `/migrate …` (see `help`)"),
        ),
    ],
)
def test_parse_console_line(line, expected):
    assert parse_console_line(line) == expected


@pytest.mark.parametrize("line", ["approve", "approve 0", "approve x", "wait 1 2", "downtime 7", "bandwidth x 5"])
def test_console_usage_errors(line):
    got = parse_console_line(line)
    assert isinstance(got, ConsoleError) and got.message.startswith("usage:")


async def run_script(
    script: str, *, user: str = "alice", settings: Settings | None = None
) -> tuple[int, str, dict[int, Job]]:
    """Run a console script against the real service on the fleet; (exit code, output, the jobs by id)."""
    settings = settings or Settings()
    sink = ConsoleSink()
    fs = await open_fleet_service(sink, console_approver_check(settings), ttl_s=settings.approval_ttl_s)
    try:
        out = io.StringIO()
        code = await run_console(fs.service, settings, user=user, stdin=io.StringIO(script), stdout=out, sink=sink)
        jobs = {j.id: j for j in await fs.service.history(limit=100)}
    finally:
        await fs.close()
    return code, out.getvalue(), jobs


async def test_request_self_approval_refused_second_user_approves_and_job_succeeds():
    code, out, jobs = await run_script(
        '/migrate vm42 to hostB --reason "CHG-1"\napprove last\nas bob\napprove last\nwait last\n'
    )
    assert code == 0, out
    assert "job 1 created: vm42 hostA → hostB, awaiting_approval" in out
    assert "Change request: live migration of vm42" in out  # the card, as text
    assert "Approve: approve 1" in out  # buttons become the words to type
    assert "refused: you requested this; another approver must approve it" in out
    assert "acting as bob" in out
    assert "[job 1] 👍 Approved by bob" in out
    assert "Migration succeeded: vm42 hostA → hostB" in out  # the summary
    assert "[job 1] ended: succeeded" in out
    assert "Traceback" not in out
    assert jobs[1].approvers == ("bob",)


async def test_end_of_input_waits_for_running_jobs():
    code, out, _ = await run_script("vm42 to hostB\nas bob\napprove 1\n")
    assert code == 0, out
    assert "Migration succeeded" in out and "all jobs succeeded (job 1)" in out


async def test_denied_job_exits_1():
    code, out, _ = await run_script("vm42 to hostB\nas bob\ndeny last\n")
    assert code == 1
    assert "⛔ *Denied*" not in out and "Denied by bob" in out
    assert "not every job succeeded" in out


async def test_job_still_awaiting_approval_exits_1_without_hanging():
    code, out, _ = await run_script("vm42 to hostB\n")
    assert code == 1
    assert "[job 1] still waiting for approval: it did not run" in out


async def test_abort_from_the_console():
    settings = Settings()
    sink = ConsoleSink()
    out = io.StringIO()
    async with await open_fleet_service(sink, console_approver_check(settings)) as service:
        job = await service.submit(MigrationRequest("slowvm", "hostB"), "alice")
        await service.approve(job.id, "bob")
        await asyncio.sleep(5)  # the dispatcher has started it: the migration runs (slowly)
        script = io.StringIO("abort last\nwait last\n")
        code = await run_console(service, settings, user="bob", stdin=script, stdout=out, sink=sink)
        final = await service.get_job(job.id)
    text = out.getvalue()
    assert code == 0, text  # bob's session started no job of its own
    assert "[job 1] abort requested by bob" in text
    assert "[job 1] ended: aborted" in text
    assert final.state.value == "aborted"


async def test_abort_right_after_approval_withdraws_the_job_or_aborts_it():
    """Typed right after the approval, the abort finds the job approved (withdrawn) or just started
    (aborted): it ends aborted either way, and nothing migrates."""
    code, out, jobs = await run_script("slowvm to hostB\nas bob\napprove last\nabort last\nwait last\n")
    assert code == 1
    assert "[job 1] ended: aborted" in out
    assert jobs[1].state.value == "aborted"


async def test_not_executable_plan_has_nothing_to_approve():
    code, out, _ = await run_script("brokenvm to hostB\nas bob\napprove last\n")
    assert code == 1
    assert "Not executable" in out and "Approve:" not in out
    assert "refused: job 1 failed before approval" in out


async def test_bad_input_is_answered_never_a_traceback():
    code, out, _ = await run_script(
        "/migrate vm42 too hostB\napprove 99\ndowntime last 5\nfrobnicate the thing\n/deploy\nbandwidth 1 fast\n"
    )
    assert code == 0  # no job was started
    assert out.count("error:") >= 5, out
    assert "there is no job #99" in out and "there is no job yet" in out  # the real store's wording
    assert "Traceback" not in out


async def test_controls_and_values():
    settings = Settings()
    sink = ConsoleSink()
    out = io.StringIO()

    async def type_in(user: str, script: str) -> int:
        return await run_console(service, settings, user=user, stdin=io.StringIO(script), stdout=out, sink=sink)

    async with await open_fleet_service(sink, console_approver_check(settings)) as service:
        await type_in("alice", "slowvm to hostB --postcopy\nas bob\napprove last\napprove last\n")
        # carol approves from Slack meanwhile (a console waits at its end for the jobs it started)
        await service.approve(1, "carol")
        await asyncio.sleep(5)  # the dispatcher starts the approved job within a tick
        assert (await service.get_job(1)).state.value == "running"
        code = await type_in(
            "carol",
            "downtime last 1.5s\nbandwidth last 2G\nbandwidth last fast\npostcopy last\nas alice\nabort last\n",
        )
    text = out.getvalue()
    assert "refused: you already approved job 1" in text  # post-copy needs two approvers
    assert "[job 1] max downtime set to 1500 ms by carol" in text, text
    assert "[job 1] bandwidth set to 2048 MiB/s by carol" in text
    assert "error: bad rate fast for bandwidth" in text
    assert "carol: switched to post-copy" in text  # the executor's notice, with the actor
    # in post-copy the VM already runs on hostB: an abort would lose it, so the real executor refuses it
    assert "refused: job 1 is in post-copy" in text.split("alice> abort last")[1]
    assert code == 0  # the migration finished in post-copy


async def test_configured_approvers_are_the_only_approvers():
    settings = Settings(approvers=("U0BOB",))
    code, out, _ = await run_script(
        "vm42 to hostB\nas carol\napprove last\nas U0BOB\napprove last\n", settings=settings
    )
    assert "refused: you are not an approver" in out
    assert code == 0


async def test_transcript_echoes_each_command_with_the_acting_user():
    _, out, _ = await run_script("help\nas bob\nstatus\n")
    lines = out.splitlines()
    assert "alice> help" in lines and "bob> status" in lines
    assert "approve <job-id|last>" in out and "/migrate <vm> to <host> [options]" in out


def test_console_card_text_comes_from_the_same_renderer_as_slack():
    text = render_plain(card_message(job(requester="alice"), CONSOLE, ttl_s=1800))
    assert "Waiting for approval" in text and "Requester: alice" in text
    assert "Approve: approve 7" in text and "<@" not in text and "<!date" not in text


async def test_console_sink_throttles_progress_lines():
    now = [0.0]
    sink = ConsoleSink(min_interval_s=2.0, clock=lambda: now[0])
    out = io.StringIO()
    sink.attach(ConsoleOut(out, tty=False), service=None)  # type: ignore[arg-type]
    for i in range(30):  # 3 s of samples every 0.1 s
        await sink.emit(ProgressUpdated(sample(job_id=1, percent=i)))
        now[0] += 0.1
    await sink.emit(ProgressUpdated(sample(job_id=1, percent=50, phase=Phase.POSTCOPY)))  # phase change: at once
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert "post-copy" in lines[-1]


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_interactive_mode_prompts_and_shows_a_live_bar_while_waiting():
    settings = Settings()
    sink = ConsoleSink()
    out = FakeTTY()
    async with await open_fleet_service(sink, console_approver_check(settings)) as service:
        code = await run_console(
            service,
            settings,
            user="alice",
            stdin=FakeTTY("vm42 to hostB\nas bob\napprove last\nwait last\nquit\n"),
            stdout=out,
            sink=sink,
        )
    text = out.getvalue()
    assert code == 0
    assert "alice> " in text and "bob> " in text  # prompts, not an echoed transcript
    assert "Change request: live migration of vm42" in text
    assert "[job 1] ended: succeeded" in text
    assert sink.live == {}  # the live bar was removed after the wait


@pytest.mark.parametrize(
    ("md", "plain"),
    [
        ("*bold* and _it_ and `code`", "bold and it and code"),
        ("running_on_destination", "running_on_destination"),
        ("2*3*4", "2*3*4"),
        ("↳ _fix:_ do it", "↳ fix: do it"),
    ],
)
def test_inline_markup_only_at_word_boundaries(md, plain):
    from bot.console_render import inline

    assert inline(md).plain == plain


class EchoingSink:
    """Forwards to the console's sink and repeats every summary, as the core does (executor and dispatcher)."""

    def __init__(self, inner: ConsoleSink) -> None:
        self.inner = inner

    async def emit(self, event: object) -> None:
        await self.inner.emit(event)  # type: ignore[arg-type]
        if isinstance(event, SummaryReady):
            await self.inner.emit(event)


async def test_wait_shows_the_summary_once_and_before_the_end_line():
    settings = Settings()
    sink = ConsoleSink()
    out = io.StringIO()
    script = io.StringIO("vm42 to hostB\nas bob\napprove last\nwait last\n")
    async with await open_fleet_service(EchoingSink(sink), console_approver_check(settings)) as service:  # type: ignore[arg-type]
        code = await run_console(service, settings, user="alice", stdin=script, stdout=out, sink=sink)
    text = out.getvalue()
    assert code == 0, text
    assert text.count("Migration succeeded: vm42") == 1, text
    assert text.index("Migration succeeded: vm42") < text.index("[job 1] ended: succeeded")


async def test_wait_on_a_job_awaiting_approval_says_so_instead_of_blocking():
    code, out, _ = await asyncio.wait_for(run_script("vm42 to hostB\nwait last\n"), 10)
    assert "[job 1] is waiting for approval: nothing runs until someone else approves it" in out
    assert "ended:" not in out and code == 1


async def test_a_second_console_finds_the_newest_job_with_last_and_status_shows_it():
    settings = Settings()
    sink = ConsoleSink()
    async with await open_fleet_service(sink, console_approver_check(settings)) as service:
        await run_console(
            service, settings, user="alice", stdin=io.StringIO("vm42 to hostB\n"), stdout=io.StringIO(), sink=sink
        )
        out = io.StringIO()  # bob, in his own terminal, approves alice's request
        script = io.StringIO("approve last\nwait last\nstatus last\nstatus\n")
        code = await run_console(service, settings, user="bob", stdin=script, stdout=out, sink=sink)
        first = await service.get_job(1)
    text = out.getvalue()
    assert code == 0, text
    assert first.approvers == ("bob",) and "[job 1] ended: succeeded" in text
    status_last = text.split("bob> status last")[1].split("bob> status\n")[0]
    assert "Live migration of vm42: succeeded" in status_last  # the job's card...
    assert "Migration succeeded: vm42" in status_last  # ...and its summary (there is no thread here)
    assert "Nothing active." in text and "latest: ✅ #1 vm42 hostA → hostB — succeeded" in text


async def test_drain_dry_run_and_to_any_in_the_console_change_nothing():
    code, out, _ = await run_script("plan drain hostA\nplan vm42 to any\n")
    assert code == 0  # no job was started
    assert "Dry run: drain hostA" in out and "Left behind" in out and "nothing was changed" in out
    assert "Placement" in out and "hostB: the only host that can take it" in out
    assert "job 1" not in out and "D1" not in out


async def test_vm_to_any_in_the_console_requests_the_move_to_the_chosen_host():
    _code, out, _ = await run_script("vm42 to any\n")
    assert "vm42 goes to hostB" in out and "job 1 created: vm42 hostA → hostB" in out


async def test_a_risky_job_approved_by_two_credits_both_approvers():
    """Issue 13 §5: with two approvals the line names both approvers, not only the second."""
    code, out, jobs = await run_script("vm42 to hostB --postcopy\nas bob\napprove last\nas carol\napprove last\n")
    assert code == 0, out
    assert "[job 1] 👍 Approved by bob and carol" in out
    assert jobs[1].approvers == ("bob", "carol")
