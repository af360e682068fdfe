"""Why a qemu+tls:// connection fails: one TLS handshake with the bot's own certificates, read with `ssl`.

libvirt reports every certificate problem of the server as "authentication failed: Failed to verify peer's
certificate" and logs the reason only as a warning. An operator needs the reason (expired? made for another
name? signed by another CA?), so the bot repeats the handshake itself with the same files libvirt uses
(`pkipath=` of the URI, else /etc/pki) and names it. No libvirt protocol is spoken: the handshake is closed
as soon as it ends.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

DEFAULT_TLS_PORT = 16514
# Where libvirt's client looks when the URI has no pkipath= (running as root; see libvirt.org/kbase/tlscerts).
DEFAULT_CA = "/etc/pki/CA/cacert.pem"
DEFAULT_CERT = "/etc/pki/libvirt/clientcert.pem"
DEFAULT_KEY = "/etc/pki/libvirt/private/clientkey.pem"

# OpenSSL verify codes (x509_vfy.h) that name a cause an operator can fix.
_X509_EXPIRED = 10
_X509_NOT_YET_VALID = 9
_X509_HOSTNAME_MISMATCH = 62
_X509_UNTRUSTED = (2, 18, 19, 20, 21, 7)


class TlsProblem(StrEnum):
    """What the handshake found (OK: the bot trusts the server's certificate for this name)."""

    OK = "ok"
    CLIENT_FILES = "client-files"
    UNREACHABLE = "unreachable"
    UNTRUSTED = "untrusted"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    WRONG_NAME = "wrong-name"
    REFUSED_CLIENT = "refused-client"
    OTHER = "other"


@dataclass(frozen=True)
class TlsFiles:
    """The client's CA, certificate and key, as libvirt would pick them for one URI."""

    ca: str
    cert: str
    key: str


@dataclass(frozen=True)
class TlsDiagnosis:
    """The outcome of one handshake: the problem, a sentence about it, and what the operator does."""

    problem: TlsProblem
    detail: str
    fix: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is TlsProblem.OK


def client_files(uri: str) -> TlsFiles:
    """client_files("qemu+tls://h/system?pkipath=/p").cert == "/p/clientcert.pem" (libvirt's layout)."""
    pki = parse_qs(urlsplit(uri).query).get("pkipath", [None])[0]
    if pki:
        return TlsFiles(f"{pki}/cacert.pem", f"{pki}/clientcert.pem", f"{pki}/clientkey.pem")
    return TlsFiles(DEFAULT_CA, DEFAULT_CERT, DEFAULT_KEY)


def explain_verify_error(code: int, message: str, host: str, where: str, ca: str) -> TlsDiagnosis:
    """An OpenSSL verification failure -> the operator's words (pure)."""
    if code == _X509_EXPIRED:
        return TlsDiagnosis(
            TlsProblem.EXPIRED,
            f"the certificate {where} presents has expired",
            f"issue a new server certificate for {host} from your CA and restart libvirtd there",
        )
    if code == _X509_NOT_YET_VALID:
        return TlsDiagnosis(
            TlsProblem.NOT_YET_VALID,
            f"the certificate {where} presents is not valid yet",
            "check the clocks of the bot and the host (NTP), or re-issue the certificate",
        )
    if code == _X509_HOSTNAME_MISMATCH or "mismatch" in message.lower():
        return TlsDiagnosis(
            TlsProblem.WRONG_NAME,
            f"the certificate {where} presents is made for another name, not {host}",
            f"issue a server certificate whose subjectAltName holds {host} (the name or address in the "
            "hosts file's uri), or write the name the certificate holds into the uri",
        )
    if code in _X509_UNTRUSTED or "issuer" in message.lower() or "self-signed" in message.lower():
        return TlsDiagnosis(
            TlsProblem.UNTRUSTED,
            f"the certificate {where} presents is not signed by the CA the bot trusts ({ca})",
            f"put the CA certificate that signed the hosts' certificates in {ca}, or re-issue the host's "
            "certificate from the bot's CA",
        )
    return TlsDiagnosis(TlsProblem.OTHER, f"{where}: TLS verification failed ({message})", None)


def diagnose(uri: str, label: str, timeout_s: float = 5.0) -> TlsDiagnosis:
    """One TLS handshake to the libvirtd of a qemu+tls:// `uri` with the bot's files (blocking I/O)."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    port = parts.port or DEFAULT_TLS_PORT
    files = client_files(uri)
    where = f"{label}'s libvirtd at {host}:{port}"
    missing = [f for f in (files.ca, files.cert, files.key) if not Path(f).is_file()]
    if missing:
        return TlsDiagnosis(
            TlsProblem.CLIENT_FILES,
            f"the bot's TLS files for {label} are missing: {', '.join(missing)}",
            "copy the CA certificate and the bot's client certificate and key there (README: TLS certificates)",
        )
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=files.ca)
    try:
        ctx.load_cert_chain(files.cert, files.key)
    except (ssl.SSLError, OSError) as err:
        return TlsDiagnosis(
            TlsProblem.CLIENT_FILES,
            f"the bot's client certificate {files.cert} or key {files.key} cannot be used ({err})",
            "re-issue the bot's client certificate and key as a matching pair",
        )
    try:
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            ctx.wrap_socket(raw, server_hostname=host) as tls,
        ):
            # libvirtd answers a client it accepts with one confirmation byte; one it refuses (its name is
            # not in tls_allowed_dn_list, or signed by a CA the host does not trust) is disconnected.
            tls.settimeout(timeout_s)
            try:
                confirmed = tls.recv(1)
            except (ssl.SSLError, OSError):
                confirmed = b""
            if not confirmed:
                return TlsDiagnosis(
                    TlsProblem.REFUSED_CLIENT,
                    f"{where} refused the bot's client certificate ({files.cert})",
                    f"on {label}: allow the bot's certificate name in libvirtd.conf tls_allowed_dn_list "
                    "(see `virt-pki-query-dn` of the bot's certificate) and make sure the host trusts the CA "
                    "that signed it (ca_file); restart libvirtd",
                )
    except ssl.SSLCertVerificationError as err:
        return explain_verify_error(err.verify_code, err.verify_message or str(err), host, where, files.ca)
    except (ssl.SSLError, OSError) as err:
        if isinstance(err, ssl.SSLError):
            return TlsDiagnosis(TlsProblem.OTHER, f"{where}: TLS handshake failed ({err})", None)
        return TlsDiagnosis(
            TlsProblem.UNREACHABLE,
            f"{where} does not answer ({err})",
            f"is libvirtd running on {label} with listen_tls = 1 (or virtproxyd-tls.socket), port {port} open?",
        )
    return TlsDiagnosis(TlsProblem.OK, f"{where} presents a certificate the bot trusts for {host}")
