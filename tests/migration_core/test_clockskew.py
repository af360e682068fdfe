"""Clock skew between hosts: the pure judgement (offsets -> skew -> problem or not, uncertainty included), the
volume-XML timestamp parser, and `migrate-bot doctor` on the in-memory fleet with one host's clock 30 s off
(and the flat host keys of `doctor --json`)."""

from __future__ import annotations

import asyncio

import pytest

from migration_core.facts.storage_xml import volume_ctime
from migration_core.hypervisor.fleet import Fleet, HostSpec
from migration_core.hypervisor.types import ClockReading, HostVersions
from migration_core.models import CheckStatus
from migration_core.preflight.clockskew import MAX_SKEW_S, Verdict, judge, offset_text
from migration_core.preflight.doctor import render_text, run_doctor
from migration_core.preflight.runner import PreflightRunner


def r(offset: float, uncertainty: float = 0.005) -> ClockReading:
    return ClockReading(offset, uncertainty)


def test_synchronised_hosts_are_ok() -> None:
    j = judge({"a": r(0.01), "b": r(-0.02), "c": r(0.0)})
    assert j.verdict is Verdict.OK and j.between == ("a", "b") and j.to_fix == ()
    assert j.max_skew_s == pytest.approx(0.03) and j.uncertainty_s == pytest.approx(0.01)
    assert j.threshold_s == MAX_SKEW_S == 2.0


def test_one_host_far_off_is_named_alone() -> None:
    j = judge({"a": r(0.0), "b": r(30.0), "c": r(0.1)})
    assert j.verdict is Verdict.TOO_LARGE and j.max_skew_s == pytest.approx(30.0)
    assert set(j.between) == {"a", "b"} and j.to_fix == ("b",)


def test_two_hosts_drifting_apart_are_both_named() -> None:
    # Neither is 2 s from the bot's clock, but they are 3 s apart: both need NTP.
    j = judge({"a": r(-1.5), "b": r(1.5)})
    assert j.verdict is Verdict.TOO_LARGE and j.to_fix == ("a", "b")


def test_uncertainty_decides_between_ok_unsure_and_too_large() -> None:
    # 2.5 s measured, ± 0.2 s: surely over.
    assert judge({"a": r(0.0, 0.1), "b": r(2.5, 0.1)}).verdict is Verdict.TOO_LARGE
    # 2.5 s measured over a slow link (± 1 s): the threshold lies inside the uncertainty.
    unsure = judge({"a": r(0.0, 0.5), "b": r(2.5, 0.5)})
    assert unsure.verdict is Verdict.UNSURE and unsure.to_fix == ("b",)
    # 1.5 s ± 1 s may be over: unsure, not ok.
    assert judge({"a": r(0.0, 0.5), "b": r(1.5, 0.5)}).verdict is Verdict.UNSURE
    # 1.5 s ± 0.2 s: surely under.
    assert judge({"a": r(0.0, 0.1), "b": r(1.5, 0.1)}).verdict is Verdict.OK


def test_fewer_than_two_readings_is_not_checked_never_ok() -> None:
    for readings in ({}, {"a": r(0.0)}):
        j = judge(readings)
        assert j.verdict is Verdict.NOT_CHECKED and j.max_skew_s is None


def test_offset_text() -> None:
    assert offset_text(ClockReading(30.0, 0.002)) == "30.000 s ahead of the bot's clock (± 0.002 s)"
    assert offset_text(ClockReading(-0.25, 0.01)) == "0.250 s behind the bot's clock (± 0.010 s)"


VOLUME = """<volume type='file'><name>p</name><target><path>/var/tmp/p</path><format type='raw'/>
<timestamps><atime>1796398883.624591684</atime><mtime>1796398883.623909015</mtime>
<ctime>{ctime}</ctime><btime>0</btime></timestamps></target></volume>"""


def test_volume_ctime_reads_the_hosts_timestamp() -> None:
    assert volume_ctime(VOLUME.format(ctime="1796398883.623909015")) == pytest.approx(1796398883.623909015)
    assert volume_ctime(VOLUME.format(ctime="1796398883")) == 1796398883.0
    # No ctime -> mtime; no timestamps at all (a pool type without them) -> None.
    assert volume_ctime(VOLUME.replace("<ctime>{ctime}</ctime>", "")) == pytest.approx(1796398883.623909015)
    assert volume_ctime("<volume><name>p</name><target><path>/x</path></target></volume>") is None


