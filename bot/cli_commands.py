"""The CLI subcommands that need the core: serve, console, plan, status, history, export, hosts, calibration,
audit, doctor."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import getpass
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TextIO

from bot.console_render import render_plain
from bot.logging_setup import setup_logging, url_password
from bot.settings import Settings, Transport, load_settings
from bot.wiring import Core, make_service, open_core
from handlers.blocks.answers import hosts_message, jobs_message, status_message
from handlers.blocks.card import plan_message
from handlers.blocks.drain import drain_plan_message, placed_plan_message
from handlers.blocks.drain_card import drain_status_message, with_drains
from handlers.blocks.ir import Dialect, Message
from migration_core.errors import GrammarError, MigrateBotError
from migration_core.events import FanoutSink, RecordingSink
from migration_core.grammar.parser import (
    DrainCommand,
    MigrateCommand,
    PlaceCommand,
    ReturnCommand,
    parse_command,
)
from migration_core.grammar.values import parse_drain_ref
from migration_core.models import Job
from migration_core.planning.drain import DrainRequest
from migration_core.planning.estimate import calibration_report
from migration_core.service import MigrationService
from migration_core.store import Store
from migration_core.store.job_record import CSV_COLUMNS

log = logging.getLogger(__name__)
_PLAIN = Dialect()
CALIBRATION_READ_LIMIT = 20_000  # samples read for the report (pairs x the last 30 days)


def _settings(command: str) -> Settings:
    settings = load_settings()
    secrets = (
        settings.slack_bot_token or "",
        settings.slack_app_token or "",
        settings.slack_signing_secret or "",
        url_password(settings.database_url) or "",
    )
    json_lines = settings.log_format.value == "json"
    # In the terminal console every job event is already printed; INFO lines would only interleave with it.
    quiet = command == "console" and not json_lines
    level = settings.log_level or ("WARNING" if quiet else "INFO")
    setup_logging(level, json_lines, secrets)
    return settings


async def _nobody(_user: str) -> bool:
    return False


async def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Dispatch one subcommand; returns the exit code. MigrateBotError propagates to cli.main."""
    settings = _settings(args.cmd)
    if args.cmd == "plan":
        return await _plan(settings, args, out, err)
    if args.cmd == "serve":
        return await _serve(settings)
    if args.cmd == "doctor":
        return await _doctor(settings, args, out)
    if args.cmd == "audit":
        return await _audit(settings, args, out)
    core = await open_core(settings)
    try:
        if args.cmd == "console":
            return await _console(core, args, out)
        service = make_service(core, RecordingSink(), _nobody)  # read-only use: no dispatcher started
        if args.cmd == "status":
            return await _status(core, service, args, out, err)
        if args.cmd == "export":
            await _export(core, args.since, args.format, out)
            return 0
        if args.cmd == "history":
            if not 1 <= args.limit <= 1000:
                err.write("error: --limit must be 1..1000\n")
                return 2
            jobs = await service.history(args.subject, args.limit)
            title = f"History of {args.subject}" if args.subject else "History"
            msg = jobs_message(title, jobs, _PLAIN, empty="no jobs yet")
            if not args.json:  # the recent drains too (the JSON stays the list of jobs other tools read)
                drains = [d for d in await service.recent_drains(args.limit) if args.subject in (None, d.host)]
                msg = with_drains(msg, [await service.drain_status(d.id) for d in drains], _PLAIN)
            _emit(out, args.json, [_job_json(j) for j in jobs], msg)
            return 0
        if args.cmd == "calibration":
            return await _calibration(core, args, out)
        if args.cmd == "hosts":
            hosts = await service.hosts()
            _emit(out, args.json, [h.to_json() for h in hosts], hosts_message(hosts, _PLAIN))
            return 0 if all(h.reachable for h in hosts) else 1
        raise AssertionError(args.cmd)
    finally:
        await core.close()


