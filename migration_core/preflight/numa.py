"""Check 8 (topology part): CPU / NUMA pinning needs a similar destination (seed 12.3); huge pages must be
available there."""

from __future__ import annotations

from migration_core.facts.gathered import PreflightFacts
from migration_core.facts.host import HostFacts
from migration_core.facts.vm import HugepageRequest, VmFacts
from migration_core.facts.xmlutil import parse_cpuset
from migration_core.models import CheckResult
from migration_core.preflight._common import (
    blocking,
    dest_name,
    human_bytes,
    join,
    passed,
    result,
    src_name,
    warned,
)


def _ids(values: frozenset[int]) -> str:
    return join((str(i) for i in sorted(values)), limit=12)


def check_numa(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    vm, dst, name = facts.vm, facts.destination_host, "devices.numa"
    if vm is None:
        return ()
    pin = vm.pinning
    if not (pin.cpus_pinned or pin.memory_pinned):
        return ()
    if dst is None:
        return (
            warned(
                name,
                f"{vm.name} is pinned to host CPUs / NUMA nodes, but {dest_name(facts)}'s topology is unknown",
            ),
        )
    cpus = parse_cpuset(pin.vcpu_cpuset) | parse_cpuset(pin.emulatorpin)
    for p in pin.vcpupins:
        cpus |= parse_cpuset(p.cpuset)
    nodes = parse_cpuset(pin.numatune_nodeset)
    for m in pin.memnodes:
        nodes |= parse_cpuset(m.nodeset)
    have_cpus = dst.cpu_ids or (frozenset(range(dst.cpus)) if dst.cpus else frozenset())
    have_nodes = frozenset(c.id for c in dst.cells)
    problems = []
    if have_cpus and cpus - have_cpus:
        problems.append(
            f"it is pinned to host CPUs {_ids(cpus - have_cpus)}, which {dest_name(facts)} lacks (it has "
            f"CPUs {_ids(have_cpus)})"
        )
    if have_nodes and nodes - have_nodes:
        problems.append(
            f"its memory is bound to NUMA node(s) {_ids(nodes - have_nodes)}, which {dest_name(facts)} "
            f"lacks (it has node(s) {_ids(have_nodes)})"
        )
    if problems:
        return (
            result(
                name,
                blocking(facts),
                f"{vm.name}'s pinning does not fit {dest_name(facts)}: {'; '.join(problems)}",
                "pick a host with the same topology, or change the pinning (`virsh vcpupin`, `virsh "
                "numatune`, `virsh emulatorpin` with --config) to CPUs and nodes both hosts have",
            ),
        )
    src = facts.source_host
    same = src is not None and len(src.cells) == len(dst.cells) and src.cpus == dst.cpus
    shape = f"{dest_name(facts)} has {len(dst.cells)} NUMA node(s) and {dst.cpus} CPUs"
    if src is not None and not same:
        shape += f", {src_name(facts)} has {len(src.cells)} and {src.cpus}"
    return (
        warned(
            name,
            f"{vm.name} uses CPU/NUMA pinning ({_ids(cpus) or 'no CPUs'}; nodes {_ids(nodes) or 'any'}); "
            f"{shape}. Pinned migrations work only between hosts with a similar topology and may cost "
            "performance (seed 12.3)",
            None if same else "prefer a destination with the same topology as the source",
        ),
    )


def _default_size_kib(dst: HostFacts) -> int | None:
    """The host's default huge page size: 2 MiB on x86 when offered, else the smallest size above 4 KiB."""
    huge = sorted(s for s in dst.page_sizes_kib if s > 4)
    return 2048 if 2048 in huge else (huge[0] if huge else None)


def _needed_bytes(vm: VmFacts, req: HugepageRequest) -> int:
    """Guest memory backed by this page size: the guest NUMA cells in its nodeset, or all memory."""
    if req.nodeset is None or not vm.cpu.numa_cells:
        return vm.memory_bytes
    cells = parse_cpuset(req.nodeset)
    return sum(c.memory_bytes for c in vm.cpu.numa_cells if c.id in cells)


def check_hugepages(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    vm, dst, name = facts.vm, facts.destination_host, "devices.hugepages"
    if vm is None or not vm.memory_backing.uses_hugepages:
        return ()
    if dst is None:
        return (warned(name, f"{vm.name} is backed by huge pages, but {dest_name(facts)}'s pools are unknown"),)
    bad, dest = blocking(facts), dest_name(facts)
    need_by_size: dict[int, int] = {}
    for req in vm.memory_backing.hugepages:
        size = req.size_kib or _default_size_kib(dst)
        if size is None:
            return (
                result(
                    name,
                    bad,
                    f"{dest} offers no huge pages at all; {vm.name} needs them",
                    f"reserve huge pages on {dest} (vm.nr_hugepages / hugepages= on the kernel command line)",
                ),
            )
        need_by_size[size] = need_by_size.get(size, 0) + _needed_bytes(vm, req)
    out: list[CheckResult] = []
    for size, need_bytes in sorted(need_by_size.items()):
        label = human_bytes(size * 1024).replace(".0 ", " ")
        pages_needed = -(-need_bytes // (size * 1024))
        if size not in dst.page_sizes_kib:
            out.append(
                result(
                    name,
                    bad,
                    f"{dest} does not support {label} huge pages, which {vm.name} uses",
                    f"pick a host with {label} pages, or change <hugepages> in the VM",
                )
            )
            continue
        pools = dst.hugepage_pools(size)
        total = sum(p.total_pages for p in pools)
        free = None if any(p.free_pages is None for p in pools) or not pools else sum(p.free_pages or 0 for p in pools)
        reserve = (
            f"reserve more {label} pages on {dest} (`echo N > "
            f"/sys/kernel/mm/hugepages/hugepages-{size}kB/nr_hugepages`)"
        )
        if total < pages_needed:
            out.append(
                result(
                    name,
                    bad,
                    f"{vm.name} needs {pages_needed} x {label} huge pages ({human_bytes(need_bytes)}); "
                    f"{dest} has only {total} reserved in all",
                    reserve,
                )
            )
        elif free is None:
            out.append(
                warned(
                    name,
                    f"{vm.name} needs {pages_needed} x {label} huge pages; {dest} has {total} in all but "
                    "how many are free is unknown",
                    f"check `virsh freepages --all` on {dest}",
                )
            )
        elif free < pages_needed:
            out.append(
                result(
                    name,
                    bad,
                    f"{vm.name} needs {pages_needed} x {label} huge pages; {dest} has {free} free of {total}",
                    reserve,
                )
            )
        else:
            out.append(
                passed(
                    name,
                    f"{vm.name} needs {pages_needed} x {label} huge pages ({human_bytes(need_bytes)}); "
                    f"{dest} has {free} free",
                )
            )
    return tuple(out)
