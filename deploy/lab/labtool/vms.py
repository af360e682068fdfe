"""The lab VMs (names are a contract), their domain XML, their disks, and putting them in place."""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from xml.sax.saxutils import escape

from .config import (
    HOST_A,
    HOSTS,
    NBD_EXPORT,
    NBD_PORT,
    ONLY_A_BRIDGE,
    ONLY_A_NETWORK,
    STORAGE_IP,
    VM_BRIDGE,
    HostSpec,
    Paths,
)
from .daemons import virsh
from .proc import LabError, run

DISK_MIB = 64
DISK_PATTERN = "0x5a"  # written to the first 8 MiB of each lab disk, so tests can prove what a host sees


@dataclass(frozen=True)
class VmSpec:
    name: str
    uuid: str
    purpose: str
    memory_mib: int
    cmdline: str  # the test guest's parameters (deploy/lab/guest/dirtier.c)
    running: bool  # running after `up` / `reset-vm`
    disk: str | None = None  # None, "local" (hostA's private images dir) or "nbd" (the shared storage)
    nic: bool = False  # a virtio NIC on the VM bridge every host has
    only_a_nic: bool = False  # a NIC on libvirt network `labonly`, which only hostA defines
    anti_affinity: tuple[str, ...] = ()  # the bot's anti-affinity groups, in the domain's libvirt metadata


VMS = (
    VmSpec(
        "vm42",
        "6c61622d-766d-4000-8000-000000000042",
        "the idle default guest; has a NIC on labbr0",
        64,
        "mem=32 rate=1000",
        True,
        nic=True,
    ),
    VmSpec(
        "busy",
        "6c61622d-766d-4000-8000-0000000000b5",
        "dirties 31 MiB/s: pre-copy cannot converge at 16 MiB/s",
        256,
        "mem=128 rate=8000",
        True,
    ),
    VmSpec(
        "disky",
        "6c61622d-766d-4000-8000-0000000000d1",
        "qcow2 disk on hostA's private storage (needs --copy-storage)",
        64,
        "mem=32 rate=1000",
        True,
        disk="local",
    ),
    VmSpec(
        "shared",
        "6c61622d-766d-4000-8000-0000000000a5",
        "disk on the NBD shared storage both hosts reach (no UNSAFE needed)",
        64,
        "mem=32 rate=1000",
        True,
        disk="nbd",
    ),
    VmSpec(
        "stopped",
        "6c61622d-766d-4000-8000-000000000050",
        "defined and shut off (offline migration)",
        64,
        "mem=32 rate=1000",
        False,
    ),
    # A drain's worth of guests (issue 11): sizes 48-192 MiB, dirty rates from 1 to 16 MiB/s.
    VmSpec(
        "web1",
        "6c61622d-766d-4000-8000-000000000e01",
        "idle web guest, anti-affinity group `web` with web2",
        48,
        "mem=24 rate=250",
        True,
        anti_affinity=("web",),
    ),
    VmSpec(
        "web2",
        "6c61622d-766d-4000-8000-000000000e02",
        "idle web guest, anti-affinity group `web` with web1",
        64,
        "mem=32 rate=500",
        True,
        anti_affinity=("web",),
    ),
    VmSpec(
        "web3",
        "6c61622d-766d-4000-8000-000000000e03",
        "idle web guest",
        96,
        "mem=48 rate=1000",
        True,
    ),
    VmSpec(
        "web4",
        "6c61622d-766d-4000-8000-000000000e04",
        "idle web guest",
        128,
        "mem=64 rate=2000",
        True,
    ),
    VmSpec(
        "db1",
        "6c61622d-766d-4000-8000-0000000000db",
        "busy database guest: dirties 16 MiB/s (half of busy's rate)",
        192,
        "mem=96 rate=4000",
        True,
    ),
    VmSpec(
        "pinned",
        "6c61622d-766d-4000-8000-0000000000f1",
        "NIC on libvirt network `labonly`, which only hostA has: no other host can take it",
        64,
        "mem=32 rate=1000",
        True,
        only_a_nic=True,
    ),
)


def vm_spec(name: str) -> VmSpec:
    for spec in VMS:
        if spec.name == name:
            return spec
    raise LabError(f"{name!r} is not a lab VM; the lab VMs are {', '.join(s.name for s in VMS)}")


def local_disk_name(spec: VmSpec) -> str:
    return f"{spec.name}.qcow2"


