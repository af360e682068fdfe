"""Prediction benchmark on the real lab: predicted vs measured total time and downtime, cold and warm.

    flock /tmp/migrate-bot-lab.lock .venv/bin/python bench/bench_prediction.py            # every scenario
    flock /tmp/migrate-bot-lab.lock .venv/bin/python bench/bench_prediction.py --only idle-200,busy-64
    .venv/bin/python bench/bench_prediction.py --replay /tmp/h12-runs.json      # re-score recorded runs

Each scenario uses its own clone of a lab VM (the lab's vm42/busy/disky/stopped are left alone) and the
migration link shaped to the scenario's rate (the hosts file's `link_mib_s` is taken to be that rate, as an
operator would declare it). Per scenario:

1. cold: empty history; the inputs are read as preflight reads them (memory and RSS from libvirt, a 2 s
   dirty-rate measurement, the copied disks' allocation), predicted, then migrated hostA -> hostB with the
   executor; the completed job stats are the measurement, and the run becomes a history sample.
2. back: hostB -> hostA (also predicted and recorded: the VM's history grows, the pair hostA->hostB's not).
3. warm: hostA -> hostB again, predicted with the history of steps 1-2.

Error = |predicted - measured| / measured; moves shorter than 2 s get 0.3 s absolute tolerance (an error
within it counts as 0). Targets (issue 12): total cold median <= 25 %, warm median <= 10 % and p90 <= 15 %;
downtime within +-30 % or +-30 ms in >= 90 % of warm runs. The "before" column is the old model (pre-copy
only, memory at the declared link, as the card showed it). The link is reset after every run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from migration_core.events import RecordingSink
from migration_core.execution.executor import Executor
from migration_core.hypervisor.libvirt_adapter import Hypervisor
from migration_core.models import CopyStorage, JobState, MigrationOptions, MoveSample
from migration_core.planning.estimate import (
    Estimate,
    MoveInputs,
    MoveMode,
    estimate,
    sample_from_run,
    to_prediction,
    transferable_from_rss,
)
from migration_core.planning.prediction import predict_precopy
from tests.labkit import LabInfo, bring_up, link_rate, link_reset, virsh
from tests.migration_core.executor_lab_support import (
    A,
    B,
    Guest,
    disk_copy,
    drop_guest,
    inventory,
    make_guest,
    plan_for,
    wait_console_after,
)

MIB = 1024 * 1024
SETTLE_S = 6.0  # busy's guest writes its 128 MiB region at 31 MiB/s: touched in ~4 s after its first line


@dataclass(frozen=True)
class Scenario:
    name: str
    template: str
    rate_mib_s: int
    options: dict[str, Any] = field(default_factory=dict)
    disk_virtual_mib: int = 0  # copy-storage: a sparse image of this size ...
    disk_written_mib: int = 0  # ... with this much written
    running: bool = True


SCENARIOS = (
    Scenario("idle-200", "vm42", 200),
    Scenario("idle-100", "vm42", 100),
    Scenario("idle-32", "vm42", 32),
    Scenario("idle-parallel4-200", "vm42", 200, {"parallel_connections": 4}),
    Scenario("busy-200", "busy", 200),
    Scenario("busy-128", "busy", 128),
    Scenario("busy-64", "busy", 64),
    Scenario("busy-autoconverge-32", "busy", 32, {"auto_converge": True}),
    Scenario("busy-postcopy-16", "busy", 16, {"postcopy": True}),
    Scenario("disky-copystorage-1g-200", "disky", 200, {"copy_storage": "all"}, 1024, 48),
    Scenario("disky-copystorage-1g-64", "disky", 64, {"copy_storage": "all"}, 1024, 48),
    Scenario("offline-200", "stopped", 200, running=False),
)


@dataclass
class Run:
    """One measured migration: what was known before it, and what its completed job stats said."""

    scenario: str
    phase: str  # cold | back | warm
    vm: str
    source: str
    destination: str
    options: dict[str, Any]
    running: bool
    memory_bytes: int
    rss_bytes: int | None
    dirty_rate_mib_s: float | None
    disk_bytes: int  # allocation of the copied disks
    disk_virtual_bytes: int
    declared_link_mib_s: float
    outcome: str = ""
    wall_s: float = 0.0
    postcopy: bool = False
    stats: dict[str, Any] = field(default_factory=dict)


def inputs_of(run: Run) -> MoveInputs:
    """The model's inputs as preflight would have them before this run."""
    o = run.options
    mode = (
        MoveMode.OFFLINE
        if not run.running
        else MoveMode.POSTCOPY
        if o.get("postcopy")
        else MoveMode.AUTO_CONVERGE
        if o.get("auto_converge")
        else MoveMode.PRECOPY
    )
    return MoveInputs(
        memory_bytes=run.memory_bytes,
        dirty_rate_mib_s=run.dirty_rate_mib_s,
        link_mib_s=run.declared_link_mib_s,
        transferable_bytes=transferable_from_rss(run.memory_bytes, run.rss_bytes),
        mode=mode,
        parallel_connections=o.get("parallel_connections"),
        disk_bytes=run.disk_bytes,
        disk_virtual_bytes=run.disk_virtual_bytes,
        vm_uuid=run.vm,
        vm=run.vm,
        source=run.source,
        destination=run.destination,
    )


