"""The /migrate grammar: text -> typed command (or GrammarError with a hint), and commands <-> JSON and text.

Pure: no I/O. Used by the Slack handlers, the terminal console and the CLI (`migrate-bot parse TEXT --json`).
Helpers: grammar_lex (smart punctuation, tokens), grammar_values (names, durations, rates), grammar_options
(the option table and how options combine), grammar_help (help text).
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass, field
from typing import Any

from migration_core.errors import GrammarError
from migration_core.grammar.commands import (
    ANY_HOST,
    COMMAND_WORDS,
    CancelCommand,
    CancelDrainCommand,
    Command,
    DrainCommand,
    DrainStatusCommand,
    FreezesCommand,
    HelpCommand,
    HistoryCommand,
    HostsCommand,
    MigrateCommand,
    PlaceCommand,
    ReturnCommand,
    StatusCommand,
    command_from_json_unchecked,
    command_to_json,
    command_to_text,
    error_to_json,
)
from migration_core.grammar.help import TOPICS, help_text, topic_key
from migration_core.grammar.lex import is_lone_dash, option_token, tokenize
from migration_core.grammar.options import Draft, apply, build_options, resolve, takes_next_token
from migration_core.grammar.spec import OPTIONS_BY_NAME, Arity, OptionSpec
from migration_core.grammar.values import NAME_RULE, check_name, is_valid_name, parse_drain_ref, parse_job_id
from migration_core.models import MigrationMode, MigrationRequest

__all__ = [
    "ANY_HOST",
    "COMMAND_WORDS",
    "NAME_RULE",
    "CancelCommand",
    "CancelDrainCommand",
    "Command",
    "DrainCommand",
    "DrainStatusCommand",
    "FreezesCommand",
    "HelpCommand",
    "HistoryCommand",
    "HostsCommand",
    "MigrateCommand",
    "PlaceCommand",
    "ReturnCommand",
    "StatusCommand",
    "command_from_json",
    "command_to_json",
    "command_to_text",
    "error_to_json",
    "help_text",
    "is_valid_name",
    "parse_command",
]


_EXAMPLE_VALUES = {
    "postcopy-after": "30s", "max-downtime": "500ms", "bandwidth": "1G", "copy-storage": "all",
    "timeout": "20m", "reason": '"CHG-1234 patching"', "limit": "50", "ticket": "CHG0012345",
    "at": "2026-12-24T22:00Z", "window": "2026-12-24T22:00Z/23:30",
}  # fmt: skip


def parse_command(text: str) -> Command:
    """Parse the text after `/migrate` (a leading `/migrate` is tolerated). Raises only GrammarError."""
    tokens = tokenize(text)
    if tokens and tokens[0].lower() == "/migrate":
        tokens = tokens[1:]
    if not tokens:
        return HelpCommand(None)
    word = tokens[0].lower()
    # A VM may be named like a command word: `status to hostB` can only mean migrating VM "status".
    names_a_vm = len(tokens) >= 3 and tokens[1].lower() == "to"
    if not names_a_vm:
        command = _parse_command_word(word, tokens)
        if command is not None:
            return command
        if option_token(tokens[0]) is None:
            close = difflib.get_close_matches(word, COMMAND_WORDS, n=1, cutoff=0.75)
            if close:
                raise GrammarError(f"unknown command `{tokens[0]}`", f"did you mean `/migrate {close[0]}`?")
    return _parse_migrate(tokens, plan_only=False)


def _parse_command_word(word: str, tokens: list[str]) -> Command | None:
    """The command `tokens` start with (`word`, lower-cased), or None when the first word is not a command."""
    if word in ("help", "?"):
        return _parse_help(tokens[1:])
    if word == "plan":
        # `plan drain hostA` (but `plan drain to hostB` plans moving a VM called "drain")
        if len(tokens) >= 2 and tokens[1].lower() == "drain" and not (len(tokens) >= 4 and tokens[2].lower() == "to"):
            return _parse_drain(tokens[2:], plan_only=True)
        return _parse_migrate(tokens[1:], plan_only=True)
    if word == "drain":
        return _parse_drain(tokens[1:], plan_only=False)
    if word == "return":
        return _parse_return(tokens[1:])
    if word == "cancel" and len(tokens) >= 2 and tokens[1].lower() == "drain":
        return _parse_cancel_drain(tokens[2:])
    if word in ("cancel", "status") and len(tokens) >= 2 and parse_drain_ref(tokens[1]):
        return _parse_drain_ref_command(word, tokens[1:])  # `cancel D7`, `status D7`
    if word in COMMAND_WORDS:
        return _parse_read_or_cancel(word, tokens[1:])
    return None


def _parse_read_or_cancel(word: str, args: list[str]) -> Command:
    """status, cancel, history, freezes and hosts: positional words and the options they take."""
    scan = _scan(args, word)
    words = [t for _, t in scan.positionals]
    if word == "status":
        return StatusCommand(_status_target(words))
    if word == "cancel":
        return CancelCommand(_cancel_job_id(words))
    if word == "history":
        _at_most(words, 1, "history takes at most one VM or host name", "example: /migrate history vm42")
        subject = check_name(words[0], "VM or host") if words else None
        return HistoryCommand(subject, scan.draft.limit)
    if word == "freezes":
        _at_most(words, 0, "freezes takes no arguments", "/migrate freezes")
        return FreezesCommand()
    _at_most(words, 0, "hosts takes no arguments", "/migrate hosts")
    return HostsCommand()


@dataclass
class _Scan:
    positionals: list[tuple[int, str]] = field(default_factory=list)
    draft: Draft = field(default_factory=Draft)
    after_reason: int | None = None  # index of the token right after --reason's value


def _scan(tokens: list[str], command: str) -> _Scan:
    """Split tokens into positional words (with their index) and parsed options."""
    scan = _Scan()
    i = 0
    while i < len(tokens):
        tok = given_prefix = tokens[i]
        if is_lone_dash(tok):
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            if not (nxt[:1].isascii() and nxt[:1].isalpha()):
                raise GrammarError(f"stray `{tok}`", "options are written --name, e.g. --postcopy")
            i += 1  # `— postcopy`: a phone put a space after the dash it made of `--`
            tok, given_prefix = "--" + nxt, f"{tok} {nxt}"
        opt = option_token(tok)
        if opt is None:
            scan.positionals.append((i, tok))
            i += 1
            continue
        spec, implied = resolve(opt.name, given_prefix, command)
        value: str | None = implied
        if opt.inline_value is not None:
            if spec.arity is Arity.FLAG or implied is not None:
                raise GrammarError(f"{given_prefix.split('=')[0]} takes no value", f"write just --{opt.name}")
            value = opt.inline_value
        elif spec.arity is not Arity.FLAG and implied is None:
            following = tokens[i + 1] if i + 1 < len(tokens) else None
            if following is not None and takes_next_token(spec, following) and not _is_option(following, spec):
                value = following
                i += 1
            elif spec.arity is Arity.VALUE:
                raise GrammarError(
                    f"{given_prefix} needs a value ({spec.metavar})",
                    f"example: --{spec.name} {_EXAMPLE_VALUES.get(spec.name, '')}".rstrip(),
                )
        apply(scan.draft, spec, value, given_prefix + ("" if value is None else f" {value}"))
        if spec.name == "reason":
            scan.after_reason = i + 1
        i += 1
    return scan


def _is_option(token: str, spec: OptionSpec) -> bool:
    """Would `token` be read as the next option rather than as `spec`'s value?"""
    if is_lone_dash(token):
        return True
    opt = option_token(token)
    if opt is None:
        return False
    # A reason may start with dashes ("--reason '-- hotfix'") unless it really names an option.
    return spec.name != "reason" or opt.name in OPTIONS_BY_NAME


