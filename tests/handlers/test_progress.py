"""SlackProgressSink, unit level: thread layout, ≤1 edit per interval (coalesced), errors never escape.

The sink reads its jobs from the real MigrationService on the in-memory fleet (tests/bot/fleet_service.py):
each job is requested and approved through the service, and moved on to the state a test needs with the
store's own compare-and-set transitions (the service is not started, so no dispatcher runs the jobs: the
test plays the executor's events). Slack is the recording client, time the sink's manual clock.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from handlers.progress import SlackProgressSink
from handlers.slack_io import is_transient
from handlers.slack_rate import EDITS_PER_MIN
from migration_core.errors import StoreError
from migration_core.events import (
    DecisionMade,
    Notice,
    NoticeKind,
    ProgressUpdated,
    RecordingSink,
    StateChanged,
    SummaryReady,
)
from migration_core.hypervisor.fleet import Fleet, HostSpec, VirtualClock, VmSpec
from migration_core.models import (
    ControlAction,
    Decision,
    Job,
    JobState,
    MigrationOptions,
    MigrationRequest,
    ProgressSample,
    VerificationSummary,
)
from migration_core.store import Store
from tests.bot.factories import T0, sample, summary
from tests.bot.fleet_service import FleetService, open_fleet_service
from tests.handlers.fakes import FakeTime, RecordingClient, settle, slack_error

pytestmark = pytest.mark.virtual_time

CARD_TS = "1714564800.000100"
REASON = "CHG-1234 kernel update on hostA"
APPROVERS = ("U0BOB", "U0CAROL")  # the service asks two approvals for a post-copy plan, one for the others
# After approval, the states a job passes through on its way to `succeeded` (queued only when asked for).
LATER_STATES = (JobState.APPROVED, JobState.RUNNING, JobState.VERIFYING, JobState.SUCCEEDED)


async def _approver(user: str) -> bool:
    return user in APPROVERS


@pytest.fixture
async def fleet() -> AsyncIterator[FleetService]:
    fs = await open_fleet_service(RecordingSink(), _approver, start=False)
    yield fs
    await fs.close()


async def move_to(store: Store, job: Job, target: JobState) -> Job:
    """Walk an approved job on to `target` with the store's own transitions (what the dispatcher and the
    executor would write)."""
    if target is JobState.QUEUED:
        return await store.transition(job.id, job.state, JobState.QUEUED, detail="waiting for a slot")
    for new in LATER_STATES[LATER_STATES.index(job.state) + 1 : LATER_STATES.index(target) + 1]:
        job = await store.transition(job.id, job.state, new, detail=f"test: {new.value}")
    return job


async def new_job(
    fs: FleetService,
    vm: str = "vm42",
    *,
    state: JobState = JobState.RUNNING,
    postcopy: bool = True,
    card: bool = True,
    progress: str | None = None,
) -> Job:
    """A job for `vm` requested by U0ALICE (real preflight on the fleet), with its Slack card (unless `card` is
    False), approved (by U0BOB, and U0CAROL when the plan needs two) unless `state` is awaiting_approval, then
    moved on to `state`."""
    service = fs.service
    request = MigrationRequest(vm, "hostB", MigrationOptions(postcopy=postcopy, reason=REASON))
    job = await service.submit(request, "U0ALICE")
    assert job.state is JobState.AWAITING_APPROVAL, job
    if card or progress:
        job = await service.set_chat_refs(
            job.id, channel="C0OPS" if card else None, thread=CARD_TS if card else None, progress=progress
        )
    if state is JobState.AWAITING_APPROVAL:
        return job
    for approver in APPROVERS:
        job = await service.approve(job.id, approver)
        if job.state is JobState.APPROVED:
            break
    assert job.state is JobState.APPROVED, job
    return await move_to(service.store, job, state)


@dataclass
class Rig:
    """The sink under test, what it talks to, and the job the events are about."""

    t: FakeTime
    client: RecordingClient
    fs: FleetService
    sink: SlackProgressSink
    job_id: int

    @property
    def store(self) -> Store:
        return self.fs.service.store

    async def job(self) -> Job:
        return await self.fs.job(self.job_id)

    async def move_to(self, target: JobState) -> None:
        await move_to(self.store, await self.job(), target)

    def state(self, new: JobState, old: JobState = JobState.QUEUED) -> StateChanged:
        return StateChanged(self.job_id, old, new, None, "", T0)

    def sample(self, **kw: object) -> ProgressSample:
        return sample(job_id=self.job_id, **kw)  # type: ignore[arg-type]

    def summary(self) -> VerificationSummary:
        return summary(job_id=self.job_id)


def new_sink(
    fs: FleetService, t: FakeTime, client: RecordingClient, *, min_interval_s: float = 2.0,
    edits_per_min: float = EDITS_PER_MIN,
) -> SlackProgressSink:  # fmt: skip
    return SlackProgressSink(
        client, fs.service, min_interval_s=min_interval_s, clock=t.clock, sleep=t.sleep, now=VirtualClock().now,
        edits_per_min=edits_per_min,
    )  # fmt: skip


async def make(fs: FleetService, **job_kw: object) -> Rig:
    job = await new_job(fs, **job_kw)  # type: ignore[arg-type]
    t, client = FakeTime(), RecordingClient()
    return Rig(t, client, fs, new_sink(fs, t, client), job.id)


def progress_edits(client: RecordingClient, ts: str) -> list[dict[str, Any]]:
    return [kw for kw in client.of("chat_update") if kw["ts"] == ts]


async def start_running(r: Rig) -> str:
    await r.sink.emit(r.state(JobState.RUNNING))
    await settle()
    posted = r.client.of("chat_postMessage")
    assert len(posted) == 1
    return str(posted[0]["_ts"])


async def test_running_posts_the_progress_message_in_the_thread_and_stores_its_ts(fleet):
    r = await make(fleet)
    before = await r.job()
    ts = await start_running(r)
    first = r.client.of("chat_postMessage")[0]
    assert first["channel"] == "C0OPS" and first["thread_ts"] == CARD_TS
    assert "starting" in first["text"] or "running" in first["text"]
    after = await r.job()  # the store now knows the progress message, and nothing else of the refs moved
    assert before.chat.progress is None and after.chat.progress == ts
    assert (after.chat.channel, after.chat.thread) == ("C0OPS", CARD_TS)
    card_edits = [kw for kw in r.client.of("chat_update") if kw["ts"] == CARD_TS]
    assert len(card_edits) == 1 and "Running" in json.dumps(card_edits[0]["blocks"])


async def test_burst_of_samples_is_coalesced_into_one_edit_with_the_newest(fleet):
    r = await make(fleet)
    t, client = r.t, r.client
    ts = await start_running(r)
    for pct in range(10, 60, 5):
        await r.sink.emit(ProgressUpdated(r.sample(percent=pct)))
    await settle()
    assert progress_edits(client, ts) == []  # the post was just now: wait for the interval
    await t.advance(2.0)
    edits = progress_edits(client, ts)
    assert len(edits) == 1
    assert "55%" in edits[0]["blocks"][0]["text"]["text"]  # the newest, never a stale one
    await t.advance(10.0)
    assert len(progress_edits(client, ts)) == 1  # nothing new, nothing sent


@pytest.mark.parametrize("interval_s", [2.0, 3.0])
async def test_never_more_than_one_edit_per_interval(fleet, interval_s):
    job = await new_job(fleet)
    t, client = FakeTime(), RecordingClient()
    r = Rig(t, client, fleet, new_sink(fleet, t, client, min_interval_s=interval_s), job.id)
    ts = await start_running(r)
    edit_times: list[float] = []
    for step in range(200):  # 20 s of samples every 0.1 s
        await r.sink.emit(ProgressUpdated(r.sample(percent=step / 2)))
        await t.advance(0.1)
        edit_times += [t.now] * (len(progress_edits(client, ts)) - len(edit_times))
    gaps = [b - a for a, b in itertools.pairwise(edit_times)]
    assert len(edit_times) >= 20 / interval_s - 2
    assert all(g >= interval_s - 1e-6 for g in gaps), gaps


async def test_rate_limited_edit_is_retried_with_the_newest_state_and_nothing_escapes(fleet):
    r = await make(fleet)
    t, client = r.t, r.client
    ts = await start_running(r)
    client.fail["chat_update"] = [slack_error("ratelimited", 429)]
    await r.sink.emit(ProgressUpdated(r.sample(percent=10)))
    await t.advance(2.0)  # this edit gets the 429
    assert progress_edits(client, ts) == []
    await r.sink.emit(ProgressUpdated(r.sample(percent=20)))
    await r.sink.emit(ProgressUpdated(r.sample(percent=30)))
    await t.advance(2.0)  # back-off
    await t.advance(2.0)
    edits = progress_edits(client, ts)
    assert len(edits) == 1 and "30%" in edits[0]["blocks"][0]["text"]["text"]


async def test_notices_decisions_final_edit_and_broadcast_summary_in_order(fleet):
    r = await make(fleet)
    t, client, sink, jid = r.t, r.client, r.sink, r.job_id
    ts = await start_running(r)
    await sink.emit(DecisionMade(jid, Decision(ControlAction.SWITCH_POSTCOPY, "stalled for 40 s"), T0))
    await sink.emit(Notice(jid, NoticeKind.POSTCOPY, "switched to post-copy", T0))
    await settle()
    replies = client.of("chat_postMessage")
    assert [r["text"] for r in replies[1:]] == ["🔀 switched to post-copy"]
    await r.move_to(JobState.SUCCEEDED)
    await sink.emit(r.state(JobState.SUCCEEDED, old=JobState.VERIFYING))
    await sink.emit(SummaryReady(r.summary()))
    await t.advance(2.0)  # the pending progress edit (the decision)
    await t.advance(2.0)  # the final edit, one interval later; then the summary
    replies = client.of("chat_postMessage")
    assert replies[-1]["reply_broadcast"] is True and replies[-1]["thread_ts"] == CARD_TS
    assert "succeeded" in replies[-1]["text"]
    final = progress_edits(client, ts)[-1]
    assert not any(b["type"] == "actions" for b in final["blocks"])  # controls gone
    assert "switch to post-copy — stalled for 40 s" in json.dumps(final["blocks"], ensure_ascii=False)
    order = [(m, kw.get("ts") or kw.get("_ts")) for m, kw in client.calls]
    assert order.index(("chat_update", ts)) < order.index(("chat_postMessage", replies[-1]["_ts"]))
    assert not sink.pending()


async def test_a_failing_notice_is_retried_not_lost(fleet):
    r = await make(fleet)
    t, client, jid = r.t, r.client, r.job_id
    await start_running(r)
    client.fail["chat_postMessage"] = [slack_error("internal_error", 500), slack_error("ratelimited", 429)]
    await r.sink.emit(Notice(jid, NoticeKind.STALLED, "stalled for 40 s", T0))
    await r.sink.emit(Notice(jid, NoticeKind.CONTROL, "max downtime raised to 500 ms by <@U0BOB>", T0))
    await settle()
    assert len(client.of("chat_postMessage")) == 1
    for _ in range(4):
        await t.advance(4.0)
    texts = [kw["text"] for kw in client.of("chat_postMessage")[1:]]
    assert texts == ["🐢 stalled for 40 s", "🎛️ max downtime raised to 500 ms by <@U0BOB>"]


async def test_permanent_errors_are_given_up_after_a_retry(fleet):
    r = await make(fleet)
    await start_running(r)
    r.client.fail["chat_postMessage"] = [slack_error("channel_not_found")] * 2
    await r.sink.emit(Notice(r.job_id, NoticeKind.INFO, "hello", T0))
    for _ in range(3):
        await r.t.advance(2.0)
    assert not r.sink.pending()


async def test_jobs_without_a_slack_card_are_ignored(fleet):
    r = await make(fleet, card=False)  # requested from the console: the store has no channel or thread for it
    job = await r.job()
    assert (job.chat.channel, job.chat.thread) == (None, None)
    await r.sink.emit(r.state(JobState.RUNNING))
    await r.sink.emit(ProgressUpdated(r.sample()))
    await r.sink.emit(Notice(r.job_id, NoticeKind.INFO, "x", T0))
    await r.t.advance(5)
    assert r.client.calls == []


def sqlite_path(store: Store) -> Path:
    return Path(store.url_masked.removeprefix("sqlite:///"))


def corrupt_sqlite(store: Store) -> None:
    """Overwrite the store's SQLite files (database, WAL, shared memory) in place with garbage, under its open
    connections: every read from then on fails with "file is not a database"."""
    db = sqlite_path(store)
    for f in db.parent.glob(db.name + "*"):
        f.write_bytes(b"\xde\xad" * max(f.stat().st_size // 2, 2048))


def garble_job_row(store: Store, job_id: int) -> None:
    """Write a state no version of the bot knows into the job's row (a manual edit, a newer schema): reading the
    job then fails with a plain ValueError, not a StoreError: the sink must survive what it does not expect."""
    with contextlib.closing(sqlite3.connect(sqlite_path(store))) as db, db:
        db.execute("UPDATE jobs SET state = 'on fire' WHERE id = ?", (job_id,))


@pytest.mark.parametrize(
    ("breakage", "raised"),
    [("engine closed", StoreError), ("file corrupted", StoreError), ("row unreadable", ValueError)],
)
async def test_emit_never_raises_even_when_the_store_is_broken(fleet, breakage, raised):
    r = await make(fleet)
    if breakage == "engine closed":
        await r.store.close()  # the engine is disposed: every store operation fails with a StoreError
    elif breakage == "file corrupted":
        corrupt_sqlite(r.store)
    else:
        garble_job_row(r.store, r.job_id)
    with pytest.raises(raised):
        await r.job()  # the database really is broken
    await r.sink.emit(r.state(JobState.RUNNING))
    await r.sink.emit(SummaryReady(r.summary()))
    await r.t.advance(60)
    assert r.client.calls == []


async def test_after_a_restart_the_stored_progress_message_is_edited_not_reposted(fleet):
    r = await make(fleet, progress="1714564900.000009")  # the message a previous process posted
    await r.sink.emit(r.state(JobState.RUNNING))
    await r.sink.emit(ProgressUpdated(r.sample(percent=70, at=T0 + timedelta(seconds=5))))
    await r.t.advance(2.0)
    assert r.client.of("chat_postMessage") == []
    assert [kw["ts"] for kw in r.client.of("chat_update")][-1] == "1714564900.000009"


async def test_refresh_card_edits_the_card_from_the_store(fleet):
    r = await make(fleet, state=JobState.AWAITING_APPROVAL, postcopy=False)
    await r.sink.refresh_card(r.job_id)
    await settle()
    (edit,) = r.client.of("chat_update")
    assert edit["ts"] == CARD_TS and edit["text"].startswith("Approval needed")


@pytest.mark.parametrize(
    ("err", "transient"),
    [
        (slack_error("ratelimited", 429), True),
        (slack_error("internal_error", 500), True),
        (slack_error("channel_not_found"), False),
        (slack_error("message_not_found"), False),
        (ConnectionResetError(), True),
        (ValueError("bug"), False),
    ],
)
def test_is_transient(err, transient):
    assert is_transient(err) is transient


@pytest.fixture
async def ten_vms() -> AsyncIterator[FleetService]:
    """The service over two hosts and ten calm guests vm01..vm10 on hostA."""
    vms = [VmSpec(f"vm{n:02d}", host="hostA", dirty_mib_s=5) for n in range(1, 11)]
    fleet = Fleet.build(hosts=[HostSpec("hostA"), HostSpec("hostB")], vms=vms)
    fs = await open_fleet_service(RecordingSink(), _approver, start=False, fleet=fleet)
    yield fs
    await fs.close()


async def test_many_running_jobs_share_the_workspace_edit_budget_and_each_shows_its_newest_sample(ten_vms):
    fs = ten_vms
    t = FakeTime()
    client = RecordingClient()
    jobs = [await new_job(fs, f"vm{n:02d}") for n in range(1, 11)]
    sink = new_sink(fs, t, client, edits_per_min=45)
    for j in jobs:
        await sink.emit(StateChanged(j.id, JobState.QUEUED, JobState.RUNNING, None, "", T0))
    await settle()
    progress_ts = {kw["_ts"] for kw in client.of("chat_postMessage")}
    assert len(progress_ts) == 10
    for second in range(60):  # every job reports twice a second for a minute
        for j in jobs:
            await sink.emit(ProgressUpdated(sample(job_id=j.id, percent=second + 1)))
        await t.advance(0.5)
        await t.advance(0.5)
    edits = client.of("chat_update")
    assert len(edits) <= 4 + 45  # Tier 3 for the whole workspace (burst + rate), card edits included
    per_job = {ts: [e for e in edits if e["ts"] == ts] for ts in progress_ts}
    assert all(len(e) >= 3 for e in per_job.values())  # shared round-robin: nobody is starved
    await t.advance(60)
    for ts in per_job:  # once the samples stop, every message catches up to its newest
        last = [e for e in client.of("chat_update") if e["ts"] == ts][-1]
        assert "60%" in last["blocks"][0]["text"]["text"], ts
    assert {(await fs.job(j.id)).chat.progress for j in jobs} == progress_ts  # all ten stored


async def test_a_summary_announced_twice_is_posted_once(fleet):
    r = await make(fleet)
    await start_running(r)
    await r.move_to(JobState.SUCCEEDED)
    await r.sink.emit(SummaryReady(r.summary()))  # the executor announces it...
    await r.sink.emit(r.state(JobState.SUCCEEDED, old=JobState.VERIFYING))
    await r.sink.emit(SummaryReady(r.summary()))  # ...and the dispatcher again, after the final state
    for _ in range(5):
        await r.t.advance(2.0)
    await r.sink.emit(SummaryReady(r.summary()))  # even once the job's worker is gone
    await r.t.advance(2.0)
    broadcasts = [kw for kw in r.client.of("chat_postMessage") if kw.get("reply_broadcast")]
    assert len(broadcasts) == 1 and "succeeded" in broadcasts[0]["text"]


async def test_queue_moves_refresh_the_card_and_only_a_new_reason_gets_a_thread_line(fleet):
    """A long queue moves each waiting job's place often (bench_load: 624 notices for 50 jobs): the thread gets
    one line per reason for waiting, and each step forward only re-renders the card, which shows the place."""
    r = await make(fleet, state=JobState.QUEUED, postcopy=False)
    client, jid = r.client, r.job_id
    busy_b = "waiting: hostB already receives 2 migrations: #41, #43"
    texts = [f"{busy_b} (place 3 in the queue)", f"{busy_b} (place 2 in the queue)", f"{busy_b} (place 1 in the queue)"]
    texts.append("waiting: hostA already sends 2 migrations: #44, #45 (place 1 in the queue)")
    for text in texts:
        await r.sink.emit(Notice(jid, NoticeKind.QUEUED, text, T0))
        await settle()
    posted = [kw["text"] for kw in client.of("chat_postMessage")]
    assert len(posted) == 2, posted
    assert "place 3" in posted[0] and "hostA already sends" in posted[1]
    card_edits = [kw for kw in client.of("chat_update") if kw["ts"] == CARD_TS]
    assert len(card_edits) >= 2  # the card followed the moves the thread did not repeat
    # Any other notice still gets its own line.
    await r.sink.emit(Notice(jid, NoticeKind.INFO, "hostB is back", T0))
    await settle()
    assert len(client.of("chat_postMessage")) == 3


async def test_the_progress_message_shows_100_percent_once_and_is_never_edited_after_the_end(fleet):
    """Issue 13 §5: the "done" sample, verifying and the final state make one edit, the last one."""
    from migration_core.models import Phase

    r = await make(fleet)
    t, client, sink = r.t, r.client, r.sink
    ts = await start_running(r)
    await sink.emit(ProgressUpdated(r.sample(percent=50)))
    await t.advance(2.0)
    assert len(progress_edits(client, ts)) == 1
    await sink.emit(ProgressUpdated(r.sample(percent=100, phase=Phase.DONE)))  # the executor's finish
    await r.move_to(JobState.VERIFYING)
    await sink.emit(r.state(JobState.VERIFYING, old=JobState.RUNNING))
    await t.advance(2.0)
    await t.advance(2.0)
    assert len(progress_edits(client, ts)) == 1  # neither "done" nor "verifying" edits it on their own
    await r.move_to(JobState.SUCCEEDED)
    await sink.emit(r.state(JobState.SUCCEEDED, old=JobState.VERIFYING))
    await sink.emit(SummaryReady(r.summary()))
    await settle()
    edits = progress_edits(client, ts)
    assert len(edits) == 2
    final = json.dumps(edits[-1]["blocks"], ensure_ascii=False)
    assert "Succeeded" in final and "100%" in final and not any(b["type"] == "actions" for b in edits[-1]["blocks"])
    # Whatever the core still says about the job afterwards, the message stays as it is.
    await sink.emit(ProgressUpdated(r.sample(percent=100, phase=Phase.DONE)))
    await sink.emit(DecisionMade(r.job_id, Decision(ControlAction.RAISE_DOWNTIME, "late", downtime_ms=500), T0))
    await sink.emit(r.state(JobState.SUCCEEDED, old=JobState.VERIFYING))
    for _ in range(5):
        await t.advance(2.0)
    assert len(progress_edits(client, ts)) == 2


async def test_the_end_of_a_job_does_not_wait_behind_the_progress_edit_interval(fleet):
    """Issue 13 §2: a progress edit waiting for its 2 s turn must not hold up the final edit and the summary."""
    r = await make(fleet)
    t, client, sink = r.t, r.client, r.sink
    ts = await start_running(r)  # the progress message was posted just now
    await sink.emit(ProgressUpdated(r.sample(percent=60)))  # its edit must wait for the interval ...
    await settle()
    await r.move_to(JobState.SUCCEEDED)
    await sink.emit(r.state(JobState.SUCCEEDED, old=JobState.VERIFYING))
    await sink.emit(SummaryReady(r.summary()))
    await settle()  # ... but the end does not: no time passes here
    broadcasts = [kw for kw in client.of("chat_postMessage") if kw.get("reply_broadcast")]
    assert len(broadcasts) == 1 and "succeeded" in broadcasts[0]["text"]
    edits = progress_edits(client, ts)
    assert len(edits) == 1 and "Succeeded" in json.dumps(edits[0]["blocks"], ensure_ascii=False)
    await t.advance(10.0)
    assert len(progress_edits(client, ts)) == 1 and not sink.pending()


async def test_a_progress_edit_still_pending_when_the_job_verifies_is_dropped_for_the_final_one(fleet):
    r = await make(fleet)
    t, client, sink = r.t, r.client, r.sink
    ts = await start_running(r)
    await sink.emit(ProgressUpdated(r.sample(percent=70)))  # waits for its turn ...
    await settle()
    await r.move_to(JobState.VERIFYING)
    await sink.emit(r.state(JobState.VERIFYING, old=JobState.RUNNING))  # ... while the migration ends
    await t.advance(2.0)
    await t.advance(2.0)
    assert progress_edits(client, ts) == []  # "verifying" would show 100 % before the end does
    await r.move_to(JobState.SUCCEEDED)
    await sink.emit(r.state(JobState.SUCCEEDED, old=JobState.VERIFYING))
    await settle()
    edits = progress_edits(client, ts)
    assert len(edits) == 1 and "Succeeded" in json.dumps(edits[0]["blocks"], ensure_ascii=False)