def _options(raw: dict[str, Any]) -> MigrationOptions:
    kw = dict(raw)
    if "copy_storage" in kw:
        kw["copy_storage"] = CopyStorage(kw["copy_storage"])
    return MigrationOptions(undefine_source=True, **kw)


def _rss_bytes(lab: LabInfo, host: str, vm: str) -> int | None:
    """`virsh dommemstat` rss (KiB): the QEMU process's resident memory, guest pages it touched included."""
    proc = virsh(lab, host, "dommemstat", vm, check=False)
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "rss" and value.strip().isdigit():
            return int(value) * 1024
    return None


def _allocation(lab: LabInfo, host: str, vm: str, target: str) -> tuple[int, int]:
    """(allocation, capacity) bytes of one disk (`virsh domblkinfo`)."""
    proc = virsh(lab, host, "domblkinfo", vm, target, check=False)
    alloc = cap = 0
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Allocation":
            alloc = int(value.strip())
        elif key.strip() == "Capacity":
            cap = int(value.strip())
    return alloc, cap


async def _sparse_disk(hv: Hypervisor, lab: LabInfo, guest: Guest, virtual_mib: int, written_mib: int) -> None:
    """Replace the clone's data disk by a larger sparse one (virtual_mib, written_mib of data)."""
    assert guest.disk is not None
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(guest.disk), f"{virtual_mib}M"], check=True)
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 0 {written_mib}M", str(guest.disk)],
        check=True,
        capture_output=True,
    )
    await hv.start(lab.host(A).uri, guest.name)
    await wait_console_after(lab, guest, None, 90)


_QMP_REPLY = re.compile(r"QEMU_MONITOR_RECV_REPLY: mon=\S+ reply=(\{.*\})\s*$", re.M)


def _debug_log(lab: LabInfo, host: str) -> Path:
    """The host's libvirtd debug log (lab hostconf: qemu_monitor_json at level 1, so QMP replies are in it)."""
    return lab.host(host).log.parent / "libvirtd-debug.log"


def _log_size(lab: LabInfo, host: str) -> int:
    try:
        return _debug_log(lab, host).stat().st_size
    except OSError:
        return 0


def qemu_completed(lab: LabInfo, host: str, offset: int) -> dict[str, float]:
    """QEMU's own figures of the migration that just completed, from the source's last `query-migrate` reply
    with status completed (logged by libvirtd after `offset`): `qemu_downtime` (pause -> last byte and device
    state written; libvirt's `downtime` adds the hand-over: the destination's Finish and resume),
    `qemu_downtime_bytes` (RAM sent while paused), `qemu_mbps` (QEMU's throughput estimate, Mbit/s, the one
    its stop threshold uses). Empty when the log says nothing (then the table just lacks the split)."""
    try:
        with _debug_log(lab, host).open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return {}
    out: dict[str, float] = {}
    for raw in _QMP_REPLY.findall(text):
        try:
            ret = json.loads(raw).get("return")
        except ValueError:
            continue
        if not isinstance(ret, dict) or ret.get("status") != "completed" or not ret.get("total-time"):
            continue  # the destination's reply has no times
        ram = ret.get("ram") or {}
        out = {"qemu_downtime": ret.get("downtime", 0), "qemu_downtime_bytes": ram.get("downtime-bytes", 0),
               "qemu_mbps": ram.get("mbps", 0), "qemu_total_time": ret["total-time"]}  # fmt: skip
    return out


