"""Help text for /migrate (Slack, the console and the CLI all show this), generated from the option table."""

from __future__ import annotations

from migration_core.grammar.spec import ALIASES, OPTIONS, OPTIONS_BY_NAME, Arity, OptionSpec
from migration_core.grammar.values import NAME_RULE
from migration_core.limits import BANDWIDTH_MIB_S, DEFAULT_MAX_DOWNTIME_MS, MAX_DOWNTIME_MS, TIMEOUT_S

_USAGE = """\
/migrate <vm> to <host> [options]        request a migration (preflight, then an approval card)
/migrate plan <vm> to <host> [options]   preflight and prediction only; nothing is changed
/migrate status [<job-id>|<vm>|D<id>]    one job (#41 or 41), the latest job of a VM, a drain (D7), or all active
/migrate cancel <job-id>                 withdraw a request that has not started yet
/migrate history [<vm>|<host>] [--limit N]   recent jobs, newest first (default 20, at most 500)
/migrate hosts                           the hosts in the inventory and whether each answers
/migrate <vm> to any [options]           the bot picks the destination (also: /migrate <vm>)
/migrate plan drain <host> [options]     dry run of emptying a host: every VM's destination, order, ETA
/migrate drain <host> [options]          empty a host for maintenance (see `/migrate help drain`)
/migrate return <host> [--reason TEXT]   move back the VMs the last drain took off <host>
/migrate cancel D<id>                    cancel a drain (also: cancel drain 7)
/migrate freezes                         the change freezes in force now and the next ones
/migrate help [<topic>]                  topics: commands, options, examples, durations, names,
                                         a command (status...) or an option (postcopy...)"""

_EXAMPLES = """\
/migrate vm42 to hostB
    live-migrate the running VM vm42 to hostB, persistent there (the defaults)
/migrate plan vm42 to hostB
    show the preflight checks and the convergence prediction; changes nothing
/migrate vm42 to hostB --postcopy --reason "CHG-1234 kernel update"
    allow post-copy if pre-copy does not converge; record the change ticket
/migrate busy to hostB --postcopy-after 30s --max-downtime 500ms
    switch to post-copy after 30 s of pre-copy; allow up to 500 ms of pause at switch-over
/migrate db1 to hostC --parallel 4 --bandwidth 2G --timeout 20m
    four connections, at most 2 GiB/s, give up after 20 minutes
/migrate disky to hostB --copy-storage all
    also copy the VM's local (non-shared) disks
/migrate stopped to hostB --offline --undefine-source
    move a shut-off VM's definition and remove it from the source
/migrate status #41        /migrate cancel 41        /migrate history hostB --limit 50"""

_DURATIONS = """\
Durations: 300ms, 30s, 5m, 1h30m, 1.5h (units h, m, s, ms; largest first).
A bare number is seconds, except for --max-downtime where it is milliseconds (as in virsh).
Rates (--bandwidth) are in MiB per second: 500, 500M, 500MiB/s, 2G, 2GiB/s.
Bytes, not bits: 10 Gbit/s is about 1192M, 1 Gbit/s about 119M."""

_NAMES = f"""\
VM and host names: {NAME_RULE}.
Job ids are numbers, written 41 or #41; a plain number after status is always a job id.
Drain ids are written with a D: D7 (or d7); `status D7` and `cancel D7` always mean the drain.
Typing on a phone is fine: — or – instead of --, curly quotes and odd spaces are understood."""

