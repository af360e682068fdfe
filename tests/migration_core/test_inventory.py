"""The hosts file: the documented format loads, and every mistake is named by file, host and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from migration_core.errors import InventoryError
from migration_core.inventory.fields import SshTarget
from migration_core.inventory.hosts import HostConfig, Inventory, load_inventory, parse_inventory

REPO = Path(__file__).resolve().parents[2]
SRC = "test-hosts.toml"
LOCAL = 'uri = "qemu:///system"\n'  # the shortest valid host, for tests of the other fields

# The format the lab writes (issue 2 §3), verbatim.
LAB = """
[defaults]            # optional; applies to every host
max_inbound = 2
max_outbound = 2
link_mib_s = 1000

[hosts.hostA]
uri = "qemu+unix:///system?socket=/var/tmp/migrate-bot-lab/A/run/libvirt-sock"  # how the bot reaches it
peer_uri = "qemu+tcp://10.213.7.1:16509/system"  # optional: how another host's libvirtd reaches it (P2P)
migration_address = "10.213.7.1"                 # optional: migration data address (migrate_uri = tcp://addr)
ssh = "root@10.213.7.1"                          # optional: ssh target for probes
link_mib_s = 200                                 # link bandwidth for predictions, MiB/s
max_inbound = 2
max_outbound = 2
labels = ["lab"]

