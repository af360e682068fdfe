"""Drains in the console: after a drain or return request `last` means the drain; `wait last` shows the roll-up,
then every move's outcome and the final line; the exit code is 0 only if every move of the drain succeeded.

Scripted runs against the real MigrationService on the in-memory fleet with hostC and web1..web3
(tests/bot/fleet_service.py), on virtual time.
"""

from __future__ import annotations

import io

import pytest

from bot.console import console_approver_check, run_console
from bot.console_commands import ConsoleError, Control, DrainRef, parse_console_line
from bot.console_sink import ConsoleSink
from bot.settings import Settings
from migration_core.drains import DrainState
from migration_core.models import MigrationOptions
from migration_core.planning.drain import DrainRequest
from tests.bot.fleet_service import DRAIN_VMS, open_fleet_service

pytestmark = pytest.mark.virtual_time


async def run_drain_script(
    script: str, *, fail: tuple[str, ...] = (), requested_elsewhere: bool = False
) -> tuple[int, str, dict[str, str]]:
    """(exit code, output, where each web VM is at the end). `requested_elsewhere`: D1 (drain of hostC) is
    requested by dave before the console starts (another console, Slack)."""
    settings = Settings()
    sink = ConsoleSink()
    fs = await open_fleet_service(sink, console_approver_check(settings), drain_host=True)
    for vm in fail:
        fs.fleet.fail_migration(vm)
    if requested_elsewhere:
        await fs.service.request_drain(DrainRequest("hostC", MigrationOptions()), "dave")
    try:
        out = io.StringIO()
        code = await run_console(fs.service, settings, user="alice", stdin=io.StringIO(script), stdout=out, sink=sink)
        where = {vm: fs.fleet.where(vm) for vm in DRAIN_VMS}
        drains = await fs.service.recent_drains()
        assert all(d.state.finished or d.state is DrainState.AWAITING_APPROVAL for d in drains)
    finally:
        await fs.close()
    return code, out.getvalue(), where


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("approve D7", Control("approve", DrainRef(7))),
        ("wait d12", Control("wait", DrainRef(12))),
        ("deny D3", Control("deny", DrainRef(3))),
        ("cancel last", Control("cancel", "last")),
        ("approve D0", ConsoleError("`D0` is not a drain: drain ids start at 1, like D7 (see /migrate status)")),
        ("abort D7", ConsoleError("abort works on one job; a drain is stopped with `cancel D7`")),
    ],
)
def test_console_words_take_a_drain(line: str, expected: object) -> None:
    assert parse_console_line(line) == expected


async def test_approve_wait_and_status_last_on_a_drain_exit_0_when_every_move_succeeds() -> None:
    code, out, where = await run_drain_script(
        "drain hostC --reason CHG-7\nstatus\napprove last\nas bob\napprove last\nas carol\napprove last\n"
        "wait last\nstatus last\n"
    )
    assert code == 0, out
    assert "D1 created: drain of hostC, 3 move(s), awaiting_approval; last now means D1" in out
    assert "── Drain of hostC (D1) ──" in out and "Approve: approve D1   Deny: deny D1" in out  # the card
    assert "refused: you requested this" in out  # alice cannot approve her own drain
    listed = out.split("alice> status\n")[1].split("alice> approve last")[0]
    assert "Drains" in listed and "D1 awaiting approval: 0 of 3 done" in listed
    assert "[D1] ⏳ Awaiting approval: approved by bob; needs 1 more approval" in out
    assert "[D1] 🚚 Running: approved by bob, carol" in out
    wait = out.split("carol> wait last")[1].split("carol> status last")[0]
    rollups = [line for line in wait.splitlines() if line.startswith("[D1] D1 running")]
    assert len(rollups) >= 3 and "0 of 3 done (" in rollups[0] and " running)" in rollups[0]  # as it changes
    assert "[job" not in wait  # the moves' own lines are folded into the drain's
    assert "[D1] D1 done: 3 of 3 done" in wait
    for vm in DRAIN_VMS:
        assert f"[D1] ✅ {vm} → host" in wait  # each move's outcome
    assert "[D1] ended: done (3 of 3 moved)" in wait
    status = out.split("carol> status last")[1]
    assert "Drain of hostC (D1)" in status and "Done" in status and "job 1" not in status
    assert "every move succeeded (D1)" in out
    assert all(host in ("hostA", "hostB") for host in where.values())


async def test_a_parked_move_makes_the_exit_code_1() -> None:
    code, out, where = await run_drain_script(
        "drain hostC\nas bob\napprove last\nas carol\napprove last\nwait last\n", fail=("web2",)
    )
    assert code == 1, out
    assert "[D1] ended: partially_done (2 of 3 moved)" in out
    assert "[D1] 🅿️ web2 parked" in out and "not every move succeeded (D1)" in out
    assert where["web2"] == "hostC"


async def test_cancel_last_and_a_drain_left_waiting_fail_the_exit_code() -> None:
    code, out, where = await run_drain_script("drain hostC\ncancel last\n")
    assert code == 1, out
    assert "[D1] D1 cancelled: nothing had started, nothing moved." in out
    assert set(where.values()) == {"hostC"}
    code, out, _ = await run_drain_script("drain hostC\n")
    assert code == 1 and "[D1] still waiting for approval: nothing moved" in out


async def test_bad_drain_input_in_the_console_changes_nothing() -> None:
    code, out, where = await run_drain_script("cancel D999\nstatus D0\ndrain\nreturn hostC\nwait D5\n")
    assert "error: there is no drain D999" in out and "error: D0 is not a drain" in out
    assert "error: drain needs the host to empty" in out and "error: there is no drain D5" in out
    assert "hostC has no completed drain to return from" in out
    assert "Traceback" not in out and "went wrong" not in out
    assert set(where.values()) == {"hostC"}
    assert code == 1  # the refused return counts as a refused request


async def test_return_after_a_drain_brings_every_vm_home() -> None:
    code, out, where = await run_drain_script(
        "drain hostC\nas bob\napprove last\nas carol\napprove last\nwait last\n"
        "as alice\nreturn hostC\nas bob\napprove last\nas carol\napprove last\nwait last\n"
    )
    assert code == 0, out
    assert "D2 created: return of hostC" in out and "[D2] ended: done (3 of 3 moved)" in out
    assert set(where.values()) == {"hostC"}


async def test_waiting_for_a_drain_requested_elsewhere_counts_for_the_exit_code() -> None:
    code, out, where = await run_drain_script(
        "as bob\napprove D1\nas carol\napprove D1\nwait D1\n", fail=("web1",), requested_elsewhere=True
    )
    assert code == 1, out
    assert "[D1] ended: partially_done (2 of 3 moved)" in out and "not every move succeeded (D1)" in out
    assert where["web1"] == "hostC"
    code, out, _ = await run_drain_script(
        "as bob\napprove D1\nas carol\napprove D1\nwait D1\n", requested_elsewhere=True
    )
    assert code == 0 and "every move succeeded (D1)" in out, out
