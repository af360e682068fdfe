"""Port probes from the source host over SSH, against a real SSH server (asyncssh's) on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from migration_core.hypervisor.sshprobe import probe_from
from migration_core.inventory.fields import SshTarget


class _ForwardingServer(asyncssh.SSHServer):
    """Accepts the test key and allows direct-tcpip channels (what `ssh -W` and our probe use)."""

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def ssh_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[SshTarget, str]]:
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    (tmp_path / "authorized_keys").write_text(client_key.export_public_key().decode())
    port = _free_port()
    server = await asyncssh.listen(
        "127.0.0.1", port, server_host_keys=[host_key], authorized_client_keys=str(tmp_path / "authorized_keys"),
        server_factory=_ForwardingServer,
    )  # fmt: skip
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key.export_public_key().decode()}")
    # The probe uses the bot user's default keys: point asyncssh's defaults at this test's key.
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    client_key.write_private_key(str(home / ".ssh" / "id_ed25519"))
    monkeypatch.setenv("HOME", str(home))
    yield SshTarget("root", "127.0.0.1", port), str(known_hosts)
    server.close()
    await server.wait_closed()


async def test_an_open_port_is_open_as_seen_from_the_source(ssh_source: tuple[SshTarget, str]) -> None:
    target, known_hosts = ssh_source
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        ok, detail = await probe_from(target, "127.0.0.1", port, 5.0, known_hosts=known_hosts)
    finally:
        listener.close()
    assert ok is True and "as seen from 127.0.0.1" in detail


async def test_a_closed_port_is_refused_as_seen_from_the_source(ssh_source: tuple[SshTarget, str]) -> None:
    target, known_hosts = ssh_source
    ok, detail = await probe_from(target, "127.0.0.1", _free_port(), 5.0, known_hosts=known_hosts)
    assert ok is False and "refused" in detail.lower()


async def test_an_unreachable_source_is_unknown_not_a_failure(tmp_path: Path) -> None:
    ok, detail = await probe_from(SshTarget("root", "127.0.0.1", _free_port()), "127.0.0.1", 22, 2.0)
    assert ok is None and "could not ssh to 127.0.0.1" in detail


async def test_a_wrong_host_key_is_refused(ssh_source: tuple[SshTarget, str], tmp_path: Path) -> None:
    target, _known = ssh_source
    other = asyncssh.generate_private_key("ssh-ed25519")
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{target.port} {other.export_public_key().decode()}")
    ok, detail = await probe_from(target, "127.0.0.1", 22, 5.0, known_hosts=str(wrong))
    assert ok is None and "could not ssh" in detail


async def test_preflight_probes_go_through_the_source_when_it_has_an_ssh_target(
    ssh_source: tuple[SshTarget, str], tmp_path: Path
) -> None:
    from migration_core.inventory.hosts import parse_inventory
    from migration_core.preflight.runner import PreflightRunner

    target, known_hosts = ssh_source
    # The probe uses the bot user's known_hosts, like production: install the test server's key there.
    home_known = Path(tmp_path / "home" / ".ssh" / "known_hosts")
    home_known.write_text(Path(known_hosts).read_text())
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    libvirt_port = listener.sockets[0].getsockname()[1]
    inventory = parse_inventory(
        f"""
[hosts.hostA]
uri = "qemu+unix:///system?socket=/nonexistent/a"
ssh = "root@127.0.0.1:{target.port}"
[hosts.hostB]
uri = "qemu+unix:///system?socket=/nonexistent/b"
peer_uri = "qemu+tcp://127.0.0.1:{libvirt_port}/system"
migration_address = "127.0.0.1"
""",
        "test",
    )
    planning = PreflightRunner(inventory, hypervisor=None)  # type: ignore[arg-type]  # probes need no libvirt
    try:
        probes = await planning._probes(inventory.get("hostA"), inventory.get("hostB"), live=True)
    finally:
        listener.close()
    assert {p.what: (p.ok, p.origin) for p in probes} == {
        "libvirt-tcp": (True, "source"),
        "migration": (True, "source"),  # refused = the host answers; QEMU listens only during a migration
    }
