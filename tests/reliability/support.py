"""Helpers for the reliability tests: the bot as a real process (`migrate-bot console`), the bot's service in
this process (same wiring as `serve`), private lab guests, an inventory with other limits, store readers.

Tests migrate their own clones of the lab VMs ("rel-..." made by executor_lab_support.make_guest: own name,
UUID, MAC, console file), so they never disturb vm42/busy/... that other suites use at the same time.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from bot.settings import Settings, load_settings
from bot.wiring import Core, make_service, open_core
from migration_core.events import EventSink, RecordingSink
from migration_core.execution.executor import Executor
from migration_core.hypervisor.libvirt_adapter import Hypervisor
from migration_core.models import Job, JobState, MigrationRequest, Plan
from migration_core.service import MigrationService
from migration_core.store import EventKind, EventRecord, Store
from tests.labkit import LabInfo, console_status, vm_location
from tests.migration_core.executor_lab_support import Guest, drop_guest, make_guest, wait_console_after

REPO = Path(__file__).resolve().parents[2]
BOT_BIN = REPO / ".venv" / "bin" / "migrate-bot"
A, B = "hostA", "hostB"


def bot_env(lab: LabInfo, db_url: str, *, hosts_file: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment of a bot process: the lab inventory (or a copy), its database, no Slack, plus `extra`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MIGRATE_BOT_"))}
    return {
        **base,
        "MIGRATE_BOT_HOSTS": str(hosts_file or lab.hosts_toml),
        "MIGRATE_BOT_DB": db_url,
        "MIGRATE_BOT_DIRTY_RATE_WINDOW": "1s",
        "MIGRATE_BOT_RATE_LIMIT": "1000",
        "MIGRATE_BOT_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class ConsoleBot:
    """`migrate-bot console --as USER` as a real child process: lines go to its stdin (a pipe kept open, so
    it keeps running), everything it prints (and logs) goes to a file the test reads."""

    def __init__(self, name: str, env: Mapping[str, str], log_dir: Path, *, user: str = "alice") -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[str] = self.log_path.open("w")
        self.process = subprocess.Popen(
            [str(BOT_BIN), "console", "--as", user],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=REPO,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send(self, *lines: str) -> None:
        assert self.process.stdin is not None
        for line in lines:
            self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    async def expect(self, pattern: str, timeout_s: float = 60.0) -> re.Match[str]:
        """Wait until the output matches `pattern` (a regex); fail with the output if it never does."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = re.search(pattern, self.output(), re.MULTILINE)
            if found:
                return found
            if self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(f"{self.name} exited ({code}) before {pattern!r}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not print {pattern!r} within {timeout_s:g} s:\n{self.tail()}")
            await asyncio.sleep(0.1)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def kill9(self) -> None:
        """kill -9: no clean-up of any kind runs in the bot."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()

    async def finish(self, timeout_s: float = 120.0) -> int:
        """End of input: the console waits for what it started and exits; returns its exit code."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        code = await asyncio.to_thread(self.process.wait, timeout_s)
        self._log.close()
        return code

    def stop(self) -> None:
        """Clean-up after a failed test: terminate (then kill) this process only."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed:
            self._log.close()


def inventory_with_link(lab: LabInfo, directory: Path, link_mib_s: float) -> Path:
    """A copy of the lab's hosts file declaring every host's link at `link_mib_s` (what `lab link rate` shapes):
    the operator's declared rate is what the planner predicts with."""
    text = re.sub(r"(?m)^link_mib_s = [\d.]+", f"link_mib_s = {link_mib_s:g}", lab.hosts_toml.read_text())
    assert f"link_mib_s = {link_mib_s:g}" in text, text
    path = directory / "hosts-link.toml"
    path.write_text(text)
    return path


def inventory_with_limits(lab: LabInfo, directory: Path, max_inbound: int, max_outbound: int) -> Path:
    """A copy of the lab's hosts file with other per-host limits."""
    text = lab.hosts_toml.read_text()
    text = re.sub(r"(?m)^max_inbound = \d+", f"max_inbound = {max_inbound}", text)
    text = re.sub(r"(?m)^max_outbound = \d+", f"max_outbound = {max_outbound}", text)
    assert f"max_inbound = {max_inbound}" in text and f"max_outbound = {max_outbound}" in text, text
    path = directory / "hosts.toml"
    path.write_text(text)
    return path


async def anyone(_user: str) -> bool:
    """Approver check of these tests: everyone may approve (the service still refuses self-approval)."""
    return True


