"""The hosts file (TOML): host name -> libvirt URI, peer URI, migration address, ssh target, limits, labels.

Format (see deploy/hosts.example.toml, documented field by field):

    [defaults]                 # optional: link_mib_s, max_inbound, max_outbound, memory_reserve_mib
    [hosts.<name>]             # one table per host
    uri = "qemu+ssh://root@kvm1.example.com/system"      # required
    peer_uri, migration_address, ssh, link_mib_s, max_inbound, max_outbound, memory_reserve_mib, labels,
    migration_tls
    [anti_affinity]            # optional: VMs that should not share a host
    groups = { db = ["db1", "db2"] }

Everything is validated when the file is loaded, and every error names the file, the host and the field,
because a typo here otherwise surfaces as a confusing libvirt failure in the middle of a migration.
Field-level checks (URIs, addresses, ssh targets) live in inventory_fields.py.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migration_core.errors import InventoryError
from migration_core.grammar.values import NAME_RULE, is_valid_name
from migration_core.inventory.fields import (
    SshTarget,
    check_address,
    check_groups,
    check_labels,
    check_number,
    check_ssh,
    check_uri,
    migrate_uri_for,
    read_text,
    reject_unknown,
)

EXAMPLE_FILE = "deploy/hosts.example.toml"
ENV_VAR = "MIGRATE_BOT_HOSTS"

# Built-in defaults when neither the host nor [defaults] says otherwise. One migration in and one out
# at a time is Nova's default too: concurrent migrations share the link and converge worse.
BUILTIN_DEFAULTS: Mapping[str, Any] = {
    "max_inbound": 1, "max_outbound": 1, "link_mib_s": 112.0, "memory_reserve_mib": 0,
}  # fmt: skip
# ~112 MiB/s is what TCP actually carries on a 1 Gbit/s link; set link_mib_s for faster links.

_DEFAULT_KEYS = ("link_mib_s", "max_inbound", "max_outbound", "memory_reserve_mib")
_HOST_KEYS = ("uri", "peer_uri", "migration_address", "ssh", *_DEFAULT_KEYS, "labels", "migration_tls")
_TOP_KEYS = ("defaults", "hosts", "anti_affinity")
_ANTI_AFFINITY_KEYS = ("groups",)
_TOML_POSITION_RE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")


@dataclass(frozen=True)
class HostConfig:
    """One hypervisor host: `uri` is how the bot reaches it, `peer_uri` how other hosts' libvirtd do."""

    name: str
    uri: str
    peer_uri: str
    migration_address: str | None
    ssh: str | None
    link_mib_s: float
    max_inbound: int
    max_outbound: int
    labels: tuple[str, ...] = ()
    memory_reserve_mib: int = 0

    @property
    def memory_reserve_bytes(self) -> int:
        return self.memory_reserve_mib * 1024 * 1024

    # The operator's statement that this host's qemu.conf has migrate_tls_x509_cert_dir with certificates
    # from the CA the other hosts trust (QEMU's TLS for the migration stream). No libvirt API reports it, so
    # the file says it and preflight refuses --tls between hosts that do not (README "Operating it").
    migration_tls: bool = False

    @property
    def migrate_uri(self) -> str | None:
        """`tcp://<migration_address>` for libvirt's migrate_uri parameter (None: libvirt picks)."""
        return migrate_uri_for(self.migration_address)

    @property
    def ssh_target(self) -> SshTarget | None:
        """The parsed `ssh` field (user, host, port) for host probes, or None when not configured."""
        return check_ssh(self.ssh) if self.ssh is not None else None


@dataclass(frozen=True)
class Inventory:
    """All hosts of one hosts file, in file order; look-ups by name ignore case."""

    path: str
    hosts: tuple[HostConfig, ...]
    # [anti_affinity] groups: (group name, its VMs), in file order
    anti_affinity: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def groups_of(self, vm: str) -> tuple[str, ...]:
        """The anti-affinity groups the inventory puts `vm` in."""
        return tuple(name for name, vms in self.anti_affinity if vm in vms)

    def names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hosts)

    def find(self, name: str) -> HostConfig | None:
        """The host called `name` (any case), or None."""
        wanted = name.lower()
        return next((h for h in self.hosts if h.name.lower() == wanted), None)

    def get(self, name: str) -> HostConfig:
        """The host called `name` (any case); InventoryError with the known names and a suggestion if none."""
        host = self.find(name)
        if host is not None:
            return host
        names = self.names()
        close = difflib.get_close_matches(name.lower(), [n.lower() for n in names], n=1, cutoff=0.6)
        if close:
            hint = f"did you mean '{self.get(close[0]).name}'?"
        else:
            hint = f"add [hosts.{name}] to {self.path} if it is a new host"
        raise InventoryError(f"unknown host '{name}'; known: {', '.join(names)}", hint)

    def __iter__(self) -> Iterator[HostConfig]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """Read and validate the hosts file at `path`; any problem is an InventoryError naming file/host/field."""
    source = os.fspath(path)
    file = Path(source)
    if not file.exists():
        raise InventoryError(
            f"hosts file {source} does not exist",
            f"copy {EXAMPLE_FILE} to {source} and edit it, or set {ENV_VAR} to the path of your hosts file",
        )
    if file.is_dir():
        raise InventoryError(f"hosts file {source} is a directory", f"point {ENV_VAR} at the .toml file itself")
    return parse_inventory(read_text(source, "hosts file"), source)


