"""The real executor (and preflight, verification) on the in-memory fleet, in virtual time.

These add what the lab cannot hold: guests that never converge, exact fault timing, minutes of migration per
test in milliseconds. The lab tests remain the proof that real migrations behave this way.
"""

from __future__ import annotations

import asyncio

from migration_core.hypervisor.fleet import Fleet, HostSpec, Phase, VmSpec, run_virtual
from migration_core.hypervisor.types import DomainState
from migration_core.models import ControlAction, JobState
from tests.migration_core.fleet.support import H1, H2, rig, started, when

CALM = VmSpec("calm", host=H1, memory_mib=4096, transferable_mib=1024, dirty_mib_s=5)
# Dirties 2 GiB at 600 MiB/s over a 200 MiB/s link: no max downtime the controller may set makes it converge.
BUSY = VmSpec("busy", host=H1, memory_mib=4096, dirty_mib_s=600, working_set_mib=2048)
SLOW = (HostSpec(H1, link_mib_s=200), HostSpec(H2, link_mib_s=200))


def _slow_daemon(fleet: Fleet, call: str, delay_s: float) -> None:
    """The fleet's daemon takes `delay_s` (virtual) before it does `call`, as a loaded libvirtd would."""
    do = getattr(fleet, call)

    async def slow(*args: object) -> object:
        await asyncio.sleep(delay_s)
        return await do(*args)

    setattr(fleet, call, slow)


def test_calm_guest_moves_and_the_summary_says_so() -> None:
    r = rig(CALM)

    async def main() -> None:
        plan = await r.plan("calm")
        result = await r.executor.run(1, plan)
        assert result.outcome is JobState.SUCCEEDED, result.error
        assert r.fleet.where("calm") == H2
        assert result.completed is not None and result.completed.get_int("downtime") > 0
        # zero pages are skipped: far less than the guest's 4 GiB went over the wire
        assert result.completed.get_int("memory_processed") < 2 * 1024**3
        summary = await r.executor.summarize(plan, result, emit=False)
        assert summary.outcome is JobState.SUCCEEDED
        assert r.sink.progress()[-1].sample.percent == 100

    run_virtual(main())


def test_busy_guest_that_never_converges_is_aborted_and_stays_on_the_source() -> None:
    r = rig(BUSY, hosts=SLOW)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        plan = await r.plan("busy")
        t0 = loop.time()
        result = await r.executor.run(1, plan)
        took = loop.time() - t0
        assert result.outcome is JobState.ABORTED, result.error
        actions = [d.action for d in result.decisions]
        assert ControlAction.RAISE_DOWNTIME in actions and actions[-1] is ControlAction.ABORT
        assert r.fleet.where("busy") == H1
        assert r.fleet.state_on(H1, "busy").state is DomainState.RUNNING
        assert not r.fleet.state_on(H2, "busy").present
        assert took > 30  # it tried for a while (virtual seconds) before giving up

    run_virtual(main())


def test_busy_guest_with_postcopy_is_switched_and_completes() -> None:
    r = rig(BUSY, hosts=SLOW)

    async def main() -> None:
        plan = await r.plan("busy", postcopy=True)
        result = await r.executor.run(1, plan)
        assert result.outcome is JobState.SUCCEEDED, result.error
        assert result.postcopy
        assert ControlAction.SWITCH_POSTCOPY in [d.action for d in result.decisions]
        assert r.fleet.where("busy") == H2
        assert result.completed is not None and result.completed.get_int("memory_postcopy_requests") > 0

    run_virtual(main())


def test_operator_switches_to_postcopy() -> None:
    r = rig(BUSY, hosts=SLOW)

    async def main() -> None:
        plan = await r.plan("busy", postcopy=True, postcopy_after_s=3600)
        task = await started(r.executor.run(1, plan))
        await when(lambda: r.fleet.job_phase("busy") is Phase.PRECOPY)
        await asyncio.sleep(5)
        await r.executor.switch_postcopy(1, "alice")
        result = await task
        assert result.outcome is JobState.SUCCEEDED, result.error
        assert result.postcopy
        assert any(c.actor == "alice" for c in result.controls)

    run_virtual(main())


def test_operator_abort_leaves_the_guest_running_on_the_source() -> None:
    r = rig(BUSY, hosts=SLOW)

    async def main() -> None:
        plan = await r.plan("busy")
        task = await started(r.executor.run(1, plan))
        await when(lambda: r.fleet.job_phase("busy") is Phase.PRECOPY)
        await asyncio.sleep(3)
        await r.executor.abort(1, "alice")
        result = await task
        assert result.outcome is JobState.ABORTED
        assert result.aborted_by == "alice"
        assert (result.error or "").startswith("aborted by alice (libvirt: ")  # what libvirt answered the call
        assert r.fleet.state_on(H1, "busy").state is DomainState.RUNNING
        assert not r.fleet.state_on(H2, "busy").present

    run_virtual(main())


