"""Benchmark: where the time goes from a request to its summary, on the console and through Slack (issue 13 §2).

    flock /tmp/migrate-bot-lab.lock .venv/bin/python bench/bench_latency.py               # both front ends
    flock /tmp/migrate-bot-lab.lock .venv/bin/python bench/bench_latency.py --front console --rounds 4

Each round moves `--vm` (default vm42, a 64 MiB idle guest) between hostA and hostB of the real lab, there and
back in turn, as a person would: alice requests it, bob approves it (carol too when the plan asks for two), and
the benchmark times three stretches:

  request -> card       the request is sent until its approval card shows (preflight + dirty-rate window)
  approval -> running   the approving click/command until the job shows as running (the re-check before start)
  libvirt done -> summary   libvirt's own end of the migration until the summary shows

"libvirt done" is taken from libvirt itself: this process listens for the JOB_COMPLETED event of the VM on both
lab hosts (its own connections, besides the bot's). Targets: approval -> running <= 1 s; libvirt done -> summary
<= 1.5 s on the console and <= 3 s on Slack.

Console: a real `migrate-bot console` process reading commands on stdin; each output line is timestamped when it
arrives. Slack: a real `migrate-bot serve` in HTTP mode against the fake Slack (tests/fakeslack), signed requests;
what people see is polled from the fake every 25 ms. Both use the bot's default dirty-rate window (3 s) and a
private SQLite database; everything runs on this 2-core machine, so take the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import libvirt  # noqa: E402

from tests.e2e.botproc import start_bot, wait_lab_usable  # noqa: E402
from tests.e2e.support import SlackUser, cards, everything_text, job_id_of, summaries  # noqa: E402
from tests.fakeslack import FakeSlack  # noqa: E402
from tests.fixtures.slack import C_OPS, DEFAULT_WORKSPACE, SIGNING_SECRET, U_ALICE, U_BOB, U_CAROL  # noqa: E402
from tests.labkit import LabInfo, reset_vm, vm_location  # noqa: E402

LAB_JSON = Path("/var/tmp/migrate-bot-lab/lab.json")
BOT_BIN = ROOT / ".venv" / "bin" / "migrate-bot"
POLL_S = 0.025
STEP_TIMEOUT_S = 120.0
TARGETS = {"approval -> running": (1.0, 1.0), "libvirt done -> summary": (1.5, 3.0)}  # (console, slack)
_TWO = re.compile(r"(\d) more approval\(s\) needed")


@dataclass
class Round:
    front: str
    route: str
    request_to_card_s: float
    approval_to_running_s: float
    done_to_summary_s: float
    approvers: int
    running_to_done_s: float  # the migration itself, as libvirt runs it (context, not a target)
    resumed_to_done_s: float | None  # the guest resumed on the destination -> libvirt's JOB_COMPLETED


# ---- libvirt's own end of the migration ------------------------------------------------------------------


class LibvirtDone:
    """Wall-clock times of JOB_COMPLETED events for one VM, on every lab host (a thread runs libvirt's loop)."""

    def __init__(self, lab: LabInfo, vm: str) -> None:
        self.vm = vm
        self.times: list[float] = []
        self.resumed: list[float] = []  # the guest resumed on the destination (lifecycle event, detail MIGRATED)
        self._lock = threading.Lock()
        libvirt.virEventRegisterDefaultImpl()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="libvirt-events", daemon=True)
        self._thread.start()
        self._conns = []
        for name in ("hostA", "hostB"):
            conn = libvirt.open(lab.host(name).uri)
            conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, self._on_completed, None)
            conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None)
            self._conns.append(conn)

    def _loop(self) -> None:
        while not self._stop:
            libvirt.virEventRunDefaultImpl()

    def _on_completed(self, _conn: Any, dom: Any, _params: Any, _opaque: Any) -> None:
        if dom.name() == self.vm:
            with self._lock:
                self.times.append(time.time())

    def _on_lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        if (dom.name() == self.vm and event == libvirt.VIR_DOMAIN_EVENT_RESUMED
                and detail == libvirt.VIR_DOMAIN_EVENT_RESUMED_MIGRATED):
            with self._lock:
                self.resumed.append(time.time())

    def first_after(self, t: float, *, resumed: bool = False) -> float | None:
        with self._lock:
            later = [x for x in (self.resumed if resumed else self.times) if x >= t]
        return min(later) if later else None

    def close(self) -> None:
        self._stop = True
        for conn in self._conns:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()


async def wait_for(what: str, probe: Callable[[], Awaitable[Any]], timeout_s: float = STEP_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        got = await probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_S)


# ---- console ---------------------------------------------------------------------------------------------