async def _status(core: Core, service: MigrationService, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`status` (everything active), `status <job-id|vm>` and `status D7` (a drain), as text or --json."""
    if args.target and parse_drain_ref(args.target) is not None:
        status = await service.drain_status(int(args.target[1:]))  # `status D7`: a drain
        _emit(out, args.json, status.to_json(), drain_status_message(status, _PLAIN))
        return 0
    target = args.target.lstrip("#") if args.target else None
    if target is None:
        jobs = await service.active_jobs()
        msg = jobs_message("Active migrations", jobs, _PLAIN, empty="no active migrations")
        _emit(out, args.json, [_job_json(j) for j in jobs], msg)
        return 0
    job = await service.get_job(int(target)) if target.isdigit() else await service.latest_job_for_vm(target)
    if job is None:
        err.write(f"error: no job for VM {target!r}\nhint: see `migrate-bot history`\n")
        return 1
    if args.json:  # the whole record: the contract of README's "Command line"
        out.write(json.dumps((await core.store.record(job.id)).to_json(), default=str) + "\n")
        return 0
    samples = await core.store.progress(job.id, limit=1)
    sample = samples[-1] if samples else None
    msg = status_message(job, _PLAIN, ttl_s=core.settings.approval_ttl_s, sample=sample)
    _emit(out, False, None, msg)
    return 0


async def _doctor(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    """No database: only the hosts file and the hosts. A bad hosts file raises InventoryError (exit 1)."""
    from migration_core.hypervisor.libvirt_adapter import Hypervisor
    from migration_core.inventory.hosts import load_inventory
    from migration_core.preflight.doctor import render_text, run_doctor
    from migration_core.preflight.runner import PreflightRunner

    inventory = load_inventory(settings.hosts_file)
    hypervisor = Hypervisor({h.name: h.uri for h in inventory})
    for host in inventory:
        hypervisor.add_host(host.name, host.uri, host.peer_uri)
    try:
        report = await run_doctor(inventory, hypervisor, PreflightRunner(inventory, hypervisor))
    finally:
        await hypervisor.close()
    out.write((json.dumps(report.to_json()) if args.json else render_text(report)) + "\n")
    return 0 if report.ready else 1


async def _calibration(core: Core, args: argparse.Namespace, out: TextIO) -> int:
    """`migrate-bot calibration [--json]`: the per-pair prediction quality and what was learned."""
    samples = await core.store.move_samples(limit=CALIBRATION_READ_LIMIT)
    reports = calibration_report(samples, now=datetime.now(UTC))
    if args.json:
        out.write(json.dumps([r.to_json() for r in reports]) + "\n")
        return 0
    if not reports:
        out.write(
            "no finished migration with a prediction yet: every migration the bot runs from now on is "
            "recorded and calibrates the next ones\n"
        )
        return 0
    out.write(
        f"{'host pair':<24} {'runs':>5} {'used':>5} {'total err med/p90':>18} {'downtime err med/p90':>21}"
        f" {'throughput':>11} {'link share':>10} {'fixed':>7} {'pause +':>8}\n"
    )
    for r in reports:

        def pct(x: float | None) -> str:
            return "-" if x is None else f"{100 * x:.0f}%"

        learned = "" if r.pair_samples else " (defaults: no plain live run yet)"
        tput = f"{r.throughput_mib_s:.0f} MiB/s" if r.throughput_mib_s else "-"
        out.write(
            f"{r.source + ' → ' + r.destination:<24} {r.migrations:>5} {r.learned_from:>5}"
            f" {pct(r.total_error_median) + ' / ' + pct(r.total_error_p90):>18}"
            f" {pct(r.downtime_error_median) + ' / ' + pct(r.downtime_error_p90):>21}"
            f" {tput:>11} {r.efficiency:>10.2f} {r.fixed_s:>6.2f}s {r.downtime_offset_ms:>+5.0f} ms{learned}\n"
        )
    return 0


async def _export(core: Core, since: datetime | None, fmt: str, out: TextIO) -> None:
    """Every job's record since `since`, oldest first: JSON lines (the `status --json` record) or CSV."""
    records = await core.store.records_since(since)
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow(record.csv_row())
        return
    for record in records:
        out.write(json.dumps(record.to_json(), default=str) + "\n")


async def _audit(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    """`audit verify`: recompute the event log's hash chain; exit 1 naming the first record changed or removed."""
    store = await Store.open(settings.database_url)  # the database only: no hosts file needed
    try:
        report = await store.verify_audit()
    finally:
        await store.close()
    if args.json:
        out.write(json.dumps({**report.__dict__, "intact": report.intact}) + "\n")
        return 0 if report.intact else 1
    span = f"#{report.first_id}..#{report.last_id}" if report.first_id is not None else "none"
    older = f"; {report.unchained} older record(s) from before the chain are not covered" if report.unchained else ""
    if report.intact:
        out.write(f"audit chain intact: {report.checked} record(s) ({span}){older}\n")
        out.write(f"head hash: {report.head_hash or '-'} (keep it elsewhere: removing the newest records is only "
                  "visible against a head hash noted earlier)\n")  # fmt: skip
        return 0
    out.write(f"audit chain BROKEN at record #{report.broken_at}: {report.problem}\n")
    out.write(f"{report.checked} record(s) before it check out ({span}){older}\n")
    return 1


def _emit(out: TextIO, as_json: bool, data: object, msg: Message) -> None:
    if as_json:
        out.write(json.dumps(data, default=str) + "\n")
    else:
        out.write(render_plain(msg) + "\n")


def _job_json(job: Job) -> dict[str, object]:
    return {
        "id": job.id,
        "vm": job.vm,
        "source": job.source,
        "destination": job.destination,
        "state": job.state.value,
        "requester": job.requester,
        "approvers": list(job.approvers),
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
        "error": job.error,
        "plan_hash": job.plan.hash if job.plan else None,
        "ticket": job.plan.request.options.ticket if job.plan else None,
        "emergency": job.plan.request.options.emergency if job.plan else False,
    }


async def _plan(settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        command = parse_command(" ".join(args.words))
    except GrammarError as e:
        if args.json:
            out.write(json.dumps({"error": e.message, "hint": e.hint}) + "\n")
        else:
            err.write(f"error: {e.message}\nhint: {e.hint}\n")
        return 2
    if isinstance(command, DrainCommand | PlaceCommand | ReturnCommand):
        return await _plan_many(settings, command, args.json, out, err)
    if not isinstance(command, MigrateCommand):
        err.write(
            "error: `plan` takes a migration: VM to HOST [options], VM to any, drain HOST or return HOST\n"
            "hint: e.g. migrate-bot plan vm42 to hostB, migrate-bot plan drain hostA\n"
        )
        return 2
    core = await open_core(settings)
    try:
        # An unknown destination or VM is a plan too (its failed check names the close matches), as in Slack.
        plan = await core.planning.make_plan(command.request)
    except MigrateBotError as e:  # no host answers at all, ...: with --json the caller still gets JSON
        if args.json:
            out.write(json.dumps({"error": e.message, "hint": e.hint}) + "\n")
        else:
            err.write(f"error: {e.message}\n" + (f"hint: {e.hint}\n" if e.hint else ""))
        return 1
    finally:
        await core.close()
    if args.json:
        out.write(json.dumps(plan.to_json(), default=str) + "\n")
    else:
        out.write(render_plain(plan_message(plan, _PLAIN)) + "\n")
    return 0


async def _plan_many(
    settings: Settings, command: DrainCommand | PlaceCommand | ReturnCommand, as_json: bool, out: TextIO, err: TextIO
) -> int:
    """`plan drain HOST ...`, `plan return HOST` and `plan VM to any`: dry runs (the CLI's `plan` never executes
    anything)."""
    core = await open_core(settings)
    try:
        if isinstance(command, ReturnCommand):  # where the last completed drain of HOST took its VMs, back
            service = make_service(core, RecordingSink(), _nobody)  # read-only: no dispatcher started
            back = await service.plan_return(core.inventory.get(command.host).name)
            data, msg = back.to_json(), drain_plan_message(back, _PLAIN, verb="return to")
        elif isinstance(command, DrainCommand):
            drain = await core.planning.plan_drain(
                DrainRequest(
                    core.inventory.get(command.host).name,
                    command.options,
                    to=tuple(core.inventory.get(h).name for h in command.to),
                    except_vms=command.except_vms,
                    include_stopped=command.include_stopped,
                )
            )
            data, msg = drain.to_json(), drain_plan_message(drain, _PLAIN)
        else:
            placed = await core.planning.plan_any(command.vm, command.options)
            data, msg = placed.to_json(), placed_plan_message(placed, _PLAIN)
    except MigrateBotError as e:
        if as_json:
            out.write(json.dumps({"error": e.message, "hint": e.hint}) + "\n")
        else:
            err.write(f"error: {e.message}\n" + (f"hint: {e.hint}\n" if e.hint else ""))
        return 1
    finally:
        await core.close()
    _emit(out, as_json, data, msg)
    return 0


async def _console(core: Core, args: argparse.Namespace, out: TextIO) -> int:
    from bot.console import ConsoleSink, console_approver_check, run_console

    sink = ConsoleSink()
    ops = _Ops(core)
    service = make_service(core, FanoutSink(ops.sink, sink), console_approver_check(core.settings))
    ops.watch(service)
    await service.start()
    stop_ops = await ops.serve_metrics_port()
    try:
        return await run_console(
            service, core.settings, user=args.user or getpass.getuser(), stdin=sys.stdin, stdout=out, sink=sink
        )
    finally:
        await stop_ops()
        ops.close()
        await service.close()


class _Ops:
    """Metrics and health of one process: the metrics sink, the Slack/libvirt error hooks, /healthz, and the
    listener on MIGRATE_BOT_METRICS_PORT."""

    def __init__(self, core: Core) -> None:
        from bot.metrics import Metrics, MetricsSink, metrics_handler, watch_libvirt
        from bot.slack_runner import HealthProbe

        self.core = core
        self.metrics = Metrics()
        self.sink = MetricsSink(self.metrics, get_job=core.store.get_job)
        self.handler = metrics_handler(self.metrics)
        self.health = HealthProbe(core.store.ping, core.inventory.names(), core.planning.host_status)
        self._unwatch = watch_libvirt(self.metrics)

    def watch(self, service: MigrationService) -> None:
        async def queue_length() -> int:
            return len(await service.queue())

        self.metrics.watch_queue(queue_length)

    def watch_slack(self, client: object) -> None:
        from bot.metrics import SlackErrorObserver

        handlers = getattr(client, "retry_handlers", None)
        if isinstance(handlers, list):
            handlers.insert(0, SlackErrorObserver(self.metrics))  # first: it sees every attempt

    async def serve_metrics_port(self) -> Callable[[], Awaitable[None]]:
        """Listen on MIGRATE_BOT_METRICS_PORT (if set) for /metrics and /healthz; returns the stop function."""
        from bot.slack_runner import ops_web_app, start_site

        s = self.core.settings
        if s.metrics_port is None:
            return _nothing
        web_app = ops_web_app(health=self.health, metrics=self.handler)
        runner, port = await start_site(web_app, s.bind_host, s.metrics_port)
        log.info("metrics and health on http://%s:%d (/metrics, /healthz)", s.bind_host, port)
        return runner.cleanup

    def close(self) -> None:
        self._unwatch()


async def _nothing() -> None:
    return None


async def _serve(settings: Settings) -> int:
    from bot.app import build_slack
    from bot.slack_runner import run_http, run_socket_mode

    settings.require_slack()
    core = await open_core(settings)
    ops = _Ops(core)
    bot = build_slack(
        settings,
        lambda sink, approvers: make_service(core, sink, approvers.is_approver, approvers.in_group),
        group_members=core.policy.members,  # owners' groups: Slack user groups, else the file's [groups] lists
        extra_sinks=(ops.sink,),
        on_refusal=ops.metrics.count_refusal,
    )
    service = bot.service
    assert isinstance(service, MigrationService)
    ops.watch(service)
    ops.watch_slack(bot.client)
    await bot.bind_workspace()  # the team every request must come from (handlers.gate)
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    log.info(
        "serving Slack in %s mode; hosts: %s; database: %s",
        settings.transport.value,
        ", ".join(core.inventory.names()),
        core.store.url_masked,
    )
    stop_ops = await ops.serve_metrics_port()
    try:
        if settings.transport is Transport.HTTP:
            await run_http(bot.app, settings, stop=stop, health=ops.health, metrics=ops.handler)
        else:
            await run_socket_mode(bot.app, settings, stop=stop)
    except MigrateBotError:
        raise
    finally:
        await stop_ops()
        ops.close()
        await bot.sink.aclose()
        if bot.drain_sink is not None:
            await bot.drain_sink.aclose()
        await service.close()
        await core.close()
    return 0
