"""Fixtures of the reliability tests: one libvirt adapter for the lab, and a directory for bot logs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from migration_core.hypervisor.libvirt_adapter import Hypervisor
from tests.labkit import LabInfo


@pytest.fixture(scope="module")
def hv(lab: LabInfo) -> Iterator[Hypervisor]:
    """The tests' own view of both lab hosts (to read the truth: where the VM is, whether a job runs)."""
    yield Hypervisor({name: lab.host(name).uri for name in lab.hosts})


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """Where bot processes write their output (kept by pytest for a failed test)."""
    path = tmp_path / "logs"
    path.mkdir()
    return path
