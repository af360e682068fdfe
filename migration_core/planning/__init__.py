"""Planning a migration: the convergence prediction, the planner (flags and typed params) and the advice.

Owns: `estimate` (the card's prediction: typed MoveInputs + history -> Estimate with point, p10-p90 range and
basis, calibrated per host pair and per VM; the API drain planning builds on), `prediction` (unit helpers
and the older iterative model), `planner` (request + facts + checks + prediction -> Plan), `advice` (what to
do when pre-copy will not converge), `placement` (which host takes each VM: the same preflight per candidate,
capacity across the plan, anti-affinity), `drain` (placement + order and concurrency from the prediction ->
DrainPlan), `estimates` (the seam between drain planning and the prediction). Pure.
May import: migration_core.errors, models, facts, preflight (check results), grammar (options), inventory.
"""
