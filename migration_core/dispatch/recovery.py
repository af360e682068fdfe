"""The dispatcher's recovery of a post-copy migration that broke: resumed automatically once the hosts talk again.

After the switch to post-copy the VM runs on the destination while part of its memory is still on the source.
When the link breaks, libvirt notices within its keepalive (about 30 s in the lab), the migrate call returns an
error and the VM is left "post-copy failed" (paused on the source; on the destination it waits for pages it
cannot get). Failing the job there would leave a paused VM and a to-do for a person at 3 a.m.; instead the job
stays running and the bot resumes the migration with VIR_MIGRATE_POSTCOPY_RESUME (libvirt >= 8.5; proven with
libvirt 9.0 + QEMU 7.2 in the lab, tests/reliability/test_faults.py) as soon as the hosts reach each other again,
retrying every `retry_s` for up to `give_up_s`. The mechanics of one attempt are Executor.recover_postcopy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from migration_core.errors import MigrateBotError, StateError
from migration_core.events import NoticeKind
from migration_core.execution.executor import Executor
from migration_core.execution.types import ExecutionResult
from migration_core.models import JobState, Plan

log = logging.getLogger("migration_core.dispatch.dispatcher")

Say = Callable[[NoticeKind, str], Awaitable[None]]
RECOVERY_ACTOR = "post-copy recovery"


def postcopy_broken(result: ExecutionResult) -> bool:
    """The run ended with the VM split between the hosts ("post-copy failed" on either side)."""
    sides = (result.source, result.destination)
    return result.outcome is JobState.FAILED and any(i is not None and i.postcopy_failed for i in sides)


async def resume_broken_postcopy(
    executor: Executor,
    job_id: int,
    plan: Plan,
    result: ExecutionResult,
    say: Say,
    *,
    retry_s: float = 10.0,
    give_up_s: float = 30 * 60.0,
    settle_s: float = 15.0,
) -> ExecutionResult:
    """If `result` is a broken post-copy, resume it until it is whole again (or `give_up_s` passed); the result
    to verify. Anything else is returned as it is. `settle_s`: once the hosts reach each other, how long the
    stream may take to carry on by itself before it is paused and resumed (Executor.recover_postcopy)."""
    if not postcopy_broken(result):
        return result
    vm, a, b = plan.request.vm, plan.source, plan.destination
    await say(
        NoticeKind.POSTCOPY,
        f"the post-copy migration of {vm} broke ({result.error or 'the hosts lost each other'}): {vm} waits, "
        f"paused, with its memory split between {a} and {b}. The bot resumes the migration (POSTCOPY_RESUME) "
        f"as soon as {a} and {b} reach each other again, trying every {retry_s:g} s; do not destroy {vm} on "
        "either host.",
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_s
    attempts = 0
    while postcopy_broken(result) and loop.time() < deadline:
        await asyncio.sleep(retry_s)
        attempts += 1
        try:
            result = await executor.recover_postcopy(job_id, plan, RECOVERY_ACTOR, settle_s=settle_s)
        except StateError as err:  # no longer a broken post-copy (it carried on, or someone acted): look
            log.info("job %s: post-copy recovery: %s; reading the true outcome", job_id, err)
            result = await executor.reattach(job_id, plan)
        except MigrateBotError as err:  # a host does not answer yet: try again later
            log.info("job %s: post-copy recovery attempt %d: %s", job_id, attempts, err)
    if postcopy_broken(result):
        await say(
            NoticeKind.FAILURE,
            f"gave up resuming the post-copy migration of {vm} after {attempts} attempts in "
            f"{give_up_s / 60:g} min; the summary has the manual steps",
        )
    elif attempts:
        await say(
            NoticeKind.POSTCOPY,
            f"post-copy recovery: after {attempts} attempt(s) the migration of {vm} is no longer split "
            f"({result.outcome.value}); verifying",
        )
    return result
