"""The libvirt adapter: the only module of the core that imports libvirt. Async-friendly, typed, translated.

The adapter is one class, `Hypervisor`, implementing the port (hypervisor/port.py) by composition: this module
owns connections, events, the one place errors are translated, migration and its controls; it is the
`Session` (hypervisor/base.py) its two parts run their calls through: `HostFactReader` (fact_readers.py:
host/domain/CPU facts, dirty rate) and `StorageReader` (storage.py: pools, volumes, networks). The parts see
libvirt only as the typed Protocols of base.py and constants by name (`constant`), so `import libvirt` stays in
this one file. Results are the frozen dataclasses of hypervisor/types.py; errors are translated by
hypervisor/errors.translate.

Threads: every short libvirt call runs on this adapter's thread pool (the event loop never blocks); each
migration runs on a dedicated thread with its own connection (it blocks for minutes). libvirt's event loop
(keepalives, JOB_COMPLETED events) runs on one daemon thread (`virEventRegisterDefaultImpl` +
`virEventRunDefaultImpl`): unlike libvirtaio it is not bound to one asyncio loop, so one adapter survives
several loops (a test suite starts one per test).

Hosts are addressed by their libvirt URI; `hosts` (name -> URI) and `add_host` only name them in messages.

Migration mode and the bot's death: with `VIR_MIGRATE_PEER2PEER` (`migrateToURI3`) the source libvirtd runs
the whole protocol inside one API call and talks to the destination daemon itself; when the calling client
disconnects, the daemon finishes the call anyway, so the migration survives a `kill -9` of the bot (verified
in the lab: tests/migration_core/test_hypervisor_lab.py::test_p2p_migration_survives_client_death). A
client-managed migration (`migrate3` with a destination connection held by the bot) is driven phase by phase
by the client: when the client dies, the destination's close callback kills the incoming QEMU and the source
cancels, so the migration fails (same test file). The executor therefore uses P2P (the planner's default).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import libvirt

from migration_core import telemetry
from migration_core.errors import HostUnreachable, HypervisorError
from migration_core.hypervisor import tlscheck
from migration_core.hypervisor.base import Param, VirConnect, VirDomain, lookup
from migration_core.hypervisor.errors import ErrorContext, is_tls_verify_failure, looks_unreachable, translate
from migration_core.hypervisor.fact_readers import HostFactReader
from migration_core.hypervisor.port import HypervisorPort
from migration_core.hypervisor.storage import StorageReader
from migration_core.hypervisor.types import JobStats, JobType, MigrationCall, StatValue, VirErr
from migration_core.models import ParamValue

log = logging.getLogger(__name__)
T = TypeVar("T")

_event_lock = threading.Lock()
_event_thread: threading.Thread | None = None


def _ensure_event_loop() -> None:
    """Install libvirt's default event loop once per process and run it on a daemon thread.

    It must exist before the first `open()` for keepalives and events to work on those connections.
    """
    global _event_thread
    with _event_lock:
        if _event_thread is not None:
            return
        # libvirt prints every error to stderr by default; we translate and report errors ourselves.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except Exception:  # never let the event thread die; log and go on
                    log.exception("libvirt event loop iteration failed")
                    time.sleep(0.1)

        _event_thread = threading.Thread(target=run, name="libvirt-events", daemon=True)
        _event_thread.start()


def migration_flags(names: Sequence[str]) -> int:
    """Flag names ("VIR_MIGRATE_LIVE" or "LIVE") -> the libvirt bit mask; an unknown name is an error."""
    value = 0
    for name in names:
        full = name if name.startswith("VIR_MIGRATE_") else f"VIR_MIGRATE_{name}"
        bit = getattr(libvirt, full, None)
        if full.startswith("VIR_MIGRATE_PARAM_") or not isinstance(bit, int):
            raise HypervisorError(
                f"unknown migration flag {name!r}",
                "flags are libvirt's virDomainMigrateFlags names, e.g. VIR_MIGRATE_LIVE (see libvirt.md §1)",
            )
        value |= bit
    return value


def _typed_params(params: Mapping[str, ParamValue]) -> dict[str, object]:
    """Plan params -> the dict libvirt-python turns into typed params (lists become multi-value keys)."""
    return {key: (list(value) if isinstance(value, list | tuple) else value) for key, value in params.items()}


def _stats(raw: Mapping[str, Param]) -> JobStats:
    values: dict[str, StatValue] = {k: v for k, v in raw.items() if k != "type"}
    try:
        job_type = JobType(int(raw.get("type", 0)))
    except ValueError:
        job_type = JobType.NONE
    return JobStats(job_type, values)


class Hypervisor:
    """Async facade over libvirt-python for many hosts (addressed by URI). Safe to share; call `close()`."""

    def __init__(
        self,
        hosts: Mapping[str, str] | None = None,
        *,
        keepalive_interval_s: int = 5,
        keepalive_count: int = 3,
        max_workers: int = 16,
    ) -> None:
        _ensure_event_loop()
        self._labels = {uri: name for name, uri in (hosts or {}).items()}
        self._keepalive = (keepalive_interval_s, keepalive_count)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="libvirt")
        self._conns: dict[str, VirConnect] = {}
        self._conn_lock = threading.Lock()
        self._completed: dict[str, tuple[float, JobStats]] = {}  # domain uuid -> (when, stats)
        # The port's fact and storage calls are its parts' own methods (composition over this session).
        facts, storage = HostFactReader(self), StorageReader(self)
        self.ping, self.hostname, self.capabilities = facts.ping, facts.hostname, facts.capabilities
        self.versions, self.node_memory = facts.versions, facts.node_memory
        self.domain_capabilities, self.compare_cpu, self.baseline_cpu = (
            facts.domain_capabilities,
            facts.compare_cpu,
            facts.baseline_cpu,
        )
        self.list_domains, self.domain, self.domain_xml = facts.list_domains, facts.domain, facts.domain_xml
        self.snapshot_count, self.dirty_rate = facts.snapshot_count, facts.dirty_rate
        self.memory_rss_bytes, self.cpu_time_ns = facts.memory_rss_bytes, facts.cpu_time_ns
        self.guest_agent_configured, self.guest_agent_ping = facts.guest_agent_configured, facts.guest_agent_ping
        self.networks, self.interfaces, self.refresh_pools = storage.networks, storage.interfaces, storage.refresh_pools
        self.pools, self.volume_by_path, self.pool_for_directory = (
            storage.pools,
            storage.volume_by_path,
            storage.pool_for_directory,
        )
        self.path_exists, self.create_volume, self.delete_volume = (
            storage.path_exists,
            storage.create_volume,
            storage.delete_volume,
        )
        self.disk_capacity_bytes, self.same_storage = storage.disk_capacity_bytes, storage.same_storage
        self.volume_allocation_bytes, self.clock_reading = storage.volume_allocation_bytes, storage.clock_reading

    # ----- connections and the one place errors are translated -------------------------------------------

    def label(self, uri: str) -> str:
        """The inventory name of a host URI, or the URI itself."""
        return self._labels.get(uri, uri)

    def add_host(self, name: str, *uris: str | None) -> None:
        """Name a host in messages: its client URI and its peer URI (how other daemons dial it)."""
        for uri in uris:
            if uri:
                self._labels[uri] = name

    def constant(self, name: str) -> int:
        """A libvirt constant by name (Session): the parts never see the libvirt module."""
        value = getattr(libvirt, name, None)
        if not isinstance(value, int):
            raise HypervisorError(f"libvirt has no constant {name}", "this libvirt-python is too old for migrate-bot")
        return value

    def error_code(self, err: BaseException) -> int | None:
        """libvirt error code of an exception raised inside a call (None for anything else)."""
        if isinstance(err, libvirt.libvirtError):
            return int(err.get_error_code())
        return None

    def _open(self, uri: str) -> VirConnect:
        try:
            conn: VirConnect = libvirt.open(uri)
        except libvirt.libvirtError as err:
            telemetry.connection_error(self.label(uri), err.get_error_code())
            code, text = err.get_error_code(), str(err)
            # libvirt names no cause for a rejected server certificate: repeat the handshake to find it.
            tls = tlscheck.diagnose(uri, self.label(uri)) if is_tls_verify_failure(code, text) else None
            raise translate(code, text, ErrorContext(self.label(uri), uri, "connect", tls=tls)) from err
        try:
            conn.setKeepAlive(*self._keepalive)
        except libvirt.libvirtError:
            log.debug("keepalive not supported on %s", uri)
        return conn

    def _conn(self, uri: str) -> VirConnect:
        with self._conn_lock:
            conn = self._conns.get(uri)
            if conn is not None:
                try:
                    if conn.isAlive():
                        return conn
                except libvirt.libvirtError:
                    pass
                self._drop(uri)
            conn = self._open(uri)
            self._conns[uri] = conn
            self._register_events(uri, conn)
            return conn

    def _drop(self, uri: str) -> None:
        conn = self._conns.pop(uri, None)
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def _register_events(self, uri: str, conn: VirConnect) -> None:
        def completed(_conn: VirConnect, dom: VirDomain, params: Mapping[str, Param], _opaque: object) -> None:
            # Fires on the source (and the destination) when a job ends: the final downtime, time and bytes.
            stats = _stats({"type": int(JobType.COMPLETED), **params})
            self._completed[dom.UUIDString()] = (time.monotonic(), stats)

        try:
            conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, completed, uri)
        except libvirt.libvirtError:
            log.debug("JOB_COMPLETED events unavailable on %s", uri)

    def _call(
        self, uri: str, op: str, fn: Callable[[VirConnect], T], *, vm: str | None = None, retry: bool = True
    ) -> T:
        """Run fn(conn) here (a worker thread); translate libvirt errors; reconnect once if the link died."""
        ctx = ErrorContext(self.label(uri), uri, op, vm)
        # A read survives a daemon restart (about a second): reconnect and retry with a short backoff.
        delays_s = (0.0, 0.5, 1.5) if retry else (0.0,)
        for attempt, delay_s in enumerate(delays_s):
            last = attempt == len(delays_s) - 1
            time.sleep(delay_s)
            try:
                conn = self._conn(uri)
            except HostUnreachable:
                if last:
                    raise
                continue
            try:
                return fn(conn)
            except libvirt.libvirtError as err:
                code = err.get_error_code()
                dead = code in (VirErr.NO_CONNECT, VirErr.RPC, VirErr.SYSTEM_ERROR) and looks_unreachable(str(err))
                if dead:
                    telemetry.connection_error(self.label(uri), code)
                    with self._conn_lock:
                        self._drop(uri)
                    if not last:
                        continue
                raise translate(code, str(err), ctx) from err
        raise AssertionError("unreachable")

    async def run(
        self, uri: str, op: str, fn: Callable[[VirConnect], T], *, vm: str | None = None, retry: bool = True
    ) -> T:
        """Run fn(connection to uri) on this adapter's threads; libvirt errors come out translated (Session)."""
        loop = asyncio.get_running_loop()
        # run_in_executor (unlike asyncio.to_thread) does not carry context variables: copy them, so log
        # lines written on the worker thread keep the job they belong to (migration_core.logctx).
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(
            self._pool, ctx.run, functools.partial(self._call, uri, op, fn, vm=vm, retry=retry)
        )

    async def close(self) -> None:
        """Close every cached connection (running P2P migrations are not affected)."""

        def close_all() -> None:
            with self._conn_lock:
                for uri in list(self._conns):
                    self._drop(uri)

        await asyncio.get_running_loop().run_in_executor(self._pool, close_all)

    # ----- migration ---------------------------------------------------------------------------------------

    async def migrate(self, source_uri: str, vm: str, call: MigrationCall) -> None:
        """Run one migration to the end on a dedicated thread; returns when libvirt's call returns.

        P2P (`call.peer_uri`) or client-managed (`call.destination_uri`): see MigrationCall.
        Raises the translated error (JobAborted after abortJob, HostUnreachable, HypervisorError).
        """
        mask = migration_flags(call.flags)
        p2p = bool(mask & libvirt.VIR_MIGRATE_PEER2PEER)
        target = call.peer_uri if p2p else call.destination_uri
        if not target:
            raise HypervisorError(
                "no destination URI for this migration",
                "the inventory needs peer_uri (P2P) or uri (client-managed) for the destination host",
            )
        dest_label = call.destination or self.label(target)
        ctx = ErrorContext(self.label(source_uri), source_uri, f"migrate {vm}", vm, dest_label or target, target)
        typed = _typed_params(call.params)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            sconn = dconn = None
            try:
                sconn = self._open(source_uri)
                dom = lookup(sconn, vm)
                if p2p:
                    dom.migrateToURI3(target, typed, mask)
                else:
                    dconn = self._open(target)
                    dom.migrate3(dconn, typed, mask)
                done.set_result(None)
            except libvirt.libvirtError as err:
                done.set_exception(translate(err.get_error_code(), str(err), ctx))
            except BaseException as err:  # hand every failure to the awaiting task
                done.set_exception(err)
            finally:
                for conn in (sconn, dconn):
                    if conn is not None:
                        with contextlib.suppress(libvirt.libvirtError):
                            conn.close()

        threading.Thread(target=run, name=f"migrate-{vm}", daemon=True).start()
        await asyncio.wrap_future(done)

    async def job_stats(self, uri: str, vm: str) -> JobStats:
        """The VM's current job on that host (type NONE when idle). Raises DomainNotFound when it is gone."""
        return await self.run(uri, "read job statistics", lambda c: _stats(lookup(c, vm).jobStats(0)), vm=vm)

    async def completed_job_stats(
        self, vm_uuid: str, *, source_uri: str, destination_uri: str, wait_s: float = 1.0
    ) -> JobStats | None:
        """Final stats of the last migration: JOB_COMPLETED event, else the destination, else the source."""
        deadline = time.monotonic() + wait_s
        while True:
            cached = self._completed.get(vm_uuid)
            if cached is not None:
                return cached[1]
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        for uri in (destination_uri, source_uri):
            try:
                stats = await self.run(
                    uri,
                    "read completed job statistics",
                    lambda c: _stats(lookup(c, vm_uuid).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)),
                    vm=vm_uuid,
                )
            except HypervisorError:
                continue
            if stats.values:
                return stats
        return None

    def forget_completed(self, vm_uuid: str) -> None:
        """Drop a cached JOB_COMPLETED so the next migration of the VM cannot read stale numbers."""
        self._completed.pop(vm_uuid, None)

    async def abort_job(self, uri: str, vm: str) -> None:
        """Cancel the VM's running job (abortJob). In post-copy it would lose the VM: callers must refuse."""
        await self.run(uri, "abort the migration", lambda c: lookup(c, vm).abortJob(), vm=vm, retry=False)

    async def pause_postcopy(self, uri: str, vm: str) -> None:
        """abortJobFlags(POSTCOPY): pause a post-copy migration so it can be resumed with POSTCOPY_RESUME."""
        await self.run(
            uri,
            "pause the post-copy migration",
            lambda c: lookup(c, vm).abortJobFlags(libvirt.VIR_DOMAIN_ABORT_JOB_POSTCOPY),
            vm=vm,
            retry=False,
        )

    async def start_postcopy(self, uri: str, vm: str) -> None:
        """Switch a running migration (started with VIR_MIGRATE_POSTCOPY) to post-copy."""
        await self.run(
            uri,
            "switch to post-copy",
            lambda c: lookup(c, vm).migrateStartPostCopy(0),
            vm=vm,
            retry=False,
        )

    async def set_max_downtime(self, uri: str, vm: str, downtime_ms: int) -> None:
        await self.run(
            uri,
            "set the maximum downtime",
            lambda c: lookup(c, vm).migrateSetMaxDowntime(int(downtime_ms), 0),
            vm=vm,
        )

    async def get_max_downtime(self, uri: str, vm: str) -> int:
        return await self.run(
            uri,
            "read the maximum downtime",
            lambda c: int(lookup(c, vm).migrateGetMaxDowntime(0)),
            vm=vm,
        )

    async def set_max_speed(self, uri: str, vm: str, bandwidth_mib_s: int, *, postcopy: bool = False) -> None:
        """Bandwidth cap in MiB/s for pre-copy (or for post-copy with `postcopy=True`)."""
        flags = libvirt.VIR_DOMAIN_MIGRATE_MAX_SPEED_POSTCOPY if postcopy else 0
        await self.run(
            uri,
            "set the migration bandwidth",
            lambda c: lookup(c, vm).migrateSetMaxSpeed(int(bandwidth_mib_s), flags),
            vm=vm,
        )

    async def get_max_speed(self, uri: str, vm: str, *, postcopy: bool = False) -> int:
        flags = libvirt.VIR_DOMAIN_MIGRATE_MAX_SPEED_POSTCOPY if postcopy else 0
        return await self.run(
            uri,
            "read the migration bandwidth",
            lambda c: int(lookup(c, vm).migrateGetMaxSpeed(flags)),
            vm=vm,
        )

    # ----- lifecycle helpers (tests, cleanup) --------------------------------------------------------------

    async def destroy(self, uri: str, vm: str) -> None:
        """Power the VM off hard on that host (no-op when it is not running)."""

        def destroy(c: VirConnect) -> None:
            dom = lookup(c, vm)
            if dom.isActive():
                dom.destroy()

        await self.run(uri, "destroy the VM", destroy, vm=vm, retry=False)

    async def undefine(self, uri: str, vm: str) -> None:
        """Remove the VM's persistent definition on that host (a running transient VM is unaffected)."""
        await self.run(uri, "undefine the VM", lambda c: lookup(c, vm).undefine(), vm=vm, retry=False)

    async def undefine_inactive(self, uri: str, vm: str) -> None:
        """Remove the (shut-off) VM's persistent definition there, with its managed-save image and snapshot and
        checkpoint metadata; the disk images and NVRAM stay. Refused for a running VM (it would turn transient)."""
        flags = (
            libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM
        )

        def run(c: VirConnect) -> None:
            dom = lookup(c, vm)
            if dom.isActive():
                raise libvirt.libvirtError(f"{vm} is running there; only a shut-off definition is removed")
            dom.undefineFlags(flags)

        await self.run(uri, "undefine the VM", run, vm=vm, retry=False)

    async def define(self, uri: str, xml: str) -> str:
        """Define a VM from XML; returns its name."""
        return await self.run(uri, "define a VM", lambda c: str(c.defineXML(xml).name()), retry=False)

    async def start(self, uri: str, vm: str) -> None:
        await self.run(uri, "start the VM", lambda c: lookup(c, vm).create(), vm=vm, retry=False)


def _implements_the_port(hypervisor: Hypervisor) -> HypervisorPort:
    """mypy proves here that the adapter implements the port (a structural check; never called)."""
    return hypervisor
