"""Executor benchmark on the real lab: the executor vs raw `virsh migrate`, and strategies for a busy guest.

    .venv/bin/python bench/bench_executor.py                 # 5 repetitions, then the busy-guest strategies
    .venv/bin/python bench/bench_executor.py --reps 9 --skip-busy

1. Overhead: one idle lab VM (a clone of vm42, so the lab's own VMs are left alone) migrated back and forth
   with the same flags (live, peer-to-peer, persistent, undefine-source, the same migrate_uri) by
   `virsh migrate` and by `Executor.run` (which also sets the max downtime, polls job stats every 0.5 s,
   feeds the tracker and controller, and reads the final stats and both hosts' state). Alternating order;
   the median wall time of each and their ratio (target: executor <= 1.05 x virsh).
2. The busy guest (a clone of `busy`: 256 MiB, 31 MiB/s of dirtying) on the migration link shaped to
   16 MiB/s: plain live with the planner's default policy, the planner's recommendation (--postcopy: switch
   when pre-copy stalls) and --postcopy-after 10s. Completion, total time, downtime, data, iterations.
3. Thin disks: a clone of `disky` with a 1 GiB virtual qcow2 holding 8 MiB of data, moved A -> B -> A with
   --copy-storage all by the executor (which pre-creates thin destination images), and the same image copied
   by raw `virsh migrate --copy-storage-all` into a pool (libvirt pre-creates the image itself). The image's
   allocation on the source and on the destination after each copy (`du`), and the copy time.
4. Transports (`--transports`): the same idle VM moved by `virsh migrate` and by `Executor.run` with the same
   URIs and flags from hosts.toml (unix), hosts-ssh.toml (qemu+ssh) and hosts-tls.toml (qemu+tls, peers on
   TLS, and --tls); medians and ratio per transport.
5. The cost of --tls (`--transports`): over qemu+tls, a 64 MiB and a 256 MiB guest moved with and without
   --tls by the executor; median wall time, downtime and throughput of each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from migration_core.events import RecordingSink
from migration_core.execution.executor import Executor
from migration_core.hypervisor.libvirt_adapter import Hypervisor
from migration_core.models import CopyStorage, JobState, MigrationOptions
from tests.labkit import LabInfo, bring_up, link_rate, link_reset
from tests.migration_core.executor_lab_support import (
    A,
    B,
    Guest,
    allocated_bytes,
    disk_copy,
    drop_guest,
    hypervisor_for,
    inventory,
    make_guest,
    plan_for,
)

FLAGS = ["--live", "--p2p", "--persistent", "--undefinesource"]
MIB = 1024 * 1024


async def _virsh_once(lab: LabInfo, guest: Guest, src: str, dst: str) -> float:
    s, d = lab.host(src), lab.host(dst)
    argv = ["virsh", "-q", "-c", s.uri, "migrate", *FLAGS, guest.name, d.peer_uri, "--migrateuri", f"tcp://{d.ip}"]
    t0 = time.perf_counter()
    proc = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"virsh migrate failed: {proc.stderr.strip()}")
    return wall


async def _executor_once(hv: Hypervisor, lab: LabInfo, guest: Guest, src: str, dst: str, job: int) -> float:
    xml = await hv.domain_xml(lab.host(src).uri, guest.name, migratable=False)
    plan = plan_for(lab, guest, xml, source=src, destination=dst, options=MigrationOptions(undefine_source=True))
    ex = Executor(hv, inventory(lab), RecordingSink())
    t0 = time.perf_counter()
    result = await ex.run(job, plan)
    wall = time.perf_counter() - t0
    if result.outcome is not JobState.SUCCEEDED:
        raise SystemExit(f"executor migration failed: {result.error}")
    return wall


async def overhead(hv: Hypervisor, lab: LabInfo, reps: int) -> None:
    guest = await make_guest(hv, lab, "vm42", "xb-idle")
    virsh_s: list[float] = []
    executor_s: list[float] = []
    where = A
    try:
        for i in range(reps):
            for tool in ("virsh", "executor") if i % 2 == 0 else ("executor", "virsh"):
                there = B if where == A else A
                if tool == "virsh":
                    virsh_s.append(await _virsh_once(lab, guest, where, there))
                else:
                    executor_s.append(await _executor_once(hv, lab, guest, where, there, 9000 + len(executor_s)))
                where = there
    finally:
        await drop_guest(hv, lab, guest)
    v, e = statistics.median(virsh_s), statistics.median(executor_s)
    print(f"\n1. overhead: idle VM (64 MiB), {reps} migrations per tool, alternating A<->B")
    print(f"   virsh migrate   median {v:.3f} s   (all: {', '.join(f'{x:.2f}' for x in virsh_s)})")
    print(f"   Executor.run    median {e:.3f} s   (all: {', '.join(f'{x:.2f}' for x in executor_s)})")
    print(f"   ratio executor / virsh = {e / v:.3f}  (target <= 1.05: {'met' if e / v <= 1.05 else 'NOT met'})")


async def busy(hv: Hypervisor, lab: LabInfo, rate_mib_s: int) -> None:
    guest = await make_guest(hv, lab, "busy", "xb-busy")
    strategies = [
        ("plain live (planner default policy)", MigrationOptions(undefine_source=True)),
        ("--postcopy (planner's recommendation)", MigrationOptions(postcopy=True, undefine_source=True)),
        ("--postcopy-after 10s", MigrationOptions(postcopy_after_s=10, undefine_source=True)),
    ]
    rows = []
    try:
        for n, (label, opts) in enumerate(strategies):
            where = A if (await hv.domain(lab.host(A).uri, guest.name)).active else B
            there = B if where == A else A
            xml = await hv.domain_xml(lab.host(where).uri, guest.name, migratable=False)
            plan = plan_for(lab, guest, xml, source=where, destination=there, options=opts)
            await asyncio.to_thread(link_rate, lab, rate_mib_s)
            ex = Executor(hv, inventory(lab), RecordingSink())
            try:
                t0 = time.perf_counter()
                result = await ex.run(9500 + n, plan)
                wall = time.perf_counter() - t0
            finally:
                await asyncio.to_thread(link_reset, lab)
            stats = result.completed
            downtime = stats.get_int("downtime") if stats and result.outcome is JobState.SUCCEEDED else None
            data = stats.get_int("data_processed") / MIB if stats else None
            rows.append(
                (
                    label,
                    result.outcome.value,
                    wall,
                    downtime,
                    data,
                    result.postcopy,
                    plan.policy.stall_timeout_s,
                    (result.error or "")[:90],
                )
            )
    finally:
        await drop_guest(hv, lab, guest)
    print(f"\n2. busy guest (256 MiB, dirties 31 MiB/s) on the link shaped to {rate_mib_s} MiB/s")
    print(f"   {'strategy':40} {'outcome':10} {'total':>8} {'downtime':>9} {'data':>9}  post-copy  stall")
    for label, outcome, wall, downtime, data, pc, stall, err in rows:
        dt = f"{downtime} ms" if downtime is not None else "-"
        mb = f"{data:.0f} MiB" if data is not None else "-"
        print(f"   {label:40} {outcome:10} {wall:7.1f}s {dt:>9} {mb:>9}  {'yes' if pc else 'no':9}  {stall:.0f}s")
        if err:
            print(f"      {err}")


async def _virsh_via(lab: LabInfo, guest: Guest, transport: str, src: str, dst: str) -> float:
    inv = inventory(lab, transport)
    s, d = inv.get(src), inv.get(dst)
    tls = ["--tls"] if transport == "tls" else []
    argv = [
        "virsh",
        "-q",
        "-c",
        s.uri,
        "migrate",
        *FLAGS,
        *tls,
        guest.name,
        d.peer_uri,
        "--migrateuri",
        f"tcp://{d.migration_address}",
    ]
    t0 = time.perf_counter()
    proc = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"virsh migrate over {transport} failed: {proc.stderr.strip()}")
    return wall


async def _executor_via(
    lab: LabInfo, guest: Guest, transport: str, src: str, dst: str, job: int, tls: bool
) -> tuple[float, float | None, float | None]:
    """(wall s, downtime ms, throughput MiB/s) of one executor migration over `transport`."""
    inv = inventory(lab, transport)
    hv = hypervisor_for(inv)
    try:
        xml = await hv.domain_xml(inv.get(src).uri, guest.name, migratable=False)
        opts = MigrationOptions(undefine_source=True, tls=tls)
        plan = plan_for(lab, guest, xml, source=src, destination=dst, options=opts, transport=transport)
        t0 = time.perf_counter()
        result = await Executor(hv, inv, RecordingSink()).run(job, plan)
        wall = time.perf_counter() - t0
    finally:
        await hv.close()
    if result.outcome is not JobState.SUCCEEDED:
        raise SystemExit(f"executor migration over {transport} failed: {result.error}")
    st = result.completed
    downtime = rate = None
    if st is not None:
        # libvirt's completed-job stats (libvirt.md 3): downtime in ms, data in bytes, elapsed in ms.
        downtime = float(st.get_int("downtime", -1)) if "downtime" in st.values else None
        data, elapsed = st.get_int("data_processed"), st.get_int("time_elapsed")
        rate = data / MIB / (elapsed / 1000) if data and elapsed else None
    return wall, downtime, rate


async def transports(hv: Hypervisor, lab: LabInfo, reps: int) -> None:
    guest = await make_guest(hv, lab, "vm42", "xb-transport")
    print(f"\n4. transports: idle VM (64 MiB), {reps} migrations per tool and transport, alternating A<->B")
    try:
        for transport in ("unix", "ssh", "tls"):
            virsh_s: list[float] = []
            executor_s: list[float] = []
            where = A
            for i in range(reps):
                for tool in ("virsh", "executor") if i % 2 == 0 else ("executor", "virsh"):
                    there = B if where == A else A
                    if tool == "virsh":
                        virsh_s.append(await _virsh_via(lab, guest, transport, where, there))
                    else:
                        job = 9500 + len(executor_s)
                        wall, _, _ = await _executor_via(lab, guest, transport, where, there, job, transport == "tls")
                        executor_s.append(wall)
                    where = there
            v, e = statistics.median(virsh_s), statistics.median(executor_s)
            label = {"unix": "unix socket", "ssh": "qemu+ssh", "tls": "qemu+tls --tls"}[transport]
            print(f"   {label:15} virsh {v:.3f} s   executor {e:.3f} s   ratio {e / v:.3f}")
    finally:
        await drop_guest(hv, lab, guest)


async def tls_cost(hv: Hypervisor, lab: LabInfo, reps: int) -> None:
    print(f"\n5. cost of --tls over qemu+tls (executor, {reps} migrations each, alternating A<->B)")
    for label, mem, cmdline in (("64 MiB", None, None), ("256 MiB", 256, "mem=192 rate=1000")):
        guest = await make_guest(hv, lab, "vm42", "xb-tlscost", memory_mib=mem, cmdline=cmdline)
        rows: dict[bool, list[tuple[float, float | None, float | None]]] = {False: [], True: []}
        where = A
        try:
            for i in range(reps):
                for tls in (False, True) if i % 2 == 0 else (True, False):
                    there = B if where == A else A
                    rows[tls].append(await _executor_via(lab, guest, "tls", where, there, 9700 + i * 2 + tls, tls))
                    where = there
        finally:
            await drop_guest(hv, lab, guest)
        med = {k: statistics.median(r[0] for r in v) for k, v in rows.items()}
        for tls in (False, True):
            downs = [r[1] for r in rows[tls] if r[1] is not None]
            rates = [r[2] for r in rows[tls] if r[2] is not None]
            print(
                f"   {label:7} {'--tls' if tls else 'plain':5}  wall {med[tls]:.3f} s   downtime "
                f"{statistics.median(downs) if downs else float('nan'):.0f} ms   throughput "
                f"{statistics.median(rates) if rates else float('nan'):.0f} MiB/s"
            )
        print(f"   {label:7} --tls / plain wall time = {med[True] / med[False]:.3f}")


def _mib(n: int | None) -> str:
    return "none" if n is None else f"{n / MIB:.1f} MiB"


async def thin(hv: Hypervisor, lab: LabInfo) -> None:
    print("\n3. thin disks: 1 GiB virtual qcow2, 8 MiB of data, --copy-storage all")
    guest = await make_guest(hv, lab, "disky", "xt-bench-thin", disk_mib=1024)
    ex = Executor(hv, inventory(lab), RecordingSink())
    try:
        for job, (src, dst) in enumerate(((A, B), (B, A)), start=90_001):
            before = allocated_bytes(disk_copy(lab, src, guest))
            xml = await hv.domain_xml(lab.host(src).uri, guest.name, migratable=False)
            plan = plan_for(
                lab, guest, xml, source=src, destination=dst,
                options=MigrationOptions(copy_storage=CopyStorage.ALL), local_disks=("vda",),
            )  # fmt: skip
            t0 = time.perf_counter()
            result = await ex.run(job, plan)
            wall = time.perf_counter() - t0
            summary = await ex.summarize(plan, result)
            after = allocated_bytes(disk_copy(lab, dst, guest))
            left = allocated_bytes(disk_copy(lab, src, guest))
            print(
                f"   executor {src}->{dst}: {summary.outcome.value:9} {wall:5.1f}s  source {_mib(before)} -> "
                f"destination {_mib(after)} allocated; source image afterwards: {_mib(left)} (one owner)"
            )
    finally:
        await drop_guest(hv, lab, guest)
    # The same image through libvirt's own pre-creation (in hostB's default pool): what thin disks avoid.
    name = "xt-bench-fat"
    guest = await make_guest(hv, lab, "disky", name, disk_mib=1024)
    pool_image = lab.host(B).images_dir / f"{name}.qcow2"
    try:
        before = allocated_bytes(disk_copy(lab, A, guest))
        s, d = lab.host(A), lab.host(B)
        # Point the VM's disk at the default pool's directory on B: libvirt pre-creates it there.
        argv = [
            "virsh", "-q", "-c", s.uri, "migrate", "--live", "--p2p", "--copy-storage-all", guest.name, d.peer_uri,
            "--migrateuri", f"tcp://{d.ip}", "--xml", "/dev/stdin",
        ]  # fmt: skip
        xml = (await hv.domain_xml(s.uri, guest.name, migratable=True)).replace(
            "/var/lib/libvirt/xt-disks/", "/var/lib/libvirt/images/"
        )
        t0 = time.perf_counter()
        proc = await asyncio.to_thread(
            subprocess.run, argv, input=xml, capture_output=True, text=True, timeout=300
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"   virsh --copy-storage-all into a pool: failed ({proc.stderr.strip()})")
        else:
            print(
                f"   virsh, libvirt pre-creates in its pool: {wall:5.1f}s  source {_mib(before)} -> destination "
                f"{_mib(allocated_bytes(pool_image))} allocated"
            )
    finally:
        await drop_guest(hv, lab, guest)
        pool_image.unlink(missing_ok=True)
        await hv.refresh_pools(lab.host(B).uri)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="migrations per tool in part 1 (default 5)")
    parser.add_argument("--skip-busy", action="store_true", help="only part 1")
    parser.add_argument("--rate", type=int, default=16, help="link rate for part 2, MiB/s (default 16)")
    parser.add_argument("--only-thin", action="store_true", help="only part 3 (thin disks)")
    parser.add_argument("--transports", action="store_true", help="only parts 4 and 5 (ssh, tls, cost of --tls)")
    args = parser.parse_args()
    lab, _ = await asyncio.to_thread(bring_up)
    hv = Hypervisor({A: lab.host(A).uri, B: lab.host(B).uri})
    if args.transports:
        await transports(hv, lab, args.reps)
        await tls_cost(hv, lab, args.reps)
        await hv.close()
        return
    if not args.only_thin:
        await overhead(hv, lab, args.reps)
        if not args.skip_busy:
            await busy(hv, lab, args.rate)
    await thin(hv, lab)
    await hv.close()


if __name__ == "__main__":
    asyncio.run(main())
