"""Preflight checks: one module per family; each check is a pure function over gathered facts.

Package map: one module per family of checks (`hosts`, `vmstate`, `cpu`, `machine`, `storage`, `network`,
`devices`, `numa`, `capacity`, `options`, `tls`), `_common` helpers, and `runner` (PreflightRunner: gathers the facts
from both hosts through the hypervisor adapter, runs the checks, predicts and plans). The checks are pure and may
import migration_core.errors, models, facts; only `runner` and `doctor` (the `migrate-bot doctor` checks) do
I/O (hypervisor, inventory, planning).

`run_checks(facts)` runs every family in a fixed order and returns their results. It stops early when
later checks would only repeat one root cause: unknown, unreachable or identical hosts, or a VM that is not
there. A family that raises (a bug, or facts nobody foresaw) becomes a WARN naming the check, never an
exception: the operator still gets the rest of the report.
"""

from __future__ import annotations

import logging

from migration_core.facts.gathered import PreflightFacts
from migration_core.models import CheckResult, CheckStatus
from migration_core.preflight import (
    capacity,
    cpu,
    devices,
    hosts,
    machine,
    network,
    numa,
    options,
    storage,
    tls,
    vmstate,
)
from migration_core.preflight._common import Check, effective_mode, warned
from migration_core.preflight.options import postcopy_blockers
from migration_core.preflight.storage import DiskPlacement, copy_sizes, disks_to_copy, placements

__all__ = [
    "DiskPlacement",
    "copy_sizes",
    "disks_to_copy",
    "effective_mode",
    "placements",
    "postcopy_blockers",
    "run_checks",
]

log = logging.getLogger(__name__)

# Stage 1: without these nothing else can be checked.
_HOSTS: tuple[Check, ...] = (hosts.check_known, hosts.check_reachable, hosts.check_distinct)
# Stage 2: the VM must be there.
_VM: tuple[Check, ...] = (hosts.check_hypervisor, vmstate.check_exists)
# Stage 3: everything else, in the order an operator reads a report.
_REST: tuple[Check, ...] = (
    vmstate.check_state,
    vmstate.check_name_clash,
    vmstate.check_other_definitions,
    vmstate.check_one_owner,
    vmstate.check_snapshots,
    options.check_options,
    tls.check_tls,
    cpu.check_cpu,
    machine.check_machine,
    machine.check_versions,
    storage.check_storage,
    storage.check_cache,
    network.check_sources,
    network.check_ports,
    capacity.check_memory,
    capacity.check_vcpus,
)
_DEVICES: tuple[Check, ...] = (
    devices.check_hostdevs,
    devices.check_vgpu,
    devices.check_viommu,
    numa.check_numa,
    numa.check_hugepages,
    devices.check_other,
)


def _run(check: Check, facts: PreflightFacts) -> tuple[CheckResult, ...]:
    try:
        return tuple(check(facts))
    except Exception as exc:  # a check must never take the whole report down
        log.exception("preflight check %s raised", check.__qualname__)
        label = f"{check.__module__.rsplit('.', 1)[-1]}.{check.__name__.removeprefix('check_')}"
        return (warned(label, f"this check could not run ({type(exc).__name__}: {exc})", "report this as a bug"),)


def _failed(results: list[CheckResult]) -> bool:
    return any(r.status is CheckStatus.FAIL for r in results)


def run_checks(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    """Every preflight check for one request, in report order (see module doc for the early stops)."""
    results: list[CheckResult] = []
    for check in _HOSTS:
        results.extend(_run(check, facts))
    if _failed(results):
        return tuple(results)
    for check in _VM:
        results.extend(_run(check, facts))
    if facts.vm is None:
        return tuple(results)
    for check in _REST:
        results.extend(_run(check, facts))
    device_results: list[CheckResult] = []
    for check in _DEVICES:
        device_results.extend(_run(check, facts))
    results.extend(device_results)
    results.extend(devices.summary(facts, tuple(device_results)))
    return tuple(results)
