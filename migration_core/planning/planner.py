"""Request + facts + checks + prediction -> Plan: the exact libvirt flags and typed parameters (pure).

The bot always migrates peer-to-peer (`VIR_MIGRATE_PEER2PEER` + `migrateToURI3`): the source libvirtd runs
the whole protocol, so a migration survives a restart of the bot. Flags are libvirt's names
(`VIR_MIGRATE_*`), params are keyed by libvirt's typed-parameter strings (`migrate_uri`, `bandwidth`, ...;
libvirt.md §1-2); the executor maps them to the libvirt constants.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import replace

from migration_core.errors import PreflightError
from migration_core.facts.gathered import DiskVisibility, PreflightFacts, VmState
from migration_core.facts.vm import VmFacts
from migration_core.limits import DEFAULT_MAX_DOWNTIME_MS, downtime_ramp_ms
from migration_core.models import (
    CheckResult,
    CheckStatus,
    ConvergencePolicy,
    CopyStorage,
    MigrationMode,
    MigrationOptions,
    MigrationRequest,
    ParamValue,
    Plan,
    Prediction,
)
from migration_core.planning.advice import (
    AUTO_CONVERGE_INCREMENT_PCT,
    AUTO_CONVERGE_INITIAL_PCT,
    recommend,
)
from migration_core.preflight import disks_to_copy, effective_mode, placements, postcopy_blockers, run_checks
from migration_core.units import GIB

__all__ = [
    "AUTO_CONVERGE_INCREMENT_PCT",
    "AUTO_CONVERGE_INITIAL_PCT",
    "FLAG_ORDER",
    "assemble_plan",
    "build_flags_and_params",
    "choose_mode",
    "convergence_policy",
    "default_timeout_s",
    "downtime_ramp_ms",
    "make_plan",
    "migrate_uri",
    "recommend",
]

# libvirt's bit order (libvirt.md §1): flags are always listed in this order.
FLAG_ORDER = (
    "VIR_MIGRATE_LIVE",
    "VIR_MIGRATE_PEER2PEER",
    "VIR_MIGRATE_TUNNELLED",
    "VIR_MIGRATE_PERSIST_DEST",
    "VIR_MIGRATE_UNDEFINE_SOURCE",
    "VIR_MIGRATE_PAUSED",
    "VIR_MIGRATE_NON_SHARED_DISK",
    "VIR_MIGRATE_NON_SHARED_INC",
    "VIR_MIGRATE_CHANGE_PROTECTION",
    "VIR_MIGRATE_UNSAFE",
    "VIR_MIGRATE_OFFLINE",
    "VIR_MIGRATE_COMPRESSED",
    "VIR_MIGRATE_ABORT_ON_ERROR",
    "VIR_MIGRATE_AUTO_CONVERGE",
    "VIR_MIGRATE_RDMA_PIN_ALL",
    "VIR_MIGRATE_POSTCOPY",
    "VIR_MIGRATE_TLS",
    "VIR_MIGRATE_PARALLEL",
    "VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES",
    "VIR_MIGRATE_POSTCOPY_RESUME",
    "VIR_MIGRATE_ZEROCOPY",
)
TIMEOUT_S_PER_GIB = 150.0  # KubeVirt's completionTimeoutPerGiB
MIN_TIMEOUT_S = 120.0
STALL_TIMEOUT_S = 60.0


def choose_mode(request: MigrationRequest, vm_state: VmState | None) -> MigrationMode:
    """As typed, else from the VM's state: shut off -> offline, anything else -> live.

    >>> choose_mode(MigrationRequest("vm42", "hostB"), VmState.RUNNING)
    <MigrationMode.LIVE: 'live'>
    """
    return effective_mode(request, vm_state)


def migrate_uri(address: str) -> str:
    """The `migrate_uri` param for a migration address: host, host:port, IPv6, or a full tcp:// URI.

    >>> migrate_uri("10.0.0.2"), migrate_uri("fe80::1"), migrate_uri("hostb-mig:49200")
    ('tcp://10.0.0.2', 'tcp://[fe80::1]', 'tcp://hostb-mig:49200')
    """
    address = address.strip()
    if "://" in address:
        return address
    try:
        if ipaddress.ip_address(address).version == 6:
            return f"tcp://[{address}]"
    except ValueError:
        pass
    return f"tcp://{address}"


def build_flags_and_params(
    request: MigrationRequest,
    mode: MigrationMode,
    vm: VmFacts | None,
    disks: Sequence[DiskVisibility],
    *,
    dest_peer_uri: str,
    migration_address: str | None = None,
    tls: bool = False,
) -> tuple[tuple[str, ...], dict[str, ParamValue]]:
    """The exact flags (libvirt names, in bit order) and typed params for `migrateToURI3(dest_peer_uri, ...)`.

    `migration_address` (from the inventory) pins the data connection to a NIC; `tls` is the inventory's
    "this host pair requires TLS" (or'ed with --tls).
    """
    if not dest_peer_uri or not dest_peer_uri.strip():
        raise PreflightError(
            "no libvirt URI for the destination: a peer-to-peer migration needs one",
            "set the destination's uri in the hosts file, e.g. qemu+tcp://hostb/system",
        )
    opts = request.options
    flags: set[str] = {"VIR_MIGRATE_PEER2PEER"}
    params: dict[str, ParamValue] = {}
    if opts.undefine_source:
        flags.add("VIR_MIGRATE_UNDEFINE_SOURCE")
    if mode is MigrationMode.OFFLINE:
        # libvirt: "offline migration must be specified with the persistent flag set" (lab.md §6.2).
        flags |= {"VIR_MIGRATE_OFFLINE", "VIR_MIGRATE_PERSIST_DEST"}
        return _ordered(flags), params
    flags.add("VIR_MIGRATE_LIVE")
    if opts.persistent:
        flags.add("VIR_MIGRATE_PERSIST_DEST")
    if migration_address:
        params["migrate_uri"] = migrate_uri(migration_address)
    _add_live_options(opts, flags, params)
    if opts.tls or tls:
        flags.add("VIR_MIGRATE_TLS")
    if vm is not None:
        _add_storage(opts, vm, disks, flags, params)
    return _ordered(flags), params


def _add_live_options(opts: MigrationOptions, flags: set[str], params: dict[str, ParamValue]) -> None:
    """Bandwidth, post-copy, auto-converge, parallel connections and compression: their flags and params."""
    if opts.bandwidth_mib_s is not None:
        params["bandwidth"] = opts.bandwidth_mib_s
    if opts.postcopy or opts.postcopy_after_s is not None:
        flags.add("VIR_MIGRATE_POSTCOPY")
        if opts.bandwidth_mib_s is not None:
            # Otherwise post-copy runs uncapped (libvirt: 0 = unlimited) and ignores the operator's limit.
            params["bandwidth.postcopy"] = opts.bandwidth_mib_s
    if opts.auto_converge:
        flags.add("VIR_MIGRATE_AUTO_CONVERGE")
        params["auto_converge.initial"] = AUTO_CONVERGE_INITIAL_PCT
        params["auto_converge.increment"] = AUTO_CONVERGE_INCREMENT_PCT
    if opts.parallel_connections is not None:
        flags.add("VIR_MIGRATE_PARALLEL")
        params["parallel.connections"] = opts.parallel_connections
    if opts.compressed:
        flags.add("VIR_MIGRATE_COMPRESSED")
        params["compression"] = ["xbzrle"]


def _add_storage(
    opts: MigrationOptions, vm: VmFacts, disks: Sequence[DiskVisibility], flags: set[str], params: dict[str, ParamValue]
) -> None:
    """The disks to copy (--copy-storage) and whether libvirt must be told the shared storage is safe."""
    copied = disks_to_copy(vm, disks) if opts.copy_storage is not None else ()
    if copied:
        flags.add(
            "VIR_MIGRATE_NON_SHARED_INC" if opts.copy_storage is CopyStorage.INC else "VIR_MIGRATE_NON_SHARED_DISK"
        )
        params["migrate_disks"] = [p.disk.target for p in copied]
    if any(p.needs_unsafe for p in placements(vm, disks)):
        # Only where the storage probe proved both hosts see the same image (e.g. one ext4 in the lab)
        # but libvirt cannot tell: it would refuse with "Migration without shared storage is unsafe".
        flags.add("VIR_MIGRATE_UNSAFE")


def _ordered(flags: set[str]) -> tuple[str, ...]:
    return tuple(f for f in FLAG_ORDER if f in flags)


def default_timeout_s(data_bytes: int) -> float:
    """Completion budget when --timeout is not given: 150 s per GiB of memory + copied disk (KubeVirt's
    completionTimeoutPerGiB), at least 120 s.

    >>> default_timeout_s(256 * 1024**2), default_timeout_s(16 * 1024**3)
    (120.0, 2400.0)
    """
    return max(MIN_TIMEOUT_S, round(TIMEOUT_S_PER_GIB * data_bytes / GIB, 1))


def convergence_policy(
    request: MigrationRequest,
    vm: VmFacts | None,
    checks: Sequence[CheckResult],
    *,
    mode: MigrationMode = MigrationMode.LIVE,
    copy_bytes: int = 0,
) -> ConvergencePolicy:
    """What the convergence controller may do during the run; fixed now, so the approval covers it."""
    opts = request.options
    max_downtime = opts.max_downtime_ms or DEFAULT_MAX_DOWNTIME_MS
    if mode is MigrationMode.OFFLINE:
        return ConvergencePolicy(max_downtime_ms=max_downtime, timeout_s=opts.timeout_s)
    refused = any(c.name == "options.postcopy" and c.status is CheckStatus.FAIL for c in checks)
    wanted = opts.postcopy or opts.postcopy_after_s is not None
    allow = wanted and not refused and not postcopy_blockers(vm)
    memory = vm.memory_bytes if vm is not None else 0
    return ConvergencePolicy(
        max_downtime_ms=max_downtime,
        downtime_ramp_ms=downtime_ramp_ms(max_downtime),
        allow_postcopy=allow,
        postcopy_after_s=opts.postcopy_after_s if allow else None,
        timeout_s=opts.timeout_s if opts.timeout_s is not None else default_timeout_s(memory + copy_bytes),
        stall_timeout_s=STALL_TIMEOUT_S,
    )


def assemble_plan(
    request: MigrationRequest,
    source: str,
    destination: str,
    mode: MigrationMode,
    checks: Sequence[CheckResult],
    prediction: Prediction | None,
    flags: Sequence[str],
    params: Mapping[str, ParamValue],
    policy: ConvergencePolicy,
    recommendation: str | None,
    vm: VmFacts | None,
) -> Plan:
    """The Plan (its `hash` binds approvals; any FAIL check makes it not executable)."""
    return Plan(
        request=request,
        source=source,
        destination=destination,
        mode=mode,
        checks=tuple(checks),
        prediction=prediction,
        flags=_ordered(set(flags)) + tuple(sorted(f for f in set(flags) if f not in FLAG_ORDER)),
        params={k: (list(v) if isinstance(v, list) else v) for k, v in sorted(params.items())},
        policy=policy,
        recommendation=recommendation,
        vm_memory_bytes=vm.memory_bytes if vm is not None else 0,
        vm_uuid=vm.uuid if vm is not None else "",
    )


def postcopy_when_predicted(
    policy: ConvergencePolicy, prediction: Prediction | None, vm: VmFacts | None
) -> ConvergencePolicy:
    """Post-copy allowed but no --postcopy-after, and pre-copy predicted not to converge: switch after one pass.

    Waiting for the stall detector costs a whole stall timeout of futile pre-copy (measured in the lab: 97 s
    instead of 19 s for the busy guest on a 16 MiB/s link); after one full pass most memory is already
    there, so post-copy has little left to fetch on demand.

    >>> stuck = Prediction(False, None, None, 30.0, 16.0, None, "will not converge")
    >>> vm = VmFacts("v", "u", memory_bytes=256 * 2**20)
    >>> p = postcopy_when_predicted(ConvergencePolicy(allow_postcopy=True), stuck, vm)
    >>> p.postcopy_after_s
    19.2
    """
    if not policy.allow_postcopy or policy.postcopy_after_s is not None or vm is None or prediction is None:
        return policy
    if prediction.postcopy_switch_s is not None:  # the calibrated estimate's own switch time (one pass)
        return replace(policy, postcopy_after_s=prediction.postcopy_switch_s)
    if prediction.converges is not False or not prediction.bandwidth_mib_s:
        return policy
    one_pass_s = vm.memory_bytes / 2**20 / prediction.bandwidth_mib_s
    return replace(policy, postcopy_after_s=round(max(5.0, one_pass_s * 1.2), 1))


def make_plan(
    facts: PreflightFacts,
    prediction: Prediction | None,
    *,
    dest_peer_uri: str,
    migration_address: str | None = None,
    tls: bool = False,
    checks: Sequence[CheckResult] | None = None,
) -> Plan:
    """All of the above in order: checks (unless given), mode, flags and params, policy, advice, plan."""
    results = tuple(checks) if checks is not None else run_checks(facts)
    request, vm = facts.request, facts.vm
    mode = choose_mode(request, facts.vm_state)
    flags, params = build_flags_and_params(
        request,
        mode,
        vm,
        facts.disks,
        dest_peer_uri=dest_peer_uri,
        migration_address=migration_address,
        tls=tls,
    )
    copied = disks_to_copy(vm, facts.disks) if vm is not None and request.options.copy_storage else ()
    copy_bytes = sum((p.visibility.size_bytes or 0) for p in copied if p.visibility is not None)
    policy = convergence_policy(request, vm, results, mode=mode, copy_bytes=copy_bytes)
    policy = postcopy_when_predicted(policy, prediction, vm)
    advice = recommend(prediction, request, vm, results) if mode is MigrationMode.LIVE else None
    if policy.postcopy_after_s is not None and request.options.postcopy_after_s is None:
        auto = (
            f"- Pre-copy is predicted not to converge, so the bot switches to post-copy after "
            f"{policy.postcopy_after_s:g} s (about one full pass) instead of waiting for a stall."
        )
        advice = f"{advice}\n{auto}" if advice else auto
    return assemble_plan(
        request,
        facts.source.name,
        facts.destination.name,
        mode,
        results,
        prediction,
        flags,
        params,
        policy,
        advice,
        vm,
    )
