"""Job-stats sequences with the keys and units of `dom.jobStats()`, modelled on the lab's runs (lab.md §6)."""

from __future__ import annotations

from typing import Any

from .guest_model import MiB

# The lab's default VM (256 MiB RAM, 64 MiB working set at 2000 pages/s) migrating over the 200 MiB/s veth,
# polled every 0.25 s: most of its RAM is zero pages (memory_constant), 38.4 MiB cross the wire.
IDLE_P2P: list[tuple[float, dict[str, Any]]] = [
    (0.00, {"type": 0}),
    (
        0.25,
        {
            "type": 2,
            "operation": 5,
            "time_elapsed": 140,
            "setup_time": 120,
            "data_total": 256 * MiB,
            "data_processed": 0,
            "data_remaining": 0,
            "memory_total": 256 * MiB,
            "memory_iteration": 0,
        },
    ),
    (
        0.50,
        {
            "type": 2,
            "operation": 5,
            "time_elapsed": 390,
            "data_total": 256 * MiB,
            "data_processed": 12 * MiB,
            "data_remaining": 127 * MiB,
            "memory_total": 256 * MiB,
            "memory_processed": 12 * MiB,
            "memory_remaining": 127 * MiB,
            "memory_constant": 30000,
            "memory_normal": 3072,
            "memory_bps": 200 * MiB,
            "memory_dirty_rate": 1000,
            "memory_page_size": 4096,
            "memory_iteration": 1,
            "downtime": 635,
        },
    ),
    (
        0.75,
        {
            "type": 2,
            "operation": 5,
            "time_elapsed": 640,
            "data_total": 256 * MiB,
            "data_processed": 30 * MiB,
            "data_remaining": 9 * MiB,
            "memory_total": 256 * MiB,
            "memory_processed": 30 * MiB,
            "memory_remaining": 9 * MiB,
            "memory_constant": 55000,
            "memory_normal": 7680,
            "memory_bps": 200 * MiB,
            "memory_dirty_rate": 1000,
            "memory_page_size": 4096,
            "memory_iteration": 2,
            "downtime": 45,
        },
    ),
    (
        1.00,
        {
            "type": 3,
            "operation": 5,
            "time_elapsed": 797,
            "data_total": 256 * MiB,
            "data_processed": 40265318,
            "data_remaining": 0,
            "memory_total": 256 * MiB,
            "memory_processed": 40265318,
            "memory_remaining": 0,
            "memory_constant": 56000,
            "memory_normal": 9830,
            "memory_page_size": 4096,
            "memory_iteration": 3,
            "downtime": 35,
            "downtime_net": 31,
            "success": True,
        },
    ),
]

# storage_copy_all: a 64 MiB private disk copied first (NBD), then the memory.
STORAGE_COPY: list[tuple[float, dict[str, Any]]] = [
    (
        t,
        {
            "type": 2,
            "time_elapsed": int(t * 1000),
            "data_total": 320 * MiB,
            "memory_total": 256 * MiB,
            "disk_total": 64 * MiB,
            "memory_page_size": 4096,
            **fields,
        },
    )
    for t, fields in [
        (
            0.5,
            {
                "data_processed": 16 * MiB,
                "data_remaining": 48 * MiB,
                "disk_processed": 16 * MiB,
                "disk_remaining": 48 * MiB,
                "disk_bps": 100 * MiB,
            },
        ),
        (
            1.0,
            {
                "data_processed": 48 * MiB,
                "data_remaining": 16 * MiB,
                "disk_processed": 48 * MiB,
                "disk_remaining": 16 * MiB,
                "disk_bps": 100 * MiB,
            },
        ),
        (
            1.5,
            {
                "data_processed": 64 * MiB,
                "data_remaining": 0,
                "disk_processed": 64 * MiB,
                "disk_remaining": 0,
            },
        ),
        (
            2.0,
            {
                "data_processed": 104 * MiB,
                "data_remaining": 200 * MiB,
                "disk_processed": 64 * MiB,
                "memory_processed": 40 * MiB,
                "memory_remaining": 200 * MiB,
                "memory_normal": 10240,
                "memory_bps": 200 * MiB,
                "memory_iteration": 1,
            },
        ),
        (
            2.5,
            {
                "data_processed": 204 * MiB,
                "data_remaining": 100 * MiB,
                "disk_processed": 64 * MiB,
                "memory_processed": 140 * MiB,
                "memory_remaining": 100 * MiB,
                "memory_normal": 35840,
                "memory_bps": 200 * MiB,
                "memory_iteration": 1,
            },
        ),
        (
            3.0,
            {
                "data_processed": 300 * MiB,
                "data_remaining": 20 * MiB,
                "disk_processed": 64 * MiB,
                "memory_processed": 236 * MiB,
                "memory_remaining": 20 * MiB,
                "memory_normal": 60416,
                "memory_bps": 200 * MiB,
                "memory_iteration": 2,
            },
        ),
    ]
]
