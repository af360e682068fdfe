"""`migrate-bot doctor`: is every host of the inventory ready for migrations, and if not, what to fix.

Per host: does it answer and accept the bot (ssh key / TLS certificates / libvirt permission), its libvirt and
QEMU versions, host name and host UUID (two hosts with one UUID are "the same host" to libvirt), its clock against
the bot's (a probe file's ctime through libvirt; judged across hosts by preflight.clockskew), TLS readiness
(the bot's handshake with its listener for qemu+tls, and QEMU migration TLS declared for --tls). Per ordered
pair: can the source reach the destination's libvirt and migration ports (probed from the source over SSH when
the hosts file gives it an ssh target, else from the bot). The report is typed; `ready` is what the exit code
says. The checks only read (the clock probe's empty file is deleted at once): nothing on a host changes.
Runs on any `HypervisorPort`: the libvirt adapter, or the in-memory fleet in tests.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from migration_core.errors import MigrateBotError
from migration_core.facts.domxml_host import parse_capabilities
from migration_core.hypervisor import tlscheck
from migration_core.hypervisor.port import HypervisorPort
from migration_core.hypervisor.types import ClockReading, HostVersions
from migration_core.inventory.hosts import HostConfig, Inventory
from migration_core.models import CheckResult, CheckStatus
from migration_core.preflight import clockskew
from migration_core.preflight._common import failed, passed, warned
from migration_core.preflight.clockskew import SkewJudgement, Verdict
from migration_core.preflight.runner import PreflightRunner
from migration_core.preflight.tls import FIX as MIGRATION_TLS_FIX


@dataclass(frozen=True)
class Finding:
    """One check on one host (or one pair, "hostA->hostB"): a `CheckResult`, like preflight's."""

    subject: str
    result: CheckResult

    def to_json(self) -> dict[str, object]:
        """The `doctor --json` finding: subject, check, status ("ok", "warn" or "fail"), detail and fix."""
        r = self.result
        status = "ok" if r.status is CheckStatus.PASS else r.status.value
        return {"subject": self.subject, "check": r.name, "status": status, "detail": r.reason, "fix": r.fix}


@dataclass(frozen=True)
class HostReport:
    """What the doctor learnt about one host: the port's typed answers (None: not read, see the findings)."""

    name: str
    uri: str
    transport: str
    reachable: bool
    hostname: str | None = None
    uuid: str | None = None
    versions: HostVersions | None = None
    clock: ClockReading | None = None  # host clock against the bot's

    def to_json(self) -> dict[str, object]:
        """The `doctor --json` host: flat keys (`libvirt_version`, `clock_offset_s`, ...), as scripts read them."""
        v, c = self.versions, self.clock
        return {
            "name": self.name,
            "uri": self.uri,
            "transport": self.transport,
            "reachable": self.reachable,
            "hostname": self.hostname,
            "uuid": self.uuid,
            "libvirt_version": v.libvirt if v else None,
            "qemu_version": v.hypervisor if v else None,
            "clock_offset_s": c.offset_s if c else None,
            "clock_uncertainty_s": c.uncertainty_s if c else None,
        }


@dataclass(frozen=True)
class DoctorReport:
    hosts: tuple[HostReport, ...]
    findings: tuple[Finding, ...]
    clock: SkewJudgement = field(default_factory=lambda: SkewJudgement(Verdict.NOT_CHECKED, None, None, (), ()))

    @property
    def ready(self) -> bool:
        """Every host answers and nothing failed (warnings do not block)."""
        return all(h.reachable for h in self.hosts) and not any(
            f.result.status is CheckStatus.FAIL for f in self.findings
        )

    def to_json(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "hosts": [h.to_json() for h in self.hosts],
            "findings": [f.to_json() for f in self.findings],
            "clock_skew": {**asdict(self.clock), "verdict": self.clock.verdict.value},
        }


async def _clock(hv: HypervisorPort, cfg: HostConfig) -> tuple[ClockReading | None, Finding]:
    """This host's clock against the bot's; "not checked" (never "ok") with the reason when it cannot be read."""
    try:
        reading = await hv.clock_reading(cfg.uri)
    except MigrateBotError as err:
        fix = err.hint or "let the bot's libvirt account create volumes in a dir storage pool (virsh pool-list)"
        return None, Finding(cfg.name, warned("clock", f"not checked: {err.message}", fix))
    return reading, Finding(cfg.name, passed("clock", clockskew.offset_text(reading)))


async def _host(hv: HypervisorPort, cfg: HostConfig) -> tuple[HostReport, list[Finding]]:
    transport = urlsplit(cfg.uri).scheme
    findings: list[Finding] = []
    try:
        hostname = await hv.hostname(cfg.uri)
    except MigrateBotError as err:
        findings.append(Finding(cfg.name, failed("connect", err.message, err.hint)))
        return HostReport(cfg.name, cfg.uri, transport, False), findings
    findings.append(Finding(cfg.name, passed("connect", f"answers over {transport} as {hostname}")))
    uuid: str | None = None
    versions: HostVersions | None = None
    try:
        versions = await hv.versions(cfg.uri)
        uuid = parse_capabilities(await hv.capabilities(cfg.uri)).uuid
        findings.append(
            Finding(
                cfg.name,
                passed(
                    "versions",
                    f"libvirt {versions.libvirt_text}, QEMU {versions.hypervisor_text}, host UUID {uuid}",
                ),
            )
        )
    except MigrateBotError as err:
        findings.append(Finding(cfg.name, failed("versions", err.message, err.hint)))
    if transport == "qemu+tls":
        diag = await asyncio.to_thread(tlscheck.diagnose, cfg.uri, cfg.name)
        findings.append(
            Finding(
                cfg.name,
                CheckResult("tls.listener", CheckStatus.PASS if diag.ok else CheckStatus.FAIL, diag.detail, diag.fix),
            )
        )
    if cfg.migration_tls:
        findings.append(
            Finding(
                cfg.name,
                passed("tls.migration", "QEMU migration TLS declared (migration_tls = true)"),
            )
        )
    else:
        findings.append(
            Finding(
                cfg.name,
                warned(
                    "tls.migration",
                    "no migration_tls = true in the hosts file: migrations with --tls to or from this host are "
                    "refused by preflight",
                    MIGRATION_TLS_FIX.format(host=cfg.name),
                ),
            )
        )
    reading, clock_finding = await _clock(hv, cfg)
    findings.append(clock_finding)
    return HostReport(cfg.name, cfg.uri, transport, True, hostname, uuid, versions, reading), findings


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
                out.append(
                    Finding(
                        names,
                        failed(f"duplicate.{attr}", f"{names} share the {attr} {value}", why),
                    )
                )
    return out


