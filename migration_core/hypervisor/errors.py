"""libvirt errors -> the core's exception tree, in one place, by error code (pure; hypervisor.py calls it).

Every message says what is wrong in the operator's words and the hint says what to do. The raw libvirt text
is kept at the end of the message, because it is what a search engine or libvirt's own logs will know.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from migration_core.errors import DomainNotFound, HostUnreachable, HypervisorError, JobAborted
from migration_core.hypervisor.tlscheck import TlsDiagnosis, client_files
from migration_core.hypervisor.types import VirErr

# Text fragments of libvirt/socket errors that mean "the daemon at the other end is not there".
_UNREACHABLE = (
    "connection refused",
    "no route to host",
    "network is unreachable",
    "connection reset",
    "end of file while reading data",
    "cannot recv data",
    "client socket is closed",
    "unable to connect to server",
    "failed to connect socket",
    "connection timed out",
    "broken pipe",
    "name or service not known",
    "host key verification failed",
    "permission denied (publickey",
)

_SAME_HOST = re.compile(r"same host\s*([0-9a-f-]{36})?", re.IGNORECASE)
_MISSING_FEATURES = re.compile(
    r"(?:does not provide (?:the )?required features|missing features|lacks? features?)\s*:\s*(.+)$",
    re.IGNORECASE,
)
_LIBVIRT_PREFIX = re.compile(
    r"^(internal error|operation failed|Requested operation is not valid|unsupported configuration|"
    r"operation aborted|Operation not supported|argument unsupported|invalid argument)\s*:\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ErrorContext:
    """Where an error happened: the host's inventory name and URI, what we were doing, on which VM."""

    host: str
    uri: str
    op: str
    vm: str | None = None
    peer: str | None = None
    peer_uri: str | None = None
    # For a qemu+tls:// certificate failure: the bot's own handshake, which names the cause libvirt only logs.
    tls: TlsDiagnosis | None = None


def strip_prefix(message: str) -> str:
    """strip_prefix("internal error: qemu died") == "qemu died" (libvirt's category prefix is noise)."""
    return _LIBVIRT_PREFIX.sub("", message.strip(), count=1)


def missing_features(message: str) -> tuple[str, ...]:
    """Features named in a CPU-incompatibility message.

    missing_features("the CPU is incompatible with host CPU: Host CPU does not provide required features:
    pni, avx") == ("pni", "avx")
    """
    match = _MISSING_FEATURES.search(message.strip())
    if not match:
        return ()
    return tuple(f.strip().rstrip(".") for f in match.group(1).split(",") if f.strip())


def looks_unreachable(message: str) -> bool:
    low = message.lower()
    return any(fragment in low for fragment in _UNREACHABLE)


def reachability_hint(uri: str) -> str:
    """What to check when the daemon at `uri` does not answer, by transport."""
    parts = urlsplit(uri)
    scheme = parts.scheme
    if "+unix" in scheme or (not parts.netloc and "+" not in scheme):
        socket = parse_qs(parts.query).get("socket", ["/run/libvirt/libvirt-sock"])[0]
        return f"is libvirtd running on that host and its socket {socket} present?"
    if "+ssh" in scheme or "+libssh" in scheme:
        return "can the bot ssh to that host with its key, and is libvirtd running there?"
    if "+tls" in scheme:
        port = parts.port or 16514
        return f"is libvirtd running with listen_tls, port {port} open, and are the certificates valid?"
    port = parts.port or 16509
    return f"is libvirtd running and port {port} open?"


def is_tls_verify_failure(code: int | None, message: str) -> bool:
    """libvirt's one message for every server-certificate problem (the cause is only in its log)."""
    return code == VirErr.AUTH_FAILED and "verify peer's certificate" in message.lower()


def _ssh_host(uri: str) -> str:
    return urlsplit(uri).hostname or "the host"


