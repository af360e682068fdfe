"""The console's own command words (pure): as, approve, deny, abort, postcopy, downtime, bandwidth, wait...

Anything else on a line is `/migrate` text (with or without the slash) and goes to the grammar. To reach a VM
whose name is one of these words, write the slash: `/migrate wait to hostB`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from migration_core.errors import GrammarError
from migration_core.grammar.values import is_valid_name, parse_drain_ref

JobRef = int | Literal["last"]
_JOB_REF = re.compile(r"#?([0-9]{1,18})")


@dataclass(frozen=True)
class Slash:
    """Text for the /migrate grammar."""

    text: str


@dataclass(frozen=True)
class ActAs:
    user: str


@dataclass(frozen=True)
class DrainRef:
    """`D7`: a drain, where a console verb takes a job or a drain."""

    drain_id: int


@dataclass(frozen=True)
class Control:
    """approve / deny / abort / postcopy / wait / cancel on a job, or on a drain (`D7`, or `last` right after a
    drain or return request)."""

    verb: Literal["approve", "deny", "abort", "postcopy", "wait", "cancel"]
    job: JobRef | DrainRef


@dataclass(frozen=True)
class SetValue:
    """downtime <job> <ms> / bandwidth <job> <MiB/s> (the value is validated by the modal's parsers)."""

    verb: Literal["downtime", "bandwidth"]
    job: JobRef
    value: str


@dataclass(frozen=True)
class ConsoleHelp:
    topic: str | None = None


@dataclass(frozen=True)
class Quit:
    pass


@dataclass(frozen=True)
class Blank:
    pass


@dataclass(frozen=True)
class ConsoleError:
    """A console line that could not be understood; `message` says what to type instead."""

    message: str


ConsoleCommand = Slash | ActAs | Control | SetValue | ConsoleHelp | Quit | Blank | ConsoleError

CONSOLE_HELP = """\
Console commands (everything else is /migrate text, with or without the slash):
  /migrate <vm> to <host> [options]   request a migration; prints the card and the job id
  /migrate plan drain <host> [...]    dry run of emptying a host (destinations, waves, ETA)
  /migrate drain <host> [...]         request a drain (then `last` means the drain: approve/wait/status last)
  /migrate return <host>              move back what the last drain took off <host>
  as <user>                           act as another local user (a second user approves)
  approve <job-id|last>               approve (not your own request)
  deny <job-id|last>                  deny
  abort <job-id|last>                 abort a running migration
  postcopy <job-id|last>              switch a running migration to post-copy
  downtime <job-id|last> <ms>         raise the max downtime (e.g. 500, 1.5s)
  bandwidth <job-id|last> <MiB/s>     set the bandwidth cap (e.g. 200, 1G)
  wait <job-id|last>                  block until that job ends
  approve|deny|wait|cancel D<id>      the same on a drain (wait shows its roll-up, then every move's outcome)
  status last / cancel last           the last job or drain
  help [topic]                        this text and /migrate help
  quit                                stop reading; running jobs are waited for"""


def parse_job_ref(word: str) -> JobRef | None:
    if word.lower() == "last":
        return "last"
    m = _JOB_REF.fullmatch(word)
    return int(m.group(1)) if m and int(m.group(1)) > 0 else None


def _control(verb: str, args: list[str]) -> ConsoleCommand:
    """approve / deny / abort / postcopy / wait on a job (`7`, `#7`, `last`) or a drain (`D7`)."""
    try:
        drain_id = parse_drain_ref(args[0]) if len(args) == 1 else None
    except GrammarError as err:
        return ConsoleError(f"{err.message}: {err.hint}")
    if drain_id is not None:
        if verb in ("abort", "postcopy"):
            return ConsoleError(f"{verb} works on one job; a drain is stopped with `cancel D{drain_id}`")
        return Control(verb, DrainRef(drain_id))  # type: ignore[arg-type]
    ref = parse_job_ref(args[0]) if len(args) == 1 else None
    if ref is None:
        return ConsoleError(f"usage: {verb} <job-id|last>, e.g. `{verb} 7` or `{verb} last`")
    return Control(verb, ref)  # type: ignore[arg-type]


def parse_console_line(line: str) -> ConsoleCommand:
    """One input line -> a console command. Never raises."""
    text = line.strip()
    if not text or text.startswith("#"):
        return Blank()
    if text.startswith("/"):
        head, _, rest = text.partition(" ")
        if head != "/migrate":
            return ConsoleError(f"unknown command `{head}`: the console understands `/migrate …` (see `help`)")
        return Slash(rest.strip())
    words = text.split()
    verb = words[0].lower()
    args = words[1:]
    if verb in ("quit", "exit"):
        return Quit()
    if verb == "help":
        return ConsoleHelp(" ".join(args) or None)
    if verb == "as":
        if len(args) != 1 or not is_valid_name(args[0]):
            return ConsoleError("usage: as <user> (a user name like alice or a Slack id like U012ABC)")
        return ActAs(args[0])
    if verb == "cancel" and len(args) == 1 and args[0].lower() == "last":
        return Control("cancel", "last")  # `cancel 7` and `cancel D7` are /migrate text
    if verb in ("approve", "deny", "abort", "postcopy", "wait"):
        return _control(verb, args)
    if verb in ("downtime", "bandwidth"):
        unit = "<ms>" if verb == "downtime" else "<MiB/s>"
        ref = parse_job_ref(args[0]) if len(args) == 2 else None
        if ref is None:
            return ConsoleError(f"usage: {verb} <job-id|last> {unit}, e.g. `{verb} 7 500`")
        return SetValue(verb, ref, args[1])  # type: ignore[arg-type]
    return Slash(text)
