"""The adapter's storage and network facts: pools, volumes by path, pre-creating images, networks, host interfaces.

A part of `libvirt_adapter.Hypervisor` by composition, over the `Session` it is given (hypervisor/base.py).
libvirt's pool, volume, interface and node-device XML is parsed by facts/storage_xml.py (lxml).

libvirt has no "does this file exist on that host" call: a path is known when a storage pool holds it
(`storageVolLookupByPath` after refreshing the pools, since libvirt's pool cache goes stale: lab.md P5).
A path outside every pool is "unknown" (None), not "missing". Images outside pools are pre-created through a
transient dir pool on their directory (lab.md P4), destroyed right after (that leaves the files alone).

Host interfaces (bridges, macvtap parents): the interface driver (`listAllInterfaces`) first, then nodedev net
devices. Both read the host's /sys, so the lab gives each host's daemon a sysfs of its own network namespace.
Bridges of libvirt networks come from `listAllNetworks`.
"""

from __future__ import annotations

import logging
import os
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import TypeVar
from xml.sax.saxutils import escape, quoteattr

from migration_core.errors import HypervisorError, MigrateBotError
from migration_core.facts.storage_xml import (
    interface_kind,
    nodedev_interface,
    parse_pool,
    volume_ctime,
    volume_format,
)
from migration_core.hypervisor.base import Session, VirConnect, VirStoragePool, lookup
from migration_core.hypervisor.types import ClockReading, InterfaceInfo, NetworkInfo, PoolInfo, VirErr, VolumeInfo

log = logging.getLogger(__name__)
T = TypeVar("T")
_NOT_IN_A_POOL = (VirErr.NO_STORAGE_VOL, VirErr.NO_STORAGE_POOL)
# Where the clock probe goes when the host has no active dir pool: a directory every Linux host has.
CLOCK_PROBE_DIR = "/var/tmp"
# The kernel stamps files from its coarse clock, up to one tick (<= 10 ms at HZ=100) behind the fine one.
_FILE_TIMESTAMP_TICK_S = 0.01


def _transient_pool(c: VirConnect, directory: str, flags: int = 0) -> VirStoragePool:
    """A transient dir pool on `directory` (libvirt sees files outside its pools only through one, lab.md P4)."""
    name = f"migrate-bot-{uuidlib.uuid4().hex[:8]}"
    return c.storagePoolCreateXML(
        f"<pool type='dir'><name>{name}</name><target><path>{escape(directory)}</path></target></pool>", flags
    )