class StallAfter:
    """The real planning with a shorter stall timeout in the plan's policy (the approval covers it, as the
    hash includes the policy): a cut link is given up after `stall_timeout_s` instead of the default 60 s."""

    def __init__(self, inner: object, stall_timeout_s: float) -> None:
        self.inner = inner
        self.stall_timeout_s = stall_timeout_s

    async def make_plan(self, request: MigrationRequest, *, reuse_dirty_rate_s: float = 0.0) -> Plan:
        plan: Plan = await self.inner.make_plan(request, reuse_dirty_rate_s=reuse_dirty_rate_s)  # type: ignore[attr-defined]
        return replace(plan, policy=replace(plan.policy, stall_timeout_s=self.stall_timeout_s))

    async def host_status(self, name: str) -> tuple[bool, str, int | None]:
        status: tuple[bool, str, int | None] = await self.inner.host_status(name)  # type: ignore[attr-defined]
        return status


@dataclass
class InProcessBot:
    """The bot's core and service in this process, wired like `serve` (bot.wiring), with a recording sink."""

    core: Core
    service: MigrationService
    sink: RecordingSink

    @property
    def store(self) -> Store:
        return self.core.store


@asynccontextmanager
async def in_process_bot(
    env: Mapping[str, str],
    *,
    stall_timeout_s: float | None = None,
    sink: EventSink | None = None,
    **dispatcher: float,
) -> AsyncIterator[InProcessBot]:
    """`dispatcher`: DispatcherConfig fields to change (e.g. postcopy_retry_s=2)."""
    settings: Settings = load_settings(env)
    core = await open_core(settings)
    recording = RecordingSink()
    service = make_service(core, sink or recording, anyone)
    if stall_timeout_s is not None:
        planner = StallAfter(core.planning, stall_timeout_s)
        service.planner = planner
        service.dispatcher.planner = planner
    service.dispatcher.config = replace(service.dispatcher.config, **dispatcher)  # type: ignore[arg-type]
    await service.start()
    try:
        yield InProcessBot(core, service, recording)
    finally:
        await service.close()
        await core.close()


async def wait_state(store: Store, job_id: int, states: set[JobState], timeout_s: float = 120.0) -> Job:
    deadline = time.monotonic() + timeout_s
    while True:
        job = await store.get_job(job_id)
        if job.state in states:
            return job
        if job.state.terminal or time.monotonic() > deadline:
            events = "\n".join(f"  {e.kind.value}: {e.detail}" for e in await store.events(job_id))
            raise AssertionError(f"job {job_id} is {job.state.value}, not in {sorted(states)}; events:\n{events}")
        await asyncio.sleep(0.2)


async def wait_progress(store: Store, job_id: int, min_bytes: int, timeout_s: float = 60.0) -> None:
    """Until the store holds a progress sample of the job with at least `min_bytes` sent."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = await store.progress(job_id, limit=1)
        if samples and samples[-1].data_processed_bytes >= min_bytes:
            return
        job = await store.get_job(job_id)
        assert not job.state.terminal, f"job {job_id} ended ({job.state.value}: {job.error}) before {min_bytes} B"
        assert time.monotonic() < deadline, f"job {job_id} never sent {min_bytes} bytes"
        await asyncio.sleep(0.2)


async def source_job_active(hv: Hypervisor, lab: LabInfo, host: str, vm: str) -> bool:
    """Whether libvirt on `host` has a migration job running for `vm` (the truth, not the bot's record)."""
    return (await hv.job_stats(lab.host(host).uri, vm)).active


def states_of(events: list[EventRecord]) -> list[str]:
    """The job's state path from its event log: ["requested", "preflight", ...]."""
    return [e.new_state.value for e in events if e.kind is EventKind.STATE and e.new_state is not None]


def summary_of(events: list[EventRecord]) -> Mapping[str, object]:
    found = [e.data for e in events if e.kind is EventKind.NOTICE and e.detail == "summary"]
    assert len(found) == 1, f"expected one summary in the record, found {len(found)}"
    return found[0]


def assert_guest_intact(lab: LabInfo, guest: Guest) -> None:
    """The guest's own memory check never reported lost or corrupted memory."""
    status = console_status(lab, guest.name)
    assert status is not None and status.ok, f"{guest.name}'s console reports a problem: {status}"


def where(lab: LabInfo, guest: Guest) -> dict[str, str]:
    return vm_location(lab, guest.name)


@asynccontextmanager
async def lab_guest(
    hv: Hypervisor,
    lab: LabInfo,
    name: str,
    *,
    template: str = "vm42",
    cmdline: str | None = None,
    memory_mib: int | None = None,
    filled_after_s: int | None = None,
    start: bool = True,
) -> AsyncIterator[Guest]:
    """A private clone of a lab VM, defined (and started) on hostA; removed from both hosts afterwards.
    `filled_after_s`: wait until the guest's console reports that second (its working set is written)."""
    guest = await make_guest(hv, lab, template, name, cmdline=cmdline, memory_mib=memory_mib, start=start)
    try:
        if filled_after_s is not None:
            await wait_console_after(lab, guest, filled_after_s, timeout_s=90)
        yield guest
    finally:
        await drop_guest(hv, lab, guest)


def executor_of(bot: InProcessBot) -> Executor:
    return bot.service.executor