async def measure_once(
    hv: Hypervisor,
    lab: LabInfo,
    sc: Scenario,
    guest: Guest,
    phase: str,
    src: str,
    dst: str,
    job: int,
    earlier: list[Run],
) -> Run:
    uri = lab.host(src).uri
    xml = await hv.domain_xml(uri, guest.name, migratable=False)
    memory = int(xml.split("<memory unit='KiB'>")[1].split("<")[0]) * 1024 if "<memory unit='KiB'>" in xml else 0
    rss = dirty = None
    disk_bytes = disk_virtual = 0
    if sc.running:
        for attempt in (1, 2):
            try:
                rate = await hv.dirty_rate(uri, guest.name, seconds=2)
                dirty = rate.megabytes_per_second * 1_000_000 / MIB
                break
            except Exception as err:  # a benchmark records what it could not read
                # QEMU refuses a second calc-dirty-rate while one still runs ("already being measured", seen
                # once on the rebuilt lab); a run without the rate would be planned without post-copy's switch.
                print(f"   dirty rate of {guest.name} unreadable (attempt {attempt}): {err}")
                await asyncio.sleep(3)
        rss = _rss_bytes(lab, src, guest.name)  # after the dirty rate, as preflight reads it
    if sc.options.get("copy_storage"):
        disk_bytes, disk_virtual = _allocation(lab, src, guest.name, "vda")
    run = Run(
        sc.name,
        phase,
        guest.name,
        src,
        dst,
        sc.options,
        sc.running,
        memory,
        rss,
        dirty,
        disk_bytes,
        disk_virtual,
        float(sc.rate_mib_s),
    )
    opts = _options(sc.options)
    plan = plan_for(
        lab,
        guest,
        xml,
        source=src,
        destination=dst,
        options=opts,
        local_disks=("vda",) if sc.options.get("copy_storage") else (),
        running=sc.running,
    )
    # The estimate this run gets (as scored below); post-copy switches when it says (the planner's rule in
    # planner.postcopy_when_predicted: after about one pass, not at a stall).
    switch = score([*earlier, run])[-1].new.postcopy_switch_s
    if switch is not None:
        plan = replace(plan, policy=replace(plan.policy, postcopy_after_s=switch))
    await asyncio.to_thread(link_rate, lab, sc.rate_mib_s)
    try:
        ex = Executor(hv, inventory(lab), RecordingSink())
        log_offset = _log_size(lab, src)
        t0 = time.perf_counter()
        result = await ex.run(job, plan)
        run.wall_s = time.perf_counter() - t0
    finally:
        await asyncio.to_thread(link_reset, lab)
    run.outcome = result.outcome.value
    run.postcopy = result.postcopy
    if result.completed is not None:
        run.stats = {k: v for k, v in result.completed.values.items() if isinstance(v, int | float | str)}
    if sc.running and result.completed is not None:
        run.stats.update(qemu_completed(lab, src, log_offset))  # bench-only keys: the split of the downtime
    if result.outcome is not JobState.SUCCEEDED:
        print(f"   {sc.name} {phase}: {result.outcome.value}: {result.error}")
    if sc.options.get("copy_storage"):
        disk_copy(lab, src, guest).unlink(missing_ok=True)  # the source's image, left behind by the move
    return run