_COMMANDS: dict[str, str] = {
    "migrate": """\
/migrate <vm> to <host> [options]
Runs preflight (CPU, storage, devices, network, capacity...), predicts whether the migration converges,
and posts an approval card. Once approved it runs, with live progress in the card's thread.
A running VM migrates live, a shut-off VM offline, unless --live or --offline says otherwise.
See `/migrate help options` and `/migrate help examples`.""",
    "plan": """\
/migrate plan <vm> to <host> [options]
The same preflight report and prediction as a request, without asking anyone to approve and without
changing anything. Takes the same options as a request.""",
    "status": """\
/migrate status              every active migration and the queue
/migrate status 41           job #41 (also: status #41)
/migrate status vm42         the latest job of VM vm42
/migrate status D7           drain D7: each move's state, the roll-up and the ETA""",
    "cancel": """\
/migrate cancel 41
Withdraws job #41 if it has not started (awaiting approval, approved or queued).
A running migration is stopped with the Abort button in its thread instead.
/migrate cancel D7 (or cancel drain 7) cancels a drain: moves not started never start, moves in pre-copy
are aborted, moves in post-copy finish; its thread says which is which.""",
    "history": """\
/migrate history                    the 20 most recent jobs
/migrate history vm42 --limit 50    the last 50 jobs of VM vm42 (or of a host: history hostB)""",
    "drain": """\
/migrate plan drain <host> [--to HOST,...] [--except VM,...] [--include-stopped] [options] [--reason TEXT]
/migrate drain <host> [same options]
Empties a host for maintenance. Every VM on it gets a destination, checked with the same preflight as a
single move, with memory counted across the whole plan (each host's memory_reserve is kept free) and
anti-affinity groups spread over hosts; a VM no host can take is listed with the reason and the fix and
does not hold up the others. The plan orders the moves longest first in waves and lets moves share the
link only while each VM still meets its downtime target; it shows the total ETA and a hash.
  --to HOST[,HOST...]     only these destinations (default: every other host of the inventory)
  --except VM[,VM...]     leave these VMs where they are
  --include-stopped       also move shut-off VMs (offline); without it they stay
Migration options (--postcopy, --bandwidth, --max-downtime, --copy-storage...) apply to every move.
`plan drain` is the dry run and changes nothing. `drain` posts one card with the same plan; the drain needs
the approvals of a risky change (one approval covers every move, bound to the plan's hash). It then runs
the moves as ordinary jobs, with one roll-up message in the card's thread (N of M done, each running VM's
phase, remaining data and ETA), a line per VM and a final summary. A VM that cannot move is parked on its
host with the reason and the drain goes on ("partially done"). Drains are named D<id>:
/migrate status D7    /migrate cancel D7""",
    "return": """\
/migrate return <host> [--reason TEXT]
Moves back the VMs that the last completed drain took off <host>, each to where it was; posts a card to
approve like a drain, and clears the host's "drained" mark. `migrate-bot plan return <host>` is its dry run.""",
    "any": """\
/migrate <vm> to any [options]      (also: /migrate <vm>, and /migrate plan <vm> to any)
The bot picks the destination: every host is checked with the same preflight as a single move and the one
with the most free memory left (after its memory_reserve) among those that pass is chosen; the plan says
why, and why each other host was not.""",
    "hosts": """\
/migrate hosts
Lists the hosts of the inventory (hosts file), whether each one's libvirt answers, and its limits on
concurrent inbound and outbound migrations.""",
    "freezes": """\
/migrate freezes
Lists the change freezes of the policy file (MIGRATE_BOT_POLICY) that are in force now and the next ones,
with when each ends. A request made during a freeze is refused unless it carries --emergency and --reason,
and then it needs more approvers; an approved move waits until the freeze ends.""",
    "help": """\
/migrate help [<topic>]
Topics: commands, options, examples, durations, names, a command (status, history...) or an option
(postcopy, max-downtime...). `/migrate help --postcopy` works too.""",
}