def _parse_migrate(tokens: list[str], *, plan_only: bool) -> MigrateCommand | PlaceCommand:
    command = "plan" if plan_only else "migrate"
    scan = _scan(tokens, command)
    words = [t for _, t in scan.positionals]
    example = f"/migrate {'plan ' if plan_only else ''}vm42 to hostB"
    lowered = [w.lower() for w in words]
    if "to" not in lowered:
        if not words:
            raise GrammarError(f"missing the VM and the destination host for `{command}`", f"e.g. {example}")
        if len(words) == 1:  # `/migrate vm42`: the bot chooses the destination, as for `vm42 to any`
            return PlaceCommand(check_name(words[0], "VM"), build_options(scan.draft), plan_only)
        if len(words) == 2:
            raise GrammarError(
                "missing the word `to` between the VM and the host",
                f"write: /migrate {words[0]} to {words[1]}",
            )
        raise GrammarError(f"could not read `{' '.join(words)}` as `<vm> to <host>`", f"example: {example}")
    # `to to hostB` migrates a VM named "to": prefer the separator in second place.
    sep = 1 if len(words) >= 3 and lowered[1] == "to" else lowered.index("to")
    before, after = words[:sep], words[sep + 1 :]
    if not before:
        raise GrammarError("missing the VM name before `to`", f"example: {example}")
    if not after:
        raise GrammarError(f"missing the destination host after `{before[-1]} to`", f"example: {example}")
    if len(before) > 1:
        raise GrammarError(f"one VM per request: got `{' '.join(before)}` before `to`", "send one /migrate per VM")
    if len(after) > 1:
        raise GrammarError(f"unexpected extra words: `{' '.join(after[1:])}`", _extra_words_hint(scan))
    options = build_options(scan.draft)
    if after[0].lower() == ANY_HOST:
        return PlaceCommand(check_name(before[0], "VM"), options, plan_only)
    request = MigrationRequest(check_name(before[0], "VM"), check_name(after[0], "host"), options)
    return MigrateCommand(request, plan_only)


