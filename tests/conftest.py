"""Root test configuration: loads the shared fixture plugins (lab, PostgreSQL, fake Slack)."""

import pytest

pytest_plugins = [
    "tests.fixtures.lab",
    "tests.fixtures.postgres",
    "tests.fixtures.slack",
]


def pytest_configure(config: pytest.Config) -> None:
    # Import-time guard: the fixture plugins must exist (each is owned by one part of the suite).
    return None
