"""The executor over the transports production uses (issue 14): the bot reaches the lab hosts over qemu+ssh
(hosts-ssh.toml) and over qemu+tls with the peers on TLS and the migration stream encrypted (hosts-tls.toml,
--tls). Over each: a round trip with the guest's memory checked, a post-copy, a copy-storage and an offline
migration, and restart recovery (a bot killed mid-migration, a new executor reattaches). A host without
migration-TLS certificates refuses --tls; the real set-up mistakes (unknown / changed host key, wrong key,
untrusted / expired / misnamed certificate, refused client certificate) each give an error naming the host
and the fix. The mistakes are made on the bot's side only (its own known_hosts, key or certificate
directory), so the lab itself stays as it is."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from migration_core.errors import HostUnreachable, HypervisorError
from migration_core.events import RecordingSink
from migration_core.execution.executor import Executor
from migration_core.hypervisor.libvirt_adapter import Hypervisor
from migration_core.inventory.hosts import load_inventory
from migration_core.models import CheckStatus, CopyStorage, JobState, MigrationOptions, Phase, ProgressSample
from tests.labkit import REPO, LabInfo, console_status
from tests.migration_core.executor_lab_support import (
    A,
    B,
    Guest,
    allocated_bytes,
    disk_copy,
    drop_guest,
    healthy_link,
    hypervisor_for,
    inventory,
    make_guest,
    plan_for,
    wait_console_after,
)

sys.path.insert(0, str(REPO / "deploy" / "lab"))
from labtool import access

pytestmark = pytest.mark.lab
_job_ids = iter(range(140000, 150000))


@pytest.fixture(scope="module")
def local(lab: LabInfo) -> Iterator[Hypervisor]:
    """The UNIX-socket adapter, for setting up and inspecting the test guest."""
    healthy_link(lab)
    yield Hypervisor({A: lab.host(A).uri, B: lab.host(B).uri})


def _guest_fixture(template: str, name: str, **kw: object):  # type: ignore[no-untyped-def]
    @pytest.fixture(scope="module")
    def fixture(lab: LabInfo, local: Hypervisor) -> Iterator[Guest]:
        g = asyncio.run(make_guest(local, lab, template, name, **kw))  # type: ignore[arg-type]
        yield g
        asyncio.run(drop_guest(local, lab, g))

    return fixture


guest = _guest_fixture("vm42", "xt-transport")
disky = _guest_fixture("disky", "xt-transport-disky")
stopped = _guest_fixture("stopped", "xt-transport-stopped", start=False)


async def _xml(hv: Hypervisor, lab: LabInfo, guest: Guest) -> str:
    for host in (A, B):
        if (await hv.domain(lab.host(host).uri, guest.uuid)).present:
            return await hv.domain_xml(lab.host(host).uri, guest.uuid, migratable=False)
    raise AssertionError(f"{guest.name} is defined nowhere")


async def _console_clean(lab: LabInfo, guest: Guest) -> None:
    before = console_status(lab, guest.name)
    status = await wait_console_after(lab, guest, before.t_s if before else None)
    assert status.ok, (status, status.corrupt_lines)


async def _trip(
    lab: LabInfo,
    local: Hypervisor,
    guest: Guest,
    transport: str,
    opts: MigrationOptions,
    src: str,
    dst: str,
    **kw: object,
) -> tuple[Executor, int, JobState, str]:
    inv = inventory(lab, transport)
    hv = hypervisor_for(inv)
    ex = Executor(hv, inv, RecordingSink())
    xml = await _xml(local, lab, guest)
    plan = plan_for(lab, guest, xml, source=src, destination=dst, options=opts, **kw)  # type: ignore[arg-type]
    job = next(_job_ids)
    result = await ex.run(job, plan)
    summary = await ex.summarize(plan, result)
    failed = [c for c in summary.checks if c.status is CheckStatus.FAIL]
    assert summary.outcome is JobState.SUCCEEDED and not failed, (summary.headline, failed)
    assert ("VIR_MIGRATE_TLS" in plan.flags) == opts.tls
    return ex, job, summary.outcome, summary.headline


def _opts(transport: str, **kw: object) -> MigrationOptions:
    return MigrationOptions(tls=transport == "tls", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["ssh", "tls"])
async def test_round_trip_over_the_transport(lab: LabInfo, local: Hypervisor, guest: Guest, transport: str) -> None:
    inv = inventory(lab, transport)
    assert all(h.uri.startswith(f"qemu+{transport}://") for h in inv)
    if transport == "tls":
        assert all(h.peer_uri.startswith("qemu+tls://") and h.migration_tls for h in inv)
    _, _, _, headline = await _trip(lab, local, guest, transport, _opts(transport), A, B)
    assert headline.startswith(f"{guest.name} is running on {B}")
    assert (await local.domain(lab.host(B).uri, guest.uuid)).active
    await _console_clean(lab, guest)
    await _trip(lab, local, guest, transport, _opts(transport, undefine_source=True), B, A)
    assert (await local.domain(lab.host(A).uri, guest.uuid)).active
    await _console_clean(lab, guest)


@pytest.mark.parametrize("transport", ["ssh", "tls"])
async def test_copy_storage_over_the_transport(lab: LabInfo, local: Hypervisor, disky: Guest, transport: str) -> None:
    opts = _opts(transport, copy_storage=CopyStorage.ALL)
    await _trip(lab, local, disky, transport, opts, A, B, local_disks=("vda",))
    # One owner (issue 13): the verified move deletes the copied image from the source.
    assert allocated_bytes(disk_copy(lab, B, disky)), "no copy on hostB"
    assert allocated_bytes(disk_copy(lab, A, disky)) is None, "the copied image stayed on hostA"
    await _console_clean(lab, disky)
    back = _opts(transport, copy_storage=CopyStorage.ALL, undefine_source=True)
    await _trip(lab, local, disky, transport, back, B, A, local_disks=("vda",))
    assert (await local.domain(lab.host(A).uri, disky.uuid)).active
    assert allocated_bytes(disk_copy(lab, A, disky)), "no image on hostA after the way back"
    disk_copy(lab, B, disky).unlink(missing_ok=True)


@pytest.mark.parametrize("transport", ["ssh", "tls"])
async def test_offline_over_the_transport(lab: LabInfo, local: Hypervisor, stopped: Guest, transport: str) -> None:
    # Offline moves only the definition (no stream to encrypt: preflight warns about --tls), over the transport.
    opts = MigrationOptions(undefine_source=True)
    _, _, _, headline = await _trip(lab, local, stopped, transport, opts, A, B, running=False)
    assert headline.startswith(f"{stopped.name} is defined (shut off) on {B}")
    await _trip(lab, local, stopped, transport, opts, B, A, running=False)
    home = await local.domain(lab.host(A).uri, stopped.uuid)
    assert home.present and not home.active and not (await local.domain(lab.host(B).uri, stopped.uuid)).present


def _migrate_parameters(lab: LabInfo, host: str, vm: str) -> str:
    return subprocess.run(
        ["virsh", "-c", lab.host(host).uri, "qemu-monitor-command", vm, '{"execute":"query-migrate-parameters"}'],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    ).stdout


@pytest.mark.parametrize("transport", ["ssh", "tls"])
async def test_postcopy_over_the_transport(lab: LabInfo, local: Hypervisor, guest: Guest, transport: str) -> None:
    inv = inventory(lab, transport)
    ex = Executor(hypervisor_for(inv), inv, RecordingSink())
    # At 8 MiB/s the first pass over the guest's 32 MiB lasts ~4 s; the plan switches to post-copy after 1 s.
    opts = _opts(transport, postcopy_after_s=1.0, bandwidth_mib_s=8)
    plan = plan_for(lab, guest, await _xml(local, lab, guest), source=A, destination=B, options=opts)
    seen: list[str] = []

    async def peek(sample: ProgressSample) -> None:
        # What QEMU itself reports mid-flight: with --tls the stream runs over a TLS credentials object.
        if sample.phase is not Phase.DONE and sample.data_processed_bytes > 0 and not seen:
            seen.append(await asyncio.to_thread(_migrate_parameters, lab, A, guest.name))

    ex.record_progress = peek
    result = await ex.run(next(_job_ids), plan)
    summary = await ex.summarize(plan, result)
    assert summary.outcome is JobState.SUCCEEDED, summary.headline
    assert result.postcopy and "post-copy migration" in summary.headline
    assert seen, "no progress sample with data"
    if transport == "tls":
        assert '"tls-creds":"objlibvirt_migrate_tls0"' in seen[0].replace(" ", ""), seen[0]
        assert '"tls-hostname":"10.213.7.2"' in seen[0].replace(" ", ""), seen[0]
    else:
        assert '"tls-creds":""' in seen[0].replace(" ", ""), seen[0]
    await _console_clean(lab, guest)
    await _trip(lab, local, guest, transport, _opts(transport, undefine_source=True), B, A)


async def test_a_host_without_migration_certificates_refuses_tls(lab: LabInfo, local: Hypervisor, guest: Guest) -> None:
    """hostB's QEMU TLS directory taken away for the length of one --tls migration: the destination refuses
    the encrypted stream, the VM stays on hostA, and the error names the missing certificates."""
    qemu_dir = lab.root / "tls" / "qemu-hostB"
    hidden = qemu_dir.with_name("qemu-hostB.hidden-by-test")
    inv = inventory(lab, "tls")
    ex = Executor(hypervisor_for(inv), inv, RecordingSink())
    plan = plan_for(lab, guest, await _xml(local, lab, guest), source=A, destination=B, options=_opts("tls"))
    qemu_dir.rename(hidden)
    try:
        result = await ex.run(next(_job_ids), plan)
        summary = await ex.summarize(plan, result)
    finally:
        hidden.rename(qemu_dir)
    assert summary.outcome is JobState.FAILED, summary.headline
    assert result.error is not None and "migration-TLS certificates" in result.error, result.error
    assert "migrate_tls_x509_cert_dir" in (result.hint or "")
    assert (await local.domain(lab.host(A).uri, guest.uuid)).active
    assert not (await local.domain(lab.host(B).uri, guest.uuid)).active
    await _console_clean(lab, guest)


# ----- the bot's own set-up mistakes (its known_hosts, key, certificates), each with its fix ---------------


def _ssh_wrapper(tmp: Path, name: str, key: Path, known_hosts: Path) -> Path:
    config = tmp / f"{name}.conf"
    config.write_text(access.ssh_client_config(Path(), known_hosts, key))
    wrapper = tmp / name
    access.write_ssh_wrapper(wrapper, config)
    return wrapper


def _ssh_uri(lab: LabInfo, host: str, wrapper: Path) -> str:
    return f"qemu+ssh://root@{lab.host(host).ip}/system?command={wrapper}&no_tty=1"


async def _connect_error(uri: str, label: str) -> HypervisorError:
    hv = Hypervisor({label: uri})
    with pytest.raises(HypervisorError) as err:
        await hv.hostname(uri)
    return err.value


async def test_ssh_unknown_changed_and_refused_keys(lab: LabInfo, tmp_path: Path) -> None:
    ssh = lab.root / "ssh"
    empty = tmp_path / "known_empty"
    empty.write_text("")
    changed = tmp_path / "known_changed"  # hostB's key recorded for hostA's address: a changed host key
    changed.write_text(access.known_hosts_line_for(lab.host(A).ip, "lab-a", (ssh / "host_hostB_ed25519.pub")))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)

    err = await _connect_error(_ssh_uri(lab, A, _ssh_wrapper(tmp_path, "u", ssh / "id_ed25519", empty)), A)
    assert isinstance(err, HostUnreachable)
    assert f"does not know {A}'s ssh host key" in err.message and "ssh-keyscan" in (err.hint or "")

    err = await _connect_error(_ssh_uri(lab, A, _ssh_wrapper(tmp_path, "c", ssh / "id_ed25519", changed)), A)
    assert f"{A}'s ssh host key is not the one" in err.message and "ssh-keygen -R" in (err.hint or "")

    err = await _connect_error(
        _ssh_uri(lab, B, _ssh_wrapper(tmp_path, "k", tmp_path / "other", ssh / "known_hosts")), B
    )
    assert f"{B} refused the ssh key of the bot" in err.message and "authorized_keys" in (err.hint or "")


async def test_tls_untrusted_ca_and_refused_client(lab: LabInfo, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca"
    access.make_ca(other_ca)
    access.client_pki(other_ca, tmp_path / "other-bot", access.BOT_CN)
    err = await _connect_error(f"qemu+tls://{lab.host(A).ip}/system?pkipath={tmp_path / 'other-bot'}", A)
    assert f"{A}'s libvirtd at {lab.host(A).ip}:16514" in err.message
    assert "not signed by the CA the bot trusts" in err.message and "cacert.pem" in (err.hint or "")

    # Signed by the lab CA, but a name the hosts do not allow (tls_allowed_dn_list): no permission.
    access.client_pki(lab.root / "tls" / "ca", tmp_path / "intruder", "intruder")
    err = await _connect_error(f"qemu+tls://{lab.host(B).ip}/system?pkipath={tmp_path / 'intruder'}", B)
    assert f"{B}'s libvirtd refused the client certificate" in err.message
    assert "tls_allowed_dn_list" in (err.hint or "")


class _TlsServer:
    """A TLS endpoint presenting a given server certificate (what a misconfigured libvirtd would present)."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("case", ["expired", "other-name"])
