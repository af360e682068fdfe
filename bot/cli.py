"""The `migrate-bot` command line: serve, console, parse, plan, status, history, export, hosts, doctor, version."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from migration_core.errors import GrammarError, MigrateBotError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

_DESCRIPTION = """\
migrate-bot moves KVM virtual machines between libvirt hosts with preflight checks, a convergence
prediction, change-control approvals and live progress, from Slack or from a terminal.

The words after `plan` (and the text given to `parse`) are the same as after `/migrate` in Slack,
e.g.:  migrate-bot plan vm42 to hostB --postcopy
"""

_ENV_HELP = """\
environment:
  MIGRATE_BOT_HOSTS   hosts inventory file (default ./hosts.toml; see deploy/hosts.example.toml)
  MIGRATE_BOT_DB      database URL (default sqlite:///./migrate-bot.db; or postgresql+psycopg://...)
  (Slack and policy variables: see README.md)
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="migrate-bot",
        description=_DESCRIPTION,
        epilog=_ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    s = sub.add_parser("serve", help="run the Slack bot (Socket Mode by default; MIGRATE_BOT_MODE=http for HTTP)")
    s.epilog = "Needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode)."

    c = sub.add_parser("console", help="run the same flow in this terminal, no Slack needed")
    c.add_argument("--as", dest="user", default=None, help="act as this user (default: $USER)")

    pa = sub.add_parser("parse", help="parse /migrate text and print the typed command")
    pa.add_argument("text", nargs=argparse.REMAINDER, help="the text after /migrate; add --json for one JSON object")

    pl = sub.add_parser("plan", help="preflight checks + convergence prediction; changes nothing")
    pl.add_argument("words", nargs=argparse.REMAINDER, help="VM to HOST [options], as after /migrate; --json for JSON")

    st = sub.add_parser("status", help="show a job (by id) or the latest job of a VM, or all active jobs")
    st.add_argument("target", nargs="?", help="job id (41 or #41) or VM name")
    st.add_argument(
        "--json",
        action="store_true",
        help="one JSON object: a job's whole record (plan, approvals, outcome, verification, events; see README)",
    )

    ex = sub.add_parser("export", help="write every job's record for an audit (JSON lines or CSV) to stdout")
    ex.add_argument(
        "--since",
        type=since_date,
        default=None,
        metavar="DATE",
        help="only jobs created at or after DATE: 2026-05-01, or 2026-05-01T12:00 (UTC unless an offset is given)",
    )
    ex.add_argument(
        "--format",
        choices=("jsonl", "csv"),
        default="jsonl",
        help="jsonl: one record per line, as `status ID --json` prints it (default); csv: one flat row per job",
    )

    h = sub.add_parser("history", help="recent jobs, optionally for one VM or host")
    h.add_argument("subject", nargs="?", help="VM or host name")
    h.add_argument("--limit", type=int, default=20, help="how many jobs (default 20)")
    h.add_argument("--json", action="store_true")

    ho = sub.add_parser("hosts", help="list inventory hosts and whether each answers")
    ho.add_argument("--json", action="store_true")

    d = sub.add_parser(
        "doctor",
        help="check every host: access, versions, identity, ports between hosts, TLS; exit 0 only when ready",
    )
    d.add_argument("--json", action="store_true", help="one JSON object: ready, hosts, findings (each with its fix)")
    d.epilog = "Reads only: nothing on a host changes. Exit 0 when every host is ready, 1 when not, 2 on bad input."

    ca = sub.add_parser(
        "calibration",
        help="per host pair: how well predictions matched, and the throughput and fixed cost learned",
    )
    ca.epilog = (
        "Errors are |predicted - measured| / measured over the succeeded migrations of the last 30 days; "
        "failed and aborted runs are counted but never learned from."
    )
    ca.add_argument("--json", action="store_true", help="one JSON list, one object per host pair")

    au = sub.add_parser("audit", help="check the event log's hash chain (tamper evidence)")
    au.add_argument("action", choices=["verify"], help="verify: recompute the chain, name the first bad record")
    au.add_argument("--json", action="store_true")

    sub.add_parser("version", help="print the version")
    return p


def since_date(text: str) -> datetime:
    """`--since`: a date or an ISO date and time; without an offset it is UTC."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: give YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC unless an offset like +02:00 "
            "is given), e.g. 2026-05-01"
        ) from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _print_error(err: MigrateBotError, out: TextIO) -> None:
    out.write(f"error: {err.message}\n")
    if err.hint:
        out.write(f"hint: {err.hint}\n")


def _cmd_parse(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from migration_core.grammar.parser import command_to_json, error_to_json, parse_command

    text = " ".join(args.text)
    try:
        command = parse_command(text)
    except GrammarError as e:
        if args.json:
            out.write(json.dumps(error_to_json(e)) + "\n")
        else:
            _print_error(e, err)
        return EXIT_USAGE
    if args.json:
        out.write(json.dumps(command_to_json(command)) + "\n")
    else:
        for key, value in command_to_json(command).items():
            out.write(f"{key}: {value}\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cmd is None:
        parser.print_help(out)
        return EXIT_OK
    if args.cmd == "version":
        from importlib.metadata import version

        out.write(f"migrate-bot {version('migrate-bot')}\n")
        return EXIT_OK
    if args.cmd in ("parse", "plan"):
        # The words are /migrate text, which has its own options: only a standalone --json is ours.
        words = args.text if args.cmd == "parse" else args.words
        args.json = "--json" in words
        words = [w for w in words if w != "--json"]
        if args.cmd == "parse":
            args.text = words
        else:
            args.words = words
    if args.cmd == "parse":
        return _cmd_parse(args, out, err)
    try:
        from bot import cli_commands

        return asyncio.run(cli_commands.run(args, out, err))
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130
    except MigrateBotError as e:
        _print_error(e, err)
        return EXIT_USAGE if isinstance(e, GrammarError) else EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