def parse_inventory(text: str, source: str) -> Inventory:
    """Validate hosts-file `text`; `source` (a path or a label) is named in every error message."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(exc, text, source) from None
    reject_unknown(data, _TOP_KEYS, source, "the top level")
    defaults = dict(BUILTIN_DEFAULTS)
    raw_defaults = data.get("defaults", {})
    if not isinstance(raw_defaults, dict):
        raise InventoryError(f"{source}: 'defaults' must be a table", "write it as a [defaults] section")
    reject_unknown(raw_defaults, _DEFAULT_KEYS, source, "[defaults]")
    for key, value in raw_defaults.items():
        defaults[key] = check_number(key, value, f"{source}: [defaults]")
    raw_hosts = data.get("hosts")
    if not isinstance(raw_hosts, dict) or not raw_hosts:
        raise InventoryError(
            f"{source}: no hosts defined",
            f'add one [hosts.<name>] table per host with at least uri = "..."; see {EXAMPLE_FILE}',
        )
    hosts = tuple(_host(name, table, defaults, source) for name, table in raw_hosts.items())
    _reject_collisions(hosts, source)
    raw_aa = data.get("anti_affinity", {})
    if not isinstance(raw_aa, dict):
        raise InventoryError(f"{source}: 'anti_affinity' must be a table", "write it as an [anti_affinity] section")
    reject_unknown(raw_aa, _ANTI_AFFINITY_KEYS, source, "[anti_affinity]")
    groups = check_groups(raw_aa.get("groups", {}), f"{source}: [anti_affinity]")
    return Inventory(path=source, hosts=hosts, anti_affinity=groups)


def _host(name: str, table: object, defaults: Mapping[str, Any], source: str) -> HostConfig:
    where = f"{source}: host '{name}'"
    if not is_valid_name(name):
        raise InventoryError(f"{where}: invalid host name", f"a host name is {NAME_RULE}")
    if not isinstance(table, dict):
        raise InventoryError(
            f"{where}: must be a table, not a {type(table).__name__}",
            f'write it as [hosts.{name}] followed by uri = "..." on the next line',
        )
    reject_unknown(table, _HOST_KEYS, source, f"host '{name}'")
    if "uri" not in table:
        raise InventoryError(
            f"{where}: field 'uri' is missing",
            'every host needs the libvirt URI the bot connects to, e.g. uri = "qemu+ssh://root@kvm1/system"',
        )
    uri = check_uri(table["uri"], f"{where}: field 'uri'")
    peer_uri = check_uri(table.get("peer_uri", uri), f"{where}: field 'peer_uri'")
    address = table.get("migration_address")
    ssh = table.get("ssh")
    numbers = {key: check_number(key, table[key], where) if key in table else defaults[key] for key in _DEFAULT_KEYS}
    return HostConfig(
        name=name,
        uri=uri,
        peer_uri=peer_uri,
        migration_address=None if address is None else check_address(address, f"{where}: field 'migration_address'"),
        ssh=None if ssh is None else _ssh_text(ssh, f"{where}: field 'ssh'"),
        link_mib_s=float(numbers["link_mib_s"]),
        max_inbound=int(numbers["max_inbound"]),
        max_outbound=int(numbers["max_outbound"]),
        labels=check_labels(table.get("labels", []), f"{where}: field 'labels'"),
        memory_reserve_mib=int(numbers["memory_reserve_mib"]),
        migration_tls=_flag(table.get("migration_tls", False), f"{where}: field 'migration_tls'"),
    )


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise InventoryError(f"{where}: must be true or false, not {value!r}", "write migration_tls = true (no quotes)")
    return value


def _ssh_text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InventoryError(f'{where}: must be a string like "root@10.0.0.1"', "quote it")
    check_ssh(value, where)
    return value


def _reject_collisions(hosts: tuple[HostConfig, ...], source: str) -> None:
    by_lower: dict[str, str] = {}
    by_uri: dict[str, str] = {}
    for host in hosts:
        other = by_lower.setdefault(host.name.lower(), host.name)
        if other != host.name:
            raise InventoryError(
                f"{source}: hosts '{other}' and '{host.name}' differ only in case",
                "host names are matched without regard to case: rename or remove one",
            )
        same = by_uri.setdefault(host.uri, host.name)
        if same != host.name:
            raise InventoryError(
                f"{source}: hosts '{same}' and '{host.name}' have the same uri {host.uri}",
                "two names for one libvirt would let the bot migrate a VM onto its own host: remove one",
            )


def _syntax_error(exc: tomllib.TOMLDecodeError, text: str, source: str) -> InventoryError:
    message = str(exc)
    m = _TOML_POSITION_RE.search(message)
    problem = message[: m.start()] if m else message
    if m and m.group(1):
        where = f"line {m.group(1)}, column {m.group(2)}"
    else:
        where = f"the end of the file (line {text.count(chr(10)) + 1})"
    hint = f"fix the TOML at that spot; {EXAMPLE_FILE} shows the format"
    if "twice" in problem or "overwrite" in problem:
        hint = "a host table or a field is defined twice: keep one"
    return InventoryError(f"{source}: TOML syntax error at {where}: {problem}", hint)
