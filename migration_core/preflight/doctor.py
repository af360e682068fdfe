"""`migrate-bot doctor`: is every host of the inventory ready for migrations, and if not, what to fix.

Per host: does it answer and accept the bot (ssh key / TLS certificates / libvirt permission), its libvirt and
QEMU versions, host name and host UUID (two hosts with one UUID are "the same host" to libvirt), TLS readiness
(the bot's handshake with its listener for qemu+tls, and QEMU migration TLS declared for --tls). Per ordered
pair: can the source reach the destination's libvirt and migration ports (probed from the source over SSH when
the hosts file gives it an ssh target, else from the bot). The report is typed; `ready` is what the exit code
says. The checks only read: nothing on a host changes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import asdict, dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from migration_core.errors import MigrateBotError
from migration_core.facts.domxml_host import parse_capabilities
from migration_core.hypervisor import tlscheck
from migration_core.hypervisor.libvirt_adapter import Hypervisor
from migration_core.inventory.hosts import HostConfig, Inventory
from migration_core.preflight.runner import PreflightRunner
from migration_core.preflight.tls import FIX as MIGRATION_TLS_FIX


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    """One check on one host (or one pair, "hostA->hostB"): its status, what was found and the fix."""

    subject: str
    check: str
    status: Status
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class HostReport:
    """What the doctor learnt about one host."""

    name: str
    uri: str
    transport: str
    reachable: bool
    hostname: str | None = None
    uuid: str | None = None
    libvirt_version: int | None = None
    qemu_version: int | None = None


@dataclass(frozen=True)
class DoctorReport:
    hosts: tuple[HostReport, ...]
    findings: tuple[Finding, ...]

    @property
    def ready(self) -> bool:
        """Every host answers and nothing failed (warnings do not block)."""
        return all(h.reachable for h in self.hosts) and not any(f.status is Status.FAIL for f in self.findings)

    def to_json(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "hosts": [asdict(h) for h in self.hosts],
            "findings": [{**asdict(f), "status": f.status.value} for f in self.findings],
        }


def version_text(packed: int | None) -> str:
    """version_text(9000000) == "9.0.0" (libvirt's packed major*1e6 + minor*1e3 + micro)."""
    if packed is None:
        return "?"
    return f"{packed // 1_000_000}.{packed // 1000 % 1000}.{packed % 1000}"


async def _host(hv: Hypervisor, cfg: HostConfig) -> tuple[HostReport, list[Finding]]:
    transport = urlsplit(cfg.uri).scheme
    findings: list[Finding] = []
    try:
        hostname = await hv.hostname(cfg.uri)
    except MigrateBotError as err:
        findings.append(Finding(cfg.name, "connect", Status.FAIL, err.message, err.hint))
        return HostReport(cfg.name, cfg.uri, transport, False), findings
    findings.append(Finding(cfg.name, "connect", Status.OK, f"answers over {transport} as {hostname}"))
    uuid = libvirt_v = qemu_v = None
    try:
        versions = await hv.versions(cfg.uri)
        libvirt_v, qemu_v = versions.libvirt, versions.hypervisor
        uuid = parse_capabilities(await hv.capabilities(cfg.uri)).uuid
        findings.append(
            Finding(
                cfg.name,
                "versions",
                Status.OK,
                f"libvirt {version_text(libvirt_v)}, QEMU {version_text(qemu_v)}, host UUID {uuid}",
            )
        )
    except MigrateBotError as err:
        findings.append(Finding(cfg.name, "versions", Status.FAIL, err.message, err.hint))
    if transport == "qemu+tls":
        diag = await asyncio.to_thread(tlscheck.diagnose, cfg.uri, cfg.name)
        findings.append(Finding(cfg.name, "tls.listener", Status.OK if diag.ok else Status.FAIL, diag.detail, diag.fix))
    if cfg.migration_tls:
        findings.append(
            Finding(cfg.name, "tls.migration", Status.OK, "QEMU migration TLS declared (migration_tls = true)")
        )
    else:
        findings.append(
            Finding(
                cfg.name,
                "tls.migration",
                Status.WARN,
                "no migration_tls = true in the hosts file: migrations with --tls to or from this host are "
                "refused by preflight",
                MIGRATION_TLS_FIX.format(host=cfg.name),
            )
        )
    report = HostReport(cfg.name, cfg.uri, transport, True, hostname, uuid, libvirt_v, qemu_v)
    return report, findings


def duplicates(hosts: tuple[HostReport, ...]) -> list[Finding]:
    """Two inventory hosts with one host name or one host UUID (pure)."""
    out = []
    for attr, why in (
        ("uuid", "libvirt refuses to migrate between them as 'the same host'; give each a distinct host_uuid in "
         "libvirtd.conf (or fix the machine's SMBIOS UUID)"),
        ("hostname", "the destination advertises this name for the migration data; give each host its own name"),
    ):  # fmt: skip
        counts = Counter(getattr(h, attr) for h in hosts if getattr(h, attr))
        for value, n in counts.items():
            if n > 1:
                names = ", ".join(h.name for h in hosts if getattr(h, attr) == value)
                out.append(Finding(names, f"duplicate.{attr}", Status.FAIL, f"{names} share the {attr} {value}", why))
    return out


async def _pair(runner: PreflightRunner, src: HostConfig, dst: HostConfig) -> list[Finding]:
    subject = f"{src.name}->{dst.name}"
    out = []
    for probe in await runner.probe_pair(src, dst):
        where = f"{probe.what} port {probe.host}:{probe.port} (probed from the {probe.origin})"
        if probe.ok is True:
            out.append(Finding(subject, f"ports.{probe.what}", Status.OK, f"{where}: {probe.detail}"))
        elif probe.ok is None:
            out.append(
                Finding(
                    subject,
                    f"ports.{probe.what}",
                    Status.WARN,
                    f"{where}: not checkable ({probe.detail})",
                    f"give {src.name} an ssh target in the hosts file so the probe runs from there",
                )
            )
        else:
            out.append(
                Finding(
                    subject,
                    f"ports.{probe.what}",
                    Status.FAIL,
                    f"{src.name} cannot reach {dst.name}'s {where}: {probe.detail}",
                    f"open TCP {probe.port} from {src.name} to {dst.name} (firewall), and check the daemon listens",
                )
            )
    return out


async def run_doctor(inventory: Inventory, hv: Hypervisor, runner: PreflightRunner) -> DoctorReport:
    """Every check on every host and every ordered pair of answering hosts."""
    results = await asyncio.gather(*(_host(hv, cfg) for cfg in inventory))
    hosts = tuple(r for r, _ in results)
    findings = [f for _, fs in results for f in fs]
    findings += duplicates(hosts)
    up = [cfg for cfg, rep in zip(inventory, hosts, strict=True) if rep.reachable]
    pairs = await asyncio.gather(*(_pair(runner, s, d) for s in up for d in up if s.name != d.name))
    findings += [f for fs in pairs for f in fs]
    return DoctorReport(hosts, tuple(findings))


def render_text(report: DoctorReport) -> str:
    """The report for a terminal: one line per finding, fixes indented, the verdict last."""
    marks = {Status.OK: "ok  ", Status.WARN: "WARN", Status.FAIL: "FAIL"}
    lines = []
    for h in report.hosts:
        state = "answers" if h.reachable else "DOES NOT ANSWER"
        lines.append(f"{h.name}: {state} ({h.uri})")
    for f in report.findings:
        lines.append(f"[{marks[f.status]}] {f.subject} {f.check}: {f.detail}")
        if f.fix and f.status is not Status.OK:
            lines.append(f"       fix: {f.fix}")
    bad = sum(f.status is Status.FAIL for f in report.findings)
    lines.append("ready: every host" if report.ready else f"NOT ready: {bad} problem(s) to fix")
    return "\n".join(lines)
