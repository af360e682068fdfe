"""Preflight check 10: destination memory (with headroom) and vCPU overcommit."""

from __future__ import annotations

from dataclasses import replace

import pytest

from migration_core.facts.gathered import PreflightSettings, VmState
from migration_core.facts.vm import HugepageRequest, MemoryBackingFacts
from migration_core.models import CheckStatus
from migration_core.preflight import capacity
from migration_core.units import GIB, MIB
from tests.migration_core.fixtures.build import facts, host, one, vm

PASS, WARN, FAIL = CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL

MEMORY = [
    # VM (2 GiB max memory), free on destination, expected, fragment
    (16 * GIB, PASS, "vm42 needs 2.0 GiB; hostB has 16.0 GiB available (14.0 GiB left after the move)"),
    (2 * GIB + 300 * MIB, PASS, "left after the move"),  # headroom is max(256 MiB, 10 % = 204.8 MiB)
    (2 * GIB + 100 * MIB, WARN, "less than the 256.0 MiB headroom"),
    (1 * GIB, FAIL, "not enough"),
    (None, WARN, "could not read hostB's free memory"),
]


@pytest.mark.parametrize(("free", "expected", "fragment"), MEMORY)
def test_memory(free: int | None, expected: CheckStatus, fragment: str) -> None:
    r = one(capacity.check_memory(facts("dom_vm42.xml", destination_host=host(name="hostB", free_memory_bytes=free))))
    assert r.status is expected and fragment in r.reason


def test_headroom_is_proportional_for_big_vms() -> None:
    big = replace(vm("dom_vm42.xml"), memory_bytes=64 * GIB)
    r = one(capacity.check_memory(facts(big, destination_host=host(name="hostB", free_memory_bytes=70 * GIB))))
    assert r.status is WARN and "6.4 GiB headroom" in r.reason


def test_headroom_is_configurable() -> None:
    f = facts(
        "dom_vm42.xml",
        destination_host=host(name="hostB", free_memory_bytes=2 * GIB + 100 * MIB),
        settings=PreflightSettings(memory_headroom_bytes=64 * MIB, memory_headroom_fraction=0.0),
    )
    assert one(capacity.check_memory(f)).status is PASS


def test_not_enough_memory_offline_only_warns() -> None:
    f = facts("dom_vm42.xml", state=VmState.SHUTOFF, destination_host=host(name="hostB", free_memory_bytes=GIB))
    assert one(capacity.check_memory(f)).status is WARN


def test_hugepage_backed_vm_skips_free_memory() -> None:
    v = replace(vm("dom_vm42.xml"), memory_backing=MemoryBackingFacts(hugepages=(HugepageRequest(),)))
    r = one(capacity.check_memory(facts(v, destination_host=host(name="hostB", free_memory_bytes=0))))
    assert r.status is PASS and "huge pages" in r.reason


VCPUS = [
    # vm fixture, destination running vCPUs, cpu_count override, expected, fragment
    ("dom_tcgvm.xml", 0, None, PASS, "hostB would run 1 vCPUs on 2 CPUs (0.5:1)"),
    ("dom_tcgvm.xml", 1, None, PASS, "(1.0:1)"),
    ("dom_tcgvm.xml", 4, None, PASS, "(2.5:1)"),  # within the default 4:1 allocation ratio
    ("dom_tcgvm.xml", 8, None, WARN, "overcommitted"),
    ("dom_tcgvm.xml", None, None, PASS, "hostB has 2 CPUs for tcgvm's 1 vCPUs"),
    ("dom_gpuvm.xml", 0, None, WARN, "has only 2 CPUs"),
    ("dom_tcgvm.xml", 0, 64, PASS, "on 64 CPUs"),
]


@pytest.mark.parametrize(("fixture", "running", "cpus", "expected", "fragment"), VCPUS)
def test_vcpus(fixture: str, running: int | None, cpus: int | None, expected: CheckStatus, fragment: str) -> None:
    f = facts(fixture, destination_host=host(name="hostB", running_vcpus=running, cpu_count=cpus))
    r = one(capacity.check_vcpus(f))
    assert r.status is expected and fragment in r.reason


def test_vcpus_unknown_host_warns() -> None:
    assert one(capacity.check_vcpus(facts(destination_host=None))).status is WARN


def test_the_hosts_memory_reserve_is_never_given_to_a_vm() -> None:
    """The hosts file's memory_reserve counts in a single move as in a drain's placement (one rule): 16 GiB free
    with a 14 GiB reserve leaves 2 GiB, under the 2 GiB VM's need plus headroom."""
    f = facts("dom_vm42.xml", destination_host=host(name="hostB", free_memory_bytes=16 * GIB))
    f = replace(f, destination=replace(f.destination, memory_reserve_bytes=14 * GIB))
    r = one(capacity.check_memory(f))
    assert r.status is WARN and "2.0 GiB available after its memory_reserve of 14.0 GiB" in r.reason
    f = replace(f, destination=replace(f.destination, memory_reserve_bytes=15 * GIB))
    assert one(capacity.check_memory(f)).status is FAIL