[hosts.hostB]
uri = "qemu+unix:///system?socket=/var/tmp/migrate-bot-lab/B/run/libvirt-sock"
"""


def one_host(body: str, name: str = "h1") -> str:
    return f"[hosts.{name}]\n{body}\n"


def test_the_lab_format_loads_with_defaults_applied() -> None:
    inv = parse_inventory(LAB, SRC)
    assert inv.path == SRC
    assert inv.names() == ("hostA", "hostB")
    assert inv.get("hostA") == HostConfig(
        name="hostA",
        uri="qemu+unix:///system?socket=/var/tmp/migrate-bot-lab/A/run/libvirt-sock",
        peer_uri="qemu+tcp://10.213.7.1:16509/system",
        migration_address="10.213.7.1",
        ssh="root@10.213.7.1",
        link_mib_s=200.0,
        max_inbound=2,
        max_outbound=2,
        labels=("lab",),
    )
    b = inv.get("hostB")
    # hostB sets nothing but uri: peer_uri falls back to uri, numbers to [defaults].
    assert (b.peer_uri, b.link_mib_s, b.max_inbound, b.max_outbound) == (b.uri, 1000.0, 2, 2)
    assert (b.migration_address, b.ssh, b.labels, b.migrate_uri, b.ssh_target) == (None, None, (), None, None)


def test_built_in_defaults_without_a_defaults_table() -> None:
    host = parse_inventory(one_host('uri = "qemu:///system"'), SRC).get("h1")
    assert (host.max_inbound, host.max_outbound, host.link_mib_s) == (1, 1, 112.0)


def test_zero_slots_mean_the_host_takes_no_migrations_in_that_direction() -> None:
    host = parse_inventory(one_host(LOCAL + "max_inbound = 0"), SRC).get("h1")
    assert host.max_inbound == 0


def test_example_file_loads_and_shows_every_transport() -> None:
    inv = load_inventory(REPO / "deploy" / "hosts.example.toml")
    assert len(inv) >= 3
    schemes = {h.uri.split("://")[0] for h in inv}
    assert {"qemu+ssh", "qemu+tls"} <= schemes
    kvm3 = inv.get("kvm3")
    assert kvm3.ssh_target == SshTarget(user="migrate-bot", host="kvm3.mgmt.example.com", port=2222)
    assert kvm3.migrate_uri == "tcp://10.40.0.13"
    assert (kvm3.max_inbound, kvm3.max_outbound) == (1, 1)
    assert inv.get("kvm4").migrate_uri == "tcp://[2001:db8:40::14]"


def test_lookup_ignores_case_and_unknown_hosts_get_the_known_names_and_a_suggestion() -> None:
    inv = parse_inventory(LAB, SRC)
    assert inv.get("HOSTA").name == "hostA"
    assert "hostb" in inv and "hostC" not in inv and 42 not in inv
    assert inv.find("nope") is None
    with pytest.raises(InventoryError) as info:
        inv.get("hostC")
    assert info.value.message == "unknown host 'hostC'; known: hostA, hostB"
    assert "did you mean 'host" in info.value.hint
    with pytest.raises(InventoryError) as info:
        inv.get("zzz")
    assert SRC in info.value.hint


@pytest.mark.parametrize(
    ("address", "migrate_uri"),
    [("10.0.0.1", "tcp://10.0.0.1"), ("mig.example.com", "tcp://mig.example.com"),
     ("fd00::1", "tcp://[fd00::1]"), ("[fd00::2]", "tcp://[fd00::2]")],
)  # fmt: skip
def test_migration_address_becomes_migrate_uri(address: str, migrate_uri: str) -> None:
    host = parse_inventory(one_host(f'uri = "qemu:///system"\nmigration_address = "{address}"'), SRC).get("h1")
    assert host.migrate_uri == migrate_uri


@pytest.mark.parametrize(
    ("ssh", "target"),
    [
        ("root@10.0.0.1", SshTarget("root", "10.0.0.1", None)),
        ("kvm1.example.com", SshTarget(None, "kvm1.example.com", None)),
        ("admin@[fd00::1]:2222", SshTarget("admin", "fd00::1", 2222)),
        ("kvm1:22", SshTarget(None, "kvm1", 22)),
    ],
)
def test_ssh_targets_are_parsed(ssh: str, target: SshTarget) -> None:
    host = parse_inventory(one_host(f'uri = "qemu:///system"\nssh = "{ssh}"'), SRC).get("h1")
    assert host.ssh_target == target


@pytest.mark.parametrize(
    "uri",
    [
        "qemu:///system",
        "qemu+ssh://kvm1/system",
        "qemu+ssh://root@kvm1.example.com:2222/system?keyfile=/etc/migrate-bot/id&no_tty=1",
        "qemu+tls://kvm1.example.com/system?pkipath=/etc/pki/mb",
        "qemu+tcp://10.213.7.2:16509/system",
        "qemu+tcp://[fd00::5]:16509/system",
        "qemu+unix:///system?socket=/var/tmp/lab/A/run/libvirt-sock",
    ],
)
def test_supported_uris_are_accepted(uri: str) -> None:
    assert parse_inventory(one_host(f'uri = "{uri}"'), SRC).get("h1").uri == uri


# (file text, fragment of the message, fragment of the hint). Every message must also name the file.
ERRORS: list[tuple[str, str, str]] = [
    # file-level
    ("", "no hosts defined", "[hosts.<name>]"),
    ("[defaults]\nmax_inbound = 2\n", "no hosts defined", "hosts.example.toml"),
    ("hosts = 3\n", "no hosts defined", "uri"),
    ("[host.h1]\nuri = 'qemu:///system'\n", "the top level: unknown field 'host'", "did you mean 'hosts'?"),
    ("defaults = 1\n" + one_host('uri = "qemu:///system"'), "'defaults' must be a table", "[defaults]"),
    ("[defaults]\nmax_inboud = 2\n", "[defaults]: unknown field 'max_inboud'", "did you mean 'max_inbound'?"),
    ("[defaults]\nuri = 'x'\n", "[defaults]: unknown field 'uri'", "allowed here: link_mib_s"),
    ("[defaults]\nlink_mib_s = 0\n", "[defaults]: field 'link_mib_s': 0 is out of range", "1 to 100000"),
    # TOML syntax, with the line number
    ("[hosts.h1]\nuri = qemu:///system\n", "TOML syntax error at line 2, column 7: Invalid value", "format"),
    ("[hosts.h1]\nuri = 'a'\n[hosts.h1]\nuri = 'b'\n", "TOML syntax error at line 3", "defined twice"),
    ('[hosts.h1]\nuri = "qemu:///system\n', "TOML syntax error at line 2", "fix the TOML"),
    ('[hosts.h1]\nuri = """x', "TOML syntax error at the end of the file (line 2)", "fix the TOML"),
    # host names and tables
    (one_host('uri = "qemu:///system"', name='"bad name"'), "host 'bad name': invalid host name", "1 to 64"),
    (one_host('uri = "qemu:///system"', name='"-x"'), "host '-x': invalid host name", "starting with"),
    ("[hosts]\nh1 = 'qemu:///system'\n", "host 'h1': must be a table, not a str", "[hosts.h1]"),
    (
        one_host('uri = "qemu+tcp://a/system"', "kvm1") + one_host('uri = "qemu+tcp://b/system"', "KVM1"),
        "hosts 'kvm1' and 'KVM1' differ only in case",
        "rename or remove one",
    ),
    (
        one_host('uri = "qemu:///system"', "a") + one_host('uri = "qemu:///system"', "b"),
        "hosts 'a' and 'b' have the same uri qemu:///system",
        "its own host",
    ),
    # fields
    (one_host('url = "qemu:///system"'), "host 'h1': unknown field 'url'", "did you mean 'uri'?"),
    (one_host(LOCAL + 'migration_adress = "10.0.0.1"'), "unknown field 'migration_adress'",
     "did you mean 'migration_address'?"),
    (one_host(LOCAL + 'label = ["x"]'), "unknown field 'label'", "did you mean 'labels'?"),
    (one_host('ssh = "root@h"'), "host 'h1': field 'uri' is missing", "qemu+ssh://"),
    # URIs
    (one_host("uri = 42"), "field 'uri': must be a non-empty string", "qemu+ssh://"),
    (one_host('uri = ""'), "field 'uri': must be a non-empty string", "qemu+tls://"),
    (one_host('uri = "xen:///system"'), "field 'uri': unsupported URI 'xen:///system'", "qemu+tls://"),
    (one_host('uri = "qemu+libssh2://h/system"'), "unsupported URI", "qemu+ssh://"),
    (one_host('uri = "qemu:/system"'), "unsupported URI", "qemu:///system"),
    (one_host('uri = "http://h/system"'), "unsupported URI", "qemu+unix://"),
    (one_host('uri = "qemu://kvm1/system"'), "would silently use TLS", "qemu+tls://kvm1/system"),
    (one_host('uri = "qemu:///session"'), "does not end in /system", "session"),
    (one_host('uri = "qemu+ssh://kvm1/"'), "does not end in /system", "system VMs"),
    (one_host('uri = "qemu+ssh://kvm1/system#x"'), "contains '#'", "letters, digits"),
    (one_host('uri = "qemu+ssh:///system"'), "needs a valid host name or address", "qemu+ssh://root@"),
    (one_host('uri = "qemu+tls://-bad-/system"'), "needs a valid host name or address", "qemu+tls://"),
    (one_host('uri = "qemu+tcp://kvm1:99999/system"'), "malformed URI", "qemu+ssh://"),
    (one_host('uri = "qemu+tcp://kvm1:0/system"'), "has port 0", "16509"),
    (one_host('uri = "qemu+ssh://Root.X@kvm1/system"'), "invalid user name 'Root.X'", "root@"),
    (one_host('uri = "qemu+ssh://root:secret@kvm1/system"'), "contains a password", "ssh keys"),
    (one_host('uri = "qemu+unix://kvm1/system"'), "must not name a host", "?socket="),
    (one_host('uri = "qemu+ssh://kvm1/system?keyfil=/k"'), "unknown parameter 'keyfil'", "mean 'keyfile'?"),
    (one_host('uri = "qemu+ssh://kvm1/system?x=1"'), "unknown parameter 'x'", "libvirt knows: socket"),
    (one_host('uri = "qemu+ssh://kvm1/system?keyfile"'), "malformed query", "key=value"),
    (one_host('uri = "qemu+ssh://kvm1/system?keyfile=a=b"'), "unsafe value 'a=b'", "plain path"),
    (one_host('uri = "qemu+ssh://kvm1/system;reboot"'), "contains ';'", "letters, digits"),
    (one_host('uri = "qemu+ssh://kvm1/system?keyfile=$(id)"'), "contains '$()'", "letters, digits"),
    (one_host('uri = "qemu+ssh://kvm 1/system"'), "contains ' '", "letters, digits"),
    (one_host('uri = "qemu+ssh://kvm1/system?command=`id`"'), "contains '`'", "letters, digits"),
    (one_host('uri = "qemu+ssh://kvm1/system|x"'), "contains '|'", "letters, digits"),
    (one_host(LOCAL + 'peer_uri = "qemu+rdma://x/system"'), "field 'peer_uri': unsupported",
     "qemu+tcp://"),
    # addresses and ssh
    (one_host(LOCAL + 'migration_address = "tcp://10.0.0.1"'), "field 'migration_address'",
     "give just the address"),
    (one_host(LOCAL + 'migration_address = "10.0.0.1;x"'), "not a hostname or an IP", "10.0.0.1"),
    (one_host(LOCAL + 'migration_address = 10'), "field 'migration_address': must be a string",
     "the bot builds tcp://"),
    (one_host(LOCAL + 'ssh = 22'), "field 'ssh': must be a string", "quote it"),
    (one_host(LOCAL + 'ssh = "root@"'), "field 'ssh'", "root@10.0.0.1"),
    (one_host(LOCAL + 'ssh = "a@b@c"'), "field 'ssh'", "root@10.0.0.1"),
    (one_host(LOCAL + 'ssh = "Bad User@h"'), "invalid user name", "root@10.0.0.1"),
    (one_host(LOCAL + 'ssh = "root@h:70000"'), "outside 1..65535", "2222"),
    (one_host(LOCAL + 'ssh = "root@h;id"'), "invalid host", "kvm1.example.com"),
    # numbers
    (one_host(LOCAL + 'link_mib_s = "1000"'), "field 'link_mib_s': must be a number",
     "without quotes"),
    (one_host(LOCAL + 'link_mib_s = -5'), "field 'link_mib_s': -5 is out of range", "1 to 100000"),
    (one_host(LOCAL + 'link_mib_s = 1e9'), "out of range", "800 Gbit/s"),
    (one_host(LOCAL + 'link_mib_s = true'), "must be a number", "MiB/s"),
    (one_host(LOCAL + 'max_inbound = 2.5'), "field 'max_inbound': must be a whole number",
     "0 (none) to 64"),
    (one_host(LOCAL + 'max_outbound = 65'), "field 'max_outbound': 65 is out of range", "to 64"),
    (one_host(LOCAL + 'max_outbound = -1'), "out of range", "0 (none) to 64"),
    (one_host(LOCAL + 'max_inbound = false'), "must be a whole number", "without quotes"),
    # labels
    (one_host(LOCAL + 'labels = "prod"'), "field 'labels': must be a list of strings",
     'labels = ["prod"'),
    (one_host(LOCAL + 'labels = [1]'), "must be a list of strings", "labels ="),
    (one_host(LOCAL + 'labels = ["a b"]'), "label 'a b' is not valid", "1 to 64"),
    (one_host(LOCAL + 'labels = ["a", "a"]'), "lists a label twice", "duplicate"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message", "hint"), ERRORS)
def test_every_mistake_is_named_by_file_host_and_field(text: str, message: str, hint: str) -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, SRC)
    assert info.value.message.startswith(SRC + ":")
    assert message in info.value.message
    assert hint in info.value.hint


