"""Checks for single hosts-file fields: libvirt URIs, addresses, ssh targets, numbers, labels (pure)."""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlsplit

from migration_core.errors import InventoryError
from migration_core.grammar.values import NAME_RULE, is_valid_name

# The transports the bot supports. Plain `qemu://host/system` is refused although libvirt accepts it,
# because it silently means TLS; the file should say qemu+tls:// so a reader knows what is used.
URI_SCHEMES = ("qemu", "qemu+ssh", "qemu+tls", "qemu+tcp", "qemu+unix")
_REMOTE_SCHEMES = ("qemu+ssh", "qemu+tls", "qemu+tcp")
_SUPPORTED = "qemu+ssh://, qemu+tls://, qemu+tcp://, qemu+unix:// or qemu:///system"
# The characters a libvirt URI needs. Quotes, `$`, `;`, `|`, backticks, spaces and the like are refused
# outright: libvirt's ssh transport runs a command on the remote host built partly from the URI, so
# nothing that a shell would interpret may get in. `&` is allowed only as the query separator.
_URI_CHARS_RE = re.compile(r"[A-Za-z0-9._~:/?\[\]@&=%+,-]+", re.ASCII)
_PARAM_VALUE_RE = re.compile(r"[A-Za-z0-9._~:/@%+,-]*", re.ASCII)
# Query parameters libvirt's remote driver understands (https://libvirt.org/uri.html#transport-configuration).
URI_PARAMS = (
    "socket", "keyfile", "no_verify", "no_tty", "known_hosts", "known_hosts_verify", "sshauth", "pkipath",
    "tls_priority", "mode", "proxy", "name", "command", "netcat", "auth",
)  # fmt: skip
# Parameters refused although libvirt knows them (issue 16). `command` and `netcat` name programs libvirt runs
# (command: the local ssh binary, `?command=/bin/sh` ran a shell on the bot's machine; netcat: the program
# run on the remote host through its shell); `proxy` picks that remote helper; `no_verify=1` and
# `known_hosts_verify=ignore|auto` turn off TLS certificate or ssh host-key checking.
_FORBIDDEN_PARAMS: dict[str, str] = {
    "command": "it names the program libvirt runs instead of ssh (it would run on the bot's machine)",
    "netcat": "it names a program run through the remote host's shell",
    "proxy": "it chooses the helper run through the remote host's shell; libvirt's default is safe",
    "no_verify": "it turns off certificate / host-key verification",
}
_KNOWN_HOSTS_VERIFY = ("normal",)
# Where `keyfile=` may point: the bot's own configuration and state directories (deploy/migrate-bot.service).
KEYFILE_DIRS = ("/etc/migrate-bot/", "/var/lib/migrate-bot/")
_SECRET_PARAMS = ("password", "passwd", "pass", "pwd", "secret", "token", "passphrase")
_USERINFO_PASSWORD_RE = re.compile(r"(://[^/@:?#]*):[^@/?#]*@")
_SECRET_PARAM_RE = re.compile(r"([?&](?:" + "|".join(_SECRET_PARAMS) + r")=)[^&#]*", re.IGNORECASE)


def mask_uri(value: str) -> str:
    """The URI with any password (user:password@, ?password=...) replaced by ***; for every message.

    >>> mask_uri("qemu+tls://u:pw-SECRET1@kvm1/system?password=x&socket=/s")
    'qemu+tls://u:***@kvm1/system?password=***&socket=/s'
    """
    return _SECRET_PARAM_RE.sub(r"\1***", _USERINFO_PASSWORD_RE.sub(r"\1:***@", value))


_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*",
    re.ASCII,
)
_USER_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}", re.ASCII)
_SSH_RE = re.compile(r"(?:([^@]*)@)?(\[[^\]]*\]|[^:@\[\]]*)(?::([0-9]{1,5}))?", re.ASCII)

# Sane bounds: beyond them a value is a typo (an extra zero, bits instead of bytes), not a real host.
NUMBER_BOUNDS: dict[str, tuple[float, float, str]] = {
    "link_mib_s": (1, 100_000, "MiB/s from 1 to 100000 (about 800 Gbit/s); 10 Gbit/s is about 1190"),
    # 0 is allowed on purpose: it stops a host from receiving (or sending) migrations, e.g. while it is
    # being drained for maintenance, without removing it from the file.
    "max_inbound": (0, 64, "a whole number from 0 (none) to 64"),
    "max_outbound": (0, 64, "a whole number from 0 (none) to 64"),
    # Memory the host keeps for itself and its own daemons: placement (drains, `to any`) never counts it free.
    "memory_reserve_mib": (0, 16 * 1024 * 1024, "MiB from 0 to 16777216 (16 TiB), e.g. 4096 for 4 GiB"),
}


@dataclass(frozen=True)
class SshTarget:
    """Where host probes ssh to: `[user@]host[:port]` split up (user/port None when not given)."""

    user: str | None
    host: str
    port: int | None


