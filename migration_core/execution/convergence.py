"""The convergence controller: job stats over time + the approved policy -> continue / raise downtime /
switch to post-copy / abort, each with a reason an operator can read.

Pure: `decide(state, obs) -> (state, decision)`; the caller owns the clock (`obs.now_s`, any monotonic
seconds) and applies the decision (migrateSetMaxDowntime, migrateStartPostCopy, abortJob). The returned
state assumes the decision was applied; if applying it fails, keep the old state.

Rules, in order (KubeVirt's legacy monitor, oVirt's stalling schedule and Nova's downtime steps, combined):
1. In post-copy: never abort, whatever happens (the VM already runs on the destination; an abort would lose
   it). Say so when a stall or the budget would otherwise have acted.
2. Over the time budget (`timeout_s`): switch to post-copy when allowed and possible, else abort.
3. `postcopy_after_s` spent in pre-copy: switch to post-copy (when allowed).
4. Stalled for `stall_timeout_s` (see stall.py): post-copy when allowed; else one last chance at the max
   downtime when the final pass would fit within 1.5x of it (KubeVirt's "soft stop-and-copy"); else abort.
5. At a pre-copy iteration boundary, from `ramp_start_iteration` on, at most once per `ramp_cooldown_s`, and
   only when the new pass does not start at least 10 % smaller than the previous one ("stalling iteration",
   oVirt): raise the max downtime one step of the policy's ramp (never above `max_downtime_ms`); the ramp is
   `limits.downtime_ramp_ms`, fixed in the approved plan (the only ramp formula; the estimate times the stop
   against it).
6. Otherwise continue.
"""

from __future__ import annotations

import functools
from dataclasses import KW_ONLY, dataclass, field, replace

from migration_core.errors import RequestError
from migration_core.execution.stall import DEFAULT_EWMA_ALPHA, DEFAULT_MIN_DROP_FRACTION, Ewma, StallWatch, eta_s
from migration_core.hypervisor.jobstats import JobStatsReading
from migration_core.limits import RAMP_COOLDOWN_S, RAMP_START_ITERATION, SHRINKING_PASS
from migration_core.models import ControlAction, ConvergencePolicy, Decision, Phase
from migration_core.units import GIB, MIB

LAST_CHANCE_FACTOR = 1.5  # KubeVirt's precopyPossibleFactor


@dataclass(frozen=True)
class Observation:
    """One poll of the running job, as the controller needs it: the job stats, when, and in which phase."""

    now_s: float  # the caller's monotonic clock
    phase: Phase  # the progress tracker's (libvirt has no phase key: progress.detect_phase)
    reading: JobStatsReading


@dataclass(frozen=True)
class ControllerState:
    """All the controller remembers between polls; start from `ConvergenceController.initial_state()`."""

    downtime_ms: int  # the max downtime now in force
    step: int = 0  # index of `downtime_ms` in the ramp
    iteration: int = 0
    precopy_since_s: float | None = None
    last_raise_s: float | None = None
    pass_start_remaining_bytes: int | None = None  # data left when the current pass began: the final pass
    postcopy_requested_s: float | None = None
    postcopy_active: bool = False
    bandwidth: Ewma = field(default_factory=Ewma)
    stall: StallWatch = field(default_factory=StallWatch)


def _mib(n: float) -> str:
    return f"{n / MIB:.0f} MiB" if n >= 10 * MIB else f"{n / MIB:.1f} MiB"


