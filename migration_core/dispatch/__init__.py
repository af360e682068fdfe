"""Turning approved jobs into runs: the dispatcher (slots, queue, leases, recovery) and the change-control policy.

Owns: `dispatcher` (claims jobs, runs the executor, verification and recovery), `queue` (why a job waits, its
place), `recovery` (post-copy resume), `policy` (who may request, approve, control; expiry; two-person rule;
freezes, tickets and schedules at request time), `approvals` (the policy file's requirement: numbers, owners'
groups, what is still needed), `windows` (freeze and schedule windows, pure).
May import: migration_core.errors, models, events, logctx, store, execution, hypervisor, inventory.
"""
