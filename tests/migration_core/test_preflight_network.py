"""Preflight check 9: the VM's bridges / networks / macvtap devices exist on the destination; ports answer."""

from __future__ import annotations

from typing import Any

import pytest

from migration_core.facts.gathered import PortProbe, VmState
from migration_core.hypervisor.types import NetworkInfo
from migration_core.models import CheckStatus
from migration_core.preflight import network
from tests.migration_core.fixtures.build import facts, one

PASS, WARN, FAIL = CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL
ALL_THERE: dict[str, Any] = {
    "destination_networks": (NetworkInfo("default", True, "virbr0"),),
    "destination_bridges": frozenset({"virbr0", "br-prod"}),
    "destination_netdevs": frozenset({"eno2"}),
}


def test_every_nic_source_present_passes() -> None:
    r = one(network.check_sources(facts("dom_vm42.xml", **ALL_THERE)))
    assert r.status is PASS
    assert "network default, bridge br-prod, host interface eno2 (macvtap)" in r.reason and "seed 12.4" in r.reason


@pytest.mark.parametrize(
    ("override", "expected", "fragment"),
    [
        ({"destination_bridges": frozenset({"virbr0"})}, FAIL, "hostB lacks bridge br-prod"),
        ({"destination_networks": ()}, FAIL, "hostB lacks network default"),
        (
            {"destination_networks": (NetworkInfo("default", False),)},
            FAIL,
            "defined on hostB but not active",
        ),
        ({"destination_netdevs": frozenset({"eno1"})}, FAIL, "host interface eno2 (macvtap)"),
        ({"destination_bridges": None}, WARN, "unchecked: bridge br-prod"),
    ],
)
def test_missing_or_unknown_sources(override: dict[str, Any], expected: CheckStatus, fragment: str) -> None:
    results = network.check_sources(facts("dom_vm42.xml", **{**ALL_THERE, **override}))
    r = one(results)
    assert r.status is expected and fragment in r.reason


def test_inactive_network_fix_is_net_start() -> None:
    f = facts("dom_vm42.xml", **{**ALL_THERE, "destination_networks": (NetworkInfo("default", False),)})
    assert one(network.check_sources(f)).fix == "on hostB: virsh net-start default && virsh net-autostart default"


def test_missing_bridge_offline_only_warns() -> None:
    f = facts("dom_vm42.xml", state=VmState.SHUTOFF, **{**ALL_THERE, "destination_bridges": frozenset()})
    assert one(network.check_sources(f)).status is WARN


def test_vm_without_nics_passes() -> None:
    assert "no network interfaces" in one(network.check_sources(facts())).reason


PROBES = [
    # probes, expected statuses in order, fragment of the first
    ((PortProbe("libvirt-tcp", "hostB", 16509, True),), [PASS], "libvirt-tcp port 16509 on hostB"),
    (
        (PortProbe("libvirt-tls", "hostB", 16514, False, "timed out"),),
        [FAIL],
        "cannot reach libvirt-tls port 16514",
    ),
    ((PortProbe("ssh", "hostB", 22, False, "refused"),), [FAIL], "ssh port 22 on hostB (from bot: refused)"),
    (
        (
            PortProbe("libvirt-tcp", "hostB", 16509, True),
            PortProbe("migration", "hostB", 49152, False, "filtered", "hostA"),
        ),
        [FAIL],
        "migration port 49152-49215 on hostB (from hostA: filtered)",
    ),
    ((PortProbe("migration", "hostB", 49152, None),), [WARN], "not probed: migration port"),
    ((), [WARN], "no port probes ran"),
]


@pytest.mark.parametrize(("probes", "expected", "fragment"), PROBES)
def test_ports(probes: tuple[PortProbe, ...], expected: list[CheckStatus], fragment: str) -> None:
    results = network.check_ports(facts(probes=probes))
    assert [r.status for r in results] == expected and fragment in results[0].reason


def test_port_fix_names_the_right_port_and_socket() -> None:
    r = one(network.check_ports(facts(probes=(PortProbe("libvirt-tcp", "hostB", 16509, False),))))
    assert r.fix is not None and "16509" in r.fix and "virtproxyd-tcp.socket" in r.fix
    r = one(network.check_ports(facts(probes=(PortProbe("migration", "hostB", 49152, False),))))
    assert r.fix is not None and "49152-49215" in r.fix


def test_offline_ignores_the_migration_data_ports() -> None:
    probes = (PortProbe("libvirt-tcp", "hostB", 16509, True), PortProbe("migration", "hostB", 49152, False))
    assert one(network.check_ports(facts(probes=probes, state=VmState.SHUTOFF))).status is PASS
