"""Check 12: with --tls, both hosts are set up to encrypt the migration stream (QEMU's migration TLS)."""

from __future__ import annotations

from urllib.parse import urlsplit

from migration_core.facts.gathered import Endpoint, PreflightFacts
from migration_core.models import CheckResult, MigrationMode
from migration_core.preflight._common import failed, mode_of, passed, warned

# What an operator does on a host that is not ready (README "Operating it: TLS certificates").
FIX = (
    "on {host}: put ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem and client-key.pem signed by "
    "the CA the other hosts trust in the directory of qemu.conf's migrate_tls_x509_cert_dir (default "
    "/etc/pki/qemu), set migrate_tls_x509_verify = 1, restart libvirtd, then add migration_tls = true to "
    "[hosts.{host}] in the hosts file; `migrate-bot doctor` checks the rest"
)


def _not_ready(end: Endpoint) -> bool:
    return not end.migration_tls


def check_tls(facts: PreflightFacts) -> tuple[CheckResult, ...]:
    """--tls is refused before approval when a host's QEMU has no migration-TLS certificates: libvirt would
    otherwise fail only once the migration starts, on the destination ("Unable to access credentials")."""
    if not facts.request.options.tls:
        return ()
    if mode_of(facts) is MigrationMode.OFFLINE:
        return (
            warned(
                "tls.ready",
                "--tls has nothing to encrypt in an offline migration (only the definition moves, over the "
                "libvirt connection)",
                "drop --tls, or protect the peer connection with a qemu+tls:// or qemu+ssh:// peer_uri",
            ),
        )
    missing = [end.name for end in (facts.source, facts.destination) if _not_ready(end)]
    if missing:
        who = " and ".join(missing)
        return (
            failed(
                "tls.ready",
                f"--tls encrypts the migration stream with QEMU's TLS, but {who} "
                f"{'is' if len(missing) == 1 else 'are'} not set up for it (no migration_tls = true in the "
                "hosts file): the destination would refuse the encrypted stream",
                "; ".join(FIX.format(host=name) for name in missing),
            ),
        )
    control = urlsplit(facts.destination.peer_uri or "").scheme
    note = (
        "; the control connection between the daemons is TLS too"
        if control == "qemu+tls"
        else f"; the control connection between the daemons is {control or 'unknown'}"
    )
    return (
        passed(
            "tls.ready",
            f"{facts.source.name} and {facts.destination.name} have QEMU migration TLS: the stream is encrypted" + note,
        ),
    )