_OPTION_DETAILS: dict[str, str] = {
    "live": "Fails preflight if the VM is shut off.",
    "offline": "Only for a shut-off VM. Cannot be combined with live-only options or --transient.",
    "transient": "Cannot be combined with --undefine-source: the VM would be defined nowhere.",
    "undefine-source": (
        "libvirt removes the definition as the migration ends. Without it the bot removes it after verifying "
        "the move (one owner per VM) unless --keep-source is given."
    ),
    "keep-source": (
        "By default a verified persistent move leaves the VM defined only on the destination, and a "
        "--copy-storage move also deletes the images it copied from the source. --keep-source keeps both."
    ),
    "postcopy": (
        "The VM starts on the destination and fetches the remaining memory on demand. If the link fails "
        "during post-copy the VM cannot run on either host until the migration is recovered, so the bot "
        "never aborts in post-copy. Refused for VMs with vGPUs, migratable VFs or a vIOMMU."
    ),
    "postcopy-after": "Like virsh's --timeout N --timeout-postcopy. Example: --postcopy-after 45s",
    "parallel": "Roughly one connection per 10 Gbit/s of link helps. Example: --parallel 4",
    "max-downtime": f"Example: --max-downtime 500ms (or 500). {MAX_DOWNTIME_MS.range_text}, default "
    f"{DEFAULT_MAX_DOWNTIME_MS} ms.",
    "bandwidth": f"Example: --bandwidth 1G. Bytes, not bits: 10 Gbit/s is about 1192M. {BANDWIDTH_MIB_S.range_text}.",
    "copy-storage": "Needed when a disk is not on storage both hosts share. Example: --copy-storage all",
    "timeout": f"Example: --timeout 20m. {TIMEOUT_S.range_text}.",
    "reason": "Shown on the approval card and kept in the history. Also --reason=TEXT.",
    "ticket": "Shown on the card and the summary, stored and exported. Example: --ticket CHG0012345",
    "at": (
        "The request is approved now and starts at TIME after the usual re-check; if it cannot start within the "
        "policy's grace (30 min by default: a full queue, a host down, a freeze) it expires. "
        "Example: --at 2026-12-24T22:00+01:00"
    ),
    "window": (
        "Like --at, with the latest start given: it starts between START and END or expires. END may be a bare "
        "time on START's day. Example: --window 2026-12-24T22:00Z/23:30"
    ),
    "emergency": (
        "Only during a change freeze, and only with --reason. The request then needs the policy file's "
        'emergency number of approvers. Example: --emergency --reason "INC-42 host failing"'
    ),
    "limit": "Example: /migrate history hostB --limit 100",
    "to": "Example: /migrate plan drain hostA --to hostB,hostC",
    "except": "Example: /migrate plan drain hostA --except db1,db2",
    "include-stopped": "Shut-off VMs move offline (only their definition). Example: /migrate plan drain hostA "
    "--include-stopped",
}

TOPICS: tuple[str, ...] = (
    "commands", "options", "examples", "durations", "names", *_COMMANDS, *(o.name for o in OPTIONS)
)  # fmt: skip


def topic_key(topic: str) -> str:
    """Normalise a help topic as typed (`--postcopy`, `Options`, `max_downtime`) to a key of TOPICS."""
    key = topic.strip().lstrip("-\u2013\u2014").lower().replace("_", "-")
    if key in ALIASES:
        key = ALIASES[key][0]
    return {"option": "options", "example": "examples", "command": "commands", "duration": "durations",
            "name": "names", "request": "migrate"}.get(key, key)  # fmt: skip


def _option_line(spec: OptionSpec) -> str:
    usage = f"--{spec.name}" + (f" {spec.metavar}" if spec.arity is not Arity.FLAG else "")
    return f"  {usage:<26} {spec.summary}"


def _options_text() -> str:
    migrate_opts = [o for o in OPTIONS if not o.history_only and not o.drain_only]
    lines = ["Options (virsh's names). Live-only options cannot be combined with --offline:"]
    lines += [_option_line(o) + (" [live]" if o.live_only else "") for o in migrate_opts]
    lines.append("Values may also be written --option=value. virsh spellings work too: "
                 + ", ".join(f"--{a}" for a in ALIASES) + ".")  # fmt: skip
    lines.append(_DURATIONS)
    return "\n".join(lines)


def help_text(topic: str | None = None) -> str:
    """The help for `topic` (None: the overview). An unknown topic gets the overview and the topic list."""
    if topic is None:
        return "\n\n".join([
            "Migrate KVM virtual machines between hosts, with preflight checks and approval.",
            _USAGE,
            "Examples:\n" + "\n".join(_EXAMPLES.split("\n")[:6]),
            "More: `/migrate help options`, `/migrate help examples`, `/migrate help durations`.",
        ])  # fmt: skip
    key = topic_key(topic)
    if key == "commands":
        return _USAGE
    if key == "options":
        return _options_text()
    if key == "examples":
        return _EXAMPLES
    if key == "durations":
        return _DURATIONS
    if key == "names":
        return _NAMES
    if key in _COMMANDS:
        return _COMMANDS[key]
    spec = OPTIONS_BY_NAME.get(key)
    if spec is not None:
        detail = _OPTION_DETAILS.get(spec.name)
        text = _option_line(spec).strip()
        if spec.live_only:
            text += "\nLive migrations only (not with --offline)."
        return text + (f"\n{detail}" if detail else "")
    return f"No help on `{topic}`. Topics: {', '.join(TOPICS)}.\n\n" + help_text(None)
