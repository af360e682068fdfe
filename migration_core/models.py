"""Domain types shared by the whole core: requests, checks, predictions, plans, jobs, progress, summaries.

Everything here is a frozen dataclass or an enum: plain, typed, comparable, and free of I/O. Units are in
the field names (`_ms`, `_s`, `_mib_s`, `_bytes`) because migration numbers come in five units.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from migration_core.limits import DEFAULT_MAX_DOWNTIME_MS

# A libvirt typed-parameter value as the planner produces it (ints, strings, or a list for multi-value keys).
ParamValue = int | str | list[str]


class MigrationMode(StrEnum):
    """Live (the VM keeps running) or offline (the definition moves; the VM is shut off)."""

    LIVE = "live"
    OFFLINE = "offline"


class CopyStorage(StrEnum):
    """Which non-shared disks to copy: all of each disk, or only the top layer (`inc`)."""

    ALL = "all"
    INC = "inc"


@dataclass(frozen=True)
class MigrationOptions:
    """The options of a /migrate request exactly as the operator typed them (virsh's names).

    `mode=None` means "decide from the VM's state": running -> live, shut off -> offline.
    """

    mode: MigrationMode | None = None
    persistent: bool = True
    undefine_source: bool = False
    keep_source: bool = False  # keep the shut-off definition (and copied images) on the source, as virsh does
    postcopy: bool = False
    postcopy_after_s: float | None = None
    auto_converge: bool = False
    parallel_connections: int | None = None
    max_downtime_ms: int | None = None
    bandwidth_mib_s: int | None = None
    copy_storage: CopyStorage | None = None
    compressed: bool = False
    tls: bool = False
    timeout_s: float | None = None
    reason: str | None = None
    # Change control (issue 15): bypass a freeze (needs a reason and more approvers), the change ticket, and the
    # window the move may start in (aware datetimes; None = as soon as approved / no deadline).
    emergency: bool = False
    ticket: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None

    @property
    def wants_postcopy(self) -> bool:
        """Post-copy is asked for: --postcopy, or --postcopy-after (which implies it)."""
        return self.postcopy or self.postcopy_after_s is not None

    def live_only_flags(self) -> list[str]:
        """The options set here that tune a live memory copy (LIVE_ONLY_OPTIONS), as typed: ["--postcopy"]."""
        default = MigrationOptions()
        return [flag for f, flag in LIVE_ONLY_OPTIONS.items() if getattr(self, f) != getattr(default, f)]

    def without_live_only(self) -> MigrationOptions:
        """These options with every live-only one back to its default (for a move that runs offline)."""
        default = MigrationOptions()
        changes: dict[str, Any] = {f: getattr(default, f) for f in LIVE_ONLY_OPTIONS}
        return replace(self, **changes)


# The options that only tune a live migration's memory copy (field -> the flag that sets it): an offline move
# refuses them (preflight.options) or, in a drain, drops them (planning.drain.options_for).
LIVE_ONLY_OPTIONS: Mapping[str, str] = {
    "postcopy": "--postcopy",
    "postcopy_after_s": "--postcopy-after",
    "auto_converge": "--auto-converge",
    "parallel_connections": "--parallel",
    "max_downtime_ms": "--max-downtime",
    "bandwidth_mib_s": "--bandwidth",
    "copy_storage": "--copy-storage",
    "compressed": "--compressed",
}


# Change-control options added after plans were first stored: left out of the plan hash while they keep their
# defaults, so approvals given before the upgrade still bind the same plans.
_LATER_OPTIONS: Mapping[str, object] = {"emergency": False, "ticket": None, "not_before": None, "not_after": None}


@dataclass(frozen=True)
class GroupNeed:
    """`count` of a job's approvers must be members of `group` (an owners' rule of the policy file)."""

    group: str
    count: int = 1
    why: str = ""


@dataclass(frozen=True)
class ApprovalRequirement:
    """How many distinct approvers a job needs and from which groups, with the reasons (shown on the card).

    Computed once when the plan is made (migration_core.dispatch.approvals) and kept with the plan, so the card,
    the service and a restarted replica agree on it. `total` already covers the sum of the group needs.
    """

    total: int
    groups: tuple[GroupNeed, ...] = ()
    reasons: tuple[str, ...] = ()
    emergency: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> ApprovalRequirement:
        return ApprovalRequirement(
            total=int(data["total"]),
            groups=tuple(GroupNeed(g["group"], int(g["count"]), g.get("why", "")) for g in data.get("groups", ())),
            reasons=tuple(data.get("reasons", ())),
            emergency=bool(data.get("emergency", False)),
        )


@dataclass(frozen=True)
class MigrationRequest:
    """Move `vm` to the host named `destination`, with these options. The source is found by preflight."""

    vm: str
    destination: str
    options: MigrationOptions = field(default_factory=MigrationOptions)


class CheckStatus(StrEnum):
    """Outcome of one preflight or verification check.

    INFO: something the operator should know that is not a risk (e.g. "the old copy on hostB is replaced");
    SKIPPED: the check did not run (e.g. no guest agent): never shown or counted as passed.
    """

    PASS = "pass"
    INFO = "info"
    SKIPPED = "skipped"
    WARN = "warn"
    FAIL = "fail"


# How much a status weighs on an approval: a re-check may improve a check, never worsen it (Plan.within_approval_of).
_SEVERITY = {
    CheckStatus.PASS: 0,
    CheckStatus.INFO: 0,
    CheckStatus.SKIPPED: 1,
    CheckStatus.WARN: 2,
    CheckStatus.FAIL: 3,
}


@dataclass(frozen=True)
class CheckResult:
    """One check: a stable `name` (e.g. "cpu"), its status, why, and what to do about it."""

    name: str
    status: CheckStatus
    reason: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status.value, "reason": self.reason, "fix": self.fix}


@dataclass(frozen=True)
class Prediction:
    """How the move is predicted to go: converges?, total time and downtime with their p10-p90 range, basis.

    `converges=None` means it could not be predicted (e.g. no link bandwidth); `verdict` says why. Built by
    `planning.estimate.to_prediction`.
    """

    converges: bool | None
    total_s: float | None
    downtime_ms: float | None
    dirty_rate_mib_s: float | None
    bandwidth_mib_s: float | None
    passes: int | None
    verdict: str
    # The range and what it rests on (planning/estimate.py); absent in plans stored before issue 12.
    total_p10_s: float | None = None
    total_p90_s: float | None = None
    downtime_p10_ms: float | None = None
    downtime_p90_ms: float | None = None
    basis: str = ""
    samples: int = 0
    mode: str = ""  # the estimate's mode family, e.g. "pre-copy", "post-copy+parallel"
    # The uncalibrated model's figures and its main inputs, kept so the finished run can calibrate later ones.
    model_total_s: float | None = None
    model_downtime_ms: float | None = None
    transferable_bytes: int | None = None
    disk_bytes: int = 0
    postcopy_switch_s: float | None = None  # post-copy needed: the estimate assumed the switch after this long

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MoveSample:
    """One finished migration, as the store keeps it for calibration (planning/estimate.py): the model's
    uncalibrated figures for its inputs, what the card predicted, and what was measured."""

    vm_uuid: str
    vm: str
    source: str
    destination: str
    family: str
    finished_at: datetime
    succeeded: bool
    model_total_s: float
    model_downtime_ms: float | None
    predicted_total_s: float | None
    predicted_downtime_ms: float | None
    measured_total_s: float
    measured_downtime_ms: float | None
    memory_bytes_sent: int = 0  # memory_normal_bytes: all passes
    disk_bytes_sent: int = 0
    throughput_mib_s: float | None = None  # memory_bps at the end
    passes: int | None = None
    postcopy: bool = False
    link_mib_s: float | None = None  # the declared link (or --bandwidth) the prediction used
    disk_bytes: int = 0  # allocation of the disks --copy-storage sent
    postcopy_switch_s: float | None = None  # post-copy: when the policy switched (pre-copy would not converge)


@dataclass(frozen=True)
class ConvergencePolicy:
    """What the convergence controller may do during the run, fixed at plan time (and so approved)."""

    max_downtime_ms: int = DEFAULT_MAX_DOWNTIME_MS
    downtime_ramp_ms: tuple[int, ...] = ()
    allow_postcopy: bool = False
    postcopy_after_s: float | None = None
    timeout_s: float | None = None
    stall_timeout_s: float = 60.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["downtime_ramp_ms"] = list(self.downtime_ramp_ms)
        return data


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Plan:
    """Request + where it goes + checks + prediction + the exact libvirt flags and typed params to use.

    A plan with any failing check is not executable. `hash` binds approvals: it covers everything an
    approver agreed to (request, hosts, mode, flags, params, policy, check outcomes), but not the measured
    dirty rate, which differs on every run.
    """

    request: MigrationRequest
    source: str
    destination: str
    mode: MigrationMode
    checks: tuple[CheckResult, ...]
    prediction: Prediction | None
    flags: tuple[str, ...]
    params: Mapping[str, ParamValue]
    policy: ConvergencePolicy
    recommendation: str | None = None
    vm_memory_bytes: int = 0
    vm_uuid: str = ""
    # Who must approve (set by the service from the policy file; None: the built-in rule). Not in the hash:
    # it is derived from what the hash covers and the policy.
    approval: ApprovalRequirement | None = None

    @property
    def executable(self) -> bool:
        return all(c.status is not CheckStatus.FAIL for c in self.checks)

    @property
    def warnings(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.status is CheckStatus.WARN)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.status is CheckStatus.FAIL)

    @property
    def hash(self) -> str:
        bound = self._bound()
        bound["checks"] = sorted((c.name, c.status.value) for c in self.checks)
        return hashlib.sha256(_canonical(bound).encode()).hexdigest()[:16]

    def _bound(self) -> dict[str, Any]:
        """What an approval binds, apart from the checks: what will be done, where, how, to which VM."""
        request = asdict(self.request)
        options = request["options"]
        for key, default in _LATER_OPTIONS.items():
            if options.get(key) == default:
                del options[key]
        return {
            "request": request,
            "source": self.source,
            "destination": self.destination,
            "mode": self.mode.value,
            "flags": sorted(self.flags),
            "params": dict(self.params),
            "policy": self.policy.to_json(),
            "vm_uuid": self.vm_uuid,
        }

    def within_approval_of(self, approved: Plan) -> bool:
        """A fresh plan (the re-check before start) that the approval of `approved` still covers: the same move
        done the same way, and no check worse than it was (a warning that went away, e.g. more free memory
        on the destination than the drain's plan counted, is no new risk; a new or worse warning is).

        >>> from dataclasses import replace
        >>> ok = CheckResult("capacity.memory", CheckStatus.PASS, "plenty")
        >>> tight = CheckResult("capacity.memory", CheckStatus.WARN, "tight")
        >>> request = MigrationRequest("vm42", "hostB")
        >>> p = Plan(request, "hostA", "hostB", MigrationMode.LIVE, (tight,), None, (), {}, ConvergencePolicy())
        >>> replace(p, checks=(ok,)).within_approval_of(p), p.within_approval_of(replace(p, checks=(ok,)))
        (True, False)
        """
        if self._bound() != approved._bound():
            return False
        before = {c.name: _SEVERITY[c.status] for c in approved.checks}
        return all(_SEVERITY[c.status] <= before.get(c.name, _SEVERITY[CheckStatus.PASS]) for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """The `migrate-bot plan --json` contract (keys are relied on by other tools)."""
        return {
            "executable": self.executable,
            "vm": self.request.vm,
            "source": self.source,
            "destination": self.destination,
            "mode": self.mode.value,
            "checks": [c.to_json() for c in self.checks],
            "prediction": self.prediction.to_json() if self.prediction else None,
            "flags": list(self.flags),
            "params": dict(self.params),
            "policy": self.policy.to_json(),
            "recommendation": self.recommendation,
            "vm_memory_bytes": self.vm_memory_bytes,
            "vm_uuid": self.vm_uuid,
            "request": _request_to_json(self.request),
            "hash": self.hash,
            "approval": self.approval.to_json() if self.approval else None,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Plan:
        """Inverse of `to_json` (the store keeps plans as JSON)."""
        pred = data.get("prediction")
        pol = dict(data["policy"])
        pol["downtime_ramp_ms"] = tuple(pol.get("downtime_ramp_ms", ()))
        return Plan(
            request=_request_from_json(data["request"]),
            source=data["source"],
            destination=data["destination"],
            mode=MigrationMode(data["mode"]),
            checks=tuple(
                CheckResult(c["name"], CheckStatus(c["status"]), c["reason"], c.get("fix")) for c in data["checks"]
            ),
            prediction=Prediction(**pred) if pred else None,
            flags=tuple(data["flags"]),
            params=dict(data["params"]),
            policy=ConvergencePolicy(**pol),
            recommendation=data.get("recommendation"),
            vm_memory_bytes=int(data.get("vm_memory_bytes", 0)),
            vm_uuid=data.get("vm_uuid", ""),
            approval=ApprovalRequirement.from_json(data["approval"]) if data.get("approval") else None,
        )


def _request_to_json(req: MigrationRequest) -> dict[str, Any]:
    opts = asdict(req.options)
    opts["mode"] = req.options.mode.value if req.options.mode else None
    opts["copy_storage"] = req.options.copy_storage.value if req.options.copy_storage else None
    for key in ("not_before", "not_after"):
        opts[key] = opts[key].isoformat() if opts[key] is not None else None
    return {"vm": req.vm, "destination": req.destination, "options": opts}


def options_from_json(data: Mapping[str, Any]) -> MigrationOptions:
    """Inverse of `asdict(options)` as JSON (enums as values, datetimes as ISO strings)."""
    opts = dict(data)
    opts["mode"] = MigrationMode(opts["mode"]) if opts.get("mode") else None
    opts["copy_storage"] = CopyStorage(opts["copy_storage"]) if opts.get("copy_storage") else None
    for key in ("not_before", "not_after"):
        opts[key] = datetime.fromisoformat(opts[key]) if opts.get(key) else None
    return MigrationOptions(**opts)


def _request_from_json(data: Mapping[str, Any]) -> MigrationRequest:
    return MigrationRequest(vm=data["vm"], destination=data["destination"], options=options_from_json(data["options"]))


class JobState(StrEnum):
    """The job state machine; every transition is persisted (see jobs.py for the allowed moves)."""

    REQUESTED = "requested"
    PREFLIGHT = "preflight"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    QUEUED = "queued"
    RUNNING = "running"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    DENIED = "denied"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.ABORTED, JobState.DENIED, JobState.EXPIRED})


@dataclass(frozen=True)
class Approval:
    """One approval (or denial) of a job, bound to the plan hash it was given for."""

    job_id: int
    actor: str
    approved: bool
    plan_hash: str
    at: datetime
    # The requirement's groups the approver was a member of when approving (for "1 more from @dba").
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChatRefs:
    """Where a front end shows a job or a drain: the card's channel, the card's thread, the progress message.

    Opaque to the core: Slack ids from Slack, the console's own values from the console. The front end learns
    them one at a time (the card is posted before the first progress message), so an update carries only what
    it just learnt: read as an update (`changes`), a None field keeps the value already stored.
    """

    channel: str | None = None
    thread: str | None = None
    progress: str | None = None

    def changes(self) -> dict[str, str]:
        """These references read as an update: the fields they set (a None field keeps the stored value).

        >>> ChatRefs(thread="171.5").changes()
        {'thread': '171.5'}
        """
        return {name: value for name, value in asdict(self).items() if value is not None}


NO_CHAT = ChatRefs()  # a job or drain not shown anywhere yet


@dataclass(frozen=True)
class Job:
    """A migration request's record. `chat` says where the front end shows it."""

    id: int
    vm: str
    source: str
    destination: str
    requester: str
    state: JobState
    created_at: datetime
    updated_at: datetime
    plan: Plan | None = None
    reason: str | None = None
    chat: ChatRefs = NO_CHAT
    approvals: tuple[Approval, ...] = ()
    error: str | None = None
    owner: str | None = None
    drain_id: int | None = None  # a move of this drain (migration_core.drains)

    @property
    def approvers(self) -> tuple[str, ...]:
        """Who approved the job's CURRENT plan: an approval given for another plan hash no longer binds."""
        current = self.plan.hash if self.plan else None
        return tuple(a.actor for a in self.approvals if a.approved and (current is None or a.plan_hash == current))

    @property
    def deniers(self) -> tuple[str, ...]:
        return tuple(a.actor for a in self.approvals if not a.approved)


class Phase(StrEnum):
    """Where a running migration is."""

    SETUP = "setup"
    PRECOPY = "pre-copy"
    POSTCOPY = "post-copy"
    STORAGE = "storage copy"
    COMPLETING = "completing"
    DONE = "done"


@dataclass(frozen=True)
class ProgressSample:
    """One progress reading, already in human units. `percent` never goes backwards and stays < 100 until done."""

    job_id: int
    at: datetime
    phase: Phase
    percent: float
    elapsed_s: float
    data_processed_bytes: int
    data_remaining_bytes: int
    data_total_bytes: int
    throughput_mib_s: float
    dirty_rate_mib_s: float | None
    iteration: int
    expected_downtime_ms: int | None
    eta_s: float | None
    stalled: bool
    stalled_for_s: float = 0.0
    postcopy_requests: int = 0
    auto_converge_throttle_pct: int = 0
    # Why the ETA moved later than the range announced on the card allows (shown live; not stored).
    eta_note: str | None = None


class ControlAction(StrEnum):
    """What the convergence controller (or an operator) decides to do with a running migration."""

    CONTINUE = "continue"
    RAISE_DOWNTIME = "raise_downtime"
    SWITCH_POSTCOPY = "switch_postcopy"
    ABORT = "abort"


@dataclass(frozen=True)
class Decision:
    """A controller decision and its human reason; `downtime_ms` is set for RAISE_DOWNTIME."""

    action: ControlAction
    reason: str
    downtime_ms: int | None = None


@dataclass(frozen=True)
class VerificationSummary:
    """How the migration ended, checked on both hosts, with the measured numbers."""

    job_id: int
    outcome: JobState
    headline: str
    checks: tuple[CheckResult, ...]
    source_state: str
    destination_state: str
    downtime_ms: int | None = None
    downtime_target_ms: int | None = None
    total_s: float | None = None
    data_bytes: int | None = None
    throughput_mib_s: float | None = None
    iterations: int | None = None
    next_step: str | None = None
    evidence: str | None = None  # what proves the guest alive on the destination (vCPU time, guest agent)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["checks"] = [c.to_json() for c in self.checks]
        return data
