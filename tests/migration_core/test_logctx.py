"""migration_core/logctx.py: the job context for log lines (nesting, tasks, threads, the decorator)."""

from __future__ import annotations

import asyncio

import pytest

from migration_core import logctx
from tests.bot import factories


def test_nested_contexts_add_fields_and_none_keeps_the_outer_value():
    assert logctx.current() == {}
    with logctx.job_context(job_id=1, actor="U_ALICE"):
        with logctx.job_context(vm="vm42", actor=None):
            assert logctx.current() == {"job_id": 1, "actor": "U_ALICE", "vm": "vm42"}
        with logctx.job_context(actor="U_BOB"):
            assert logctx.current()["actor"] == "U_BOB"
        assert logctx.current() == {"job_id": 1, "actor": "U_ALICE"}
    assert logctx.current() == {}


def test_unknown_fields_are_a_programming_error():
    with pytest.raises(TypeError, match="colour"), logctx.job_context(colour="red"):  # type: ignore[arg-type]
        pass


def test_fields_of_a_job():
    job = factories.job(id=9)
    assert logctx.fields_of(job) == {
        "job_id": 9, "vm": "vm42", "source": "hostA", "destination": "hostB", "actor": "U0ALICE"}  # fmt: skip
    assert logctx.fields_of(job, "U_BOB")["actor"] == "U_BOB"


async def test_tasks_and_threads_started_inside_carry_the_context():
    def in_thread() -> object:
        return logctx.current().get("job_id")

    async def in_task() -> object:
        await asyncio.sleep(0)
        return logctx.current().get("job_id")

    with logctx.job_context(job_id=5):
        task = asyncio.create_task(in_task())
        from_thread = await asyncio.to_thread(in_thread)
    assert (await task, from_thread) == (5, 5)
    assert logctx.current() == {}


async def test_scoped_takes_the_fields_from_the_arguments():
    seen: list[dict[str, object]] = []

    class Service:
        @logctx.scoped(job_id="job_id", actor="actor")
        async def approve(self, job_id: int, actor: str, note: str = "") -> str:
            seen.append(dict(logctx.current()))
            return note

    assert await Service().approve(12, "U_BOB", note="ok") == "ok"
    assert await Service().approve(job_id=13, actor="U_CAROL") == ""
    assert seen == [{"job_id": 12, "actor": "U_BOB"}, {"job_id": 13, "actor": "U_CAROL"}]
    assert logctx.current() == {}
