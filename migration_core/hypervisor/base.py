"""The contract the adapter's parts share: how a part runs one libvirt call. No libvirt import here.

hypervisor.py (the one module that imports libvirt) implements `_run` and sets `_lv` to the libvirt module;
the fact-gathering and storage parts (hypervisor_facts.py, hypervisor_storage.py) are mixins written against
this base, so they reach libvirt only through `_run` and `_lv` and stay small and readable.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class HypervisorBase(ABC):
    """What every part of the adapter may use: the libvirt module, `_run`, `_lookup` and host labels."""

    _lv: Any  # the libvirt module (constants, libvirtError), set by hypervisor.Hypervisor

    @abstractmethod
    async def _run(self, uri: str, op: str, fn: Callable[[Any], T], *, vm: str | None = None, retry: bool = True) -> T:
        """Run fn(connection to uri) on a worker thread; libvirt errors come out translated."""

    @abstractmethod
    def label(self, uri: str) -> str:
        """The inventory name of a host URI (or the URI)."""

    @staticmethod
    def _lookup(conn: Any, vm: str) -> Any:
        """A domain by UUID (when `vm` looks like one) or by name."""
        return conn.lookupByUUIDString(vm) if _UUID.match(vm) else conn.lookupByName(vm)

    def _code(self, err: BaseException) -> int | None:
        """libvirt error code of an exception raised inside `fn` (None for anything else)."""
        if isinstance(err, self._lv.libvirtError):
            return int(err.get_error_code())
        return None