def _fail(where: str, problem: str, hint: str) -> NoReturn:
    raise InventoryError(f"{where}: {problem}", hint)


def is_host_address(text: str) -> bool:
    """True for a DNS hostname or an IPv4/IPv6 address (without brackets)."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return _HOSTNAME_RE.fullmatch(text) is not None


def check_uri(value: object, where: str) -> str:
    """A libvirt URI of a supported transport, ending in /system, with known query parameters only."""
    example = "e.g. qemu+ssh://root@kvm1.example.com/system or qemu+tls://kvm1.example.com/system"
    if not isinstance(value, str) or not value:
        shown = mask_uri(value) if isinstance(value, str) else type(value).__name__
        _fail(where, f"must be a non-empty string, not {shown!r}", example)
    shown = mask_uri(value)  # every message below quotes the URI masked: it may hold a password
    if shown != value:
        _fail(where, f"{shown!r} contains a password", "use ssh keys or TLS certificates instead")
    bad = sorted({ch for ch in value if _URI_CHARS_RE.fullmatch(ch) is None})
    if bad:
        _fail(
            where,
            f"{shown!r} contains {''.join(bad)!r}, which has no place in a libvirt URI",
            "a URI may use letters, digits and . _ ~ : / ? [ ] @ & = % + , -",
        )
    scheme = value.split(":", 1)[0]
    if scheme not in URI_SCHEMES or "://" not in value:
        _fail(
            where,
            f"unsupported URI {shown!r}",
            f"use {_SUPPORTED}; {example}",
        )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        _fail(where, f"malformed URI {shown!r}: {exc}", example)
    if scheme == "qemu" and parts.netloc:
        _fail(
            where,
            f"{shown!r} would silently use TLS",
            f"write qemu+tls://{parts.netloc}{parts.path} to say so",
        )
    if parts.path != "/system":
        _fail(
            where,
            f"{shown!r} does not end in /system",
            "the bot migrates system VMs (qemu:///system); session VMs cannot move between hosts",
        )
    if scheme in _REMOTE_SCHEMES:
        if not parts.hostname or not is_host_address(parts.hostname):
            _fail(where, f"{shown!r} needs a valid host name or address", example)
        if parts.username is not None and _USER_RE.fullmatch(parts.username) is None:
            _fail(where, f"{shown!r} has an invalid user name {parts.username!r}", "e.g. root@kvm1.example.com")
        if port == 0:
            _fail(where, f"{shown!r} has port 0", "ports are 1 to 65535 (libvirt listens on 16509/16514)")
    elif parts.netloc:
        socket = "?socket=/path/to/libvirt-sock" if scheme == "qemu+unix" else ""
        _fail(
            where,
            f"{shown!r} must not name a host: {scheme} connects locally",
            f"write {scheme}:///system{socket}",
        )
    _check_query(shown, where)
    return value


def _check_query(value: str, where: str) -> None:
    """`value` is the masked URI (it has no secret left: passwords are refused before this)."""
    query = urlsplit(value).query
    if not query:
        return
    try:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        _fail(where, f"{value!r} has a malformed query {query!r}", "write ?key=value&key=value")
    for key, param in params:
        if key not in URI_PARAMS:
            close = difflib.get_close_matches(key, URI_PARAMS, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"libvirt knows: {', '.join(URI_PARAMS)}"
            _fail(where, f"{value!r} has an unknown parameter '{key}'", hint)
        if key in _FORBIDDEN_PARAMS:
            _fail(where, f"{value!r}: parameter '{key}' is not allowed: {_FORBIDDEN_PARAMS[key]}", "remove it")
        if _PARAM_VALUE_RE.fullmatch(param) is None:
            _fail(where, f"parameter '{key}' has an unsafe value {param!r}", "use a plain path or word")
        if key == "known_hosts_verify" and param not in _KNOWN_HOSTS_VERIFY:
            _fail(where, f"{value!r}: known_hosts_verify={param} turns off host-key checking", "remove it")
        if key == "keyfile" and not _inside_allowed_dir(param):
            _fail(
                where,
                f"{value!r}: parameter '{key}' points outside {' or '.join(KEYFILE_DIRS)}",
                f"put the file in {KEYFILE_DIRS[0]} (readable by the bot only) and point {key} there",
            )


def _inside_allowed_dir(path: str) -> bool:
    return path.startswith(KEYFILE_DIRS) and "/../" not in path + "/" and "/./" not in path + "/"


def check_address(value: object, where: str) -> str:
    """The migration data address: a hostname or an IP (IPv6 with or without brackets, stored without)."""
    hint = 'give just the address, e.g. migration_address = "10.0.0.1"; the bot builds tcp://<address>'
    if not isinstance(value, str):
        _fail(where, f"must be a string, not {value!r}", hint)
    text = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    if "://" in text or not is_host_address(text):
        _fail(where, f"{value!r} is not a hostname or an IP address", hint)
    return text


def migrate_uri_for(address: str | None) -> str | None:
    """`tcp://10.0.0.1`, `tcp://[fd00::1]` or None."""
    if address is None:
        return None
    return f"tcp://[{address}]" if ":" in address else f"tcp://{address}"


def check_ssh(value: str, where: str = "ssh") -> SshTarget:
    """`[user@]host[:port]` -> SshTarget; the host may be a hostname, IPv4, or [IPv6]."""
    hint = 'write it like "root@10.0.0.1", "kvm1.example.com" or "admin@[fd00::1]:2222"'
    shown = re.sub(r"^([^@:]*):[^@]*@", r"\1:***@", value)  # `user:password@host`: never quoted in clear
    if shown != value:
        _fail(where, f"{shown!r} contains a password", "the probe uses ssh keys; remove the password")
    m = _SSH_RE.fullmatch(value)
    if m is None:
        _fail(where, f"{shown!r} is not an ssh target", hint)
    user, host, port = m.group(1), m.group(2), m.group(3)
    if user is not None and _USER_RE.fullmatch(user) is None:
        _fail(where, f"{shown!r} has an invalid user name {user!r}", hint)
    host = host[1:-1] if host.startswith("[") else host
    if not is_host_address(host):
        _fail(where, f"{shown!r} has an invalid host {host!r}", hint)
    if port is not None and not 1 <= int(port) <= 65535:
        _fail(where, f"{shown!r} has port {port}, outside 1..65535", hint)
    return SshTarget(user=user, host=host, port=int(port) if port is not None else None)


def check_number(key: str, value: object, where: str) -> int | float:
    """link_mib_s (int or float), max_inbound / max_outbound (int), within NUMBER_BOUNDS."""
    lo, hi, rule = NUMBER_BOUNDS[key]
    whole = key != "link_mib_s"
    numeric = isinstance(value, int) or (isinstance(value, float) and not whole)
    if isinstance(value, bool) or not numeric:
        kind = "a whole number" if whole else "a number"
        _fail(
            f"{where}: field '{key}'",
            f"must be {kind}, not {value!r}",
            f"{key} is {rule}; write it without quotes",
        )
    assert isinstance(value, int | float)
    if not lo <= value <= hi:
        _fail(f"{where}: field '{key}'", f"{value!r} is out of range", f"{key} is {rule}")
    return value


def check_labels(value: object, where: str) -> tuple[str, ...]:
    """A list of distinct label strings, each following the host-name rule."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _fail(where, f"must be a list of strings, not {value!r}", 'e.g. labels = ["prod", "rack-12"]')
    for label in value:
        if not is_valid_name(label):
            _fail(where, f"label {label!r} is not valid", f"a label is {NAME_RULE}")
    if len(set(value)) != len(value):
        _fail(where, "lists a label twice", "remove the duplicate")
    return tuple(value)


