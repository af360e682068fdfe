"""SlackProgressSink, unit level: thread layout, ≤1 edit per interval (coalesced), errors never escape."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import timedelta

import pytest

from handlers.progress import SlackProgressSink
from handlers.slack_io import is_transient
from migration_core.events import (
    DecisionMade,
    Notice,
    NoticeKind,
    ProgressUpdated,
    StateChanged,
    SummaryReady,
)
from migration_core.models import ControlAction, Decision, JobState
from tests.bot.factories import T0, job, plan, sample, summary
from tests.handlers.fakes import FakeTime, JobsOnlyService, RecordingClient, settle, slack_error

CARD_TS = "1714564800.000100"


def running_job():
    return job(state=JobState.RUNNING, approvers=("U0BOB",), p=plan(postcopy=True))


def make(j=None):
    t = FakeTime()
    client = RecordingClient()
    svc = JobsOnlyService(j or running_job())
    sink = SlackProgressSink(client, svc, min_interval_s=2.0, clock=t.clock, sleep=t.sleep, now=lambda: T0)
    return t, client, svc, sink


def state(new, old=JobState.QUEUED, actor=None, detail=""):
    return StateChanged(7, old, new, actor, detail, T0)


def progress_edits(client, ts):
    return [kw for kw in client.of("chat_update") if kw["ts"] == ts]


async def start_running(t, client, svc, sink):
    await sink.emit(state(JobState.RUNNING))
    await settle()
    posted = client.of("chat_postMessage")
    assert len(posted) == 1
    return posted[0]["_ts"]


async def test_running_posts_the_progress_message_in_the_thread_and_stores_its_ts():
    t, client, svc, sink = make()
    ts = await start_running(t, client, svc, sink)
    first = client.of("chat_postMessage")[0]
    assert first["channel"] == "C0OPS" and first["thread_ts"] == CARD_TS
    assert "starting" in first["text"] or "running" in first["text"]
    assert svc.refs == [{"job": 7, "progress": ts}]
    card_edits = [kw for kw in client.of("chat_update") if kw["ts"] == CARD_TS]
    assert len(card_edits) == 1 and "Running" in json.dumps(card_edits[0]["blocks"])


async def test_burst_of_samples_is_coalesced_into_one_edit_with_the_newest():
    t, client, svc, sink = make()
    ts = await start_running(t, client, svc, sink)
    for pct in range(10, 60, 5):
        await sink.emit(ProgressUpdated(sample(percent=pct)))
    await settle()
    assert progress_edits(client, ts) == []  # the post was just now: wait for the interval
    await t.advance(2.0)
    edits = progress_edits(client, ts)
    assert len(edits) == 1
    assert "55%" in edits[0]["blocks"][0]["text"]["text"]  # the newest, never a stale one
    await t.advance(10.0)
    assert len(progress_edits(client, ts)) == 1  # nothing new, nothing sent


@pytest.mark.parametrize("interval_s", [2.0, 3.0])
async def test_never_more_than_one_edit_per_interval(interval_s):
    t = FakeTime()
    client = RecordingClient()
    svc = JobsOnlyService(running_job())
    sink = SlackProgressSink(
        client, svc, min_interval_s=interval_s, clock=t.clock, sleep=t.sleep, now=lambda: T0
    )
    ts = await start_running(t, client, svc, sink)
    edit_times = []
    for step in range(200):  # 20 s of samples every 0.1 s
        await sink.emit(ProgressUpdated(sample(percent=step / 2)))
        await t.advance(0.1)
        edit_times += [t.now] * (len(progress_edits(client, ts)) - len(edit_times))
    gaps = [b - a for a, b in itertools.pairwise(edit_times)]
    assert len(edit_times) >= 20 / interval_s - 2
    assert all(g >= interval_s - 1e-6 for g in gaps), gaps


async def test_rate_limited_edit_is_retried_with_the_newest_state_and_nothing_escapes():
    t, client, svc, sink = make()
    ts = await start_running(t, client, svc, sink)
    client.fail["chat_update"] = [slack_error("ratelimited", 429)]
    await sink.emit(ProgressUpdated(sample(percent=10)))
    await t.advance(2.0)  # this edit gets the 429
    assert progress_edits(client, ts) == []
    await sink.emit(ProgressUpdated(sample(percent=20)))
    await sink.emit(ProgressUpdated(sample(percent=30)))
    await t.advance(2.0)  # back-off
    await t.advance(2.0)
    edits = progress_edits(client, ts)
    assert len(edits) == 1 and "30%" in edits[0]["blocks"][0]["text"]["text"]


async def test_notices_decisions_final_edit_and_broadcast_summary_in_order():
    t, client, svc, sink = make()
    ts = await start_running(t, client, svc, sink)
    await sink.emit(DecisionMade(7, Decision(ControlAction.SWITCH_POSTCOPY, "stalled for 40 s"), T0))
    await sink.emit(Notice(7, NoticeKind.POSTCOPY, "switched to post-copy", T0))
    await settle()
    replies = client.of("chat_postMessage")
    assert [r["text"] for r in replies[1:]] == ["🔀 switched to post-copy"]
    svc.set_state(7, state=JobState.SUCCEEDED)
    await sink.emit(state(JobState.SUCCEEDED, old=JobState.VERIFYING))
    await sink.emit(SummaryReady(summary()))
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


async def test_a_failing_notice_is_retried_not_lost():
    t, client, svc, sink = make()
    await start_running(t, client, svc, sink)
    client.fail["chat_postMessage"] = [slack_error("internal_error", 500), slack_error("ratelimited", 429)]
    await sink.emit(Notice(7, NoticeKind.STALLED, "stalled for 40 s", T0))
    await sink.emit(Notice(7, NoticeKind.CONTROL, "max downtime raised to 500 ms by <@U0BOB>", T0))
    await settle()
    assert len(client.of("chat_postMessage")) == 1
    for _ in range(4):
        await t.advance(4.0)
    texts = [kw["text"] for kw in client.of("chat_postMessage")[1:]]
    assert texts == ["🐢 stalled for 40 s", "🎛️ max downtime raised to 500 ms by <@U0BOB>"]


async def test_permanent_errors_are_given_up_after_a_retry():
    t, client, svc, sink = make()
    await start_running(t, client, svc, sink)
    client.fail["chat_postMessage"] = [slack_error("channel_not_found")] * 2
    await sink.emit(Notice(7, NoticeKind.INFO, "hello", T0))
    for _ in range(3):
        await t.advance(2.0)
    assert not sink.pending()


async def test_jobs_without_a_slack_card_are_ignored():
    t, client, _svc, sink = make(replace(running_job(), chat_channel=None, chat_thread=None))
    await sink.emit(state(JobState.RUNNING))
    await sink.emit(ProgressUpdated(sample()))
    await sink.emit(Notice(7, NoticeKind.INFO, "x", T0))
    await t.advance(5)
    assert client.calls == []


async def test_emit_never_raises_even_when_the_store_is_broken():
    t, client, svc, sink = make()
    svc.broken = True
    await sink.emit(state(JobState.RUNNING))
    await sink.emit(SummaryReady(summary()))
    await t.advance(60)
    assert client.calls == []


async def test_after_a_restart_the_stored_progress_message_is_edited_not_reposted():
    t, client, _svc, sink = make(replace(running_job(), chat_progress="1714564900.000009"))
    await sink.emit(state(JobState.RUNNING))
    await sink.emit(ProgressUpdated(sample(percent=70, at=T0 + timedelta(seconds=5))))
    await t.advance(2.0)
    assert client.of("chat_postMessage") == []
    assert [kw["ts"] for kw in client.of("chat_update")][-1] == "1714564900.000009"


async def test_refresh_card_edits_the_card_from_the_store():
    _t, client, _svc, sink = make(job())
    await sink.refresh_card(7)
    await settle()
    (edit,) = client.of("chat_update")
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


async def test_many_running_jobs_share_the_workspace_edit_budget_and_each_shows_its_newest_sample():
    t = FakeTime()
    client = RecordingClient()
    jobs = [replace(running_job(), id=n) for n in range(1, 11)]
    svc = JobsOnlyService(*jobs)
    sink = SlackProgressSink(client, svc, min_interval_s=2.0, clock=t.clock, sleep=t.sleep, now=lambda: T0,
                             edits_per_min=45)
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


async def test_a_summary_announced_twice_is_posted_once():
    t, client, svc, sink = make()
    await start_running(t, client, svc, sink)
    svc.set_state(7, state=JobState.SUCCEEDED)
    await sink.emit(SummaryReady(summary()))  # the executor announces it...
    await sink.emit(state(JobState.SUCCEEDED, old=JobState.VERIFYING))
    await sink.emit(SummaryReady(summary()))  # ...and the dispatcher again, after the final state
    for _ in range(5):
        await t.advance(2.0)
    await sink.emit(SummaryReady(summary()))  # even once the job's worker is gone
    await t.advance(2.0)
    broadcasts = [kw for kw in client.of("chat_postMessage") if kw.get("reply_broadcast")]
    assert len(broadcasts) == 1 and "succeeded" in broadcasts[0]["text"]


async def test_queue_moves_refresh_the_card_and_only_a_new_reason_gets_a_thread_line():
    """A long queue moves each waiting job's place often (bench_load: 624 notices for 50 jobs): the thread gets
    one line per reason for waiting, and each step forward only re-renders the card, which shows the place."""
    _t, client, _svc, sink = make(job(state=JobState.QUEUED, approvers=("U0BOB",), p=plan()))
    busy_b = "waiting: hostB already receives 2 migrations: #41, #43"
    texts = [f"{busy_b} (place 3 in the queue)", f"{busy_b} (place 2 in the queue)", f"{busy_b} (place 1 in the queue)"]
    texts.append("waiting: hostA already sends 2 migrations: #44, #45 (place 1 in the queue)")
    for text in texts:
        await sink.emit(Notice(7, NoticeKind.QUEUED, text, T0))
        await settle()
    posted = [kw["text"] for kw in client.of("chat_postMessage")]
    assert len(posted) == 2, posted
    assert "place 3" in posted[0] and "hostA already sends" in posted[1]
    card_edits = [kw for kw in client.of("chat_update") if kw["ts"] == CARD_TS]
    assert len(card_edits) >= 2  # the card followed the moves the thread did not repeat
    # Any other notice still gets its own line.
    await sink.emit(Notice(7, NoticeKind.INFO, "hostB is back", T0))
    await settle()
    assert len(client.of("chat_postMessage")) == 3


async def test_the_progress_message_shows_100_percent_once_and_is_never_edited_after_the_end():
    """Issue 13 §5: the "done" sample, verifying and the final state make one edit, the last one."""
    from migration_core.models import Phase

    t, client, svc, sink = make()
    ts = await start_running(t, client, svc, sink)
    await sink.emit(ProgressUpdated(sample(percent=50)))
    await t.advance(2.0)
    assert len(progress_edits(client, ts)) == 1
    await sink.emit(ProgressUpdated(sample(percent=100, phase=Phase.DONE)))  # the executor's finish
    svc.set_state(7, state=JobState.VERIFYING)
    await sink.emit(state(JobState.VERIFYING, old=JobState.RUNNING))
    await t.advance(2.0)
    await t.advance(2.0)
    assert len(progress_edits(client, ts)) == 1  # neither "done" nor "verifying" edits it on their own
    svc.set_state(7, state=JobState.SUCCEEDED)
    await sink.emit(state(JobState.SUCCEEDED, old=JobState.VERIFYING))
    await sink.emit(SummaryReady(summary()))
    await settle()
    edits = progress_edits(client, ts)
    assert len(edits) == 2
    final = json.dumps(edits[-1]["blocks"], ensure_ascii=False)
    assert "Succeeded" in final and "100%" in final and not any(b["type"] == "actions" for b in edits[-1]["blocks"])
    # Whatever the core still says about the job afterwards, the message stays as it is.
    await sink.emit(ProgressUpdated(sample(percent=100, phase=Phase.DONE)))
    await sink.emit(DecisionMade(7, Decision(ControlAction.RAISE_DOWNTIME, "late", downtime_ms=500), T0))
    await sink.emit(state(JobState.SUCCEEDED, old=JobState.VERIFYING))
    for _ in range(5):
        await t.advance(2.0)
    assert len(progress_edits(client, ts)) == 2


async def test_the_end_of_a_job_does_not_wait_behind_the_progress_edit_interval():
    """Issue 13 §2: a progress edit waiting for its 2 s turn must not hold up the final edit and the summary."""
    t, client, svc, sink = make()
    ts = await start_running(t, client, svc, sink)  # the progress message was posted just now
    await sink.emit(ProgressUpdated(sample(percent=60)))  # its edit must wait for the interval ...
    await settle()
    svc.set_state(7, state=JobState.SUCCEEDED)
    await sink.emit(state(JobState.SUCCEEDED, old=JobState.VERIFYING))
    await sink.emit(SummaryReady(summary()))
    await settle()  # ... but the end does not: no time passes here
    broadcasts = [kw for kw in client.of("chat_postMessage") if kw.get("reply_broadcast")]
    assert len(broadcasts) == 1 and "succeeded" in broadcasts[0]["text"]
    edits = progress_edits(client, ts)
    assert len(edits) == 1 and "Succeeded" in json.dumps(edits[0]["blocks"], ensure_ascii=False)
    await t.advance(10.0)
    assert len(progress_edits(client, ts)) == 1 and not sink.pending()


async def test_a_progress_edit_still_pending_when_the_job_verifies_is_dropped_for_the_final_one():
    t, client, svc, sink = make()
    ts = await start_running(t, client, svc, sink)
    await sink.emit(ProgressUpdated(sample(percent=70)))  # waits for its turn ...
    await settle()
    svc.set_state(7, state=JobState.VERIFYING)
    await sink.emit(state(JobState.VERIFYING, old=JobState.RUNNING))  # ... while the migration ends
    await t.advance(2.0)
    await t.advance(2.0)
    assert progress_edits(client, ts) == []  # "verifying" would show 100 % before the end does
    svc.set_state(7, state=JobState.SUCCEEDED)
    await sink.emit(state(JobState.SUCCEEDED, old=JobState.VERIFYING))
    await settle()
    edits = progress_edits(client, ts)
    assert len(edits) == 1 and "Succeeded" in json.dumps(edits[0]["blocks"], ensure_ascii=False)