class StorageReader:
    """Storage pools and volumes; libvirt networks and host interfaces."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _is(self, err: BaseException, *codes: int) -> bool:
        return self._s.error_code(err) in codes

    def _in_directory(
        self,
        c: VirConnect,
        directory: str,
        use: Callable[[VirStoragePool], T],
        unopened: Callable[[BaseException], T],
        failed: T,
    ) -> T:
        """use(a transient dir pool on `directory`), destroyed after (its files stay). A libvirt error opening
        the pool -> unopened(err); in `use` -> `failed`. Anything else is a bug and propagates."""
        try:
            pool = _transient_pool(c, directory)
        except Exception as err:
            if self._s.error_code(err) is None:
                raise
            return unopened(err)
        try:
            return use(pool)
        except Exception as err:
            if self._s.error_code(err) is None:
                raise
            return failed
        finally:
            pool.destroy()

    async def networks(self, uri: str) -> tuple[NetworkInfo, ...]:
        """libvirt virtual networks and their bridges."""

        def read(c: VirConnect) -> tuple[NetworkInfo, ...]:
            out = []
            for net in c.listAllNetworks(0):
                try:
                    bridge: str | None = str(net.bridgeName())
                except Exception as err:  # e.g. a macvtap or hostdev network has no bridge
                    if self._s.error_code(err) is None:
                        raise
                    bridge = None
                out.append(NetworkInfo(str(net.name()), bool(net.isActive()), bridge))
            return tuple(sorted(out, key=lambda n: n.name))

        return await self._s.run(uri, "list networks", read)

    async def interfaces(self, uri: str) -> tuple[InterfaceInfo, ...]:
        """Host interfaces: the interface driver, else nodedev net devices (see the module docstring)."""
        cap_net = self._s.constant("VIR_CONNECT_LIST_NODE_DEVICES_CAP_NET")

        def read(c: VirConnect) -> tuple[InterfaceInfo, ...]:
            found: dict[str, InterfaceInfo] = {}
            try:
                for iface in c.listAllInterfaces(0):
                    kind = interface_kind(str(iface.XMLDesc(0)))
                    found[str(iface.name())] = InterfaceInfo(str(iface.name()), bool(iface.isActive()), kind)
            except Exception as err:
                if self._s.error_code(err) is None:
                    raise
                log.debug("interface driver unavailable on %s", uri)
            if not found:
                for dev in c.listAllDevices(cap_net):
                    name = nodedev_interface(str(dev.XMLDesc(0)))
                    if name:
                        found[name] = InterfaceInfo(name, True, "net")
            return tuple(sorted(found.values(), key=lambda i: i.name))

        return await self._s.run(uri, "list host interfaces", read)

    async def refresh_pools(self, uri: str) -> None:
        """Re-scan every active pool so libvirt's volume cache matches the disk (lab.md P5)."""
        active = self._s.constant("VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE")

        def refresh(c: VirConnect) -> None:
            for pool in c.listAllStoragePools(active):
                try:
                    pool.refresh(0)
                except Exception as err:  # one broken pool must not hide the others
                    if self._s.error_code(err) is None:
                        raise
                    log.debug("refresh of pool %s on %s failed: %s", pool.name(), uri, err)

        await self._s.run(uri, "refresh storage pools", refresh)

    async def pools(self, uri: str) -> tuple[PoolInfo, ...]:
        """Storage pools with target directory and capacity/allocation/available bytes."""

        def read(c: VirConnect) -> tuple[PoolInfo, ...]:
            out = []
            for pool in c.listAllStoragePools(0):
                described = parse_pool(str(pool.XMLDesc(0)))
                _state, capacity, allocation, available = pool.info()[:4]
                out.append(
                    PoolInfo(
                        name=str(pool.name()),
                        active=bool(pool.isActive()),
                        pool_type=described.pool_type,
                        target_path=described.target_path,
                        capacity_bytes=int(capacity),
                        allocation_bytes=int(allocation),
                        available_bytes=int(available),
                    )
                )
            return tuple(sorted(out, key=lambda p: p.name))

        return await self._s.run(uri, "list storage pools", read)

    async def volume_by_path(self, uri: str, path: str, *, refresh: bool = True) -> VolumeInfo | None:
        """The pool volume at `path` on that host; None when no pool holds it (it may exist outside pools)."""
        if refresh:
            await self.refresh_pools(uri)

        def read(c: VirConnect) -> VolumeInfo | None:
            try:
                vol = c.storageVolLookupByPath(path)
            except Exception as err:
                if self._is(err, *_NOT_IN_A_POOL):
                    return None
                raise
            _kind, capacity, allocation = vol.info()[:3]
            return VolumeInfo(
                path=path,
                pool=str(vol.storagePoolLookupByVolume().name()),
                name=str(vol.name()),
                format=volume_format(str(vol.XMLDesc(0))),
                capacity_bytes=int(capacity),
                allocation_bytes=int(allocation),
            )

        return await self._s.run(uri, "look up a disk image", read)

    async def pool_for_directory(self, uri: str, directory: str) -> PoolInfo | None:
        """The active pool whose target is `directory` (where libvirt pre-creates copy-storage images)."""
        return next((p for p in await self.pools(uri) if p.active and p.covers(directory)), None)

    async def _pools_know(self, uri: str, path: str) -> bool | None:
        """What the host's pools (refreshed first) say of `path`: True, a pool holds it; False, an active pool
        covers its directory and holds no such file; None, no pool covers it (only a transient pool can tell).

        The one rule for "which pool covers this path", used before looking or deleting outside the pools: a
        transient pool on a directory an active pool already covers is refused ("Storage source conflict").
        """
        if await self.volume_by_path(uri, path) is not None:
            return True
        if await self.pool_for_directory(uri, os.path.dirname(path)) is not None:
            return False
        return None

    async def path_exists(self, uri: str, path: str) -> bool | None:
        """Whether a file exists at `path` on that host; None when that cannot be told.

        A pool volume answers directly (after a refresh). Outside pools, a transient dir pool is started on
        the directory and looked into, then destroyed (destroying a dir pool leaves its files alone).
        """
        known = await self._pools_know(uri, path)
        if known is not None:
            return known
        directory, name = os.path.split(path)

        def probe(c: VirConnect) -> bool | None:
            def unopened(err: BaseException) -> bool | None:
                return False if "No such file or directory" in str(err) else None

            def found(p: VirStoragePool) -> bool | None:
                return bool(p.storageVolLookupByName(name))

            absent: bool | None = False
            return self._in_directory(c, directory, found, unopened, absent)

        return await self._s.run(uri, f"look for {path}", probe, retry=False)

    async def create_volume(self, uri: str, path: str, capacity_bytes: int, fmt: str = "qcow2") -> VolumeInfo:
        """Create an empty, thin image at `path` on that host (pre-creation for --copy-storage, lab.md P4)."""
        directory, name = os.path.split(path)
        # Thin: no preallocation (allocation 0), and qcow2 v3 (compat 1.1), whose zero clusters let the copy of a
        # sparse disk stay sparse. (libvirt's own pre-creation for copy-storage allocates the whole image.)
        compat = "<compat>1.1</compat>" if fmt == "qcow2" else ""
        vol_xml = (
            f"<volume><name>{escape(name)}</name><capacity unit='bytes'>{int(capacity_bytes)}</capacity>"
            f"<allocation unit='bytes'>0</allocation>"
            f"<target><format type={quoteattr(fmt)}/>{compat}</target></volume>"
        )
        pool_name = (await self.pool_for_directory(uri, directory) or PoolInfo("", False, "", None, 0, 0, 0)).name
        build = self._s.constant("VIR_STORAGE_POOL_CREATE_WITH_BUILD")

        def create(c: VirConnect) -> None:
            if pool_name:
                pool = c.storagePoolLookupByName(pool_name)
                pool.refresh(0)
                pool.createXML(vol_xml, 0)
                return
            transient = _transient_pool(c, directory, build)
            try:
                transient.createXML(vol_xml, 0)
            finally:
                transient.destroy()  # a transient dir pool: destroying it removes the pool, not the files

        await self._s.run(uri, f"create disk image {path}", create, retry=False)
        return await self.volume_by_path(uri, path) or VolumeInfo(path, "", name, fmt, capacity_bytes, 0)

    async def delete_volume(self, uri: str, path: str) -> bool:
        """Delete the image at `path` through libvirt (its pool, else a transient dir pool on its directory, so
        the pool caches stay right: lab.md P5); False when there is no such file."""
        if await self._pools_know(uri, path) is False:
            return False  # a pool covers the directory and holds no such volume: nothing to delete
        directory, name = os.path.split(path)

        def delete(c: VirConnect) -> bool:
            try:
                vol = c.storageVolLookupByPath(path)
            except Exception as err:
                if not self._is(err, *_NOT_IN_A_POOL):
                    raise
                vol = None
            if vol is not None:
                vol.delete(0)
                return True
            pool = _transient_pool(c, directory)
            try:
                try:
                    pool.storageVolLookupByName(name).delete(0)
                except Exception as err:
                    if self._is(err, *_NOT_IN_A_POOL):
                        return False
                    raise
                return True
            finally:
                pool.destroy()

        return await self._s.run(uri, f"delete disk image {path}", delete, retry=False)

    async def same_storage(self, uri: str, other_uri: str, directory: str) -> bool | None:
        """Do both hosts see one and the same `directory`? Nova's shared-storage test, through libvirt: create
        a uniquely named empty file there on `uri`, look for it on `other_uri`, delete it. A file of the same
        name on both hosts proves nothing (an old copy left by an earlier move looks just like it). None when
        the probe cannot run (the directory cannot be written or looked into): never read that as "shared"."""
        probe = os.path.join(directory, f".migrate-bot-shared-probe-{uuidlib.uuid4().hex[:12]}")
        try:
            await self.create_volume(uri, probe, 0, "raw")
        except MigrateBotError as err:
            log.info("shared-storage probe: cannot create %s on %s: %s", probe, uri, err)
            return None
        try:
            return await self.path_exists(other_uri, probe)
        except MigrateBotError as err:
            log.info("shared-storage probe: cannot look for %s on %s: %s", probe, other_uri, err)
            return None
        finally:
            try:
                await self.delete_volume(uri, probe)
            except MigrateBotError as err:
                log.warning("shared-storage probe: could not delete %s on %s: %s", probe, uri, err)

    async def clock_reading(self, uri: str) -> ClockReading:
        """The host's wall clock against the bot's, through libvirt alone (the bot runs no remote commands).

        A uniquely named empty file is created in a local dir pool (an active one, else a transient one on
        CLOCK_PROBE_DIR) and deleted right after; its volume XML carries the ctime the HOST's kernel stamped.
        offset = ctime - the midpoint of the bot's clock just before and after the create call, to within half
        that call's round trip (plus the kernel's timestamp tick). A network pool (netfs...) is not used: its
        timestamps come from the file server's clock. Raises HypervisorError when it cannot be measured.
        """
        pools = [p for p in await self.pools(uri) if p.active and p.pool_type == "dir" and p.target_path]
        pool_name = pools[0].name if pools else ""
        name = f".migrate-bot-clock-probe-{uuidlib.uuid4().hex[:12]}"
        vol_xml = (
            f"<volume><name>{name}</name><capacity unit='bytes'>0</capacity>"
            "<target><format type='raw'/></target></volume>"
        )

        def probe(c: VirConnect) -> tuple[float, float, str]:
            pool = c.storagePoolLookupByName(pool_name) if pool_name else _transient_pool(c, CLOCK_PROBE_DIR)
            try:
                before = time.time()
                vol = pool.createXML(vol_xml, 0)
                after = time.time()
                try:
                    return before, after, str(vol.XMLDesc(0))
                finally:
                    vol.delete(0)
            finally:
                if not pool_name:
                    pool.destroy()  # transient: removes the pool, not the directory

        before, after, xml = await self._s.run(uri, "read the host's clock (probe file)", probe, retry=False)
        stamped = volume_ctime(xml)
        if stamped is None:
            raise HypervisorError(
                f"{self._s.label(uri)}: libvirt's volume XML carries no file timestamps",
                "give the host an active dir storage pool (virsh pool-list --all)",
            )
        return ClockReading(stamped - (before + after) / 2, (after - before) / 2 + _FILE_TIMESTAMP_TICK_S)

    async def volume_allocation_bytes(self, uri: str, path: str) -> int | None:
        """Bytes the image at `path` really uses on that host's storage (None: no such file, or unreadable)."""
        vol = await self.volume_by_path(uri, path)
        if vol is not None:
            return vol.allocation_bytes
        directory, name = os.path.split(path)

        def read(c: VirConnect) -> int | None:
            return self._in_directory(
                c, directory, lambda p: int(p.storageVolLookupByName(name).info()[2]), lambda _err: None, None
            )

        return await self._s.run(uri, f"read the allocation of {path}", read, retry=False)

    async def disk_capacity_bytes(self, uri: str, vm: str, disk: str) -> int:
        """Virtual size of one of the VM's disks (target like "vda", or its source path), via blockInfo."""
        return await self._s.run(
            uri,
            f"read the size of disk {disk}",
            lambda c: int(lookup(c, vm).blockInfo(disk, 0)[0]),
            vm=vm,
        )
