"""The commands /migrate understands (typed, frozen) and their JSON and canonical text forms (pure)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from migration_core.errors import GrammarError
from migration_core.grammar.values import DASHES
from migration_core.models import CopyStorage, MigrationMode, MigrationOptions, MigrationRequest


@dataclass(frozen=True)
class MigrateCommand:
    """`<vm> to <host> [options]` (plan_only=False) or `plan <vm> to <host> [options]` (plan_only=True)."""

    request: MigrationRequest
    plan_only: bool = False


@dataclass(frozen=True)
class StatusCommand:
    """`status [<job-id>|<vm>]`: an int is a job id, a str a VM name, None means everything active."""

    target: int | str | None = None


@dataclass(frozen=True)
class CancelCommand:
    """`cancel <job-id>`: withdraw a job that has not started."""

    job_id: int


@dataclass(frozen=True)
class HistoryCommand:
    """`history [<vm>|<host>] [--limit N]`: recent jobs, newest first."""

    subject: str | None = None
    limit: int = 20


@dataclass(frozen=True)
class HostsCommand:
    """`hosts`: the inventory and whether each host answers."""


@dataclass(frozen=True)
class FreezesCommand:
    """`freezes`: the change freezes in force now and the next ones (policy file)."""


@dataclass(frozen=True)
class HelpCommand:
    """`help [<topic>]` (and empty text); `topic` is normalised to one of grammar_help.TOPICS."""

    topic: str | None = None


@dataclass(frozen=True)
class PlaceCommand:
    """`<vm> to any [options]` or `<vm>` alone (plan_only: `plan <vm> to any`): the bot picks the destination."""

    vm: str
    options: MigrationOptions = field(default_factory=MigrationOptions)
    plan_only: bool = False


@dataclass(frozen=True)
class DrainCommand:
    """`drain <host> [--to h1,h2] [--except vm1,vm2] [--include-stopped] [options]` (plan_only: `plan drain`).

    `to` empty means every other host of the inventory; the migration options apply to every move.
    """

    host: str
    to: tuple[str, ...] = ()
    except_vms: tuple[str, ...] = ()
    include_stopped: bool = False
    options: MigrationOptions = field(default_factory=MigrationOptions)
    plan_only: bool = False


@dataclass(frozen=True)
class ReturnCommand:
    """`return <host> [--reason TEXT]`: move back the VMs the last completed drain took off `host`."""

    host: str
    reason: str | None = None


@dataclass(frozen=True)
class CancelDrainCommand:
    """`cancel drain <id>` or `cancel D<id>`: cancel a drain (moves not started never start)."""

    drain_id: int


@dataclass(frozen=True)
class DrainStatusCommand:
    """`status D7`: one drain, its moves and its roll-up (drain ids are written with a D)."""

    drain_id: int


Command: TypeAlias = (
    MigrateCommand | StatusCommand | CancelCommand | HistoryCommand | HostsCommand | FreezesCommand | HelpCommand
    | PlaceCommand | DrainCommand | ReturnCommand | CancelDrainCommand | DrainStatusCommand
)  # fmt: skip
COMMAND_WORDS = ("plan", "status", "cancel", "history", "hosts", "freezes", "help", "drain", "return")
# The destination word that asks the bot to choose (`vm42 to any`); no host may be called this.
ANY_HOST = "any"


def command_to_json(cmd: Command) -> dict[str, Any]:
    """The `migrate-bot parse TEXT --json` contract: one flat object per command (keys are relied on)."""
    extra = _drain_family_to_json(cmd)
    if extra is not None:
        return extra
    assert not isinstance(cmd, PlaceCommand | DrainCommand | ReturnCommand | CancelDrainCommand | DrainStatusCommand)
    if isinstance(cmd, MigrateCommand):
        o = cmd.request.options
        return {
            "command": "plan" if cmd.plan_only else "migrate",
            "vm": cmd.request.vm,
            "destination": cmd.request.destination,
            "mode": o.mode.value if o.mode else None,
            "persistent": o.persistent,
            "undefine_source": o.undefine_source,
            "keep_source": o.keep_source,
            "postcopy": o.postcopy,
            "postcopy_after_s": o.postcopy_after_s,
            "auto_converge": o.auto_converge,
            "parallel_connections": o.parallel_connections,
            "max_downtime_ms": o.max_downtime_ms,
            "bandwidth_mib_s": o.bandwidth_mib_s,
            "copy_storage": o.copy_storage.value if o.copy_storage else None,
            "compressed": o.compressed,
            "tls": o.tls,
            "timeout_s": o.timeout_s,
            "reason": o.reason,
            "ticket": o.ticket,
            "emergency": o.emergency,
            "not_before": o.not_before.isoformat() if o.not_before else None,
            "not_after": o.not_after.isoformat() if o.not_after else None,
        }
    if isinstance(cmd, StatusCommand):
        return {"command": "status", "target": cmd.target}
    if isinstance(cmd, CancelCommand):
        return {"command": "cancel", "job_id": cmd.job_id}
    if isinstance(cmd, HistoryCommand):
        return {"command": "history", "subject": cmd.subject, "limit": cmd.limit}
    if isinstance(cmd, HostsCommand):
        return {"command": "hosts"}
    if isinstance(cmd, FreezesCommand):
        return {"command": "freezes"}
    return {"command": "help", "topic": cmd.topic}


def error_to_json(err: GrammarError) -> dict[str, str]:
    """`{"error": ..., "hint": ...}`: what `migrate-bot parse --json` prints on a grammar error."""
    return {"error": err.message, "hint": err.hint}


def command_to_text(cmd: Command) -> str:
    """The canonical text of a command (what goes after `/migrate`); parsing it gives the same command."""
    extra = _drain_family_to_text(cmd)
    if extra is not None:
        return extra
    assert not isinstance(cmd, PlaceCommand | DrainCommand | ReturnCommand | CancelDrainCommand | DrainStatusCommand)
    if isinstance(cmd, MigrateCommand):
        r, o = cmd.request, cmd.request.options
        parts = ["plan"] if cmd.plan_only else []
        parts += [r.vm, "to", r.destination]
        if o.mode is not None:
            parts.append(f"--{o.mode.value}")
        parts += ["--transient"] if not o.persistent else []
        parts += ["--undefine-source"] if o.undefine_source else []
        parts += ["--keep-source"] if o.keep_source else []
        parts += ["--postcopy"] if o.postcopy and o.postcopy_after_s is None else []
        parts += ["--postcopy-after", _seconds(o.postcopy_after_s)] if o.postcopy_after_s is not None else []
        parts += ["--auto-converge"] if o.auto_converge else []
        parts += ["--parallel", str(o.parallel_connections)] if o.parallel_connections is not None else []
        parts += ["--max-downtime", _seconds(o.max_downtime_ms / 1000)] if o.max_downtime_ms is not None else []
        parts += ["--bandwidth", _rate(o.bandwidth_mib_s)] if o.bandwidth_mib_s is not None else []
        parts += ["--copy-storage", o.copy_storage.value] if o.copy_storage is not None else []
        parts += ["--compressed"] if o.compressed else []
        parts += ["--tls"] if o.tls else []
        parts += ["--timeout", _seconds(o.timeout_s)] if o.timeout_s is not None else []
        if o.reason is not None and o.reason[:1] in DASHES:
            parts.append("--reason=" + shlex.quote(o.reason))  # else the reason would read as an option
        elif o.reason is not None:
            parts += ["--reason", shlex.quote(o.reason)]
        parts += ["--ticket", shlex.quote(o.ticket)] if o.ticket is not None else []
        parts += ["--emergency"] if o.emergency else []
        if o.not_before is not None and o.not_after is not None:
            parts += ["--window", f"{o.not_before.isoformat()}/{o.not_after.isoformat()}"]
        elif o.not_before is not None:
            parts += ["--at", o.not_before.isoformat()]
        return " ".join(parts)
    if isinstance(cmd, StatusCommand):
        return "status" if cmd.target is None else f"status {cmd.target}"
    if isinstance(cmd, CancelCommand):
        return f"cancel {cmd.job_id}"
    if isinstance(cmd, HistoryCommand):
        subject = f" {cmd.subject}" if cmd.subject else ""
        return f"history{subject}" + (f" --limit {cmd.limit}" if cmd.limit != 20 else "")
    if isinstance(cmd, HostsCommand):
        return "hosts"
    if isinstance(cmd, FreezesCommand):
        return "freezes"
    return "help" if cmd.topic is None else f"help {cmd.topic}"


def _seconds(value: float | None) -> str:
    """90.5 -> "1m30s500ms": the largest units first, as the grammar reads them back exactly."""
    assert value is not None
    rest_ms = round(value * 1000)
    parts = []
    for unit, unit_ms in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, rest_ms = divmod(rest_ms, unit_ms)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _rate(mib_s: int) -> str:
    return f"{mib_s // 1024}G" if mib_s % 1024 == 0 else f"{mib_s}M"


def command_from_json_unchecked(data: dict[str, Any]) -> Command:
    """Inverse of `command_to_json`, checking keys and types only (command_from_json checks the rest)."""
    kind = data.get("command")
    try:
        if kind in ("migrate", "plan") and data.get("destination", "") is None:
            as_migrate = _migrate_from_json({**data, "destination": ANY_HOST})
            cmd: Command = PlaceCommand(as_migrate.request.vm, as_migrate.request.options, as_migrate.plan_only)
        elif kind in ("drain", "plan drain"):
            cmd = _drain_from_json(data)
        elif kind == "return":
            cmd = ReturnCommand(data["host"], data["reason"])
        elif kind == "cancel drain":
            cmd = CancelDrainCommand(data["drain_id"])
        elif kind == "status drain":
            cmd = DrainStatusCommand(data["drain_id"])
        elif kind in ("migrate", "plan"):
            cmd = _migrate_from_json(data)
        elif kind == "status":
            cmd = StatusCommand(data["target"])
        elif kind == "cancel":
            cmd = CancelCommand(data["job_id"])
        elif kind == "history":
            cmd = HistoryCommand(data["subject"], data["limit"])
        elif kind == "hosts":
            cmd = HostsCommand()
        elif kind == "freezes":
            cmd = FreezesCommand()
        elif kind == "help":
            cmd = HelpCommand(data["topic"])
        else:
            known = ", ".join(("migrate", *COMMAND_WORDS, "plan drain", "cancel drain", "status drain"))
            raise GrammarError(f"unknown command {kind!r} in JSON", f"one of: {known}")
    except (KeyError, ValueError, TypeError) as exc:
        raise GrammarError(f"malformed {kind} command in JSON: {exc!r}", "produce it with command_to_json") from None
    expected = set(command_to_json(cmd))
    if set(data) != expected:
        raise GrammarError(f"{kind} command in JSON has keys {sorted(data)}", f"expected exactly {sorted(expected)}")
    return cmd


def _migrate_from_json(data: dict[str, Any]) -> MigrateCommand:
    def typed(key: str, *types: type, nullable: bool = True) -> Any:
        value = data[key]
        if value is None and nullable:
            return None
        if not isinstance(value, types) or isinstance(value, bool) != (bool in types):
            raise TypeError(f"{key} must be {' or '.join(t.__name__ for t in types)}, not {value!r}")
        return value

    options = MigrationOptions(
        mode=MigrationMode(data["mode"]) if data["mode"] is not None else None,
        persistent=typed("persistent", bool, nullable=False),
        undefine_source=typed("undefine_source", bool, nullable=False),
        keep_source=bool(data.get("keep_source", False)),
        postcopy=typed("postcopy", bool, nullable=False),
        postcopy_after_s=_float_or_none(typed("postcopy_after_s", int, float)),
        auto_converge=typed("auto_converge", bool, nullable=False),
        parallel_connections=typed("parallel_connections", int),
        max_downtime_ms=typed("max_downtime_ms", int),
        bandwidth_mib_s=typed("bandwidth_mib_s", int),
        copy_storage=CopyStorage(data["copy_storage"]) if data["copy_storage"] is not None else None,
        compressed=typed("compressed", bool, nullable=False),
        tls=typed("tls", bool, nullable=False),
        timeout_s=_float_or_none(typed("timeout_s", int, float)),
        reason=typed("reason", str),
        ticket=typed("ticket", str),
        emergency=typed("emergency", bool, nullable=False),
        not_before=_instant_or_none(typed("not_before", str)),
        not_after=_instant_or_none(typed("not_after", str)),
    )
    vm, destination = typed("vm", str, nullable=False), typed("destination", str, nullable=False)
    request = MigrationRequest(vm, destination, options)
    return MigrateCommand(request, plan_only=data["command"] == "plan")


def _instant_or_none(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _float_or_none(value: int | float | None) -> float | None:
    return None if value is None else float(value)


# ----- the drain family (issue 11): drain, plan drain, return, cancel drain, <vm> to any ----------------------
# Their option keys and option text are derived from the single-move forms, so an option added there (by
# another change) is carried by a drain and by `to any` without editing this block.


def _options_json(options: MigrationOptions) -> dict[str, Any]:
    data = command_to_json(MigrateCommand(MigrationRequest("v", "h", options)))
    for key in ("command", "vm", "destination"):
        del data[key]
    return data


def _options_text(options: MigrationOptions) -> str:
    """The option part of the canonical text (" --postcopy --reason x"), or ""."""
    return command_to_text(MigrateCommand(MigrationRequest("v", "h", options)))[len("v to h") :]


def _drain_family_to_json(cmd: Command) -> dict[str, Any] | None:
    if isinstance(cmd, PlaceCommand):
        data = command_to_json(MigrateCommand(MigrationRequest(cmd.vm, ANY_HOST, cmd.options), cmd.plan_only))
        return {**data, "destination": None}  # null: the bot chooses
    if isinstance(cmd, DrainCommand):
        return {
            "command": "plan drain" if cmd.plan_only else "drain",
            "host": cmd.host,
            "to": list(cmd.to),
            "except": list(cmd.except_vms),
            "include_stopped": cmd.include_stopped,
            **_options_json(cmd.options),
        }
    if isinstance(cmd, ReturnCommand):
        return {"command": "return", "host": cmd.host, "reason": cmd.reason}
    if isinstance(cmd, CancelDrainCommand):
        return {"command": "cancel drain", "drain_id": cmd.drain_id}
    if isinstance(cmd, DrainStatusCommand):
        return {"command": "status drain", "drain_id": cmd.drain_id}
    return None


def _drain_family_to_text(cmd: Command) -> str | None:
    if isinstance(cmd, PlaceCommand):
        return ("plan " if cmd.plan_only else "") + f"{cmd.vm} to {ANY_HOST}" + _options_text(cmd.options)
    if isinstance(cmd, DrainCommand):
        parts = ["plan drain" if cmd.plan_only else "drain", cmd.host]
        parts += ["--to", ",".join(cmd.to)] if cmd.to else []
        parts += ["--except", ",".join(cmd.except_vms)] if cmd.except_vms else []
        parts += ["--include-stopped"] if cmd.include_stopped else []
        return " ".join(parts) + _options_text(cmd.options)
    if isinstance(cmd, ReturnCommand):
        return f"return {cmd.host}" + _options_text(MigrationOptions(reason=cmd.reason))
    if isinstance(cmd, CancelDrainCommand):
        return f"cancel drain {cmd.drain_id}"
    if isinstance(cmd, DrainStatusCommand):
        return f"status D{cmd.drain_id}"
    return None


def _drain_from_json(data: dict[str, Any]) -> DrainCommand:
    options = _migrate_from_json({**data, "command": "migrate", "vm": "v", "destination": "h"}).request.options
    for key in ("to", "except"):
        if not isinstance(data[key], list) or not all(isinstance(n, str) for n in data[key]):
            raise TypeError(f"{key} must be a list of names, not {data[key]!r}")
    if not isinstance(data["include_stopped"], bool) or not isinstance(data["host"], str):
        raise TypeError("host must be a string and include_stopped a boolean")
    return DrainCommand(
        data["host"],
        tuple(data["to"]),
        tuple(data["except"]),
        data["include_stopped"],
        options,
        plan_only=data["command"] == "plan drain",
    )
