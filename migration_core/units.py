"""Byte and rate units, and their conversions: the one owner of MIB/GIB and of libvirt's five rate units (pure).

libvirt speaks five units: `dirtyrate.megabytes_per_second` is MB/s (10^6), job stats' `memory_dirty_rate` is
pages/s, `memory_bps` is bytes/s, bandwidth settings are MiB/s (2^20), and links are sold in Gbit/s. The core
works in MiB/s and converts at the edge with the helpers below. Imports nothing, so every package may read it.
"""

from __future__ import annotations

MIB = 1024 * 1024
GIB = 1024 * MIB
DEFAULT_PAGE_SIZE_BYTES = 4096


def mb_s_to_mib_s(mb_s: float) -> float:
    """MB/s (10^6 bytes/s, libvirt's `dirtyrate.megabytes_per_second`) -> MiB/s (2^20 bytes/s).

    >>> round(mb_s_to_mib_s(100.0), 2)
    95.37
    """
    return mb_s * 1_000_000 / MIB


def mib_s_to_mb_s(mib_s: float) -> float:
    """MiB/s -> MB/s.

    >>> round(mib_s_to_mb_s(16.0), 2)
    16.78
    """
    return mib_s * MIB / 1_000_000


def pages_s_to_mib_s(pages_s: float, page_size_bytes: int = DEFAULT_PAGE_SIZE_BYTES) -> float:
    """Pages/s (job stats' `memory_dirty_rate`) x page size -> MiB/s.

    >>> pages_s_to_mib_s(8000)
    31.25
    >>> pages_s_to_mib_s(10, page_size_bytes=2 * MIB)  # 2 MiB huge pages
    20.0
    """
    return pages_s * page_size_bytes / MIB


def bytes_s_to_mib_s(bytes_s: float) -> float:
    """Bytes/s (job stats' `memory_bps`, `disk_bps`) -> MiB/s.

    >>> bytes_s_to_mib_s(16 * MIB)
    16.0
    """
    return bytes_s / MIB


def mib_s_to_gbit_s(mib_s: float) -> float:
    """MiB/s -> Gbit/s (10^9 bits/s, how links are sold).

    >>> round(mib_s_to_gbit_s(1192.09), 2)
    10.0
    """
    return mib_s * MIB * 8 / 1e9


def fmt_s(seconds: float) -> str:
    """A duration as the predictions word it: one decimal under 10 s, whole seconds above.

    >>> fmt_s(2.34), fmt_s(45.6)
    ('2.3', '46')
    """
    return f"{seconds:.1f}" if seconds < 10 else f"{seconds:.0f}"