def _parse_drain(tokens: list[str], *, plan_only: bool) -> DrainCommand:
    scan = _scan(tokens, "drain")
    words = [t for _, t in scan.positionals]
    command = "plan drain" if plan_only else "drain"
    if not words:
        raise GrammarError(f"`{command}` needs the host to empty", f"example: /migrate {command} hostA")
    if len(words) > 1:
        if words[1].lower() == "to":
            dests = ",".join(words[2:]) or "hostB"
            hint = f"name the destinations with --to: /migrate {command} {words[0]} --to {dests}"
        else:
            hint = f"one host per drain; {_extra_words_hint(scan)}"
        raise GrammarError(f"unexpected extra words: `{' '.join(words[1:])}`", hint)
    host = check_name(words[0], "host")
    draft = scan.draft
    if host.lower() in (h.lower() for h in draft.drain_to):
        raise GrammarError(
            f"--to names {host}, the host being drained", f"list only the hosts the VMs may go to, not {host}"
        )
    if draft.options.mode is not None:
        flag = "--offline" if draft.options.mode is MigrationMode.OFFLINE else "--live"
        raise GrammarError(
            f"{flag} does not apply to a drain",
            "a drain moves each running VM live; add --include-stopped to also move shut-off VMs (offline)",
        )
    options = build_options(draft)
    return DrainCommand(host, draft.drain_to, draft.drain_except, draft.include_stopped, options, plan_only)


def _parse_return(tokens: list[str]) -> ReturnCommand:
    scan = _scan(tokens, "return")
    words = [t for _, t in scan.positionals]
    if not words:
        raise GrammarError("`return` needs the host to fill again", "example: /migrate return hostA")
    _at_most(words, 1, "return takes one host", 'example: /migrate return hostA --reason "CHG-1234 done"')
    return ReturnCommand(check_name(words[0], "host"), scan.draft.options.reason)


def _parse_drain_ref_command(word: str, words: list[str]) -> CancelDrainCommand | DrainStatusCommand:
    _at_most(words, 1, f"{word} takes one drain", f"example: /migrate {word} D7")
    drain_id = parse_drain_ref(words[0])
    assert drain_id is not None  # the caller matched it
    return CancelDrainCommand(drain_id) if word == "cancel" else DrainStatusCommand(drain_id)