class ConsoleProc:
    """`migrate-bot console` as a child process; every output line is kept with the time it arrived."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[tuple[float, str]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, env: dict[str, str]) -> ConsoleProc:
        proc = await asyncio.create_subprocess_exec(
            str(BOT_BIN), "console", "--as", "alice", cwd=ROOT, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append((time.time(), line.decode(errors="replace").rstrip("\n")))

    async def send(self, *lines: str) -> float:
        assert self.proc.stdin is not None
        sent = time.time()
        self.proc.stdin.write("".join(f"{line}\n" for line in lines).encode())
        await self.proc.stdin.drain()
        return sent

    async def expect(self, pattern: str, after: float) -> tuple[float, re.Match[str]]:
        """The first line at or after `after` (wall clock) matching `pattern`, and when it arrived."""
        rx = re.compile(pattern)

        async def probe() -> tuple[float, re.Match[str]] | None:
            for t, line in list(self.lines):
                m = rx.search(line) if t >= after else None
                if m:
                    return t, m
            if self.proc.returncode is not None:
                raise SystemExit("the console exited:\n" + "\n".join(x for _, x in self.lines[-40:]))
            return None

        found: tuple[float, re.Match[str]] = await wait_for(f"console output /{pattern}/", probe)
        return found

    def text_since(self, t: float) -> str:
        return "\n".join(line for at, line in self.lines if at >= t)

    async def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 60)
        except TimeoutError:
            self.proc.terminate()
            await self.proc.wait()
        await self._reader


async def console_round(con: ConsoleProc, done: LibvirtDone, vm: str, src: str, dst: str) -> Round:
    t_req = await con.send("as alice", f"/migrate {vm} to {dst}")
    t_card, m = await con.expect(r"Approve: approve (\d+)", t_req)
    job = m.group(1)
    card_text = con.text_since(t_req)
    two = (m2 := _TWO.search(card_text)) is not None and m2.group(1) == "2"
    if two:
        t_first = await con.send("as bob", f"approve {job}")
        await con.expect(rf"\[job {job}\] .*(1 more|waiting)", t_first)
        t_approve = await con.send("as carol", f"approve {job}")
    else:
        t_approve = await con.send("as bob", f"approve {job}")
    t_running, _ = await con.expect(rf"\[job {job}\] .*[Rr]unning", t_approve)
    t_summary, _ = await con.expect(r"Migration (succeeded|failed|aborted)", t_running)
    if "Migration succeeded" not in con.text_since(t_summary):
        raise SystemExit(f"the migration did not succeed:\n{con.text_since(t_req)}")
    t_done = done.first_after(t_approve)
    if t_done is None:
        raise SystemExit("libvirt reported no JOB_COMPLETED for the migration")
    return Round("console", f"{src}->{dst}", t_card - t_req, t_running - t_approve, t_summary - t_done,
                 2 if two else 1, t_done - t_running, _resumed_to_done(done, t_approve, t_done))


def base_env(lab: LabInfo, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE_BOT_", "SLACK_"))}
    return {**env, "MIGRATE_BOT_HOSTS": str(lab.hosts_toml), "MIGRATE_BOT_DB": db_url,
            "MIGRATE_BOT_RATE_LIMIT": "1000", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}


async def bench_console(lab: LabInfo, vm: str, rounds: int, done: LibvirtDone) -> list[Round]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-latency-console-"))
    con = await ConsoleProc.start(base_env(lab, f"sqlite:///{workdir / 'bot.db'}"))
    out: list[Round] = []
    try:
        for i in range(rounds):
            src, dst = ("hostA", "hostB") if i % 2 == 0 else ("hostB", "hostA")
            out.append(await console_round(con, done, vm, src, dst))
            print_round(out[-1])
    finally:
        await con.close()
    return out


# ---- Slack -----------------------------------------------------------------------------------------------


async def slack_round(fake: FakeSlack, bot: Any, done: LibvirtDone, vm: str, src: str, dst: str) -> Round:
    await fake.reset()
    await fake.seed(DEFAULT_WORKSPACE)
    alice, bob, carol = (SlackUser(fake, bot, u, SIGNING_SECRET) for u in (U_ALICE, U_BOB, U_CAROL))

    async def card_awaiting() -> dict[str, Any] | None:
        found = await cards(fake, vm)
        return found[0] if found and found[0]["text"].startswith("Approval needed") else None

    t_req = time.time()
    await alice.command(f"{vm} to {dst}")
    card = await wait_for("the approval card", card_awaiting)
    t_card = time.time()
    job = job_id_of(card)
    m = _TWO.search(everything_text(card))
    two = m is not None and m.group(1) == "2"

    async def card_says(word: str) -> dict[str, Any] | None:
        msg = await fake.message(C_OPS, card["ts"])
        return msg if f": {word} (job {job})" in msg["text"] else None

    if two:
        await bob.click(card["ts"], "approve")

        async def one_more() -> bool:
            return "1 more approval(s) needed" in everything_text(await fake.message(C_OPS, card["ts"]))

        await wait_for("the first approval on the card", one_more)
        t_approve = time.time()
        await carol.click(card["ts"], "approve")
    else:
        t_approve = time.time()
        await bob.click(card["ts"], "approve")
    await wait_for("the card to say running", lambda: card_says("running"))
    t_running = time.time()
    found = await wait_for("the summary", lambda: summaries(fake, card))
    t_summary = time.time()
    if "succeeded" not in found[0]["text"]:
        raise SystemExit(f"the migration did not succeed: {found[0]['text']}")
    t_done = done.first_after(t_approve)
    if t_done is None:
        raise SystemExit("libvirt reported no JOB_COMPLETED for the migration")
    return Round("slack", f"{src}->{dst}", t_card - t_req, t_running - t_approve, t_summary - t_done,
                 2 if two else 1, t_done - t_running, _resumed_to_done(done, t_approve, t_done))


def _resumed_to_done(done: LibvirtDone, t_approve: float, t_done: float) -> float | None:
    resumed = done.first_after(t_approve, resumed=True)
    return None if resumed is None else t_done - resumed


async def bench_slack(lab: LabInfo, vm: str, rounds: int, done: LibvirtDone) -> list[Round]:
    fake = FakeSlack.start()
    fake.seed_sync(DEFAULT_WORKSPACE)
    workdir = Path(tempfile.mkdtemp(prefix="bench-latency-slack-"))
    bot = start_bot(fake, lab, workdir, "http", MIGRATE_BOT_DIRTY_RATE_WINDOW="3s", MIGRATE_BOT_LOG_LEVEL="WARNING")
    out: list[Round] = []
    try:
        for i in range(rounds):
            src, dst = ("hostA", "hostB") if i % 2 == 0 else ("hostB", "hostA")
            out.append(await slack_round(fake, bot, done, vm, src, dst))
            print_round(out[-1])
    finally:
        bot.stop()
        fake.close()
    return out


# ---- report ----------------------------------------------------------------------------------------------


def print_round(r: Round) -> None:
    print(f"  {r.front:<8} {r.route:<14} approvers {r.approvers}   request->card {r.request_to_card_s:5.2f} s   "
          f"approval->running {r.approval_to_running_s:5.2f} s   libvirt done->summary {r.done_to_summary_s:5.2f} s"
          f"   (running->libvirt done {r.running_to_done_s:.2f} s{_resumed(r)})", flush=True)


def _resumed(r: Round) -> str:
    if r.resumed_to_done_s is None:
        return ""
    return f", guest resumed on the destination {r.resumed_to_done_s:.2f} s before JOB_COMPLETED"


def report(rounds: list[Round]) -> None:
    print("\nmedian (max) over the rounds:")
    print(f"{'front':<8} {'rounds':>6}   {'request -> card':>18}   {'approval -> running':>20}   "
          f"{'libvirt done -> summary':>24}")
    for front in ("console", "slack"):
        rs = [r for r in rounds if r.front == front]
        if not rs:
            continue

        def cell(values: list[float]) -> str:
            return f"{statistics.median(values):.2f} s ({max(values):.2f})"

        print(f"{front:<8} {len(rs):>6}   {cell([r.request_to_card_s for r in rs]):>18}   "
              f"{cell([r.approval_to_running_s for r in rs]):>20}   {cell([r.done_to_summary_s for r in rs]):>24}")
    print("targets: approval -> running <= 1 s; libvirt done -> summary <= 1.5 s (console), <= 3 s (Slack)")


async def amain(args: argparse.Namespace) -> None:
    lab = LabInfo.load(LAB_JSON)
    wait_lab_usable(lab)
    if vm_location(lab, args.vm) != {"hostA": "running"}:
        reset_vm(lab, args.vm)
    done = LibvirtDone(lab, args.vm)
    rounds: list[Round] = []
    try:
        print(f"{args.vm}: {args.rounds} round(s) per front end, there and back in turn")
        if args.front in ("console", "both"):
            rounds += await bench_console(lab, args.vm, args.rounds, done)
        if args.front in ("slack", "both"):
            if vm_location(lab, args.vm) != {"hostA": "running"}:
                reset_vm(lab, args.vm)
            rounds += await bench_slack(lab, args.vm, args.rounds, done)
    finally:
        done.close()
        if vm_location(lab, args.vm) != {"hostA": "running"}:
            reset_vm(lab, args.vm)  # leave the lab as it was found
    report(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--front", choices=("console", "slack", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=4, help="migrations per front end (there and back in turn)")
    parser.add_argument("--vm", default="vm42")
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
