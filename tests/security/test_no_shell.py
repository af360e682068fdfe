"""No user text reaches a shell; VM and host names and inventory URIs are validated.

1. The code: nothing in bot/, handlers/ or migration_core/ starts a process or a shell (an AST scan, so a
   comment or a string cannot hide a call and an alias cannot dodge a grep). A new place that needs to
   must be reviewed and listed in ALLOWED with the reason.
2. The grammar refuses every name a shell, a path or Slack markup could interpret; the inventory refuses
   URIs with shell characters, passwords or unknown parameters, and bad host names.
3. Through the real endpoint: hostile names get a grammar error and create no job.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from migration_core.errors import GrammarError, InventoryError
from migration_core.grammar.parser import MigrateCommand, parse_command
from migration_core.inventory.fields import check_uri
from migration_core.inventory.hosts import parse_inventory
from tests.fakeslack import FakeSlack
from tests.fixtures.slack import C_OPS, SIGNING_SECRET, U_ALICE
from tests.security.conftest import StartBot
from tests.security.support import job_count

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "handlers", "migration_core")
# module path -> why it may start a process. Empty: nothing in the bot does.
ALLOWED: dict[str, str] = {
    # Reviewed: asyncssh only opens a direct-tcpip channel (a TCP connection made by the source's sshd); it never
    # runs a command or a shell on any host (tests/migration_core/test_sshprobe.py).
    "migration_core/hypervisor/sshprobe.py": "port probes from the source host; no remote command",
}

_FORBIDDEN_MODULES = {"subprocess", "pty", "commands", "pexpect", "sh", "plumbum", "asyncssh", "paramiko", "fabric"}
_FORBIDDEN_CALLS = {
    "system", "popen", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
    "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe", "posix_spawn", "posix_spawnp",
    "create_subprocess_shell", "create_subprocess_exec", "subprocess_shell", "subprocess_exec", "startfile",
}  # fmt: skip


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
        where = f"{shown}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where} imports {a.name}" for a in node.names if a.name.split(".")[0] in _FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _FORBIDDEN_MODULES:
            found.append(f"{where} imports from {node.module}")
        elif isinstance(node, ast.ImportFrom):
            found += [f"{where} uses {a.name}" for a in node.names if a.name in _FORBIDDEN_CALLS]
        elif isinstance(node, ast.Attribute) and node.attr in _FORBIDDEN_CALLS:
            found.append(f"{where} uses .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in _FORBIDDEN_CALLS:
            found.append(f"{where} uses {node.id}")
        elif isinstance(node, ast.keyword) and node.arg == "shell":
            found.append(f"{where} passes shell=")
    return found


def test_nothing_in_the_bot_starts_a_process_or_a_shell():
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 50  # the scan really covers the code
    offences = [o for p in files if str(p.relative_to(ROOT)) not in ALLOWED for o in _offences(p)]
    assert offences == []


def test_the_scan_finds_what_it_looks_for(tmp_path: Path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import subprocess as sp\nfrom os import system\nimport os\n"
        "os.system('x')\nsp.run('x', shell=True)\nasync def f(loop):\n    await loop.subprocess_shell(None, 'x')\n"
    )
    found = " | ".join(_offences(sample))
    for what in ("imports subprocess", "uses system", "uses .system", "passes shell=", "uses .subprocess_shell"):
        assert what in found


HOSTILE_NAMES = [
    "$(reboot)", "`id`", "vm42;reboot", "vm42|nc", "vm42&&x", "vm42>f", "../etc", "-rf", "--help", "vm 42",
    "vm42\nhostB", "vm42\x00", "vm42'", 'vm42"', "vm42\\", "*", "vm?", "~root", "<@U_BOB>", "<!channel>",
    "{{x}}", "${x}", "vm\u202e42", "vm42\u200b", "ｖｍ４２", "é", "x" * 65, ".hidden", "_x",
]  # fmt: skip


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(n)[:30] for n in HOSTILE_NAMES])
def test_hostile_vm_and_host_names_are_grammar_errors(name: str):
    for text in (f"{name} to hostB", f"vm42 to {name}"):
        with pytest.raises(GrammarError):
            cmd = parse_command(text)
            # Some spellings split into other words; what parses must not carry the hostile name.
            if isinstance(cmd, MigrateCommand) and name not in (cmd.request.vm, cmd.request.destination):
                raise GrammarError("split into valid words", "")


@pytest.mark.parametrize("name", ["vm42", "web-01.prod", "DB_9", "a", "x" * 64, "host:1", "8e1d0c39-7f1c"])
def test_ordinary_names_are_accepted(name: str):
    cmd = parse_command(f"{name} to hostB")
    assert isinstance(cmd, MigrateCommand) and cmd.request.vm == name


BAD_URIS = [
    "qemu+ssh://root@kvm1/system;reboot", "qemu+ssh://root@kvm1/system?keyfile=/k;rm", "qemu+ssh://$(id)@kvm1/system",
    "qemu+ssh://root@kvm1/system?netcat=nc -e sh", "qemu+ssh://root@`id`/system", "qemu+ssh://root:pw@kvm1/system",
    "qemu+ssh://root@kvm1/system?evil=1", "qemu+ext:///system?command=/bin/sh", "qemu+ssh://root@kvm1/session",
    "qemu://kvm1/system", "qemu+ssh://root@kvm1/system?keyfile=/k'x", "qemu+ssh://root@kvm 1/system",
    "qemu+ssh://root@kvm1/system?keyfile=/k|x", "qemu+unix://kvm1/system",
]  # fmt: skip


@pytest.mark.parametrize("uri", BAD_URIS)
def test_inventory_uris_with_shell_characters_passwords_or_unknown_parts_are_refused(uri: str):
    with pytest.raises(InventoryError):
        check_uri(uri, "hosts.kvm1.uri")


@pytest.mark.parametrize(
    "uri",
    [
        "qemu+ssh://root@kvm1.example.com/system?keyfile=/etc/migrate-bot/id_ed25519",
        "qemu+tls://kvm1.example.com:16514/system?pkipath=/etc/pki/migrate-bot",
        "qemu+unix:///system?socket=/var/run/libvirt/libvirt-sock",
    ],
)
def test_ordinary_inventory_uris_are_accepted(uri: str):
    assert check_uri(uri, "hosts.kvm1.uri") == uri


@pytest.mark.parametrize("name", ["kvm1;x", "kvm 1", "$(id)", "-kvm", "kvm1\u202e"])
def test_inventory_host_names_are_validated(name: str):
    text = f'[hosts."{name}"]\nuri = "qemu+ssh://root@kvm1/system"\n'
    with pytest.raises(InventoryError):
        parse_inventory(text, "hosts.toml")


async def test_hostile_names_through_the_endpoint_get_a_grammar_error_and_no_job(
    fake_slack: FakeSlack, start_bot: StartBot
):
    bot = start_bot()
    for name in ("$(reboot)", "vm42;reboot", "`id`", "vm42|nc", "../etc"):
        ack = await fake_slack.slash_command_http(bot.url, SIGNING_SECRET, f"{name} to hostB", U_ALICE, C_OPS)
        assert ack.status == 200 and ack.payload is not None
        assert ack.payload.get("response_type") == "ephemeral"
        assert "not a valid" in str(ack.payload.get("text")), ack.payload
    assert await job_count(bot.env["MIGRATE_BOT_DB"]) == 0
