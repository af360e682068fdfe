"""The /migrate grammar: every option, every error, phone punctuation, help, and the JSON/text contracts."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migration_core.errors import GrammarError
from migration_core.grammar.help import TOPICS
from migration_core.grammar.parser import (
    CancelCommand,
    CancelDrainCommand,
    Command,
    DrainCommand,
    DrainStatusCommand,
    HelpCommand,
    HistoryCommand,
    HostsCommand,
    MigrateCommand,
    PlaceCommand,
    ReturnCommand,
    StatusCommand,
    command_from_json,
    command_to_json,
    command_to_text,
    error_to_json,
    help_text,
    parse_command,
)
from migration_core.grammar.spec import OPTIONS
from migration_core.models import CopyStorage, MigrationMode, MigrationOptions, MigrationRequest

MIGRATE_KEYS = {
    "command", "vm", "destination", "mode", "persistent", "undefine_source", "keep_source", "postcopy",
    "postcopy_after_s",
    "auto_converge", "parallel_connections", "max_downtime_ms", "bandwidth_mib_s", "copy_storage",
    "compressed", "tls", "timeout_s", "reason", "ticket", "emergency", "not_before", "not_after",
}  # fmt: skip

DEFAULTS: dict[str, Any] = {
    "command": "migrate", "vm": "vm42", "destination": "hostB", "mode": None, "persistent": True,
    "undefine_source": False, "keep_source": False, "postcopy": False, "postcopy_after_s": None, "auto_converge": False,
    "parallel_connections": None, "max_downtime_ms": None, "bandwidth_mib_s": None, "copy_storage": None,
    "compressed": False, "tls": False, "timeout_s": None, "reason": None, "ticket": None, "emergency": False,
    "not_before": None, "not_after": None,
}  # fmt: skip


def as_json(text: str) -> dict[str, Any]:
    return command_to_json(parse_command(text))


# (text after /migrate, the keys that differ from DEFAULTS)
MIGRATE_CASES: list[tuple[str, dict[str, Any]]] = [
    ("vm42 to hostB", {}),
    ("plan vm42 to hostB", {"command": "plan"}),
    ("/migrate vm42 to hostB", {}),
    ("vm42 TO hostB", {}),
    ("vm42 to hostB --live", {"mode": "live"}),
    ("vm42 to hostB --offline", {"mode": "offline"}),
    ("vm42 to hostB --persistent", {}),
    ("vm42 to hostB --transient", {"persistent": False}),
    ("vm42 to hostB --undefine-source", {"undefine_source": True}),
    ("vm42 to hostB --undefinesource", {"undefine_source": True}),
    ("vm42 to hostB --keep-source", {"keep_source": True}),
    ("vm42 to hostB --keepsource", {"keep_source": True}),
    ("disky to hostB --copy-storage all --keep-source", {"vm": "disky", "copy_storage": "all", "keep_source": True}),
    ("vm42 to hostB --offline --undefine-source", {"mode": "offline", "undefine_source": True}),
    ("vm42 to hostB --postcopy", {"postcopy": True}),
    ("vm42 to hostB --postcopy-after 30s", {"postcopy": True, "postcopy_after_s": 30.0}),
    ("vm42 to hostB --postcopy --postcopy-after 2m", {"postcopy": True, "postcopy_after_s": 120.0}),
    ("vm42 to hostB --postcopy-after 45", {"postcopy": True, "postcopy_after_s": 45.0}),
    ("vm42 to hostB --auto-converge", {"auto_converge": True}),
    ("vm42 to hostB --parallel", {"parallel_connections": 2}),
    ("vm42 to hostB --parallel 4", {"parallel_connections": 4}),
    ("vm42 to hostB --parallel=8", {"parallel_connections": 8}),
    ("vm42 to hostB --parallel 255", {"parallel_connections": 255}),
    ("vm42 to hostB --parallel 1", {"parallel_connections": 1}),
    ("vm42 to hostB --parallel --tls", {"parallel_connections": 2, "tls": True}),
    ("--parallel vm42 to hostB", {"parallel_connections": 2}),
    ("vm42 to hostB --parallel-connections 3", {"parallel_connections": 3}),
    ("vm42 to hostB --max-downtime 500", {"max_downtime_ms": 500}),
    ("vm42 to hostB --max-downtime 300ms", {"max_downtime_ms": 300}),
    ("vm42 to hostB --max-downtime 1.5s", {"max_downtime_ms": 1500}),
    ("vm42 to hostB --max-downtime 1s500ms", {"max_downtime_ms": 1500}),
    ("vm42 to hostB --max_downtime=2s", {"max_downtime_ms": 2000}),
    ("vm42 to hostB --bandwidth 500", {"bandwidth_mib_s": 500}),
    ("vm42 to hostB --bandwidth 500M", {"bandwidth_mib_s": 500}),
    ("vm42 to hostB --bandwidth 500MiB", {"bandwidth_mib_s": 500}),
    ("vm42 to hostB --bandwidth 500MiB/s", {"bandwidth_mib_s": 500}),
    ("vm42 to hostB --bandwidth 500m/s", {"bandwidth_mib_s": 500}),
    ("vm42 to hostB --bandwidth 2G", {"bandwidth_mib_s": 2048}),
    ("vm42 to hostB --bandwidth 2GiB/s", {"bandwidth_mib_s": 2048}),
    ("vm42 to hostB --bandwidth 1.5G", {"bandwidth_mib_s": 1536}),
    ("vm42 to hostB --copy-storage all", {"copy_storage": "all"}),
    ("vm42 to hostB --copy-storage inc", {"copy_storage": "inc"}),
    ("vm42 to hostB --copy-storage=INC", {"copy_storage": "inc"}),
    ("vm42 to hostB --copy-storage-all", {"copy_storage": "all"}),
    ("vm42 to hostB --copy-storage-inc", {"copy_storage": "inc"}),
    ("vm42 to hostB --compressed", {"compressed": True}),
    ("vm42 to hostB --tls", {"tls": True}),
    ("vm42 to hostB --offline --tls", {"mode": "offline", "tls": True}),
    ("vm42 to hostB --timeout 300", {"timeout_s": 300.0}),
    ("vm42 to hostB --timeout 5m", {"timeout_s": 300.0}),
    ("vm42 to hostB --timeout 1h30m", {"timeout_s": 5400.0}),
    ("vm42 to hostB --timeout 1m30s", {"timeout_s": 90.0}),
    ("vm42 to hostB --timeout 2hours", {"timeout_s": 7200.0}),
    ("vm42 to hostB --reason CHG-1234", {"reason": "CHG-1234"}),
    ('vm42 to hostB --reason "CHG-1234 kernel update"', {"reason": "CHG-1234 kernel update"}),
    ("vm42 to hostB --reason 'two words'", {"reason": "two words"}),
    ('vm42 to hostB --reason="CHG-1 reboot"', {"reason": "CHG-1 reboot"}),
    ("vm42 to hostB --reason '-- hotfix'", {"reason": "-- hotfix"}),
    ("vm42 to hostB --timeout 5m --timeout 300", {"timeout_s": 300.0}),  # same value twice is fine
    ("vm42 to hostB --live --live", {"mode": "live"}),
    ("vm42 to hostB --POSTCOPY", {"postcopy": True}),
    ("--postcopy vm42 to hostB", {"postcopy": True}),
    ("web-01.prod to kvm_2:a", {"vm": "web-01.prod", "destination": "kvm_2:a"}),
    ("status to hostB", {"vm": "status"}),  # a VM may be named like a command word
    ("plan to hostB", {"vm": "plan"}),
    ("to to hostB", {"vm": "to"}),
    (
        "plan db1 to hostC --live --parallel 4 --bandwidth 2G --max-downtime 500ms --auto-converge "
        "--compressed --tls --postcopy-after 1m --timeout 20m --copy-storage inc --reason 'CHG-9'",
        {
            "command": "plan",
            "vm": "db1",
            "destination": "hostC",
            "mode": "live",
            "parallel_connections": 4,
            "bandwidth_mib_s": 2048,
            "max_downtime_ms": 500,
            "auto_converge": True,
            "compressed": True,
            "tls": True,
            "postcopy": True,
            "postcopy_after_s": 60.0,
            "timeout_s": 1200.0,
            "copy_storage": "inc",
            "reason": "CHG-9",
        },
    ),
]


@pytest.mark.parametrize(("text", "changed"), MIGRATE_CASES)
def test_migrate_options(text: str, changed: dict[str, Any]) -> None:
    assert as_json(text) == {**DEFAULTS, **changed}


# What phones and Macs make of what the operator typed -> what they meant.
PHONE_CASES: list[tuple[str, str]] = [
    ("vm42 to hostB —postcopy", "vm42 to hostB --postcopy"),  # em dash
    ("vm42 to hostB –postcopy", "vm42 to hostB --postcopy"),  # en dash
    ("vm42 to hostB — postcopy", "vm42 to hostB --postcopy"),  # lone em dash, then a space
    ("vm42 to hostB – tls —auto-converge", "vm42 to hostB --tls --auto-converge"),
    ("vm42 to hostB —-postcopy", "vm42 to hostB --postcopy"),
    ("vm42 to hostB -postcopy", "vm42 to hostB --postcopy"),
    ("vm42 to hostB \u2212\u2212tls", "vm42 to hostB --tls"),  # minus signs
    ("vm42 to hostB —max-downtime 500", "vm42 to hostB --max-downtime 500"),
    ("vm42 to hostB —reason “CHG-1234 kernel update”", 'vm42 to hostB --reason "CHG-1234 kernel update"'),
    ("vm42 to hostB —reason ‘CHG-1234 kernel’", "vm42 to hostB --reason 'CHG-1234 kernel'"),
    ("vm42 to hostB —reason “don’t reboot”", "vm42 to hostB --reason 'don’t reboot'"),
    ("vm42 to hostB --reason „CHG 1“", 'vm42 to hostB --reason "CHG 1"'),
    ("vm42\u00a0to\u00a0\u00a0hostB", "vm42 to hostB"),  # non-breaking spaces
    ("  vm42   to\thostB\n --tls  ", "vm42 to hostB --tls"),
    ("vm42\u202fto\u3000hostB", "vm42 to hostB"),  # narrow NBSP, ideographic space
    ("vm\u200b42 to host\u200dB", "vm42 to hostB"),  # zero-width characters are invisible: dropped
    ("ｖｍ４２ ｔｏ ｈｏｓｔＢ －－ｔｌｓ", "vm42 to hostB --tls"),  # full-width (phone IMEs)
    ("Status #41", "status 41"),  # phones capitalise the first word
    ("HELP", "help"),
]


@pytest.mark.parametrize(("typed", "meant"), PHONE_CASES)
def test_phone_and_mac_punctuation(typed: str, meant: str) -> None:
    assert parse_command(typed) == parse_command(meant)


# (text, the command it means)
OTHER_CASES: list[tuple[str, Command]] = [
    ("", HelpCommand(None)),
    ("   ", HelpCommand(None)),
    ("/migrate", HelpCommand(None)),
    ("help", HelpCommand(None)),
    ("?", HelpCommand(None)),
    ("help options", HelpCommand("options")),
    ("help --postcopy", HelpCommand("postcopy")),
    ("help —max_downtime", HelpCommand("max-downtime")),
    ("help Examples", HelpCommand("examples")),
    ("help status", HelpCommand("status")),
    ("help undefinesource", HelpCommand("undefine-source")),
    ("status", StatusCommand(None)),
    ("status 41", StatusCommand(41)),
    ("status #41", StatusCommand(41)),
    ("status vm42", StatusCommand("vm42")),
    ("cancel 41", CancelCommand(41)),
    ("cancel #7", CancelCommand(7)),
    ("history", HistoryCommand(None, 20)),
    ("history vm42", HistoryCommand("vm42", 20)),
    ("history hostB --limit 50", HistoryCommand("hostB", 50)),
    ("history --limit=500", HistoryCommand(None, 500)),
    ("history —limit 1", HistoryCommand(None, 1)),
    ("hosts", HostsCommand()),
    ("HOSTS", HostsCommand()),
]


@pytest.mark.parametrize(("text", "expected"), OTHER_CASES)
def test_other_commands(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


JSON_CASES: list[tuple[str, dict[str, Any]]] = [
    ("status #41", {"command": "status", "target": 41}),
    ("status vm42", {"command": "status", "target": "vm42"}),
    ("status", {"command": "status", "target": None}),
    ("cancel 41", {"command": "cancel", "job_id": 41}),
    ("history hostB --limit 5", {"command": "history", "subject": "hostB", "limit": 5}),
    ("hosts", {"command": "hosts"}),
    ("help options", {"command": "help", "topic": "options"}),
    ("", {"command": "help", "topic": None}),
]


@pytest.mark.parametrize(("text", "expected"), JSON_CASES)
def test_json_of_other_commands(text: str, expected: dict[str, Any]) -> None:
    assert as_json(text) == expected


def test_migrate_json_has_exactly_the_contract_keys_and_is_json() -> None:
    data = as_json("vm42 to hostB --postcopy-after 30s --copy-storage all --reason x")
    assert set(data) == MIGRATE_KEYS
    assert json.loads(json.dumps(data)) == data


# (text, a fragment of the message, a fragment of the hint)
ERROR_CASES: list[tuple[str, str, str]] = [
    # unknown options and words
    ("vm42 to hostB --postcopyy", "unknown option `--postcopyy`", "did you mean `--postcopy`?"),
    ("vm42 to hostB --autoconverge-x", "unknown option", "--auto-converge"),
    ("vm42 to hostB --bandwith 5", "unknown option", "did you mean `--bandwidth`?"),
    ("vm42 to hostB --zzzz", "unknown option `--zzzz`", "help options"),
    ("vm42 to hostB —postcopyy", "unknown option `—postcopyy`", "--postcopy"),
    ("vm42 to hostB --p2p", "does not take virsh's --p2p", "connection mode"),
    ("vm42 to hostB --timeout-postcopy", "virsh's --timeout-postcopy", "--postcopy-after"),
    ("stauts", "unknown command `stauts`", "/migrate status"),
    ("hsitory vm42", "unknown command `hsitory`", "/migrate history"),
    ("hots", "unknown command `hots`", "/migrate hosts"),
    # the shape <vm> to <host>
    ("vm42 hostB", "missing the word `to`", "/migrate vm42 to hostB"),
    ("vm42 to", "missing the destination host", "vm42 to hostB"),
    ("to hostB", "missing the VM name", "vm42 to hostB"),
    ("plan", "missing the VM and the destination host", "plan vm42 to hostB"),
    ("--postcopy", "missing the VM and the destination", "vm42 to hostB"),
    ("vm42 to hostB hostC", "unexpected extra words: `hostC`", "options start with --"),
    ("vm42 vm43 to hostB", "one VM per request", "one /migrate per VM"),
    ("vm42 to hostB --reason patch tuesday", "unexpected extra words: `tuesday`", '--reason "patch tuesday"'),
    ("a b c d", "could not read", "vm42 to hostB"),
    # names
    ("vm/42 to hostB", "`vm/42` is not a valid VM name", "1 to 64 characters"),
    ("vm42 to host;B", "`host;B` is not a valid host name", "starting with a letter or a digit"),
    ("vm42 to .hostB", "not a valid host name", "starting with a letter"),
    ("v" * 65 + " to hostB", "not a valid VM name", "1 to 64"),
    ("vm42 to $(reboot)", "not a valid host name", "A-Z"),
    # values
    ("vm42 to hostB --timeout", "--timeout needs a value", "--timeout 20m"),
    ("vm42 to hostB --timeout --postcopy", "--timeout needs a value", "--timeout 20m"),
    ("vm42 to hostB --reason", "--reason needs a value", "--reason"),
    ("vm42 to hostB --reason --tls", "--reason needs a value", "--reason"),
    ("vm42 to hostB --reason ''", "--reason is empty", "--reason"),
    ("vm42 to hostB --reason '" + "x" * 501 + "'", "--reason is too long", "500"),
    ("vm42 to hostB --timeout soon", "bad duration `soon` for --timeout", "1h30m"),
    ("vm42 to hostB --timeout 5x", "bad duration", "30s"),
    ("vm42 to hostB --timeout 30m1h", "units must go from largest to smallest", "1h30m"),
    ("vm42 to hostB --timeout 1h1h", "largest to smallest", "1h30m"),
    ("vm42 to hostB --timeout 0", "--timeout 0 is too short", "1 s to 24 h"),
    ("vm42 to hostB --timeout 300ms", "too short", "1 s to 24 h"),
    ("vm42 to hostB --timeout -5", "--timeout must be positive", "30s"),
    ("vm42 to hostB --timeout —5m", "must be positive", "30s"),
    ("vm42 to hostB --timeout 25h", "--timeout 25h is too long", "24 h"),
    ("vm42 to hostB --postcopy-after 0s", "--postcopy-after 0s is too short", "1 s"),
    ("vm42 to hostB --max-downtime 0", "--max-downtime 0 is too short", "1 ms to 60 s"),
    ("vm42 to hostB --max-downtime 0.4ms", "too short", "1 ms"),
    ("vm42 to hostB --max-downtime 2m", "--max-downtime 2m is too long", "60 s"),
    ("vm42 to hostB --max-downtime 99999", "too long", "60 s"),
    ("vm42 to hostB --max-downtime fast", "bad duration", "a bare number is milliseconds"),
    ("vm42 to hostB --bandwidth 0", "--bandwidth 0 is out of range", "1 MiB/s"),
    ("vm42 to hostB --bandwidth 0.2M", "out of range", "1 MiB/s"),
    ("vm42 to hostB --bandwidth -5", "--bandwidth must be positive", "500M"),
    ("vm42 to hostB --bandwidth 200G", "out of range", "100 GiB/s"),
    ("vm42 to hostB --bandwidth 10Gb", "unknown rate unit `gb`", "10 Gbit/s is about 1192M"),
    ("vm42 to hostB --bandwidth 100MB/s", "unknown rate unit `mb`", "bytes per second"),
    ("vm42 to hostB --bandwidth 5K", "unknown rate unit `k`", "MiB/s"),
    ("vm42 to hostB --bandwidth lots", "bad rate `lots`", "2GiB/s"),
    ("vm42 to hostB --parallel 0", "--parallel 0 is out of range", "1 to 255"),
    ("vm42 to hostB --parallel 256", "out of range", "1 to 255"),
    ("vm42 to hostB --parallel -2", "cannot be negative", "1 to 255"),
    ("vm42 to hostB --parallel=x", "--parallel needs a whole number", "1 to 255"),
    ("vm42 to hostB --copy-storage", "--copy-storage needs a value", "--copy-storage all"),
    ("vm42 to hostB --copy-storage full", "takes `all` or `inc`", "top image"),
    ("vm42 to hostB --postcopy=yes", "--postcopy takes no value", "--postcopy"),
    ("vm42 to hostB --copy-storage-all=1", "takes no value", "--copy-storage-all"),
    ("vm42 to hostB --timeout 5m --timeout 10m", "--timeout 5m and --timeout 10m", "give it once"),
    ("vm42 to hostB --reason a --reason b", "two different values", "give it once"),
    ("vm42 to hostB --copy-storage all --copy-storage-inc", "two different values", "give it once"),
    # quoting and stray punctuation
    ('vm42 to hostB --reason "CHG-1234', "unterminated quote", '--reason "CHG-1234 kernel update"'),
    ("vm42 to hostB --reason “CHG-1234", "unterminated quote", "close the quote"),
    ("vm42 to hostB --reason 'x", "unterminated quote", "close the quote"),
    ("vm42 to hostB \\", "backslash", "remove"),
    ("vm42 to hostB —", "stray `—`", "--postcopy"),
    ("vm42 to hostB -- 5", "stray `--`", "--name"),
    ("x" * 4001, "too long", "one line"),
    # conflicts
    ("vm42 to hostB --live --offline", "--live and --offline contradict each other", "shut-off VM offline"),
    ("vm42 to hostB --persistent --transient", "contradict each other", "--persistent (the default)"),
    ("vm42 to hostB --transient --undefine-source", "would leave the VM defined nowhere", "drop --transient"),
    ("vm42 to hostB --keep-source --undefine-source", "--keep-source contradicts --undefine-source", "drop"),
    ("vm42 to hostB --transient --keep-source", "--keep-source with --transient does nothing", "drop --keep-source"),
    (
        "vm42 to hostB --offline --transient",
        "--offline cannot be combined with --transient",
        "drop --transient",
    ),
    ("vm42 to hostB --offline --postcopy", "--offline cannot be combined with --postcopy", "live migration"),
    ("vm42 to hostB --offline --postcopy-after 30s", "with --postcopy-after", "live-only"),
    ("vm42 to hostB --offline --auto-converge", "with --auto-converge", "live-only"),
    ("vm42 to hostB --offline --parallel", "with --parallel", "live-only"),
    ("vm42 to hostB --offline --max-downtime 500", "with --max-downtime", "live-only"),
    ("vm42 to hostB --offline --bandwidth 100", "with --bandwidth", "live-only"),
    ("vm42 to hostB --offline --copy-storage all", "with --copy-storage", "live-only"),
    ("vm42 to hostB --offline --copy-storage-inc", "with --copy-storage", "live-only"),
    ("vm42 to hostB --offline --compressed", "with --compressed", "live-only"),
    ("vm42 to hostB --compressed --bandwidth 9 --offline", "with --compressed, --bandwidth", "live-only"),
    (
        "vm42 to hostB --postcopy-after 10m --timeout 5m",
        "not shorter than --timeout",
        "shorter than --timeout",
    ),
    # options on commands that do not take them
    ("status 41 --postcopy", "--postcopy does not apply to `status`", "help status"),
    ("hosts --tls", "does not apply to `hosts`", "help hosts"),
    ("history --postcopy", "does not apply to `history`", "only --limit"),
    ("vm42 to hostB --limit 5", "--limit applies only to `history`", "history vm42 --limit 50"),
    ("cancel 41 --reason x", "does not apply to `cancel`", "help cancel"),
    # other commands' arguments
    ("status 41 42", "unexpected extra words: `42`", "status #41"),
    ("status #abc", "`#abc` is not a job id", "like #41"),
    ("status #0", "`#0` is not a job id", "start at 1"),
    ("status bad/name", "not a valid VM name", "1 to 64"),
    ("cancel", "cancel needs a job id", "/migrate cancel 41"),
    ("cancel vm42", "cancel takes a job id, not `vm42`", "/migrate status vm42"),
    ("cancel 41 42", "unexpected extra words", "cancel 41"),
    ("history a b", "unexpected extra words: `b`", "history vm42"),
    ("history --limit 0", "--limit 0 is out of range", "1 to 500"),
    ("history --limit 501", "out of range", "1 to 500"),
    ("history --limit", "--limit needs a value", "--limit 50"),
    ("hosts extra", "unexpected extra words: `extra`", "/migrate hosts"),
    ("help a b", "help takes one topic", "options"),
    ("help optoins", "no help topic `optoins`", "help options"),
    ("help zzzz", "no help topic", "commands"),
]


@pytest.mark.parametrize(("text", "message", "hint"), ERROR_CASES)
def test_errors_say_what_is_wrong_and_what_to_do(text: str, message: str, hint: str) -> None:
    with pytest.raises(GrammarError) as info:
        parse_command(text)
    assert message in info.value.message
    assert hint in info.value.hint
    assert error_to_json(info.value) == {"error": info.value.message, "hint": info.value.hint}


# ----- help -----------------------------------------------------------------------------------------------


def test_overview_help_lists_every_command() -> None:
    text = help_text(None)
    for usage in ("<vm> to <host>", "plan <vm>", "status", "cancel <job-id>", "history", "hosts", "help"):
        assert usage in text


def test_options_help_lists_every_option_and_the_live_only_marker() -> None:
    text = help_text("options")
    for spec in OPTIONS:
        if not spec.history_only and not spec.drain_only:
            assert f"--{spec.name}" in text
    assert "--postcopy" in text and "[live]" in text


@pytest.mark.parametrize("topic", TOPICS)
def test_every_topic_has_its_own_help(topic: str) -> None:
    text = help_text(topic)
    assert text and not text.startswith("No help")


@pytest.mark.parametrize(
    ("topic", "fragment"),
    [
        ("postcopy", "--postcopy"),
        ("--max-downtime", "milliseconds"),
        ("examples", "/migrate vm42 to hostB --postcopy"),
        ("durations", "1h30m"),
        ("names", "1 to 64 characters"),
        ("cancel", "/migrate cancel 41"),
        ("bandwidth", "Live migrations only"),
    ],
)
def test_help_topics_say_the_useful_thing(topic: str, fragment: str) -> None:
    assert fragment in help_text(topic)


def test_unknown_help_topic_falls_back_to_the_overview() -> None:
    text = help_text("nonsense")
    assert text.startswith("No help on `nonsense`") and "<vm> to <host>" in text


def test_every_example_in_the_help_parses() -> None:
    lines = [ln.strip() for ln in help_text("examples").splitlines() if ln.startswith("/migrate")]
    commands = [part.strip() for ln in lines for part in ln.split("  ") if part.strip()]
    assert len(commands) >= 8
    for command in commands:
        parse_command(command)


# ----- text and JSON round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [t for t, _ in MIGRATE_CASES] + [t for t, _ in OTHER_CASES])
def test_canonical_text_reads_back_as_the_same_command(text: str) -> None:
    cmd = parse_command(text)
    assert parse_command(command_to_text(cmd)) == cmd
    assert command_from_json(command_to_json(cmd)) == cmd


def test_canonical_text_is_readable() -> None:
    cmd = parse_command("plan vm42 to hostB --timeout 5400 --max-downtime 1.5s --bandwidth 2048 --reason 'a b'")
    assert (
        command_to_text(cmd)
        == "plan vm42 to hostB --max-downtime 1s500ms --bandwidth 2G --timeout 1h30m --reason 'a b'"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"command": "reboot"}, "unknown command 'reboot'"),
        ({"command": "status"}, "malformed status"),
        ({"command": "hosts", "extra": 1}, "has keys"),
        ({**DEFAULTS, "vm": 42}, "malformed migrate"),
        ({**DEFAULTS, "persistent": None}, "malformed migrate"),
        ({**DEFAULTS, "parallel_connections": True}, "malformed migrate"),
        ({**DEFAULTS, "mode": "sideways"}, "malformed migrate"),
        ({**DEFAULTS, "parallel_connections": 0}, "not valid"),
        ({**DEFAULTS, "mode": "offline", "postcopy": True}, "not valid"),
        ({**DEFAULTS, "vm": "bad name"}, "not valid"),
        ({k: v for k, v in DEFAULTS.items() if k != "tls"}, "malformed migrate"),
        ({"command": "cancel", "job_id": 0}, "not valid"),
    ],
)
def test_command_from_json_rejects_what_the_grammar_would_reject(data: dict[str, Any], message: str) -> None:
    with pytest.raises(GrammarError) as info:
        command_from_json(data)
    assert message in info.value.message


# ----- properties ----------------------------------------------------------------------------------------


@settings(max_examples=400)
@given(st.text(alphabet=st.characters(codec=None), max_size=200))
def test_any_unicode_text_gives_a_command_or_a_grammar_error(text: str) -> None:
    try:
        cmd = parse_command(text)
    except GrammarError as err:
        assert err.message and err.hint
        return
    json.dumps(command_to_json(cmd))


_WORDS = [
    "vm42", "to", "TO", "hostB", "plan", "status", "cancel", "history", "hosts", "help", "#41", "41", "-3",
    "--postcopy", "—postcopy", "–", "—", "--", "--live", "--offline", "--transient", "--undefine-source",
    "--postcopy-after", "30s", "1h30m", "--auto-converge", "--parallel", "4", "--max-downtime", "500",
    "--bandwidth", "2G", "10Gb", "--copy-storage", "all", "inc", "--compressed", "--tls", "--timeout", "5m",
    "--reason", "“CHG 1”", "‘x’", "don’t", '"a b"', "'c d'", "--reason=x", "--limit", "--limit=5", "\\",
    '"', "'", "options", "--parallel=2", "=", "#", "é", "\u200b", "--max_downtime=1s",
]  # fmt: skip
_SEPARATORS = [" ", "  ", "\u00a0", "\t", " \u202f"]


@st.composite
def word_soup(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.sampled_from(_WORDS), max_size=10))
    return "".join(w + draw(st.sampled_from(_SEPARATORS)) for w in words)


@settings(max_examples=600)
@given(word_soup())
def test_command_like_text_parses_to_a_stable_command_or_a_grammar_error(text: str) -> None:
    try:
        cmd = parse_command(text)
    except GrammarError as err:
        assert err.message and err.hint
        return
    assert parse_command(command_to_text(cmd)) == cmd
    assert command_from_json(command_to_json(cmd)) == cmd


_RESERVED = {"to", "?", "/migrate", "plan", "status", "cancel", "history", "hosts", "help", "any", "drain", "return"}
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", fullmatch=True).filter(
    lambda n: n.lower() not in _RESERVED
)
reasons = st.text(
    alphabet=st.sampled_from("abcXYZ019 -_.,:;!?#@/()[]{}<>$&*'\"`\\|~^%+=éßø—"), min_size=1, max_size=60
).filter(lambda r: r.strip() == r)
non_numeric_names = names.filter(lambda n: not n.isdigit())
seconds_ms = st.integers(min_value=1000, max_value=86_400_000).map(lambda ms: ms / 1000)


@st.composite
def migrate_commands(draw: st.DrawFn) -> MigrateCommand:
    mode = draw(st.sampled_from([None, MigrationMode.LIVE, MigrationMode.OFFLINE]))
    live = mode is not MigrationMode.OFFLINE
    persistent = True if not live else draw(st.booleans())
    postcopy_after_s = draw(st.none() | seconds_ms) if live else None
    timeout_s = draw(st.none() | seconds_ms)
    if postcopy_after_s is not None and timeout_s is not None and postcopy_after_s >= timeout_s:
        timeout_s = None
    maybe = (lambda s: draw(st.none() | s)) if live else (lambda s: None)
    options = MigrationOptions(
        mode=mode,
        persistent=persistent,
        undefine_source=draw(st.booleans()) if persistent else False,
        postcopy=True if postcopy_after_s is not None else (live and draw(st.booleans())),
        postcopy_after_s=postcopy_after_s,
        auto_converge=live and draw(st.booleans()),
        parallel_connections=maybe(st.integers(1, 255)),
        max_downtime_ms=maybe(st.integers(1, 60_000)),
        bandwidth_mib_s=maybe(st.integers(1, 102_400)),
        copy_storage=maybe(st.sampled_from(list(CopyStorage))),
        compressed=live and draw(st.booleans()),
        tls=draw(st.booleans()),
        timeout_s=timeout_s,
        reason=draw(st.none() | reasons),
    )
    return MigrateCommand(MigrationRequest(draw(names), draw(names), options), draw(st.booleans()))


@settings(max_examples=300)
@given(migrate_commands())
def test_valid_migrate_commands_round_trip_through_text_and_json(cmd: MigrateCommand) -> None:
    assert parse_command(command_to_text(cmd)) == cmd
    data = command_to_json(cmd)
    assert set(data) == MIGRATE_KEYS
    assert command_from_json(json.loads(json.dumps(data))) == cmd


@settings(max_examples=100)
@given(
    st.one_of(
        st.builds(
            StatusCommand,
            st.none()
            | st.integers(1, 10**12)
            | names.filter(lambda n: not n.isdigit() and not re.fullmatch(r"[dD][0-9]+", n)),  # D7 is a drain
        ),
        st.builds(CancelCommand, st.integers(1, 10**12)),
        st.builds(HistoryCommand, st.none() | names, st.integers(1, 500)),
        st.just(HostsCommand()),
        st.builds(HelpCommand, st.none() | st.sampled_from(TOPICS)),
    )
)
def test_other_commands_round_trip_through_text_and_json(cmd: Command) -> None:
    assert parse_command(command_to_text(cmd)) == cmd
    assert command_from_json(json.loads(json.dumps(command_to_json(cmd)))) == cmd


# ----- the drain family (issue 11) ------------------------------------------------------------------------

DRAIN_CASES: list[tuple[str, Command]] = [
    ("vm42 to any", PlaceCommand("vm42")),
    ("vm42 TO ANY", PlaceCommand("vm42")),
    ("vm42", PlaceCommand("vm42")),
    ("plan vm42", PlaceCommand("vm42", plan_only=True)),
    ("plan vm42 to any --postcopy", PlaceCommand("vm42", MigrationOptions(postcopy=True), plan_only=True)),
    ("vm42 --copy-storage all", PlaceCommand("vm42", MigrationOptions(copy_storage=CopyStorage.ALL))),
    ("drain hostA", DrainCommand("hostA")),
    ("plan drain hostA", DrainCommand("hostA", plan_only=True)),
    ("/migrate plan drain hostA --to hostB,hostC", DrainCommand("hostA", ("hostB", "hostC"), plan_only=True)),
    ("drain hostA --except vm1,vm2 --include-stopped", DrainCommand("hostA", (), ("vm1", "vm2"), True)),
    ("drain hostA --to=hostB --postcopy --reason 'CHG-1 patching'",
     DrainCommand("hostA", ("hostB",), options=MigrationOptions(postcopy=True, reason="CHG-1 patching"))),
    ("drain hostA —to hostB", DrainCommand("hostA", ("hostB",))),
    ("plan drain hostA --copy-storage all --max-downtime 500ms",
     DrainCommand("hostA", plan_only=True,
                  options=MigrationOptions(copy_storage=CopyStorage.ALL, max_downtime_ms=500))),
    ("return hostA", ReturnCommand("hostA")),
    ("return hostA --reason done", ReturnCommand("hostA", "done")),
    ("cancel drain 7", CancelDrainCommand(7)),
    ("cancel drain #7", CancelDrainCommand(7)),
    ("cancel D7", CancelDrainCommand(7)),
    ("cancel d12", CancelDrainCommand(12)),
    ("cancel drain D7", CancelDrainCommand(7)),
    ("status D7", DrainStatusCommand(7)),
    ("status d7", DrainStatusCommand(7)),
    # `D7 to hostB` still migrates a VM called D7
    ("status to hostB", MigrateCommand(MigrationRequest("status", "hostB"))),
    ("D7 to hostB", MigrateCommand(MigrationRequest("D7", "hostB"))),
    # a VM may be named like the new words
    ("drain to hostB", MigrateCommand(MigrationRequest("drain", "hostB"))),
    ("plan drain to hostB", MigrateCommand(MigrationRequest("drain", "hostB"), plan_only=True)),
    ("return to hostB", MigrateCommand(MigrationRequest("return", "hostB"))),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), DRAIN_CASES)
def test_drain_family_commands(text: str, expected: Command) -> None:
    cmd = parse_command(text)
    assert cmd == expected
    assert parse_command(command_to_text(cmd)) == cmd
    assert command_from_json(json.loads(json.dumps(command_to_json(cmd)))) == cmd


def test_drain_json_carries_every_migration_option_key() -> None:
    data = as_json("plan drain hostA --to hostB --except vm1 --postcopy")
    assert set(data) == (MIGRATE_KEYS - {"vm", "destination"}) | {"host", "to", "except", "include_stopped"}
    assert data["command"] == "plan drain" and data["to"] == ["hostB"] and data["except"] == ["vm1"]
    place = as_json("vm42 to any")
    assert set(place) == MIGRATE_KEYS and place["destination"] is None
    assert as_json("cancel drain 3") == {"command": "cancel drain", "drain_id": 3}
    assert as_json("cancel D3") == {"command": "cancel drain", "drain_id": 3}
    assert as_json("status D3") == {"command": "status drain", "drain_id": 3}
    assert as_json("return hostA") == {"command": "return", "host": "hostA", "reason": None}


DRAIN_ERRORS: list[tuple[str, str, str]] = [
    ("drain", "`drain` needs the host to empty", "/migrate drain hostA"),
    ("plan drain", "`plan drain` needs the host to empty", "/migrate plan drain hostA"),
    ("drain hostA to hostB", "unexpected extra words: `to hostB`", "--to hostB"),
    ("drain hostA hostB", "unexpected extra words: `hostB`", "one host per drain"),
    ("drain hostA --to", "--to needs a value", "--to"),
    ("drain hostA --to hostB,,hostC", "comma-separated list of host names", "hostB,hostC"),
    ("drain hostA --to hostB,hostB", "names `hostb` twice", "once"),
    ("drain hostA --to host;B", "not a valid host name", "1 to 64"),
    ("drain hostA --except vm/1", "not a valid VM name", "1 to 64"),
    ("drain hostA --to hostA", "--to names hostA, the host being drained", "not hostA"),
    ("drain hostA --offline", "--offline does not apply to a drain", "--include-stopped"),
    ("drain hostA --limit 3", "--limit applies only to `history`", "history"),
    ("vm42 to hostB --to hostC", "--to applies only to `drain`", "plan drain hostA --to"),
    ("vm42 to hostB --include-stopped", "--include-stopped applies only to `drain`", "plan drain"),
    ("return", "`return` needs the host", "/migrate return hostA"),
    ("return hostA hostB", "unexpected extra words: `hostB`", "return hostA"),
    ("return hostA --postcopy", "--postcopy does not apply to `return`", "only --reason"),
    ("cancel drain", "cancel drain needs the drain's id", "cancel drain 7"),
    ("cancel drain x", "cancel drain takes the drain's id, not `x`", "cancel drain 7"),
    ("status D0", "`D0` is not a drain", "drain ids start at 1"),
    ("cancel D0", "`D0` is not a drain", "like D7"),
    ("status D7 D8", "unexpected extra words: `D8`", "/migrate status D7"),
    ("cancel D7 now", "unexpected extra words: `now`", "/migrate cancel D7"),
    ("drian hostA", "unknown command `drian`", "/migrate drain"),
]


@pytest.mark.parametrize(("text", "message", "hint"), DRAIN_ERRORS)
def test_drain_family_errors(text: str, message: str, hint: str) -> None:
    with pytest.raises(GrammarError) as info:
        parse_command(text)
    assert message in info.value.message
    assert hint in info.value.hint


def test_drain_help_explains_the_dry_run_and_the_options() -> None:
    text = help_text("drain")
    for fragment in ("plan drain", "--to", "--except", "--include-stopped", "memory_reserve", "anti-affinity"):
        assert fragment in text
    assert "drain" in help_text(None) and "to any" in help_text(None)
    assert "--include-stopped" not in help_text("options")  # drain-only options are listed under drain
    assert "not available yet" not in text and "status D7" in text and "cancel D7" in text
    assert "D7" in help_text("status") and "cancel D7" in help_text("cancel") and "D<id>" in help_text(None)


@settings(max_examples=150)
@given(
    st.one_of(
        st.builds(PlaceCommand, names, st.just(MigrationOptions()), st.booleans()),
        migrate_commands().map(lambda c: PlaceCommand(c.request.vm, c.request.options, c.plan_only)),
        st.builds(
            DrainCommand,
            names,
            st.lists(names, max_size=3, unique_by=str.lower).map(tuple),
            st.lists(names, max_size=3, unique_by=str.lower).map(tuple),
            st.booleans(),
            st.builds(MigrationOptions, postcopy=st.booleans(), reason=st.none() | reasons),
            st.booleans(),
        ).filter(lambda d: d.host.lower() not in {h.lower() for h in d.to}),
        st.builds(ReturnCommand, names, st.none() | reasons),
        st.builds(CancelDrainCommand, st.integers(1, 10**12)),
        st.builds(DrainStatusCommand, st.integers(1, 10**12)),
    )
)
def test_drain_family_round_trips_through_text_and_json(cmd: Command) -> None:
    assert parse_command(command_to_text(cmd)) == cmd
    assert command_from_json(json.loads(json.dumps(command_to_json(cmd)))) == cmd


# ----- change control (issue 15) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "changed"),
    [
        ("vm42 to hostB --ticket CHG0012345", {"ticket": "CHG0012345"}),
        ("vm42 to hostB --ticket=CHG-7", {"ticket": "CHG-7"}),
        (
            'vm42 to hostB --emergency --reason "INC-42 disk failing"',
            {"emergency": True, "reason": "INC-42 disk failing"},
        ),
        ("vm42 to hostB —emergency —reason x —ticket T1", {"emergency": True, "reason": "x", "ticket": "T1"}),
    ],
)
def test_change_control_options(text: str, changed: dict[str, Any]) -> None:
    assert as_json(text) == {**DEFAULTS, **changed}
    cmd = parse_command(text)
    assert parse_command(command_to_text(cmd)) == cmd
    assert command_from_json(command_to_json(cmd)) == cmd


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        ("vm42 to hostB --emergency", "--emergency needs --reason", "--emergency --reason"),
        ('vm42 to hostB --ticket "CHG 1"', "--ticket `CHG 1` is not a ticket id", "no spaces"),
        ("vm42 to hostB --ticket", "--ticket needs a value (ID)", "--ticket CHG0012345"),
        ("vm42 to hostB --emergency=yes --reason x", "--emergency takes no value", ""),
        ("freezes now", "freezes takes no arguments", "/migrate freezes"),
        ("freezes --ticket X", "--ticket does not apply to `freezes`", ""),
        ("freezs", "unknown command `freezs`", "/migrate freezes"),
    ],
)
def test_change_control_errors(text: str, message: str, hint: str) -> None:
    with pytest.raises(GrammarError) as err:
        parse_command(text)
    assert message in err.value.message
    assert hint in err.value.hint


def test_freezes_command_json_and_text() -> None:
    cmd = parse_command("freezes")
    assert command_to_json(cmd) == {"command": "freezes"}
    assert command_to_text(cmd) == "freezes"
    assert command_from_json({"command": "freezes"}) == cmd
    assert "/migrate freezes" in help_text(None)
    assert "--emergency" in help_text("emergency") and "--ticket" in help_text("options")
    assert "in force now" in help_text("freezes")


@pytest.mark.parametrize(
    ("text", "changed"),
    [
        ("vm42 to hostB --at 2026-12-24T22:00Z", {"not_before": "2026-12-24T22:00:00+00:00"}),
        ("vm42 to hostB --at 2026-12-24T23:00+01:00", {"not_before": "2026-12-24T23:00:00+01:00"}),
        ("vm42 to hostB --at 2026-12-24T22:00", {"not_before": "2026-12-24T22:00:00"}),  # the policy's zone
        (
            "vm42 to hostB --window 2026-12-24T22:00Z/23:30",
            {"not_before": "2026-12-24T22:00:00+00:00", "not_after": "2026-12-24T23:30:00+00:00"},
        ),
        (
            "vm42 to hostB --window 2026-12-24T22:00+01:00..2026-12-25T02:00+01:00",
            {"not_before": "2026-12-24T22:00:00+01:00", "not_after": "2026-12-25T02:00:00+01:00"},
        ),
    ],
)
def test_schedule_options(text: str, changed: dict[str, Any]) -> None:
    assert as_json(text) == {**DEFAULTS, **changed}
    cmd = parse_command(text)
    assert parse_command(command_to_text(cmd)) == cmd
    assert command_from_json(command_to_json(cmd)) == cmd


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        ("vm42 to hostB --at tomorrow", "--at `tomorrow` is not a date and time", "2026-12-24T22:00Z"),
        ("vm42 to hostB --at 2026-13-24T22:00Z", "--at `2026-13-24T22:00Z` is not a valid date and time", ""),
        ("vm42 to hostB --window 2026-12-24T22:00Z", "--window `2026-12-24T22:00Z` is not a window", "START/END"),
        ("vm42 to hostB --window 2026-12-24T22:00Z/21:00", "ends before it starts", "START/HH:MM"),
        ("vm42 to hostB --window 2026-12-24T22:00Z/2026-12-25T01:00", "gives a zone for one end only", ""),
        ("vm42 to hostB --window 2026-12-01T22:00Z/2026-12-24T01:00Z", "longer than 7 days", ""),
        ("vm42 to hostB --window 2026-12-24T22:00Z/25:00", "end `25:00` is not a time of day", ""),
        ("vm42 to hostB --at 2026-12-24T22:00Z --window 2026-12-24T22:00Z/23:00", "both say when to start", ""),
        ("vm42 to hostB --window 2026-12-24T22:00Z/23:00 --at 2026-12-24T22:00Z", "both say when to start", ""),
    ],
)
def test_schedule_errors(text: str, message: str, hint: str) -> None:
    with pytest.raises(GrammarError) as err:
        parse_command(text)
    assert message in err.value.message
    assert hint in err.value.hint
