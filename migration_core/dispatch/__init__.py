"""Turning approved jobs into runs: the dispatcher (slots, queue, leases, recovery) and the change-control policy.

Owns: `dispatcher` (claims jobs, runs the executor, verification and recovery), `queue` (why a job waits, its
place), `recovery` (post-copy resume), `policy` (who may request, approve, control; expiry; two-person rule;
freezes, tickets and schedules at request time), `approvals` (the policy file's requirement: numbers, owners'
groups, what is still needed), `windows` (freeze and schedule windows, pure).
May import: migration_core.errors, models, events, logctx, store, execution, hypervisor, inventory,
planning (the drain plan, the move sample a run leaves), drains. It owns `QueuePosition`, which the service
API re-exports: nothing here imports the front ends' API.
"""
