"""The adapter's fact readers for preflight: host, CPU, domains, dirty rate, guest agent (raw XML or typed).

Parsing XML into facts is the facts package's job; these methods return libvirt's XML strings or small typed
results. A part of `libvirt_adapter.Hypervisor` by composition: it reaches libvirt only through the
`Session` it is given (hypervisor/base.py), so `import libvirt` stays in the adapter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

from migration_core.errors import HypervisorError
from migration_core.hypervisor.base import Param, Session, VirConnect, VirDomain, lookup
from migration_core.hypervisor.errors import missing_features
from migration_core.hypervisor.types import (
    HOST_DEFAULT,
    STATE_BY_CODE,
    CpuComparison,
    DirtyRate,
    DomainInfo,
    DomainState,
    EmulatorTarget,
    HostVersions,
    NodeMemory,
    VirErr,
)

DIRTYRATE_MODES = ("page-sampling", "dirty-bitmap", "dirty-ring")
_COMPARE_TEXT = {1: "identical", 2: "the host CPU is a superset"}


class HostFactReader:
    """Host and domain facts; CPU comparison; dirty-rate measurement."""

    def __init__(self, session: Session) -> None:
        self._s = session

    async def ping(self, uri: str) -> str:
        """The host's hostname; raises HostUnreachable when its libvirtd does not answer."""
        return await self.hostname(uri)

    async def hostname(self, uri: str) -> str:
        return await self._s.run(uri, "read the hostname", lambda c: str(c.getHostname()))

    async def capabilities(self, uri: str) -> str:
        """Host capabilities XML (`virsh capabilities`)."""
        return await self._s.run(uri, "read the host capabilities", lambda c: str(c.getCapabilities()))

    async def versions(self, uri: str) -> HostVersions:
        """libvirt version, hypervisor (QEMU) version and driver type ("QEMU")."""
        return await self._s.run(
            uri,
            "read versions",
            lambda c: HostVersions(int(c.getLibVersion()), int(c.getVersion()), str(c.getType())),
        )

    async def node_memory(self, uri: str) -> NodeMemory:
        """Host memory: getMemoryStats (KiB) for total/buffers/cached, getFreeMemory (bytes) for free."""
        all_cells = self._s.constant("VIR_NODE_MEMORY_STATS_ALL_CELLS")

        def read(c: VirConnect) -> NodeMemory:
            stats = c.getMemoryStats(all_cells, 0)
            free = int(c.getFreeMemory())
            cache_kib = int(stats.get("buffers", 0)) + int(stats.get("cached", 0))
            return NodeMemory(int(stats.get("total", 0)) * 1024, free, free + cache_kib * 1024)

        return await self._s.run(uri, "read free memory", read)

    async def domain_capabilities(self, uri: str, target: EmulatorTarget = HOST_DEFAULT) -> str:
        """Domain capabilities XML for one (emulator, arch, machine, virttype) combination."""
        t = target
        return await self._s.run(
            uri,
            "read domain capabilities",
            lambda c: str(c.getDomainCapabilities(t.emulator, t.arch, t.machine, t.virttype, 0)),
        )

    # ----- CPU -------------------------------------------------------------------------------------------

    async def compare_cpu(self, uri: str, cpu_xml: str, target: EmulatorTarget = HOST_DEFAULT) -> CpuComparison:
        """compareHypervisorCPU on `uri` (the destination, read-write) with FAIL_INCOMPATIBLE.

        `cpu_xml` is a `<cpu>` element (e.g. from the VM's migratable XML). Incompatible -> compatible=False
        with the missing features parsed from libvirt's message.
        """
        fail_incompatible, t = self._s.constant("VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE"), target

        def compare(c: VirConnect) -> CpuComparison:
            try:
                result = int(
                    c.compareHypervisorCPU(t.emulator, t.arch, t.machine, t.virttype, cpu_xml, fail_incompatible)
                )
            except Exception as err:
                if self._s.error_code(err) != VirErr.CPU_INCOMPATIBLE:
                    raise
                return CpuComparison(False, 0, missing_features(str(err)), str(err))
            return CpuComparison(result > 0, result, (), _COMPARE_TEXT.get(result, f"result {result}"))

        return await self._s.run(uri, "compare CPUs", compare)

    async def baseline_cpu(self, uri: str, cpu_xmls: Sequence[str], target: EmulatorTarget = HOST_DEFAULT) -> str:
        """baselineHypervisorCPU(..., MIGRATABLE): a `<cpu>` every given CPU can run, on that host."""
        migratable, t = self._s.constant("VIR_CONNECT_BASELINE_CPU_MIGRATABLE"), target
        return await self._s.run(
            uri,
            "compute a baseline CPU",
            lambda c: str(
                c.baselineHypervisorCPU(t.emulator, t.arch, t.machine, t.virttype, list(cpu_xmls), migratable)
            ),
        )

    # ----- domains ---------------------------------------------------------------------------------------

    @staticmethod
    def _info(uri: str, dom: VirDomain) -> DomainInfo:
        code, reason = dom.state(0)[:2]
        return DomainInfo(
            host=uri,
            name=str(dom.name()),
            uuid=str(dom.UUIDString()),
            state=STATE_BY_CODE.get(int(code), DomainState.NOSTATE),
            reason=int(reason),
            active=bool(dom.isActive()),
            persistent=bool(dom.isPersistent()),
        )

    async def list_domains(self, uri: str) -> tuple[DomainInfo, ...]:
        """Every VM the host knows (running or only defined), sorted by name."""

        def read(c: VirConnect) -> tuple[DomainInfo, ...]:
            out = []
            for dom in c.listAllDomains(0):
                try:
                    out.append(self._info(uri, dom))
                except Exception as err:  # it vanished between the list and the read
                    if self._s.error_code(err) != VirErr.NO_DOMAIN:
                        raise
            return tuple(sorted(out, key=lambda d: d.name))

        return await self._s.run(uri, "list VMs", read)

    async def domain(self, uri: str, vm: str) -> DomainInfo:
        """State, reason and persistence of `vm` (name or UUID) there; state ABSENT when the host lacks it."""

        def read(c: VirConnect) -> DomainInfo:
            try:
                return self._info(uri, lookup(c, vm))
            except Exception as err:
                if self._s.error_code(err) == VirErr.NO_DOMAIN:
                    return DomainInfo(host=uri, name=vm)
                raise

        return await self._s.run(uri, "read the VM's state", read, vm=vm)

    async def domain_xml(self, uri: str, vm: str, *, migratable: bool = True, inactive: bool = False) -> str:
        """Domain XML; `migratable` (VIR_DOMAIN_XML_MIGRATABLE) is what the destination will receive."""
        k = self._s.constant
        flags = (k("VIR_DOMAIN_XML_MIGRATABLE") if migratable else 0) | (
            k("VIR_DOMAIN_XML_INACTIVE") if inactive else 0
        )
        return await self._s.run(uri, "read the VM's XML", lambda c: str(lookup(c, vm).XMLDesc(flags)), vm=vm)

    async def snapshot_count(self, uri: str, vm: str) -> int:
        """How many snapshots libvirt holds for `vm` (libvirt refuses to migrate a domain that has any)."""
        return await self._s.run(uri, "count the VM's snapshots", lambda c: int(lookup(c, vm).snapshotNum(0)), vm=vm)

    async def memory_rss_bytes(self, uri: str, vm: str) -> int | None:
        """The QEMU process's resident memory (`memoryStats()` rss, KiB -> bytes); None when libvirt has none.

        Guest pages never written are not resident, so this bounds what pre-copy's first pass sends.
        """

        def read(c: VirConnect) -> int | None:
            rss = lookup(c, vm).memoryStats().get("rss")
            return int(rss) * 1024 if rss else None

        return await self._s.run(uri, "read the VM's memory stats", read, vm=vm)

    async def dirty_rate(
        self,
        uri: str,
        vm: str,
        *,
        seconds: int = 3,
        mode: str = "page-sampling",
        timeout_s: float | None = None,
    ) -> DirtyRate:
        """Measure the guest's dirty rate in MB/s over `seconds` (startDirtyRateCalc + DIRTYRATE stats).

        dirty-bitmap is refused on TCG domains: it crashes QEMU 7.2 (lab.md P7); page-sampling is the default.
        """
        k = self._s.constant
        if mode not in DIRTYRATE_MODES:
            raise HypervisorError(f"unknown dirty-rate mode {mode!r}", f"use one of {', '.join(DIRTYRATE_MODES)}")
        mode_flag = k("VIR_DOMAIN_DIRTYRATE_MODE_" + mode.upper().replace("-", "_"))
        if mode == "dirty-bitmap" and "type='qemu'" in (await self.domain_xml(uri, vm, migratable=False))[:200]:
            raise HypervisorError(f"dirty-bitmap sampling would crash {vm}'s QEMU (TCG)", "use page-sampling")
        await self._s.run(
            uri,
            "start dirty-rate sampling",
            lambda c: lookup(c, vm).startDirtyRateCalc(seconds, mode_flag),
            vm=vm,
            retry=False,
        )
        which, measured = k("VIR_DOMAIN_STATS_DIRTYRATE"), k("VIR_DOMAIN_DIRTYRATE_MEASURED")
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else seconds + 10)
        await asyncio.sleep(seconds)
        while True:
            stats: Mapping[str, Param] = await self._s.run(
                uri,
                "read the dirty rate",
                lambda c: dict(c.domainListGetStats([lookup(c, vm)], which, 0)[0][1]),
                vm=vm,
            )
            if int(stats.get("dirtyrate.calc_status", -1)) == measured:
                return DirtyRate(
                    int(stats.get("dirtyrate.megabytes_per_second", 0)),
                    str(stats.get("dirtyrate.calc_mode", mode)),
                    int(stats.get("dirtyrate.calc_period", seconds)),
                )
            if time.monotonic() > deadline:
                raise HypervisorError(
                    f"the dirty-rate measurement of {vm} on {self._s.label(uri)} did not finish",
                    "retry; if it keeps failing, plan without a dirty rate",
                )
            await asyncio.sleep(0.25)

    async def cpu_time_ns(self, uri: str, vm: str) -> int:
        """Total vCPU time the VM has used on that host, in ns (virDomainGetInfo): it advances only while the
        guest's vCPUs execute, so two readings a second apart tell a live guest from a stuck one."""
        return await self._s.run(uri, "read the VM's CPU time", lambda c: int(lookup(c, vm).info()[4]), vm=vm)

    async def guest_agent_configured(self, uri: str, vm: str) -> bool:
        """Whether the VM has a qemu-guest-agent channel (without one, the guest cannot be asked anything)."""
        return "org.qemu.guest_agent.0" in await self.domain_xml(uri, vm, migratable=False)

    async def guest_agent_ping(self, uri: str, vm: str) -> str:
        """Ask the guest agent for the hostname: "answered" or "did not answer (...)"."""
        hostname = self._s.constant("VIR_DOMAIN_GUEST_INFO_HOSTNAME")
        try:
            await self._s.run(
                uri,
                "ask the guest agent",
                lambda c: lookup(c, vm).guestInfo(hostname, 0),
                vm=vm,
                retry=False,
            )
        except HypervisorError as err:
            return f"did not answer ({err.message})"
        return "answered"
