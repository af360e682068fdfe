"""Operator controls of a running migration, each checked against the run's state and recorded with its actor.

abort (refused in post-copy: it would lose the VM), switch to post-copy (only when the plan enabled it),
pause a post-copy migration, set the max downtime, cap the bandwidth. Refusals raise StateError / RequestError
with the reason; every applied control becomes a Notice in the job's thread and a ControlRecord in the result.
"""

from __future__ import annotations

from migration_core.errors import HypervisorError, StateError
from migration_core.events import NoticeKind
from migration_core.execution.base import ExecutorBase
from migration_core.limits import BANDWIDTH_MIB_S, MAX_DOWNTIME_MS


class ControlsMixin(ExecutorBase):
    """`Executor`'s operator controls."""

    async def abort(self, job_id: int, actor: str) -> None:
        """Cancel a pre-copy migration; the VM keeps running on the source. Refused in post-copy."""
        run = self._active(job_id, "be aborted")
        if run.postcopy:
            await self._control(run, actor, "abort", "refused: the migration is in post-copy", applied=False)
            raise StateError(
                f"job {job_id} is in post-copy: the VM already runs on {run.route.destination.name} and part "
                f"of its memory is still on {run.route.source.name}; aborting now would lose the VM",
                "let it finish; if the link broke, recover with post-copy resume",
            )
        run.aborted_by = actor
        if not run.call_started:  # still preparing (storage, downtime): the run sees the mark and never starts
            await self._control(run, actor, "abort", "abort requested before the migration started; it will not start")
            return
        try:
            await self.hypervisor.abort_job(run.route.source.uri, run.route.vm)
        except HypervisorError:
            if run.tracker.last is not None:
                raise  # the job was seen, so it has ended (or libvirt refused): the caller hears why
            # The call has just gone out and libvirt shows no job yet: the watch sends the abort once it does.
            run.abort_pending = True
            detail = "abort requested as the migration starts; it is sent as soon as libvirt shows the job"
            await self._control(run, actor, "abort", detail)
            return
        await self._control(run, actor, "abort", "abort requested; the VM stays on the source")

    async def switch_postcopy(self, job_id: int, actor: str) -> None:
        """Switch to post-copy now (only when the plan enabled it with VIR_MIGRATE_POSTCOPY)."""
        run = self._active(job_id, "switch to post-copy")
        if "POSTCOPY" not in run.route.flag_set:
            raise StateError(
                f"job {job_id} was not started with post-copy enabled, so it cannot switch",
                "abort it and migrate again with --postcopy",
            )
        if run.postcopy:
            raise StateError(f"job {job_id} is already in post-copy", "nothing to do: it will finish on its own")
        await self.hypervisor.start_postcopy(run.route.source.uri, run.route.vm)
        run.postcopy = True
        if run.controller is not None and run.state is not None:
            run.state = run.controller.note_postcopy_requested(run.state, self.clock().timestamp())
        await self._control(
            run,
            actor,
            "switch_postcopy",
            "switched to post-copy: the VM now runs on the destination; it can no longer be aborted",
            kind=NoticeKind.POSTCOPY,
        )

    async def pause_postcopy(self, job_id: int, actor: str) -> None:
        """Pause a post-copy migration (abortJobFlags POSTCOPY): the VM waits for `recover_postcopy`.

        Caution from the lab (QEMU 7.2): pausing while the link is down and the destination has not yet
        noticed made the destination's QEMU crash once the link came back. Prefer waiting for libvirt to
        declare the post-copy failed, then `recover_postcopy`.
        """
        run = self._active(job_id, "pause its post-copy")
        if not run.postcopy:
            raise StateError(
                f"job {job_id} is not in post-copy, so there is nothing to pause",
                "in pre-copy, abort instead: the VM keeps running on the source",
            )
        await self.hypervisor.pause_postcopy(run.route.source.uri, run.route.vm)
        await self._control(
            run,
            actor,
            "pause_postcopy",
            "post-copy paused: the VM waits until the migration is resumed (POSTCOPY_RESUME)",
            kind=NoticeKind.POSTCOPY,
        )

    async def set_max_downtime(self, job_id: int, downtime_ms: int, actor: str) -> None:
        """Set the max downtime (ms) of a pre-copy migration; the controller's ramp continues from it."""
        MAX_DOWNTIME_MS.check(downtime_ms, "max downtime", f"{downtime_ms} ms")
        run = self._active(job_id, "change its max downtime")
        if run.postcopy:
            raise StateError(f"job {job_id} is in post-copy: the max downtime no longer applies", "")
        await self.hypervisor.set_max_downtime(run.route.source.uri, run.route.vm, downtime_ms)
        if run.controller is not None and run.state is not None:
            run.state = run.controller.note_downtime(run.state, downtime_ms)
        await self._control(run, actor, "set_max_downtime", f"max downtime set to {downtime_ms} ms")

    async def set_bandwidth(self, job_id: int, bandwidth_mib_s: int, actor: str) -> None:
        """Cap the migration bandwidth (MiB/s); in post-copy the post-copy cap is set."""
        BANDWIDTH_MIB_S.check(bandwidth_mib_s, "bandwidth", f"{bandwidth_mib_s} MiB/s")
        run = self._active(job_id, "change its bandwidth")
        await self.hypervisor.set_max_speed(run.route.source.uri, run.route.vm, bandwidth_mib_s, postcopy=run.postcopy)
        phase = "post-copy" if run.postcopy else "pre-copy"
        await self._control(run, actor, "set_bandwidth", f"{phase} bandwidth capped at {bandwidth_mib_s} MiB/s")