def _disk_xml(spec: VmSpec) -> str:
    if spec.disk == "local":
        return f"""    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/libvirt/images/{local_disk_name(spec)}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
"""
    if spec.disk == "nbd":
        # A network disk: libvirt's migration safety check treats it as shared ("network disks are safe").
        return f"""    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source protocol='nbd' name='{NBD_EXPORT}'>
        <host name='{STORAGE_IP}' port='{NBD_PORT}'/>
      </source>
      <target dev='vda' bus='virtio'/>
    </disk>
"""
    return ""


def _nic_xml(spec: VmSpec) -> str:
    mac = f"52:54:00:6c:61:{spec.uuid[-2:]}"
    # No option ROM: the guest never network-boots, and it saves a file the machine may not have.
    if spec.nic:
        return f"""    <interface type='bridge'>
      <mac address='{mac}'/>
      <source bridge='{VM_BRIDGE}'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>
"""
    if spec.only_a_nic:
        return f"""    <interface type='network'>
      <mac address='{mac}'/>
      <source network='{ONLY_A_NETWORK}'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>
"""
    return ""


PLACEMENT_NS = "urn:migrate-bot:placement:1"  # migration_core/facts/metadata.py: the bot's metadata namespace


def _metadata_xml(spec: VmSpec) -> str:
    """The bot's anti-affinity groups, as an operator sets them with `virsh metadata` (they move with the VM)."""
    if not spec.anti_affinity:
        return ""
    groups = "".join(f"<mb:anti-affinity group='{escape(g)}'/>" for g in spec.anti_affinity)
    return f"""  <metadata>
    <mb:placement xmlns:mb='{PLACEMENT_NS}'>{groups}</mb:placement>
  </metadata>
"""


# The CPU libvirt's hypervisor-cpu-baseline gives for these hosts: kvm-pvm lacks `pni` (SSE3), so QEMU's
# default qemu64 is "incompatible" by compareHypervisorCPU (it still runs, with a warning). kvm64 without
# pni is reported a subset of both hosts, so a preflight CPU check passes as it would on real twins.
CPU_XML = """  <cpu mode='custom' match='exact'>
    <model fallback='forbid'>kvm64</model>
    <feature policy='disable' name='pni'/>
  </cpu>
"""


