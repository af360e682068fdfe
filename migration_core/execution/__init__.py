"""Running an approved plan: the executor, the convergence controller, progress and stall, and verification.

Owns: `executor` (+ `base`, `controls`, `outcome`, `prep`, `types`): start, watch, steer and control a migration;
`convergence` (the pure controller), `progress` and `stall` (readings -> samples and signals), `verify` and
`verify_checks` (where the VM really is afterwards).
May import: migration_core.errors, models, events, logctx, hypervisor, facts, planning, inventory
(the hosts' URIs and addresses).
"""