async def test_tls_expired_or_misnamed_server_certificate(lab: LabInfo, tmp_path: Path, case: str) -> None:
    ca = lab.root / "tls" / "ca"
    key = tmp_path / "key.pem"
    access.make_key(key)
    cert = tmp_path / "cert.pem"
    if case == "expired":
        access.sign_cert(
            ca, key, cert, cn="lab-a", server=True, ips=("127.0.0.1",),
            activation="2020-01-01 00:00:00 UTC", expiration="2020-02-01 00:00:00 UTC",
        )  # fmt: skip
    else:  # hostB's real certificate, reached at an address it does not name
        shutil.copyfile(lab.root / "tls" / "hostB" / "servercert.pem", cert)
        shutil.copyfile(lab.root / "tls" / "hostB" / "serverkey.pem", key)
    server = _TlsServer(cert, key)
    try:
        err = await _connect_error(f"qemu+tls://127.0.0.1:{server.port}/system?pkipath={lab.root / 'tls' / 'bot'}", A)
    finally:
        server.close()
    if case == "expired":
        assert "has expired" in err.message and "issue a new server certificate" in (err.hint or "")
    else:
        assert "made for another name, not 127.0.0.1" in err.message and "subjectAltName" in (err.hint or "")


_STARTER = textwrap.dedent("""
    import asyncio, sys
    from migration_core.hypervisor.libvirt_adapter import Hypervisor
    from migration_core.hypervisor.types import MigrationCall
    src, vm, peer, migrate_uri, tls = sys.argv[1:6]
    flags = ["VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST", "VIR_MIGRATE_UNDEFINE_SOURCE"]
    flags += ["VIR_MIGRATE_TLS"] if tls == "1" else []
    print("starting", flush=True)
    call = MigrationCall(tuple(flags), {"bandwidth": 24, "migrate_uri": migrate_uri}, peer_uri=peer)
    asyncio.run(Hypervisor().migrate(src, vm, call))
""")


