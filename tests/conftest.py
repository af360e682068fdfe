"""Root test configuration: loads the shared fixture plugins (lab, PostgreSQL, fake Slack)."""

import asyncio
from collections.abc import Mapping

import pytest

from migration_core.hypervisor.fleet import VirtualTimeLoop

pytest_plugins = [
    "tests.fixtures.lab",
    "tests.fixtures.postgres",
    "tests.fixtures.slack",
]


def pytest_configure(config: pytest.Config) -> None:
    # Import-time guard: the fixture plugins must exist (each is owned by one part of the suite).
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that uses the lab (directly or through another fixture) must be marked `lab`.

    deploy/run-tests.sh runs the unmarked tests alongside the lab tests; an unmarked test that touched the
    shared lab would race them, so the marker is enforced here rather than trusted.
    """
    unmarked = [
        item.nodeid
        for item in items
        if "lab" in getattr(item, "fixturenames", ()) and item.get_closest_marker("lab") is None
    ]
    if unmarked:
        listed = "\n  ".join(unmarked[:20])
        raise pytest.UsageError(f"these tests use the lab fixture but are not marked `lab`:\n  {listed}")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, object]:
    """Tests marked `virtual_time` (the real service on the in-memory fleet) run on the fleet's virtual-time
    event loop: an hour of migration in milliseconds. Every other test gets asyncio's usual loop."""
    if item.get_closest_marker("virtual_time") is not None:
        return {"virtual": VirtualTimeLoop}
    return {"asyncio": asyncio.new_event_loop}