async def measure(hv: Hypervisor, lab: LabInfo, sc: Scenario, job0: int, earlier: list[Run]) -> list[Run]:
    name = f"xp-{sc.name}"[:40]
    sparse = sc.disk_virtual_mib > 0
    guest = await make_guest(hv, lab, sc.template, name, start=sc.running and not sparse)
    runs: list[Run] = []
    try:
        if sparse:
            await _sparse_disk(hv, lab, guest, sc.disk_virtual_mib, sc.disk_written_mib)
        if sc.running:
            # A VM being moved has been running for a while: let the clone's guest touch its working set.
            await asyncio.sleep(SETTLE_S)
        for i, (phase, src, dst) in enumerate((("cold", A, B), ("back", B, A), ("warm", A, B))):
            runs.append(await measure_once(hv, lab, sc, guest, phase, src, dst, job0 + i, [*earlier, *runs]))
            r = runs[-1]
            print(
                f"   {sc.name:26} {phase:5} {r.outcome:9} elapsed {r.stats.get('time_elapsed', 0) / 1000:6.2f} s"
                f" downtime {r.stats.get('downtime', '-')} ms  normal {r.stats.get('memory_normal_bytes', 0) / MIB:.1f}"
                f" MiB  bps {r.stats.get('memory_bps', 0) / MIB:.0f} MiB/s  iter {r.stats.get('memory_iteration', '-')}"
                f"  setup {r.stats.get('setup_time', '-')} ms  rss {(r.rss_bytes or 0) / MIB:.0f} MiB"
                f"  dirty {r.dirty_rate_mib_s}  qemu downtime {r.stats.get('qemu_downtime', '-')} ms"
                f" ({r.stats.get('qemu_downtime_bytes', 0) / MIB:.2f} MiB)",
                flush=True,
            )
    finally:
        await drop_guest(hv, lab, guest)
    return runs


async def run_lab_part(names: list[str], out: Path, prior: list[Run]) -> list[Run]:
    lab, _ = await asyncio.to_thread(bring_up)
    hv = Hypervisor({A: lab.host(A).uri, B: lab.host(B).uri})
    runs: list[Run] = []
    try:
        for n, sc in enumerate(s for s in SCENARIOS if not names or s.name in names):
            runs.extend(await measure(hv, lab, sc, 9700 + 10 * n, [*prior, *runs]))
            out.write_text(json.dumps([asdict(r) for r in runs], indent=1))
    finally:
        await asyncio.to_thread(link_reset, lab)
        await hv.close()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    parser.add_argument("--out", default="/tmp/bench-prediction-runs.json", help="where the raw runs are written")
    parser.add_argument("--replay", action="append", default=[], help="score recorded runs instead of migrating")
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    parser.add_argument(
        "--prior", action="append", default=[], help="runs of an earlier part: their history counts (warm runs)"
    )
    args = parser.parse_args()
    if args.list:
        for sc in SCENARIOS:
            print(sc.name)
        return
    if args.replay:
        runs = [Run(**r) for path in args.replay for r in json.loads(Path(path).read_text())]
    else:
        names = [n for n in args.only.split(",") if n]
        unknown = sorted(set(names) - {s.name for s in SCENARIOS})
        if unknown:
            raise SystemExit(f"unknown scenario(s) {', '.join(unknown)}; see --list")
        prior = [Run(**r) for path in args.prior for r in json.loads(Path(path).read_text())]
        runs = prior + asyncio.run(run_lab_part(names, Path(args.out), prior))
    report(runs)


TOLERANCE_S = 0.3  # absolute tolerance for moves shorter than 2 s
SHORT_S = 2.0


def measured_total_s(run: Run) -> float:
    """As the summary's "Total time": the completed job's time_elapsed, else the wall time (offline)."""
    elapsed = run.stats.get("time_elapsed")
    return float(elapsed) / 1000 if isinstance(elapsed, int | float) and elapsed else run.wall_s


def measured_downtime_ms(run: Run) -> float | None:
    value = run.stats.get("downtime")
    return float(value) if isinstance(value, int | float) and run.running else None


def total_error(predicted: float | None, measured: float) -> float | None:
    """|p - m| / m, or 0 within 0.3 s on moves shorter than 2 s; None when nothing was predicted."""
    if predicted is None:
        return None
    if measured < SHORT_S and abs(predicted - measured) <= TOLERANCE_S:
        return 0.0
    return abs(predicted - measured) / measured