def access_error(code: int | None, message: str, ctx: ErrorContext) -> HypervisorError | None:
    """ssh keys, TLS certificates, libvirt permissions and migration TLS: what real set-ups get wrong, each
    with its fix (None: not one of these). Checked before the generic "does not answer" rules."""
    low = message.lower()
    text = strip_prefix(message).replace("\n", " ")
    # The failing connection is the peer's when the source daemon dialled it (a P2P migration).
    # A TLS failure during a migration is the source's connection to the peer: the bot's own is already open.
    tls_failure = is_tls_verify_failure(code, message) or "unable to read tls confirmation" in low
    dialled = (
        ctx.peer is not None and ctx.peer_uri is not None and (tls_failure or _mentions_peer(message, ctx.peer_uri))
    )
    host, uri = (ctx.peer, ctx.peer_uri) if dialled and ctx.peer and ctx.peer_uri else (ctx.host, ctx.uri)
    who = f"{ctx.host} (which dials {host} for the migration)" if dialled else "the bot"
    addr = _ssh_host(uri)
    if "remote host identification has changed" in low or ("host key for" in low and "has changed" in low):
        return HostUnreachable(
            f"{host}'s ssh host key is not the one {who} knows for {addr}: the host was reinstalled, or "
            f"someone is in between ({ctx.op} refused)",
            f"verify the new key's fingerprint on {host} (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`); "
            f"if it matches, replace the line for {addr} in the bot's known_hosts (`ssh-keygen -R {addr}`, then "
            f"`ssh-keyscan {addr} >> known_hosts`)",
            code,
        )
    if "host key is known" in low or ("host key verification failed" in low and "changed" not in low):
        return HostUnreachable(
            f"{who} does not know {host}'s ssh host key ({addr} is not in its known_hosts), so it refuses "
            f"to connect ({ctx.op})",
            f"add the host's key after checking its fingerprint: `ssh-keyscan -t ed25519 {addr} >> "
            "~/.ssh/known_hosts` as the bot's user (README: SSH keys)",
            code,
        )
    if "permission denied (publickey" in low:
        return HypervisorError(
            f"{host} refused the ssh key of {who} ({text})",
            f"put the bot's public key in the authorized_keys of the user in the uri on {host}, and point the "
            "uri at the matching private key (keyfile=...)",
            code,
        )
    if ctx.tls is not None and not ctx.tls.ok:
        return HypervisorError(ctx.tls.detail, ctx.tls.fix or "run `migrate-bot doctor` for the details", code)
    if is_tls_verify_failure(code, message):
        return HypervisorError(
            f"{who} does not trust the certificate {host}'s libvirtd at {uri} presents ({text})",
            "run `migrate-bot doctor`: it names the cause (expired, made for another name, another CA)",
            code,
        )
    if "unable to read tls confirmation" in low:
        files = client_files(uri)
        return HypervisorError(
            f"{host}'s libvirtd refused the client certificate {files.cert} of {who} ({text})",
            f"on {host}: allow its name in libvirtd.conf tls_allowed_dn_list and trust the CA that signed it "
            "(ca_file), then restart libvirtd",
            code,
        )
    if "cannot read ca certificate" in low or ("cannot read" in low and "certificate" in low):
        return HypervisorError(
            f"{who} has no TLS certificates to reach {host} ({text})",
            "put cacert.pem, clientcert.pem and clientkey.pem in the uri's pkipath= directory (or /etc/pki, "
            "README: TLS certificates)",
            code,
        )
    if "unable to access credentials" in low or ("tls-creds" in low and "no such file" in low):
        return HypervisorError(
            f"a host of this migration has no QEMU migration-TLS certificates, so --tls cannot encrypt the "
            f"stream ({text})",
            "on both hosts: ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem and client-key.pem "
            "in qemu.conf's migrate_tls_x509_cert_dir, then restart libvirtd (README: TLS certificates); "
            "`migrate-bot doctor` checks both hosts",
            code,
        )
    if "polkit" in low or "access denied" in low or "authentication unavailable" in low:
        return HypervisorError(
            f"the user the bot logs in as may not manage VMs on {host}'s libvirtd ({text})",
            f"on {host}: add that user to the libvirt group (polkit's rule for org.libvirt.unix.manage), or, "
            "with libvirt ACLs, grant it the domain and connect permissions the bot needs (README: permissions)",
            code,
        )
    return None


def _vm_error(code: int | None, message: str, ctx: ErrorContext) -> HypervisorError | None:
    """The VM cannot go: not there, same host, CPU, storage libvirt calls unsafe, or the job was cancelled."""
    text = strip_prefix(message)
    if code == VirErr.NO_DOMAIN:
        name = ctx.vm or "that VM"
        return DomainNotFound(
            f"no VM named {name} on {ctx.host}",
            "check the name and the host with `virsh list --all` on that host, or `/migrate hosts`",
            code,
        )
    same = _SAME_HOST.search(message)
    if same and "migrate" in message.lower():
        uuid = same.group(1) or "?"
        return HypervisorError(
            f"source and destination are the same host (same host UUID {uuid})",
            "two inventory entries point at one libvirtd, or two hosts share a host_uuid: give each host a "
            "distinct host_uuid in libvirtd.conf, or pick another destination",
            code,
        )
    features = missing_features(message)
    if code == VirErr.CPU_INCOMPATIBLE or features:
        named = ", ".join(features) if features else "some CPU features"
        return HypervisorError(
            f"the destination CPU lacks {named}: the VM cannot run there with its current CPU model ({text})",
            "set the VM's CPU to the baseline of both hosts (`migrate-bot plan` shows it), or pick a "
            "destination with a compatible CPU",
            code,
        )
    if code == VirErr.MIGRATE_UNSAFE or "unsafe migration" in message.lower():
        return HypervisorError(
            f"libvirt refuses to migrate: the VM's disks are not on storage it considers shared ({text})",
            "copy the disks with --copy-storage all (or inc), or put them on shared storage (NFS, Ceph, "
            "SAN) mounted at the same path on both hosts; with cache='none' on a cluster filesystem",
            code,
        )
    if code == VirErr.OPERATION_ABORTED:
        return JobAborted(
            f"the migration of {ctx.vm or 'the VM'} was cancelled ({text})",
            "in pre-copy the VM keeps running on the source; check where it runs with `/migrate status`",
            code,
        )
    return None