def check_groups(value: object, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`groups = { db = ["db1", "db2"] }`: named groups of at least two distinct VM names (file order kept)."""
    example = 'e.g. groups = { db = ["db1", "db2"], web = ["web1", "web2", "web3"] }'
    if not isinstance(value, dict):
        _fail(f"{where}: field 'groups'", f"must be a table of group name -> VM list, not {value!r}", example)
    groups = []
    for name, vms in value.items():
        at = f"{where}: group '{name}'"
        if not is_valid_name(name):
            _fail(at, "invalid group name", f"a group name is {NAME_RULE}")
        if not isinstance(vms, list) or not all(isinstance(v, str) for v in vms):
            _fail(at, f"must be a list of VM names, not {vms!r}", example)
        for vm in vms:
            if not is_valid_name(vm):
                _fail(at, f"VM name {vm!r} is not valid", f"a VM name is {NAME_RULE}")
        if len({v.lower() for v in vms}) != len(vms):
            _fail(at, "lists a VM twice", "remove the duplicate")
        if len(vms) < 2:
            _fail(at, f"has {len(vms)} VM: anti-affinity needs at least two", "add the VMs to keep apart, or remove it")
        groups.append((name, tuple(vms)))
    return tuple(groups)


def reject_unknown(table: Mapping[str, Any], allowed: tuple[str, ...], source: str, where: str) -> None:
    """An unknown key is almost always a typo (migration_adress, emergancy): say so instead of ignoring it.
    The one rule for both the hosts file and the policy file."""
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"allowed here: {', '.join(allowed)}"
            raise InventoryError(f"{source}: {where}: unknown field '{key}'", hint)


def read_text(source: str, what: str) -> str:
    """The UTF-8 text of a config file (`what`: "hosts file", "policy file"); unreadable or not UTF-8 is an
    InventoryError saying so and what to do (the caller has checked that the file exists)."""
    try:
        return Path(source).read_bytes().decode("utf-8")
    except OSError as exc:
        raise InventoryError(f"cannot read {what} {source}: {exc.strerror}", "check its permissions") from None
    except UnicodeDecodeError as exc:
        raise InventoryError(f"{what} {source} is not UTF-8 text (byte {exc.start})", "save it as UTF-8") from None