def test_an_abort_while_the_run_is_prepared_means_libvirt_never_starts_it() -> None:
    """Before the migrate call (storage, max downtime being set on a slow daemon) an abort cannot reach a
    libvirt job yet: the run keeps the mark and never makes the call."""
    r = rig(CALM)
    _slow_daemon(r.fleet, "set_max_downtime", 2.0)

    async def main() -> None:
        plan = await r.plan("calm")
        task = await started(r.executor.run(1, plan))
        await asyncio.sleep(1)
        assert r.executor.running(1) and r.fleet.job_phase("calm") is None
        await r.executor.abort(1, "alice")
        result = await task
        assert result.outcome is JobState.ABORTED and result.aborted_by == "alice"
        assert "before the migration started" in (result.error or "")
        assert "libvirt:" not in (result.error or "")  # libvirt said nothing: the words are the bot's own
        assert r.fleet.where("calm") == H1 and not r.fleet.state_on(H2, "calm").present

    run_virtual(main())


def test_an_abort_before_libvirt_shows_the_job_is_sent_when_it_does() -> None:
    """Just after the migrate call, libvirt may not show the job yet ("no job is active"): the abort is kept and
    sent at the first reading that shows the job, instead of being refused while the migration goes on."""
    r = rig(CALM, hosts=SLOW)
    _slow_daemon(r.fleet, "migrate", 2.0)  # the source daemon is still setting the job up

    async def main() -> None:
        plan = await r.plan("calm")
        task = await started(r.executor.run(1, plan))
        await asyncio.sleep(1)
        assert r.executor.running(1) and r.fleet.job_phase("calm") is None  # called, but no job shown yet
        await r.executor.abort(1, "alice")  # not refused
        result = await task
        assert result.outcome is JobState.ABORTED and result.aborted_by == "alice", result.error
        assert r.fleet.where("calm") == H1 and not r.fleet.state_on(H2, "calm").present
        assert any("sent as soon as libvirt shows the job" in n for n in r.sink.notices())

    run_virtual(main())


def test_injected_migration_failure_is_reported_with_the_true_state() -> None:
    r = rig(CALM, hosts=SLOW)

    async def main() -> None:
        plan = await r.plan("calm")
        r.fleet.fail_migration("calm", "operation failed: migration out job: unexpectedly failed")
        result = await r.executor.run(1, plan)
        assert result.outcome is JobState.FAILED
        assert result.error and "unexpectedly failed" in result.error
        assert result.source is not None and result.source.state is DomainState.RUNNING
        assert r.fleet.where("calm") == H1

    run_virtual(main())


def test_link_cut_in_postcopy_breaks_it_and_recovery_finishes_it() -> None:
    r = rig(BUSY, hosts=SLOW)

    async def main() -> None:
        plan = await r.plan("busy", postcopy=True, postcopy_after_s=3600)
        task = await started(r.executor.run(1, plan))
        await when(lambda: r.fleet.job_phase("busy") is Phase.PRECOPY)
        await asyncio.sleep(4)
        await r.executor.switch_postcopy(1, "alice")
        await asyncio.sleep(1)
        r.fleet.cut_link(H1, H2)
        broken = await task
        assert broken.outcome is JobState.FAILED
        assert broken.source is not None and broken.source.postcopy_failed
        # While the link is down, recovery refuses and touches nothing.
        try:
            await r.executor.recover_postcopy(1, plan, "alice", settle_s=1)
        except Exception as err:  # HostUnreachable
            assert "cannot reach" in str(err)
        else:
            raise AssertionError("recovery should refuse while the link is down")
        r.fleet.restore_link(H1, H2)
        recovered = await r.executor.recover_postcopy(1, plan, "alice", settle_s=1)
        assert recovered.outcome is JobState.SUCCEEDED, recovered.error
        assert r.fleet.where("busy") == H2
        assert r.fleet.state_on(H2, "busy").state is DomainState.RUNNING

    run_virtual(main())


def test_link_cut_in_precopy_fails_and_the_guest_stays() -> None:
    r = rig(BUSY, hosts=SLOW)

    async def main() -> None:
        plan = await r.plan("busy")
        task = await started(r.executor.run(1, plan))
        await when(lambda: r.fleet.job_phase("busy") is Phase.PRECOPY)
        r.fleet.cut_link(H1, H2)
        result = await task
        assert result.outcome is JobState.FAILED
        assert r.fleet.state_on(H1, "busy").state is DomainState.RUNNING
        assert any("stall" in n or "no progress" in n for n in r.sink.notices()) or result.error

    run_virtual(main())


def test_destination_daemon_gone_mid_migration_fails_and_the_guest_stays() -> None:
    r = rig(BUSY, hosts=SLOW)

    async def main() -> None:
        plan = await r.plan("busy")
        task = await started(r.executor.run(1, plan))
        await when(lambda: r.fleet.job_phase("busy") is Phase.PRECOPY)
        r.fleet.stop_daemon(H2)
        result = await task
        assert result.outcome is JobState.FAILED
        assert result.destination is None  # the destination did not answer
        assert result.source is not None and result.source.state is DomainState.RUNNING
        r.fleet.start_daemon(H2)
        assert not r.fleet.state_on(H2, "busy").present
        assert r.fleet.where("busy") == H1

    run_virtual(main())