@pytest.mark.parametrize("transport", ["ssh", "tls"])
async def test_reattach_after_the_bot_died_over_the_transport(
    lab: LabInfo, local: Hypervisor, guest: Guest, transport: str
) -> None:
    """A bot process that reached the source over ssh/tls started a P2P migration and was killed (kill -9);
    a new executor over the same transport finds the job, watches it to the end and reports the outcome."""
    inv = inventory(lab, transport)
    src, dst = inv.get(A), inv.get(B)
    hv = hypervisor_for(inv)
    opts = _opts(transport, undefine_source=True)
    plan = plan_for(lab, guest, await _xml(local, lab, guest), source=A, destination=B, options=opts)
    child = subprocess.Popen(
        [sys.executable, "-c", _STARTER, src.uri, guest.uuid, dst.peer_uri, f"tcp://{dst.migration_address}",
         "1" if opts.tls else "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline().strip() == "starting"
    deadline = time.monotonic() + 30
    while not (await hv.job_stats(src.uri, guest.uuid)).active:
        assert time.monotonic() < deadline, "the killed bot's migration never started"
        await asyncio.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    ex = Executor(hv, inv, RecordingSink())
    result = await ex.reattach(next(_job_ids), plan)
    assert result.reattached and result.outcome is JobState.SUCCEEDED, result.error
    summary = await ex.summarize(plan, result)
    assert summary.outcome is JobState.SUCCEEDED, summary.headline
    await _console_clean(lab, guest)
    await _trip(lab, local, guest, transport, opts, B, A)


async def test_a_peer_that_cannot_reach_the_other_hosts_libvirtd(
    lab: LabInfo, local: Hypervisor, guest: Guest, tmp_path: Path
) -> None:
    """hostA dials hostB's libvirtd over TLS on a port nothing listens on: the error says hostA could not
    reach hostB's libvirtd at that URI, checked from hostA, and the VM stays where it was."""
    text = (lab.root / "hosts-tls.toml").read_text()
    good = f"qemu+tls://{lab.host(B).ip}/system?pkipath="
    bad = f"qemu+tls://{lab.host(B).ip}:16599/system?pkipath="
    assert text.count(f'peer_uri = "{good}') == 1  # hostB's peer_uri only (its uri has the same prefix)
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(text.replace(f'peer_uri = "{good}', f'peer_uri = "{bad}'))
    inv = load_inventory(hosts)
    assert inv.get(B).peer_uri.startswith(bad)
    ex = Executor(hypervisor_for(inv), inv, RecordingSink())
    plan = plan_for(lab, guest, await _xml(local, lab, guest), source=A, destination=B, options=_opts("tls"))
    result = await ex.run(next(_job_ids), plan)
    assert result.outcome is JobState.FAILED and result.error is not None
    assert f"{A} could not reach {B}'s libvirtd at {bad}" in result.error, result.error
    assert f"checked from {A}" in (result.hint or "") and "16599" in (result.hint or "")
    assert (await local.domain(lab.host(A).uri, guest.uuid)).active
