"""Each lab host's own memory view: the meminfo text its libvirtd reads (pure, no lab)."""

from __future__ import annotations

import sys

from tests.labkit import REPO

sys.path.insert(0, str(REPO / "deploy" / "lab"))
from labtool.config import HOST_A, HOST_B, HOST_C, HOSTS
from labtool.hostconf import fake_meminfo

PROC = """MemTotal:       24683792 kB
MemFree:        21154400 kB
MemAvailable:   21847900 kB
Buffers:           10240 kB
Cached:          1100000 kB
Shmem:              9000 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
DirectMap4k:      100000 kB
"""
NODE = """Node 0 MemTotal:       24683792 kB
Node 0 MemFree:        24196008 kB
Node 0 MemUsed:          487784 kB
Node 0 FilePages:        300000 kB
Node 0 HugePages_Total:     0
"""


def _values(text: str) -> dict[str, str]:
    return {line.split(":")[0]: line.split(":")[1].strip() for line in text.splitlines()}


def test_proc_meminfo_shows_the_hosts_size_and_no_page_cache() -> None:
    """The bot counts free + buffers + cached as available: only MemFree may carry memory."""
    got = _values(fake_meminfo(PROC, 2048 * 1024, 1536 * 1024))
    assert got["MemTotal"] == "2097152 kB" and got["MemFree"] == got["MemAvailable"] == "1572864 kB"
    assert got["Buffers"] == got["Cached"] == got["Shmem"] == "0 kB"
    # huge page accounting and address-space sizes are the machine's, left as they are
    assert got["HugePages_Total"] == "0" and got["Hugepagesize"] == "2048 kB" and got["DirectMap4k"] == "100000 kB"


def test_node_meminfo_keeps_its_prefix_and_adds_up() -> None:
    got = _values(fake_meminfo(NODE, 4096 * 1024, 3072 * 1024))
    assert got["Node 0 MemTotal"] == "4194304 kB" and got["Node 0 MemFree"] == "3145728 kB"
    assert got["Node 0 MemUsed"] == "1048576 kB" and got["Node 0 FilePages"] == "0 kB"
    assert got["Node 0 HugePages_Total"] == "0"


def test_lab_sizes_make_a_drain_of_hostA_need_hostB_and_hostC() -> None:
    """What each host can give after its inventory reserve: hostC keeps the most back; hostB alone is smaller
    than hostA's running guests (912 MiB movable), hostB + hostC is not, and hostA can take them all back."""
    give = {h.name: h.free_memory_mib - h.memory_reserve_mib for h in HOSTS}
    assert HOST_C.memory_reserve_mib > max(HOST_A.memory_reserve_mib, HOST_B.memory_reserve_mib)
    assert give["hostB"] < 912 <= give["hostB"] + give["hostC"] and give["hostA"] >= 1040