def test_missing_file_points_to_the_example_and_the_environment_variable(tmp_path: Path) -> None:
    missing = tmp_path / "hosts.toml"
    with pytest.raises(InventoryError) as info:
        load_inventory(missing)
    assert info.value.message == f"hosts file {missing} does not exist"
    assert "deploy/hosts.example.toml" in info.value.hint and "MIGRATE_BOT_HOSTS" in info.value.hint


def test_a_directory_is_not_a_hosts_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path)
    assert "is a directory" in info.value.message and "MIGRATE_BOT_HOSTS" in info.value.hint


def test_non_utf8_file_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "hosts.toml"
    path.write_bytes(b'[hosts.h1]\nuri = "qemu:///system"\n# caf\xe9\n')
    with pytest.raises(InventoryError) as info:
        load_inventory(str(path))
    assert "is not UTF-8" in info.value.message and "save it as UTF-8" in info.value.hint


def test_errors_in_a_loaded_file_name_its_path(tmp_path: Path) -> None:
    path = tmp_path / "hosts.toml"
    path.write_text('[hosts.hostA]\nuri = "qemu+ssh://kvm1/system"\nmax_inbound = 100\n')
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert info.value.message == f"{path}: host 'hostA': field 'max_inbound': 100 is out of range"


def test_inventory_is_immutable_and_iterates_in_file_order() -> None:
    inv = parse_inventory(LAB, SRC)
    assert isinstance(inv, Inventory)
    assert [h.name for h in inv] == ["hostA", "hostB"]
    with pytest.raises(AttributeError):
        inv.path = "x"  # type: ignore[misc]
    assert hash(inv) == hash(parse_inventory(LAB, SRC))


