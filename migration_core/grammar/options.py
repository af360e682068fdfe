"""How /migrate options parse (durations, rates, counts) and how they combine (conflicts, repeats)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from migration_core.errors import GrammarError
from migration_core.grammar.spec import (
    ALIASES,
    LIVE_ONLY,
    OPTIONS,
    OPTIONS_BY_NAME,
    VIRSH_ONLY,
    Arity,
    OptionSpec,
)
from migration_core.grammar.values import (
    check_name,
    looks_like_int,
    parse_duration_s,
    parse_instant,
    parse_int,
    parse_rate_mib_s,
    parse_window,
)
from migration_core.limits import BANDWIDTH_MIB_S, MAX_DOWNTIME_MS, POSTCOPY_AFTER_S, TIMEOUT_S, Limit, human_s
from migration_core.models import CopyStorage, MigrationMode, MigrationOptions

_LIMIT_DEFAULT = 20
_DRAFT_OWN = frozenset({"drain_to", "drain_except", "include_stopped"})
# Commands that take the migration options (a drain applies them to every move).
MIGRATING_COMMANDS = ("migrate", "plan", "drain")


@dataclass
class Draft:
    """Option values collected while scanning: the MigrationOptions being built (its fields and defaults are
    the only definition of them), `--limit` for `history`, and `given`, which maps a field to the option text
    that set it."""

    options: MigrationOptions = field(default_factory=MigrationOptions)
    limit: int = _LIMIT_DEFAULT
    given: dict[str, str] = field(default_factory=dict)
    options_seen: list[str] = field(default_factory=list)
    # drain only (issue 11): --to, --except, --include-stopped
    drain_to: tuple[str, ...] = ()
    drain_except: tuple[str, ...] = ()
    include_stopped: bool = False

    def value(self, name: str) -> object:
        if name in _DRAFT_OWN:
            return getattr(self, name)
        return self.limit if name == "limit" else getattr(self.options, name)

    def set(self, name: str, value: object, given: str) -> None:
        """Set field `name`; the same option twice is fine, two different values are an error."""
        previous = self.given.get(name)
        if previous is not None and self.value(name) != value:
            raise _conflict_twice(name, previous, given)
        self.imply(name, value)
        self.given[name] = given

    def imply(self, name: str, value: Any) -> None:
        """Set a field without recording it as given (an option implied by another)."""
        if name in _DRAFT_OWN:
            setattr(self, name, value)
        elif name == "limit":
            self.limit = int(value)
        else:
            self.options = replace(self.options, **{name: value})


def _conflict_twice(name: str, previous: str, given: str) -> GrammarError:
    if name == "mode":
        return GrammarError(
            "--live and --offline contradict each other",
            "a running VM migrates live, a shut-off VM offline: give one of them, or neither to let the bot "
            "decide from the VM's state",
        )
    if name == "persistent":
        return GrammarError(
            "--persistent and --transient contradict each other",
            "--persistent (the default) keeps the VM defined on the destination; --transient does not",
        )
    return GrammarError(f"{previous} and {given} give the option two different values", "give it once")


def resolve(name: str, text: str, command: str) -> tuple[OptionSpec, str | None]:
    """Map an option name (or a virsh alias) to its spec and implied value; unknown names get a suggestion."""
    implied: str | None = None
    if name in ALIASES:
        name, implied = ALIASES[name]
    spec = OPTIONS_BY_NAME.get(name)
    if spec is None:
        if name in VIRSH_ONLY:
            raise GrammarError(f"/migrate does not take virsh's --{name}", VIRSH_ONLY[name])
        known = [o.name for o in OPTIONS] + list(ALIASES)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if close:
            target = ALIASES[close[0]][0] if close[0] in ALIASES else close[0]
            hint = f"did you mean `--{target}`? See `/migrate help options`"
        else:
            hint = "see `/migrate help options` for the list"
        raise GrammarError(f"unknown option `{text}`", hint)
    if spec.drain_only and command != "drain":
        raise GrammarError(
            f"--{spec.name} applies only to `drain`",
            f"e.g. /migrate plan drain hostA --{spec.name}"
            + {"to": " hostB,hostC", "except": " vm42"}.get(spec.name, ""),
        )
    if command == "return" and spec.name != "reason":
        raise GrammarError(
            f"--{spec.name} does not apply to `return`",
            "return takes only --reason; the VMs go back with the options of the drain that moved them",
        )
    if command in ("drain", "return") and not spec.history_only:
        return spec, implied
    if command == "history" and not spec.history_only:
        raise GrammarError(f"--{spec.name} does not apply to `history`", "history takes only --limit N")
    if command != "history" and spec.history_only:
        raise GrammarError(f"--{spec.name} applies only to `history`", "e.g. /migrate history vm42 --limit 50")
    if command not in ("migrate", "plan", "history"):
        raise GrammarError(f"--{spec.name} does not apply to `{command}`", f"see `/migrate help {command}`")
    return spec, implied


def apply(draft: Draft, spec: OptionSpec, value: str | None, given: str) -> None:
    """Parse `value` for `spec` and record it in `draft` (value is None for flags and a bare --parallel)."""
    draft.options_seen.append(spec.name)
    _HANDLERS[spec.name](draft, value, given)


def takes_next_token(spec: OptionSpec, nxt: str) -> bool:
    """For `--parallel [N]`: the next token is N only if it is a whole number."""
    return spec.arity is not Arity.OPTIONAL_INT or looks_like_int(nxt)


def _flag(field_name: str, value: object) -> Callable[[Draft, str | None, str], None]:
    def handler(draft: Draft, _raw: str | None, given: str) -> None:
        draft.set(field_name, value, given)

    return handler


def _duration(
    option: str, field_name: str, limit: Limit, *, bare_unit_s: float = 1.0
) -> Callable[[Draft, str | None, str], None]:
    def handler(draft: Draft, raw: str | None, given: str) -> None:
        seconds = parse_duration_s(raw or "", option, bare_unit_s=bare_unit_s)
        if field_name.endswith("_ms"):
            # Compare in the limit's unit before rounding: 0.4ms is refused, not rounded to 0 and then refused.
            ms = seconds * 1000
            limit.check(ms, option, raw)
            draft.set(field_name, round(ms), given)
        else:
            draft.set(field_name, limit.check(seconds, option, raw), given)

    return handler


def _postcopy_after(draft: Draft, raw: str | None, given: str) -> None:
    _duration("--postcopy-after", "postcopy_after_s", POSTCOPY_AFTER_S)(draft, raw, given)
    draft.imply("postcopy", True)  # implied, not "given": an explicit --postcopy alongside is no conflict


def _parallel(draft: Draft, raw: str | None, given: str) -> None:
    count = 2 if raw is None else parse_int(raw, "--parallel", 1, 255)
    draft.set("parallel_connections", count, given)


def _bandwidth(draft: Draft, raw: str | None, given: str) -> None:
    mib_s = BANDWIDTH_MIB_S.check(parse_rate_mib_s(raw or "", "--bandwidth"), "--bandwidth", raw)
    draft.set("bandwidth_mib_s", mib_s, given)


def _copy_storage(draft: Draft, raw: str | None, given: str) -> None:
    word = (raw or "").lower()
    if word not in ("all", "inc"):
        raise GrammarError(
            f"--copy-storage takes `all` or `inc`, got `{raw}`",
            "all: copy each non-shared disk whole; inc: copy only the top image of a backing chain "
            "that already exists on the destination",
        )
    draft.set("copy_storage", CopyStorage(word), given)


def _reason(draft: Draft, raw: str | None, given: str) -> None:
    text = (raw or "").strip()
    if not text:
        raise GrammarError("--reason is empty", 'give a ticket or reason: --reason "CHG-1234 patching"')
    if len(text) > 500:
        raise GrammarError(f"--reason is too long ({len(text)} characters)", "keep it under 500 characters")
    draft.set("reason", text, given)


def _name_list(field_name: str, what: str, example: str) -> Callable[[Draft, str | None, str], None]:
    """`--to hostB,hostC`: comma-separated names, each checked, no repeats."""

    def handler(draft: Draft, raw: str | None, given: str) -> None:
        words = [w.strip() for w in (raw or "").split(",")]
        if not any(words) or not all(words):
            raise GrammarError(
                f"{given.split(' ')[0]} needs a comma-separated list of {what} names, got `{raw}`",
                f"e.g. {given.split(' ')[0]} {example} (no spaces, no empty entries)",
            )
        names = tuple(check_name(w, what) for w in words)
        lowered = [n.lower() for n in names]
        dupes = sorted({n for n in lowered if lowered.count(n) > 1})
        if dupes:
            raise GrammarError(f"{given.split(' ')[0]} names `{dupes[0]}` twice", "give each name once")
        draft.set(field_name, names, given)

    return handler


_TICKET_MAX = 64


def _ticket(draft: Draft, raw: str | None, given: str) -> None:
    text = (raw or "").strip()
    if not text or len(text) > _TICKET_MAX or any(c.isspace() for c in text):
        raise GrammarError(
            f"--ticket `{raw}` is not a ticket id",
            f"give the id alone (no spaces, at most {_TICKET_MAX} characters): --ticket CHG0012345",
        )
    draft.set("ticket", text, given)


_MAX_WINDOW_S = 7 * 86400


def _at(draft: Draft, raw: str | None, given: str) -> None:
    if "window" in draft.given:
        raise _schedule_twice(draft.given["window"], given)
    draft.set("not_before", parse_instant(raw or "", "--at"), given)


def _window(draft: Draft, raw: str | None, given: str) -> None:
    if "not_before" in draft.given and "not_after" not in draft.given:
        raise _schedule_twice(draft.given["not_before"], given)
    start, end = parse_window(raw or "", "--window")
    if (end - start).total_seconds() > _MAX_WINDOW_S:
        raise GrammarError(f"--window {raw} is longer than 7 days", "a start window is hours, not weeks: narrow it")
    draft.set("not_before", start, given)
    draft.set("not_after", end, given)
    draft.given["window"] = given


def _schedule_twice(previous: str, given: str) -> GrammarError:
    return GrammarError(
        f"{previous} and {given} both say when to start", "give --at TIME or --window START/END, not both"
    )


def _limit(draft: Draft, raw: str | None, given: str) -> None:
    draft.set("limit", parse_int(raw or "", "--limit", 1, 500), given)


_HANDLERS: dict[str, Callable[[Draft, str | None, str], None]] = {
    "live": _flag("mode", MigrationMode.LIVE),
    "offline": _flag("mode", MigrationMode.OFFLINE),
    "persistent": _flag("persistent", True),
    "transient": _flag("persistent", False),
    "undefine-source": _flag("undefine_source", True),
    "keep-source": _flag("keep_source", True),
    "postcopy": _flag("postcopy", True),
    "postcopy-after": _postcopy_after,
    "auto-converge": _flag("auto_converge", True),
    "parallel": _parallel,
    "max-downtime": _duration("--max-downtime", "max_downtime_ms", MAX_DOWNTIME_MS, bare_unit_s=0.001),
    "bandwidth": _bandwidth,
    "copy-storage": _copy_storage,
    "compressed": _flag("compressed", True),
    "tls": _flag("tls", True),
    "timeout": _duration("--timeout", "timeout_s", TIMEOUT_S),
    "reason": _reason,
    "ticket": _ticket,
    "emergency": _flag("emergency", True),
    "at": _at,
    "window": _window,
    "limit": _limit,
    "to": _name_list("drain_to", "host", "hostB,hostC"),
    "except": _name_list("drain_except", "VM", "vm42,db1"),
    "include-stopped": _flag("include_stopped", True),
}


def build_options(draft: Draft) -> MigrationOptions:
    """Check how the options combine; the MigrationOptions they make."""
    opts = draft.options
    if opts.mode is MigrationMode.OFFLINE:
        bad = [f"--{n}" for n in dict.fromkeys(draft.options_seen) if n in LIVE_ONLY]
        if bad:
            raise GrammarError(
                f"--offline cannot be combined with {', '.join(bad)}",
                "those options tune a live migration; an offline migration only moves the VM's definition. "
                "Drop --offline to migrate the VM while it runs, or drop the live-only options",
            )
        if not opts.persistent:
            raise GrammarError(
                "--offline cannot be combined with --transient",
                "an offline migration only moves the definition, so the VM must stay defined on the "
                "destination: drop --transient",
            )
    if opts.emergency and not opts.reason:
        raise GrammarError(
            "--emergency needs --reason",
            'say why the change cannot wait for the freeze to end: --emergency --reason "INC-42 host failing"',
        )
    if not opts.persistent and opts.undefine_source:
        raise GrammarError(
            "--transient with --undefine-source would leave the VM defined nowhere",
            "drop --transient to keep it defined on the destination, or drop --undefine-source",
        )
    if opts.keep_source and opts.undefine_source:
        raise GrammarError(
            "--keep-source contradicts --undefine-source",
            "drop --undefine-source to keep the source's definition, or drop --keep-source to remove it",
        )
    if opts.keep_source and not opts.persistent:
        raise GrammarError(
            "--keep-source with --transient does nothing: a transient move never removes the source's definition",
            "drop --keep-source",
        )
    if opts.postcopy_after_s is not None and opts.timeout_s is not None and opts.postcopy_after_s >= opts.timeout_s:
        raise GrammarError(
            f"--postcopy-after ({human_s(opts.postcopy_after_s)}) is not shorter than --timeout "
            f"({human_s(opts.timeout_s)}): the timeout would act first",
            "make --postcopy-after shorter than --timeout, or drop one of them",
        )
    return opts