def _connection_error(code: int | None, message: str, ctx: ErrorContext) -> HypervisorError | None:
    """A daemon does not answer (this host, or the peer it dials), refuses the bot, or is busy with a job."""
    text = strip_prefix(message)
    where = f"{ctx.host}'s libvirtd at {ctx.uri}"
    if ctx.peer and ctx.peer_uri and looks_unreachable(message) and _mentions_peer(message, ctx.peer_uri):
        return HostUnreachable(
            f"{ctx.host} could not reach {ctx.peer}'s libvirtd at {ctx.peer_uri} ({text})",
            f"{reachability_hint(ctx.peer_uri)} (checked from {ctx.host}, which dials it directly)",
            code,
        )
    if ctx.peer and looks_unreachable(message):
        return HostUnreachable(
            f"the migration of {ctx.vm or 'the VM'} lost a libvirt connection ({text}): {ctx.peer} stopped "
            f"answering {ctx.host}, or the bot lost {ctx.host}",
            f"check both libvirt daemons and the link between {ctx.host} and {ctx.peer}; the summary shows "
            "where the VM runs now",
            code,
        )
    if code in (VirErr.NO_CONNECT, VirErr.RPC) or (
        code in (VirErr.SYSTEM_ERROR, VirErr.INTERNAL_ERROR, None) and looks_unreachable(message) and not ctx.peer
    ):
        return HostUnreachable(f"{where} does not answer ({text})", reachability_hint(ctx.uri), code)
    if code in (VirErr.AUTH_FAILED, VirErr.AUTH_UNAVAILABLE, VirErr.OPERATION_DENIED):
        return HypervisorError(
            f"{where} refused {ctx.op}: not allowed ({text})",
            "the bot needs a read-write connection: check the URI's credentials and libvirtd's auth settings",
            code,
        )
    if code == VirErr.OPERATION_TIMEOUT or "state change lock" in message:
        return HypervisorError(
            f"{ctx.vm or 'the VM'} on {ctx.host} is busy with another job ({text})",
            "wait for the other job (a backup, snapshot or migration) to finish, or find it with "
            "`virsh domjobinfo` on that host",
            code,
        )
    return None


def _disk_or_job_error(code: int | None, message: str, ctx: ErrorContext) -> HypervisorError | None:
    """A disk's copy cannot be made, or the operation does not fit the job's state (post-copy, not running)."""
    text = strip_prefix(message)
    if code == VirErr.NO_STORAGE_POOL and "target path" in message:
        return HypervisorError(
            f"{ctx.host} has no storage pool for a disk's directory, so libvirt cannot create the copy ({text})",
            "pre-create the disk image on the destination (same path, size and format) or keep disks in a "
            "storage pool there",
            code,
        )
    if "could not open" in message.lower() and "no such file" in message.lower():
        return HypervisorError(
            f"a disk image is missing on the destination ({text})",
            "libvirt's pool cache may be stale: refresh the destination's pools (`virsh pool-refresh`) and "
            "pre-create the image",
            code,
        )
    if "requires migration to be started with" in message:
        return HypervisorError(
            "post-copy was not enabled when this migration started, so it cannot switch to post-copy now",
            "start the migration with --postcopy to be able to switch",
            code,
        )
    if "domain is not running" in message.lower():
        return HypervisorError(
            f"{ctx.vm or 'the VM'} is not running on {ctx.host}, so {ctx.op} is not possible",
            "a shut-off VM moves with an offline migration (--offline)",
            code,
        )
    if "no job is active" in message.lower() or "no migration" in message.lower():
        return HypervisorError(
            f"{ctx.vm or 'the VM'} has no migration running on {ctx.host} ({text})",
            "the migration has already ended: see its summary",
            code,
        )
    return None


# Tried in this order; the first that recognises the error wins (access problems first: their text can also
# look like an unreachable host).
_RULES: tuple[Callable[[int | None, str, ErrorContext], HypervisorError | None], ...] = (
    access_error,
    _vm_error,
    _connection_error,
    _disk_or_job_error,
)


def translate(code: int | None, message: str, ctx: ErrorContext) -> HypervisorError:
    """One libvirt error -> one exception of the core's tree with an operator message and a hint."""
    for rule in _RULES:
        if (err := rule(code, message, ctx)) is not None:
            return err
    text = strip_prefix(message)
    return HypervisorError(
        f"{ctx.host}: {ctx.op} failed: {text}",
        f"see libvirtd.log and the QEMU log of {ctx.vm or 'the VM'} on {ctx.host}",
        code,
    )


def _mentions_peer(message: str, peer_uri: str) -> bool:
    """True when an error text names the peer's address (the source failed to dial the destination)."""
    host = urlsplit(peer_uri).hostname or ""
    return bool(host) and host in message
