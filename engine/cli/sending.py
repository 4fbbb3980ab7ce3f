"""Sending and its aftermath: run, deliveries, retry, unsubscribe, suppress, bounces."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from engine import display
from engine.errors import RetainError

from . import (
    AsJson,
    AsOf,
    CampaignIds,
    Host,
    Port,
    app,
    as_of_moment,
    engine_for,
    err,
    out,
    print_json,
    settings,
    show,
    skipped_cell,
    table,
    transport_for,
    user_errors,
)


@app.command("run")
@user_errors
def run_command(campaigns: CampaignIds = None, as_of: AsOf = None,
                dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only.")] = False,
                as_json: AsJson = False,
                allow_stale: Annotated[bool, typer.Option(
                    "--allow-stale", help="Run even if the shop's data is older than "
                    "data.max_age.")] = False,
                plan_only: Annotated[bool, typer.Option(
                    "--plan-only", help="Write the plan and send nothing: `retain worker`s "
                    "send it.")] = False) -> None:
    """Plan and send now. Example: retain run winback"""
    import time as _time

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from engine.campaigns import validate
    from engine.delivery import runner
    from engine.service import schedule
    from engine.shop import freshness

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    chosen = validate.load(cfg, campaigns)
    engine = engine_for(cfg)
    if not (allow_stale or dry_run):
        freshness.require_fresh(engine, cfg, now)
    chosen, paused = schedule.runnable(engine, chosen)
    for campaign_id, why in paused.items():
        if campaigns:
            raise RetainError(f'campaign "{campaign_id}" is paused ({why}); '
                              f"run `retain resume {campaign_id}` first")
        err.print(f"skipping {campaign_id}: paused ({why})", markup=False)
    transport = None if dry_run or plan_only else transport_for(cfg)
    offset = now - datetime.now(UTC)  # --as-of shifts the whole run, sends included
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}: {task.completed} messages"),
                   TimeElapsedColumn(), console=err, transient=True,
                   disable=as_json or not sys.stderr.isatty())
    try:
        with bar:
            task = bar.add_task("sending", total=None)
            report = runner.run(engine, cfg, chosen, now, transport, dry_run=dry_run,
                                clock=lambda: datetime.now(UTC) + offset, sleep=_time.sleep,
                                progress=lambda n: bar.advance(task, n))
    finally:
        if transport is not None:
            transport.close()
    if as_json:
        print_json(report.as_dict())
        return
    print_run_report(report)


def print_run_report(report) -> None:
    grid = table("campaign", "planned", "sent", "failed", "bounced", "suppressed", "held out",
                 "deferred", "capped", "unknown", "skipped", ids=("campaign",),
                 title="Dry run (nothing written)" if report.dry_run else "Run")
    for c in report.campaigns.values():
        grid.add_row(c.campaign_id, *(f"{n:,}" for n in (
            c.planned, c.sent, c.failed, c.bounced, c.suppressed, c.held_out, c.deferred,
            c.capped, c.unknown)), skipped_cell(c))
    show(grid)
    if report.recovered_unknown:
        out.print(f"{display.count(report.recovered_unknown, 'delivery', 'deliveries')} of an "
                  "interrupted run are 'unknown' "
                  "(the server may have them); resend on purpose with: retain retry --unknown")
    if report.interrupted:
        err.print(f"stopped: {report.interrupted}", markup=False)
    if report.paused:
        err.print(f"paused: {report.paused}", markup=False)
    if report.paused or report.interrupted:
        raise typer.Exit(2)


@app.command("worker")
@user_errors
def worker_command(
    concurrency: Annotated[int, typer.Option(
        "--concurrency", min=1, help="SMTP connections of this worker (within its share of "
        "smtp.max_connections).")] = 4,
    until_idle: Annotated[bool, typer.Option(
        "--until-idle", help="Stop when nothing is due, instead of waiting for more.")] = False,
    as_json: AsJson = False,
) -> None:
    """Send the mail the ledger has due, with any number of other workers; until SIGTERM.
    Example: retain worker --concurrency 8"""
    import signal
    import threading
    import time as _time

    from engine.campaigns import validate
    from engine.delivery import worker
    from engine.service import schedule

    cfg = settings()
    engine = engine_for(cfg)
    if engine.dialect.name == "sqlite":
        err.print("SQLite takes one writer at a time: this is the only worker (use PostgreSQL "
                  "for several)", markup=False)
        worker.refuse_a_second(engine, datetime.now(UTC))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    campaigns = validate.load(cfg, None)
    transport = transport_for(cfg)
    try:
        report = worker.work(engine, cfg, lambda: schedule.runnable(engine, campaigns)[0],
                             transport, connections=concurrency, stop=stop,
                             clock=lambda: datetime.now(UTC), sleep=_time.sleep,
                             until_idle=until_idle)
    finally:
        transport.close()
    if report.paused:
        for campaign in campaigns:
            schedule.pause(engine, campaign.id, report.paused, datetime.now(UTC))
    if as_json:
        print_json(report.as_dict())
        return
    print_run_report(report)


@app.command("deliveries")
@user_errors
def deliveries_command(
    campaign: Annotated[str | None, typer.Argument(help="Campaign id.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    as_json: AsJson = False,
) -> None:
    """What happened to whom. Example: retain deliveries winback --status failed --json"""
    from engine.views import reports

    cfg = settings()
    rows = reports.deliveries(engine_for(cfg), campaign, status, limit)
    if as_json:
        print_json({"deliveries": rows})
        return
    grid = table("id", "campaign", "customer", "occasion", "status", "attempts", "sent",
                 "reason", ids=("id", "campaign", "customer"))
    for r in rows:
        grid.add_row(str(r["id"]), r["campaign"], str(r["customer"]), r["occasion"],
                     r["status"], str(r["attempts"]), display.moment(r["sent_at"], cfg.store.zone),
                     r["reason"] or "")
    show(grid)


@app.command("retry")
@user_errors
def retry_command(campaigns: CampaignIds = None,
                  unknown: Annotated[bool, typer.Option(
                      "--unknown", help="Resend deliveries whose outcome is unknown.")] = False
                  ) -> None:
    """Put deliveries back in the queue on purpose. Example: retain retry --unknown"""
    from engine.delivery import ledger

    if not unknown:
        raise typer.BadParameter("say what to retry: --unknown")
    cfg = settings()
    n = ledger.retry_unknown(engine_for(cfg), campaigns or [], datetime.now(UTC))
    out.print(f"{display.count(n, 'delivery', 'deliveries')} will be sent again by the next run",
              markup=False)


@app.command("unsubscribe")
@user_errors
def unsubscribe_command(
    who: Annotated[str, typer.Argument(help="Email address, or an unsubscribe token.")],
) -> None:
    """Suppress an address for good. Example: retain unsubscribe anna@example.com"""
    from engine.consent import suppressions, unsubscribe

    cfg = settings()
    now = datetime.now(UTC)
    if "@" not in who:
        verified = unsubscribe.verify(cfg, who)
        if verified is None:
            raise typer.BadParameter("not an email address, nor a valid unsubscribe token")
        suppressions.unsubscribe(engine_for(cfg), verified[0], now, source="token")
    else:
        suppressions.unsubscribe(engine_for(cfg), who, now)
    out.print("unsubscribed: no marketing email will be sent to this address")


suppressions_app = typer.Typer(help="The suppression list: see it, add to it, lift one.",
                               no_args_is_help=True)
app.add_typer(suppressions_app, name="suppressions")
# The group's older name, kept for scripts that use `retain suppress import`.
suppress_app = typer.Typer(help="Older name of `retain suppressions`.", no_args_is_help=True,
                           hidden=True)
app.add_typer(suppress_app, name="suppress")


@suppressions_app.command("import")
@suppress_app.command("import")
@user_errors
def suppress_import(file: Annotated[Path, typer.Argument(help="CSV or list of addresses.")]
                    ) -> None:
    """Suppress every address in a file. Example: retain suppressions import blocklist.csv"""
    from engine.consent import suppressions

    cfg = settings()
    read, added = suppressions.import_file(engine_for(cfg), file, datetime.now(UTC))
    out.print(f"{file}: {display.count(read, 'address', 'addresses')}, {added:,} newly "
              "suppressed", markup=False)


@suppressions_app.command("list")
@user_errors
def suppressions_list(
    reason: Annotated[str | None, typer.Option(
        "--reason", help="Only this reason: unsubscribed, bounced, complained, imported, "
        "manual.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many, newest first.")] = None,
    as_json: AsJson = False,
) -> None:
    """Who is suppressed, why, how and since when (customers by id, other addresses masked).

    Example: retain suppressions list --reason unsubscribed
    """
    from engine.consent import suppressions

    cfg = settings()
    found = suppressions.listing(engine_for(cfg), reason, limit)
    if as_json:
        print_json({"suppressions": [entry.as_dict() for entry in found]})
        return
    if not found:
        out.print("no suppressed addresses" + (f" with the reason {reason}" if reason else ""),
                  markup=False)
        return
    grid = table("customer", "address", "suppressed", ids=("customer",),
                 title=f"{display.count(len(found), 'suppressed address', 'suppressed addresses')}"
                       " (`retain suppressions remove CUSTOMER` lifts one)")
    for entry in found:
        grid.add_row(display.blank(entry.customer), entry.address,
                     entry.describe(cfg.store.zone))
    show(grid)


@suppressions_app.command("remove")
@user_errors
def suppressions_remove(
    who: Annotated[str, typer.Argument(help="Customer id, external id or email; or an address.")],
) -> None:
    """Lift a suppression; a withdrawn consent stays withdrawn.

    Example: retain suppressions remove 42
    """
    from engine.consent import suppressions
    from engine.shop import metrics

    cfg = settings()
    engine = engine_for(cfg)
    entry = suppressions.remove(engine, who if "@" in who else metrics.customer_id(engine, who))
    whose = f"customer {entry.customer}" if entry.customer else entry.address
    out.print(f"{whose} is no longer suppressed (was: {entry.describe(cfg.store.zone)}); "
              "their marketing consent stays as it is (an unsubscribe withdrew it: only the "
              "customer, or an import saying they accept marketing, gives it back)",
              markup=False)


@app.command("bounces")
@user_errors
def bounces_command(path: Annotated[Path, typer.Argument(help="mbox file or Maildir folder.")]
                    ) -> None:
    """Read bounce reports (RFC 3464) and suppress hard bounces. Example: retain bounces ~/Maildir
    """
    from engine.delivery import bounces

    cfg = settings()
    report = bounces.process(engine_for(cfg), path, datetime.now(UTC))
    out.print(report.summary())


@app.command("unsubscribe-server")
@user_errors
def unsubscribe_server_command(host: Host = "127.0.0.1", port: Port = 8080) -> None:
    """The same as `retain serve` (which replaces it): unsubscribe endpoint and webhooks.

    Example: retain unsubscribe-server --port 8080
    """
    from .service import serve_command

    serve_command(host=host, port=port)