@dataclass(frozen=True)
class ConvergenceController:
    """Applies one approved `ConvergencePolicy`; holds no mutable state (that is `ControllerState`)."""

    policy: ConvergencePolicy
    _: KW_ONLY
    memory_bytes: int = 0
    ramp_start_iteration: int = RAMP_START_ITERATION
    ramp_cooldown_s: float = RAMP_COOLDOWN_S
    postcopy_grace_s: float = 15.0
    ewma_alpha: float = DEFAULT_EWMA_ALPHA
    min_drop_fraction: float = DEFAULT_MIN_DROP_FRACTION

    def __post_init__(self) -> None:
        policy = self.policy
        if policy.max_downtime_ms <= 0 or any(ms <= 0 for ms in policy.downtime_ramp_ms):
            raise RequestError(
                f"the convergence policy's downtimes must be positive (max {policy.max_downtime_ms} ms,"
                f" ramp {list(policy.downtime_ramp_ms)})",
                "re-plan the migration with a positive --max-downtime",
            )
        if policy.stall_timeout_s <= 0 or (policy.timeout_s is not None and policy.timeout_s <= 0):
            raise RequestError(
                "the convergence policy's stall timeout and time budget must be positive",
                "re-plan the migration with a positive --timeout",
            )

    @functools.cached_property
    def ramp_ms(self) -> tuple[int, ...]:
        """The downtime steps: never above the approved max; an empty ramp means "the max from the start"."""
        steps = sorted({min(ms, self.policy.max_downtime_ms) for ms in self.policy.downtime_ramp_ms})
        return tuple(steps) or (self.policy.max_downtime_ms,)

    @property
    def initial_downtime_ms(self) -> int:
        """What the executor sets with migrateSetMaxDowntime when the migration starts."""
        return self.ramp_ms[0]

    def initial_state(self) -> ControllerState:
        return ControllerState(
            downtime_ms=self.initial_downtime_ms,
            bandwidth=Ewma(alpha=self.ewma_alpha),
            stall=StallWatch(min_drop_fraction=self.min_drop_fraction),
        )

    def note_downtime(self, state: ControllerState, downtime_ms: int) -> ControllerState:
        """An operator set the max downtime by hand: the ramp continues from the next step above it."""
        step = max((i for i, ms in enumerate(self.ramp_ms) if ms <= downtime_ms), default=0)
        return replace(state, downtime_ms=downtime_ms, step=step)

    def note_postcopy_requested(self, state: ControllerState, now_s: float) -> ControllerState:
        """An operator switched to post-copy by hand (the controller will not ask again)."""
        return replace(state, postcopy_requested_s=now_s)

    def decide(self, state: ControllerState, obs: Observation) -> tuple[ControllerState, Decision]:
        """Fold one observation into the state and decide what to do now."""
        bps = obs.reading.transfer_bytes_s  # 0 when nothing moves (setup): keep the last estimate
        bandwidth = state.bandwidth.update(bps) if bps > 0 else state.bandwidth
        stall = state.stall.observe(
            now_s=obs.now_s,
            phase=obs.phase,
            iteration=obs.reading.memory_iteration,
            remaining_bytes=obs.reading.remaining_bytes,
            bandwidth_bytes_s=bandwidth.value,
        )
        boundary = obs.phase is Phase.PRECOPY and obs.reading.memory_iteration > state.iteration
        previous_start = state.pass_start_remaining_bytes
        shrinking = (
            boundary and previous_start is not None and obs.reading.remaining_bytes < previous_start * SHRINKING_PASS
        )
        precopy_since = state.precopy_since_s
        if precopy_since is None and obs.phase is Phase.PRECOPY:
            precopy_since = obs.now_s
        state = replace(
            state,
            iteration=max(state.iteration, obs.reading.memory_iteration),
            precopy_since_s=precopy_since,
            pass_start_remaining_bytes=(
                obs.reading.remaining_bytes
                if boundary or state.pass_start_remaining_bytes is None
                else state.pass_start_remaining_bytes
            ),
            postcopy_active=state.postcopy_active or obs.phase is Phase.POSTCOPY,
            bandwidth=bandwidth,
            stall=stall,
        )
        return self._choose(state, obs, boundary and not shrinking)

    # -- the rules -------------------------------------------------------------------------------------

    def _choose(
        self, state: ControllerState, obs: Observation, stalling_boundary: bool
    ) -> tuple[ControllerState, Decision]:
        p = self.policy
        left = _mib(obs.reading.remaining_bytes)
        stalled_for = state.stall.stalled_for_s(obs.now_s)
        stalled = stalled_for >= p.stall_timeout_s
        over = p.timeout_s is not None and obs.reading.elapsed_s >= p.timeout_s
        if state.postcopy_active:
            return state, self._in_postcopy(state, obs, stalled, over, left)
        if obs.phase in (Phase.COMPLETING, Phase.DONE):
            return state, Decision(ControlAction.CONTINUE, f"switching over: {left} left")

        requested = state.postcopy_requested_s
        if requested is not None and obs.now_s - requested < self.postcopy_grace_s:
            return state, Decision(
                ControlAction.CONTINUE,
                f"post-copy requested {obs.now_s - requested:.0f} s ago; waiting for libvirt to switch",
            )
        can_switch = p.allow_postcopy and requested is None and obs.phase is Phase.PRECOPY
        why_not = self._why_no_postcopy(obs, requested)

        if over:
            budget = f"over the time budget of {p.timeout_s:.0f} s{self._budget_note()} at {left} remaining"
            if can_switch:
                return self._switch(state, obs, budget)
            return state, Decision(ControlAction.ABORT, f"{budget}; {why_not}; aborting")
        in_precopy_s = 0.0 if state.precopy_since_s is None else obs.now_s - state.precopy_since_s
        if can_switch and p.postcopy_after_s is not None and in_precopy_s >= p.postcopy_after_s:
            return self._switch(
                state,
                obs,
                f"{in_precopy_s:.0f} s in pre-copy (limit {p.postcopy_after_s:.0f} s) at {left} remaining",
            )
        if stalled:
            what = f"stalled for {stalled_for:.0f} s at {left} remaining"
            if can_switch:
                return self._switch(state, obs, what)
            last_chance = self._last_chance(state, obs, what)
            if last_chance is not None:
                return last_chance
            return state, Decision(ControlAction.ABORT, f"{what}; {why_not}; aborting")
        if stalling_boundary:
            raised = self._ramp(state, obs)
            if raised is not None:
                return raised
        return state, Decision(ControlAction.CONTINUE, self._status(state, obs, left))

    def _in_postcopy(self, state: ControllerState, obs: Observation, stalled: bool, over: bool, left: str) -> Decision:
        never = "not aborting: in post-copy the VM already runs on the destination and an abort would lose it"
        if stalled:
            return Decision(
                ControlAction.CONTINUE,
                f"post-copy has not progressed for {state.stall.stalled_for_s(obs.now_s):.0f} s at {left}"
                f" remaining; {never}. Check the migration network between the hosts",
            )
        if over:
            return Decision(
                ControlAction.CONTINUE,
                f"over the time budget of {self.policy.timeout_s:.0f} s{self._budget_note()}; {never}",
            )
        return Decision(ControlAction.CONTINUE, f"post-copy: {left} left" + self._eta(state, obs))

    def _switch(self, state: ControllerState, obs: Observation, why: str) -> tuple[ControllerState, Decision]:
        return (
            replace(state, postcopy_requested_s=obs.now_s),
            Decision(ControlAction.SWITCH_POSTCOPY, f"{why}; switching to post-copy"),
        )

    def _why_no_postcopy(self, obs: Observation, requested: float | None) -> str:
        if not self.policy.allow_postcopy:
            return "post-copy is not allowed by the plan"
        if requested is not None:
            return f"post-copy was requested {obs.now_s - requested:.0f} s ago but never started"
        return f"post-copy cannot help in the {obs.phase.value} phase"

    def _final_pass_ms(self, state: ControllerState) -> float | None:
        bw, start = state.bandwidth.value, state.pass_start_remaining_bytes
        if not bw or start is None:
            return None
        return start / bw * 1000

    def _last_chance(
        self, state: ControllerState, obs: Observation, what: str
    ) -> tuple[ControllerState, Decision] | None:
        top = self.policy.max_downtime_ms
        needs_ms = self._final_pass_ms(state)
        if obs.phase is not Phase.PRECOPY or state.downtime_ms >= top or needs_ms is None:
            return None
        if needs_ms > top * LAST_CHANCE_FACTOR:
            return None
        new = replace(
            state,
            downtime_ms=top,
            step=len(self.ramp_ms) - 1,
            last_raise_s=obs.now_s,
            stall=state.stall.restart(obs.now_s),
        )
        return new, Decision(
            ControlAction.RAISE_DOWNTIME,
            f"{what}; the last pass would need ~{needs_ms:.0f} ms, close to the approved max: raising the max"
            f" downtime to {top} ms as a last chance before aborting",
            downtime_ms=top,
        )

    def _ramp(self, state: ControllerState, obs: Observation) -> tuple[ControllerState, Decision] | None:
        if obs.reading.memory_iteration < self.ramp_start_iteration or state.step + 1 >= len(self.ramp_ms):
            return None
        if state.last_raise_s is not None and obs.now_s - state.last_raise_s < self.ramp_cooldown_s:
            return None
        step = state.step + 1
        downtime = self.ramp_ms[step]
        needs_ms = self._final_pass_ms(state)
        needs = f" (the last pass would need ~{needs_ms:.0f} ms)" if needs_ms is not None else ""
        return (
            replace(state, step=step, downtime_ms=downtime, last_raise_s=obs.now_s),
            Decision(
                ControlAction.RAISE_DOWNTIME,
                f"pass {obs.reading.memory_iteration} started with {_mib(obs.reading.remaining_bytes)} to send, not"
                f" 10 % less than the pass before{needs}: raising the max downtime"
                f" {state.downtime_ms} -> {downtime} ms (step {step} of {len(self.ramp_ms) - 1})",
                downtime_ms=downtime,
            ),
        )

    def _budget_note(self) -> str:
        if self.memory_bytes <= 0 or self.policy.timeout_s is None:
            return ""
        gib = self.memory_bytes / GIB
        return f" ({gib:.3g} GiB of memory × {self.policy.timeout_s / gib:.0f} s/GiB)"

    def _eta(self, state: ControllerState, obs: Observation) -> str:
        dirty = None
        if obs.reading.dirty_rate_pages_s is not None:
            dirty = obs.reading.dirty_rate_pages_s * obs.reading.page_size_bytes
        eta = eta_s(obs.phase, obs.reading.remaining_bytes, state.bandwidth.value, dirty)
        return "" if eta is None else f", ETA ~{eta:.0f} s"

    def _status(self, state: ControllerState, obs: Observation, left: str) -> str:
        bw = state.bandwidth.value
        speed = f" at {bw / MIB:.1f} MiB/s" if bw else ""
        where = f"pre-copy pass {obs.reading.memory_iteration}" if obs.phase is Phase.PRECOPY else obs.phase.value
        stalled_for = state.stall.stalled_for_s(obs.now_s)
        if stalled_for >= self.policy.stall_timeout_s / 4:  # an ETA would be fiction: say what is known
            outlook = f", no progress for {stalled_for:.0f} s (acting at {self.policy.stall_timeout_s:.0f} s)"
        else:
            outlook = self._eta(state, obs)
        return f"{where}: {left} left{speed}{outlook}, max downtime {state.downtime_ms} ms"