def downtime_ok(predicted: float | None, measured: float | None) -> bool | None:
    if measured is None:
        return None
    if predicted is None:
        return False
    return abs(predicted - measured) <= max(0.3 * measured, 30.0)


def old_model(run: Run) -> tuple[float | None, float | None]:
    """What the card showed before issue 12: plain pre-copy over all RAM at the declared link."""
    if not run.running or run.dirty_rate_mib_s is None:
        return None, None
    p = predict_precopy(run.memory_bytes, run.dirty_rate_mib_s, run.declared_link_mib_s, 300)
    return p.total_s, p.downtime_ms


@dataclass
class Scored:
    run: Run
    before: tuple[float | None, float | None]
    new: Estimate
    measured_total_s: float
    measured_downtime_ms: float | None


def score(runs: list[Run]) -> list[Scored]:
    """Predict every run in order: cold runs with an empty history, the others with every earlier sample."""
    history: list[MoveSample] = []
    out: list[Scored] = []
    for i, run in enumerate(runs):
        inputs = inputs_of(run)
        est = estimate(inputs, [] if run.phase == "cold" else history)
        total, down = measured_total_s(run), measured_downtime_ms(run)
        out.append(Scored(run, old_model(run), est, total, down))
        sample = sample_from_run(
            to_prediction(est, inputs),
            vm_uuid=run.vm,
            vm=run.vm,
            source=run.source,
            destination=run.destination,
            finished_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i),
            succeeded=run.outcome == JobState.SUCCEEDED.value,
            total_s=total,
            downtime_ms=down,
            stats=run.stats,
            postcopy=run.postcopy,
        )
        if sample is not None:
            history.append(sample)
    return out


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def report(runs: list[Run]) -> None:
    scored = [s for s in score(runs) if s.run.phase in ("cold", "warm")]
    print(f"\n{len(runs)} runs ({len(scored)} cold/warm scored); totals in s, downtimes in ms")
    print(
        "| scenario | run | before total | predicted total (p10-p90) | measured total | error before | error now"
        " | before downtime | predicted downtime | measured downtime | basis |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in scored:
        e = s.new
        print(
            f"| {s.run.scenario} | {s.run.phase} | {_s(s.before[0])} | {_s(e.total_s)} ({_s(e.total_p10_s)}-"
            f"{_s(e.total_p90_s)}) | {s.measured_total_s:.2f} | {_pct(total_error(s.before[0], s.measured_total_s))}"
            f" | {_pct(total_error(e.total_s, s.measured_total_s))} | {_ms(s.before[1])} | {_ms(e.downtime_ms)}"
            f" | {_ms(s.measured_downtime_ms)} | {e.basis} |"
        )
    for phase in ("cold", "warm"):
        rows = [s for s in scored if s.run.phase == phase]
        if not rows:
            continue
        errs = [total_error(s.new.total_s, s.measured_total_s) for s in rows]
        errors = sorted(x if x is not None else 1.0 for x in errs)
        before = sorted(
            x if x is not None else 1.0 for x in (total_error(s.before[0], s.measured_total_s) for s in rows)
        )
        oks = [downtime_ok(s.new.downtime_ms, s.measured_downtime_ms) for s in rows]
        judged = [o for o in oks if o is not None]
        before_oks = [downtime_ok(s.before[1], s.measured_downtime_ms) for s in rows]
        before_judged = [o for o in before_oks if o is not None]
        in_range = sum(
            1
            for s in rows
            if s.new.total_p10_s is not None
            and s.new.total_p90_s is not None
            and s.new.total_p10_s <= s.measured_total_s <= s.new.total_p90_s
        )
        print(
            f"{phase}: {len(rows)} runs; total error median {_pct(statistics.median(errors))}, p90"
            f" {_pct(_p90(errors))} (before: median {_pct(statistics.median(before))}, p90 {_pct(_p90(before))});"
            f" downtime within +-30 %/30 ms: {sum(judged)}/{len(judged)} (before: {sum(before_judged)}/"
            f"{len(before_judged)}); measured total inside p10-p90: {in_range}/{len(rows)}"
        )


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


if __name__ == "__main__":
    main()