def _parse_cancel_drain(words: list[str]) -> CancelDrainCommand:
    if not words:
        raise GrammarError("cancel drain needs the drain's id", "example: /migrate cancel D7 (or cancel drain 7)")
    _at_most(words, 1, "cancel drain takes one id", "example: /migrate cancel D7 (or cancel drain 7)")
    drain_id = parse_drain_ref(words[0]) or parse_job_id(words[0])
    if drain_id is None:
        raise GrammarError(
            f"cancel drain takes the drain's id, not `{words[0]}`", "like: /migrate cancel D7 (or cancel drain 7)"
        )
    return CancelDrainCommand(drain_id)


def _extra_words_hint(scan: _Scan) -> str:
    """When the stray words follow --reason's value, the reason was meant to be quoted: show how."""
    if scan.after_reason is not None and scan.draft.options.reason is not None:
        trailing = []
        expected = scan.after_reason
        for index, word in scan.positionals:
            if index == expected:
                trailing.append(word)
                expected += 1
        if trailing:
            whole = " ".join([scan.draft.options.reason, *trailing])
            quoted = f'"{whole}"' if '"' not in whole else shlex.quote(whole)
            return f"quote the whole reason: --reason {quoted}"
    return 'options start with --; quote text with spaces, e.g. --reason "CHG-1234 kernel update"'


def _status_target(words: list[str]) -> int | str | None:
    _at_most(words, 1, "status takes at most one job id or VM name", "e.g. /migrate status #41 or status vm42")
    if not words:
        return None
    job_id = parse_job_id(words[0])
    if job_id is not None:
        return job_id
    if words[0].startswith("#"):
        raise GrammarError(f"`{words[0]}` is not a job id", "job ids are numbers, like #41")
    return check_name(words[0], "VM")


def _cancel_job_id(words: list[str]) -> int:
    if not words:
        raise GrammarError("cancel needs a job id", "example: /migrate cancel 41 (see /migrate status)")
    _at_most(words, 1, "cancel takes one job id", "example: /migrate cancel 41")
    job_id = parse_job_id(words[0])
    if job_id is None:
        hint = f"find the job id with /migrate status {words[0]}" if is_valid_name(words[0]) else "like #41"
        raise GrammarError(f"cancel takes a job id, not `{words[0]}`", hint)
    return job_id


def _parse_help(words: list[str]) -> HelpCommand:
    if not words:
        return HelpCommand(None)
    _at_most(words, 1, "help takes one topic", f"topics: {', '.join(TOPICS)}")
    key = topic_key(words[0])
    if key not in TOPICS:
        close = difflib.get_close_matches(key, TOPICS, n=1, cutoff=0.6)
        hint = f"did you mean `/migrate help {close[0]}`?" if close else f"topics: {', '.join(TOPICS)}"
        raise GrammarError(f"no help topic `{words[0]}`", hint)
    return HelpCommand(key)


def _at_most(words: list[str], n: int, message: str, hint: str) -> None:
    if len(words) > n:
        raise GrammarError(f"unexpected extra words: `{' '.join(words[n:])}` ({message})", hint)


def command_from_json(data: dict[str, Any]) -> Command:
    """Inverse of `command_to_json`; the result is re-read by the grammar, so it obeys the same rules."""
    cmd = command_from_json_unchecked(data)
    kind = data.get("command")
    try:
        if isinstance(cmd, MigrateCommand):
            check_name(cmd.request.vm, "VM")
            check_name(cmd.request.destination, "host")
        if isinstance(cmd, PlaceCommand):
            check_name(cmd.vm, "VM")
        if isinstance(cmd, DrainCommand | ReturnCommand):
            check_name(cmd.host, "host")
        text = command_to_text(cmd)
        same = parse_command(text) == cmd
    except GrammarError as err:
        raise GrammarError(f"{kind} command in JSON is not valid: {err.message}", err.hint) from None
    if not same:
        raise GrammarError(f"{kind} command in JSON is not valid", f"it reads back as {text!r}")
    return cmd