def skew_findings(hosts: tuple[HostReport, ...]) -> tuple[SkewJudgement, list[Finding]]:
    """The clock skew across the hosts whose clock was read (pure); no finding with fewer than two hosts."""
    readings = {h.name: h.clock for h in hosts if h.clock is not None}
    judged = clockskew.judge(readings)
    up = [h.name for h in hosts if h.reachable]
    if len(up) < 2:
        return judged, []
    limit = f"threshold {judged.threshold_s:g} s"
    if judged.verdict is Verdict.NOT_CHECKED:
        unread = ", ".join(h for h in up if h not in readings)
        detail = f"not checked: the clocks of {unread} could not be read (see their clock findings)"
        return judged, [Finding(", ".join(up), warned("clock.skew", detail))]
    assert judged.max_skew_s is not None and judged.uncertainty_s is not None
    a, b = judged.between
    measured = f"{judged.max_skew_s:.3f} s (± {judged.uncertainty_s:.3f} s) between {a} and {b}"
    fix = "; ".join(clockskew.FIX.format(host=h) for h in judged.to_fix) or None
    if judged.verdict is Verdict.TOO_LARGE:
        status, detail = (
            CheckStatus.FAIL,
            f"clocks differ by {measured}, over the {limit}: {', '.join(judged.to_fix)} off",
        )
    elif judged.verdict is Verdict.UNSURE:
        status, detail = CheckStatus.WARN, f"clocks differ by {measured}: cannot tell against the {limit}"
    else:
        status, detail, fix = CheckStatus.PASS, f"largest clock difference {measured} ({limit})", None
    if len(readings) < len(up):
        detail += f"; not read: {', '.join(h for h in up if h not in readings)}"
    return judged, [Finding(", ".join(sorted(readings)), CheckResult("clock.skew", status, detail, fix))]


async def _pair(runner: PreflightRunner, src: HostConfig, dst: HostConfig) -> list[Finding]:
    subject = f"{src.name}->{dst.name}"
    out = []
    for probe in await runner.probe_pair(src, dst):
        where = f"{probe.what} port {probe.host}:{probe.port} (probed from the {probe.origin})"
        if probe.ok is True:
            out.append(Finding(subject, passed(f"ports.{probe.what}", f"{where}: {probe.detail}")))
        elif probe.ok is None:
            out.append(
                Finding(
                    subject,
                    warned(
                        f"ports.{probe.what}",
                        f"{where}: not checkable ({probe.detail})",
                        f"give {src.name} an ssh target in the hosts file so the probe runs from there",
                    ),
                )
            )
        else:
            out.append(
                Finding(
                    subject,
                    failed(
                        f"ports.{probe.what}",
                        f"{src.name} cannot reach {dst.name}'s {where}: {probe.detail}",
                        f"open TCP {probe.port} from {src.name} to {dst.name} (firewall), and check the daemon listens",
                    ),
                )
            )
    return out


async def run_doctor(inventory: Inventory, hv: HypervisorPort, runner: PreflightRunner) -> DoctorReport:
    """Every check on every host and every ordered pair of answering hosts."""
    results = await asyncio.gather(*(_host(hv, cfg) for cfg in inventory))
    hosts = tuple(r for r, _ in results)
    findings = [f for _, fs in results for f in fs]
    findings += duplicates(hosts)
    clock, skew = skew_findings(hosts)
    findings += skew
    up = [cfg for cfg, rep in zip(inventory, hosts, strict=True) if rep.reachable]
    pairs = await asyncio.gather(*(_pair(runner, s, d) for s in up for d in up if s.name != d.name))
    findings += [f for fs in pairs for f in fs]
    return DoctorReport(hosts, tuple(findings), clock)


def render_text(report: DoctorReport) -> str:
    """The report for a terminal: one line per finding, fixes indented, the verdict last."""
    marks = {CheckStatus.PASS: "ok  ", CheckStatus.WARN: "WARN", CheckStatus.FAIL: "FAIL"}
    lines = []
    for h in report.hosts:
        state = "answers" if h.reachable else "DOES NOT ANSWER"
        lines.append(f"{h.name}: {state} ({h.uri})")
    for f in report.findings:
        r = f.result
        lines.append(f"[{marks[r.status]}] {f.subject} {r.name}: {r.reason}")
        if r.fix and r.status is not CheckStatus.PASS:
            lines.append(f"       fix: {r.fix}")
    bad = sum(f.result.status is CheckStatus.FAIL for f in report.findings)
    lines.append("ready: every host" if report.ready else f"NOT ready: {bad} problem(s) to fix")
    return "\n".join(lines)
