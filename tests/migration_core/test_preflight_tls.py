"""The --tls readiness check, the doctor's duplicate detection and the ssh/TLS error translation (pure)."""

from __future__ import annotations

from migration_core.facts.gathered import Endpoint, PreflightFacts, VmState
from migration_core.hypervisor.errors import ErrorContext, translate
from migration_core.hypervisor.tlscheck import TlsProblem, client_files, explain_verify_error
from migration_core.hypervisor.types import VirErr
from migration_core.models import CheckStatus, MigrationOptions, MigrationRequest
from migration_core.preflight.doctor import HostReport, duplicates
from migration_core.preflight.tls import check_tls


def _facts(tls: bool, src_ready: bool, dst_ready: bool, state: VmState = VmState.RUNNING) -> PreflightFacts:
    return PreflightFacts(
        request=MigrationRequest("vm42", "hostB", MigrationOptions(tls=tls)),
        source=Endpoint("hostA", migration_tls=src_ready),
        destination=Endpoint("hostB", migration_tls=dst_ready, peer_uri="qemu+tls://kvm2/system"),
        vm_state=state,
    )


def test_tls_check_runs_only_with_tls() -> None:
    assert check_tls(_facts(False, False, False)) == ()


def test_tls_refused_before_approval_names_the_host_and_the_fix() -> None:
    (r,) = check_tls(_facts(True, True, False))
    assert r.status is CheckStatus.FAIL and r.name == "tls.ready"
    assert "hostB is not set up" in r.reason and "hostA" not in r.reason
    assert r.fix and "migrate_tls_x509_cert_dir" in r.fix and "[hosts.hostB]" in r.fix


def test_tls_ready_on_both_hosts_passes_and_says_the_control_link_is_tls() -> None:
    (r,) = check_tls(_facts(True, True, True))
    assert r.status is CheckStatus.PASS and "control connection between the daemons is TLS too" in r.reason


def test_tls_offline_is_a_warning() -> None:
    (r,) = check_tls(_facts(True, True, True, VmState.SHUTOFF))
    assert r.status is CheckStatus.WARN


def test_duplicate_uuid_and_hostname() -> None:
    hosts = (
        HostReport("a", "u1", "qemu+ssh", True, "kvm1", "U"),
        HostReport("b", "u2", "qemu+ssh", True, "kvm1", "U"),
        HostReport("c", "u3", "qemu+ssh", True, "kvm3", "V"),
    )
    found = {f.result.name: f for f in duplicates(hosts)}
    assert set(found) == {"duplicate.uuid", "duplicate.hostname"} and found["duplicate.uuid"].subject == "a, b"


def test_pkipath_picks_libvirts_file_names() -> None:
    assert client_files("qemu+tls://h/system?pkipath=/p").key == "/p/clientkey.pem"
    assert client_files("qemu+tls://h/system").ca == "/etc/pki/CA/cacert.pem"


def test_verify_errors_in_the_operators_words() -> None:
    assert explain_verify_error(10, "certificate has expired", "h", "x", "/ca").problem is TlsProblem.EXPIRED
    assert explain_verify_error(20, "unable to get local issuer", "h", "x", "/ca").problem is TlsProblem.UNTRUSTED
    assert explain_verify_error(64, "IP address mismatch", "h", "x", "/ca").problem is TlsProblem.WRONG_NAME


def test_peer_ssh_refusal_names_the_peer() -> None:
    ctx = ErrorContext(
        "hostA", "qemu+ssh://root@a/system", "migrate vm42", "vm42", "hostB", "qemu+ssh://root@10.0.0.2/system"
    )
    err = translate(VirErr.SYSTEM_ERROR, "Cannot recv data: root@10.0.0.2: Permission denied (publickey).", ctx)
    assert "hostB refused the ssh key of hostA (which dials hostB for the migration)" in err.message


def test_a_peer_certificate_failure_during_a_migration_names_both_hosts() -> None:
    ctx = ErrorContext("hostA", "qemu+tls://a/system", "migrate vm42", "vm42", "hostB", "qemu+tls://b/system")
    err = translate(VirErr.AUTH_FAILED, "authentication failed: Failed to verify peer's certificate", ctx)
    assert "hostA (which dials hostB for the migration) does not trust the certificate hostB's libvirtd" in err.message