def domain_xml(spec: VmSpec, paths: Paths, virt: str) -> str:
    """reference/lab.md 5.8: q35, the multiboot kernel, the serial console file that follows the VM."""
    return f"""<domain type='{virt}'>
  <name>{spec.name}</name>
  <uuid>{spec.uuid}</uuid>
  <title>migrate-bot lab: {escape(spec.purpose)}</title>
{_metadata_xml(spec)}  <memory unit='MiB'>{spec.memory_mib}</memory>
  <vcpu>1</vcpu>
{CPU_XML}  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{paths.kernel}</kernel>
    <cmdline>{spec.cmdline}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
{_disk_xml(spec)}{_nic_xml(spec)}    <serial type='file'>
      <source path='{paths.console_log(spec.name)}' append='on'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def make_disk(path: str) -> None:
    run(["qemu-img", "create", "-q", "-f", "qcow2", path, f"{DISK_MIB}M"], timeout_s=30)
    run(["qemu-io", "-f", "qcow2", "-c", f"write -q -P {DISK_PATTERN} 0 8M", path], timeout_s=30)


def list_domains(paths: Paths, host: HostSpec) -> dict[str, str]:
    """{name: state} of every domain the host knows (running or merely defined)."""
    out = virsh(paths, host, "list", "--all")
    result = {}
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3:
            result[parts[1]] = parts[2].strip()
    return result


def locations(paths: Paths) -> dict[str, dict[str, str]]:
    """{host name: {vm: state}} for both hosts, asked concurrently."""
    with concurrent.futures.ThreadPoolExecutor(len(HOSTS)) as pool:
        futures = {h.name: pool.submit(list_domains, paths, h) for h in HOSTS}
        return {name: f.result() for name, f in futures.items()}


def _prepare(spec: VmSpec, paths: Paths, virt: str, fresh_disk: bool) -> str:
    """Write the XML file, the local disk if needed, and truncate the console; return the XML path."""
    if spec.disk == "local":
        disk = paths.host_images(HOST_A) / local_disk_name(spec)
        if fresh_disk or not disk.exists():
            disk.unlink(missing_ok=True)
            make_disk(str(disk))
    xml_path = paths.root / "xml" / f"{spec.name}.xml"
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    xml_path.write_text(domain_xml(spec, paths, virt))
    paths.console.mkdir(parents=True, exist_ok=True)
    paths.console_log(spec.name).write_text("")
    return str(xml_path)


def place(specs: list[VmSpec], paths: Paths, virt: str, start: dict[str, bool], fresh_disk: bool) -> None:
    """Define the VMs on hostA and start those asked for (starts run concurrently: ~0.3 s each)."""
    if not specs:
        return
    xml_files = [_prepare(s, paths, virt, fresh_disk) for s in specs]
    virsh(paths, HOST_A, "; ".join(f"define --validate {x}" for x in xml_files))
    to_start = [s.name for s in specs if start.get(s.name, s.running)]
    with concurrent.futures.ThreadPoolExecutor(max(1, len(to_start))) as pool:
        for f in [pool.submit(virsh, paths, HOST_A, "start", name) for name in to_start]:
            f.result()


def remove_everywhere(spec: VmSpec, paths: Paths) -> None:
    """Destroy and undefine the VM on every host; drop local-disk copies behind a pool refresh (P5)."""
    where = locations(paths)
    for host in HOSTS:
        state = where[host.name].get(spec.name)
        if state is None:
            continue
        if state != "shut off":
            virsh(paths, host, "destroy", spec.name, timeout_s=30, check=False)
        virsh(
            paths,
            host,
            "undefine",
            "--managed-save",
            "--snapshots-metadata",
            "--checkpoints-metadata",
            spec.name,
            timeout_s=30,
            check=False,
        )
    if spec.disk == "local":
        for host in HOSTS:
            (paths.host_images(host) / local_disk_name(spec)).unlink(missing_ok=True)
            virsh(paths, host, "pool-refresh", "default", check=False)
    left = {h: s for h, vms in locations(paths).items() for n, s in vms.items() if n == spec.name}
    if left:
        raise LabError(f"could not remove {spec.name} from the lab (still {left}); see the daemon logs")


LAB_NETWORK = "labnet"


def ensure_networks(paths: Paths) -> list[str]:
    """A libvirt network `labnet` on each host over its VM bridge (forward mode bridge: no dnsmasq), and
    `labonly` on hostA only (the `pinned` VM's network, which no other host has).

    The host daemons see the root namespace's /sys, so libvirt's interface API cannot list the bridges
    inside the lab namespaces; a libvirt network names the bridge through the API, which is also how a
    production host declares "this VM network exists here" (the preflight network check reads it)."""
    wanted = {host.name: [(LAB_NETWORK, VM_BRIDGE)] for host in HOSTS}
    wanted[HOST_A.name].append((ONLY_A_NETWORK, ONLY_A_BRIDGE))

    def one_host(host: HostSpec) -> list[str]:
        defined = virsh(paths, host, "net-list", "--all", "--name", check=False).split()
        active = virsh(paths, host, "net-list", "--name", check=False).split()
        added = []
        for name, bridge in wanted[host.name]:
            if name in defined:
                if name not in active:
                    virsh(paths, host, "net-start", name, check=False)
                continue
            xml = paths.root / f"{host.name}-{name}.xml"
            xml.write_text(f"<network><name>{name}</name><forward mode='bridge'/><bridge name='{bridge}'/></network>\n")
            virsh(paths, host, "net-define", str(xml))
            virsh(paths, host, "net-autostart", name, check=False)
            virsh(paths, host, "net-start", name, check=False)
            added.append(f"{host.name}:{name}")
        return added

    # one thread per host: each virsh costs a process start, and the hosts are independent
    with concurrent.futures.ThreadPoolExecutor(len(HOSTS)) as pool:
        return [item for added in pool.map(one_host, HOSTS) for item in added]


def ensure_vms(paths: Paths, virt: str) -> list[str]:
    """Put back what is missing: a lab VM defined nowhere is defined (and started) on hostA; a VM that
    should run but is shut off everywhere is started where it is defined. VMs that tests moved stay
    where they are."""
    ensure_networks(paths)
    where = locations(paths)
    missing = [s for s in VMS if not any(s.name in where[h.name] for h in HOSTS)]
    place(missing, paths, virt, {}, fresh_disk=False)
    done = [s.name for s in missing]
    for spec in VMS:
        if spec in missing or not spec.running:
            continue
        states = {h: where[h.name][spec.name] for h in HOSTS if spec.name in where[h.name]}
        if all(state == "shut off" for state in states.values()):
            host = HOST_A if HOST_A in states else next(iter(states))
            virsh(paths, host, "start", spec.name, check=False)
            done.append(spec.name)
    return done
