"""How did a migration end, when nobody saw the migrate call return? (pure; restart recovery uses it)

libvirt answers "no job" (JOB_NONE) both after a success and after a failure. Nova resolves it from where
the VM is (`find_job_type`, anchors.md §2.4); so does `true_outcome`:

| source                      | destination          | verdict                                        |
|-----------------------------|----------------------|------------------------------------------------|
| post-copy failed (either)   | -                    | FAILED: recover with POSTCOPY_RESUME           |
| active                      | not active / absent  | FAILED: the VM still runs on the source        |
| not active / absent         | active               | SUCCEEDED (live)                               |
| absent or shut off          | defined, shut off    | SUCCEEDED (offline)                            |
| active                      | active               | FAILED: split-brain, a person must decide      |
| anything else               |                      | FAILED: the VM runs nowhere                    |

The completed-job statistics (`success`, `errmsg`), when libvirt still has them, only add the reason.
"""

from __future__ import annotations

from migration_core.hypervisor.types import DomainInfo, JobStats
from migration_core.models import JobState, MigrationMode, Plan


def true_outcome(
    plan: Plan, source: DomainInfo | None, destination: DomainInfo | None, completed: JobStats | None
) -> tuple[JobState, str | None]:
    """(outcome, error text or None) from the VM's state on both hosts; None = that host did not answer."""
    vm, a, b = plan.request.vm, plan.source, plan.destination
    said = f" (libvirt: {completed.errmsg})" if completed is not None and completed.errmsg else ""
    for side, info in ((a, source), (b, destination)):
        if info is not None and info.postcopy_failed:
            return JobState.FAILED, f"the post-copy migration of {vm} broke ({side}: {info.describe()}){said}"
    if source is None or destination is None:
        down = a if source is None else b
        return JobState.FAILED, f"cannot tell how the migration of {vm} ended: {down} does not answer{said}"
    if source.active and destination.active:
        return JobState.FAILED, f"{vm} is active on both {a} and {b} (split-brain){said}"
    if source.active:
        return JobState.FAILED, f"the migration of {vm} did not complete: it still runs on {a}{said}"
    if destination.active:
        return JobState.SUCCEEDED, None
    if plan.mode is MigrationMode.OFFLINE and destination.present:
        return JobState.SUCCEEDED, None
    return JobState.FAILED, f"{vm} runs on neither {a} nor {b}{said}"