def _doctor(fleet: Fleet):  # type: ignore[no-untyped-def]
    inventory = fleet.inventory()
    return asyncio.run(run_doctor(inventory, fleet, PreflightRunner(inventory, fleet, prober=fleet.probe)))


def test_doctor_on_the_fleet_names_the_host_whose_clock_is_30_s_off() -> None:
    fleet = Fleet.build(hosts=[HostSpec("h1"), HostSpec("h2", clock_offset_s=30.0), HostSpec("h3")])
    report = _doctor(fleet)
    assert report.ready is False
    skew = [f for f in report.findings if f.result.name == "clock.skew"]
    assert len(skew) == 1 and skew[0].result.status is CheckStatus.FAIL
    fix = skew[0].result.fix
    assert "30.000 s" in skew[0].result.reason and fix and "on h2" in fix and "h1 " not in fix
    data = report.to_json()
    assert data["clock_skew"]["verdict"] == "too_large" and data["clock_skew"]["to_fix"] == ("h2",)
    assert data["clock_skew"]["max_skew_s"] == pytest.approx(30.0) and data["clock_skew"]["threshold_s"] == 2.0
    offsets = {h["name"]: h["clock_offset_s"] for h in data["hosts"]}
    assert offsets == {"h1": 0.0, "h2": 30.0, "h3": 0.0}
    assert "[FAIL] h1, h2, h3 clock.skew" in render_text(report) and "fix: enable time synchronisation on h2" in (
        render_text(report)
    )


def test_doctor_on_the_fleet_with_synchronised_clocks_is_ready() -> None:
    report = _doctor(Fleet.build(hosts=[HostSpec("h1"), HostSpec("h2", clock_offset_s=0.4)]))
    assert report.ready is True
    checks = {(f.subject, f.result.name): f.result for f in report.findings}
    assert checks[("h1, h2", "clock.skew")].status is CheckStatus.PASS
    assert checks[("h2", "clock")].reason == "0.400 s ahead of the bot's clock (± 0.000 s)"


def test_doctor_says_not_checked_when_a_clock_cannot_be_read() -> None:
    fleet = Fleet.build(hosts=[HostSpec("h1"), HostSpec("h2", clock_offset_s=30.0)])

    async def refused(uri: str) -> ClockReading:
        from migration_core.errors import HypervisorError

        raise HypervisorError(f"{uri}: access denied: creating a storage volume", "grant storage_vol.create")

    fleet.clock_reading = refused  # type: ignore[method-assign]
    report = _doctor(fleet)
    checks = {(f.subject, f.result.name): f.result for f in report.findings}
    for host in ("h1", "h2"):
        assert checks[(host, "clock")].status is CheckStatus.WARN
        assert checks[(host, "clock")].reason.startswith("not checked: ")
    skew = checks[("h1, h2", "clock.skew")]
    assert skew.status is CheckStatus.WARN and skew.reason.startswith("not checked")
    assert report.to_json()["clock_skew"]["verdict"] == "not_checked"


def test_doctor_json_keeps_each_hosts_flat_keys_and_the_text_its_versions() -> None:
    """The report holds the port's typed versions and clock; `doctor --json` still flattens them for scripts."""
    fleet = Fleet.build(hosts=[HostSpec("h1", libvirt_version=9_001_002), HostSpec("h2", clock_offset_s=0.4)])
    read_versions = fleet.versions

    async def versions(uri: str) -> HostVersions:
        if "h2" in uri:
            from migration_core.errors import HypervisorError

            raise HypervisorError(f"{uri}: access denied: reading the versions", "grant connect.read")
        return await read_versions(uri)

    fleet.versions = versions  # type: ignore[method-assign]
    report = _doctor(fleet)
    hosts = {h["name"]: h for h in report.to_json()["hosts"]}
    keys = ["name", "uri", "transport", "reachable", "hostname", "uuid"]
    keys += ["libvirt_version", "qemu_version", "clock_offset_s", "clock_uncertainty_s"]
    assert [list(h) for h in hosts.values()] == [keys, keys]
    assert (hosts["h1"]["libvirt_version"], hosts["h1"]["qemu_version"]) == (9_001_002, 7_002_000)
    assert (hosts["h2"]["libvirt_version"], hosts["h2"]["qemu_version"]) == (None, None)
    assert (hosts["h2"]["clock_offset_s"], hosts["h2"]["clock_uncertainty_s"]) == (0.4, 0.0)
    text = render_text(report)
    assert "[ok  ] h1 versions: libvirt 9.1.2, QEMU 7.2.0, host UUID " in text
    assert "[FAIL] h2 versions: qemu+fleet://h2/system: access denied: reading the versions" in text