# ----- memory reserve and anti-affinity groups (issue 11) ------------------------------------------------


def test_memory_reserve_per_host_and_in_defaults_and_anti_affinity_groups() -> None:
    text = (
        "[defaults]\nmemory_reserve_mib = 2048\n"
        + one_host(LOCAL + "memory_reserve_mib = 512", "a")
        + one_host('uri = "qemu+tcp://b/system"', "b")
        + '[anti_affinity]\ngroups = { db = ["db1", "db2"], web = ["web1", "web2", "db1"] }\n'
    )
    inv = parse_inventory(text, SRC)
    assert (inv.get("a").memory_reserve_mib, inv.get("b").memory_reserve_mib) == (512, 2048)
    assert inv.get("a").memory_reserve_bytes == 512 * 2**20
    assert inv.anti_affinity == (("db", ("db1", "db2")), ("web", ("web1", "web2", "db1")))
    assert inv.groups_of("db1") == ("db", "web") and inv.groups_of("vm42") == ()
    assert parse_inventory(one_host(LOCAL), SRC).get("h1").memory_reserve_mib == 0


RESERVE_AND_GROUP_ERRORS: list[tuple[str, str, str]] = [
    (one_host(LOCAL + "memory_reserve_mib = -1"), "host 'h1': field 'memory_reserve_mib': -1 is out of range",
     "4096 for 4 GiB"),
    (one_host(LOCAL + 'memory_reserve_mib = "4G"'), "field 'memory_reserve_mib': must be a whole number",
     "without quotes"),
    (one_host(LOCAL + "memory_reserve_mib = 1.5"), "must be a whole number", "MiB"),
    ("[defaults]\nmemory_reserve_mb = 1\n" + one_host(LOCAL), "[defaults]: unknown field 'memory_reserve_mb'",
     "did you mean 'memory_reserve_mib'?"),
    ("anti_affinity = 3\n" + one_host(LOCAL), "'anti_affinity' must be a table", "[anti_affinity]"),
    (one_host(LOCAL) + "[anti_affinity]\ngroup = {}\n", "[anti_affinity]: unknown field 'group'",
     "did you mean 'groups'?"),
    (one_host(LOCAL) + '[anti_affinity]\ngroups = ["db1"]\n', "[anti_affinity]: field 'groups': must be a table",
     "groups = { db ="),
    (one_host(LOCAL) + '[anti_affinity]\ngroups = { db = "db1" }\n', "[anti_affinity]: group 'db': must be a list",
     "groups = { db ="),
    (one_host(LOCAL) + '[anti_affinity]\ngroups = { db = ["db1"] }\n', "group 'db': has 1 VM", "add the VMs"),
    (one_host(LOCAL) + '[anti_affinity]\ngroups = { db = ["db1", "db1"] }\n', "group 'db': lists a VM twice",
     "duplicate"),
    (one_host(LOCAL) + '[anti_affinity]\ngroups = { db = ["db1", "a b"] }\n', "VM name 'a b' is not valid",
     "1 to 64"),
    (one_host(LOCAL) + '[anti_affinity]\ngroups = { "-x" = ["a", "b"] }\n', "group '-x': invalid group name",
     "starting with"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message", "hint"), RESERVE_AND_GROUP_ERRORS)
def test_reserve_and_group_mistakes_are_named_by_file_entry_and_field(text: str, message: str, hint: str) -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, SRC)
    assert info.value.message.startswith(SRC + ":")
    assert message in info.value.message
    assert hint in info.value.hint
