"""The ``retain`` command line: parse, call one engine function, print.

Each command is a few lines over a module function. Domain errors (``RetainError``) become one
line on stderr and exit code 1; no traceback is shown for a user's mistake. This module and the
scheduler are the only places that read the wall clock: everything below takes ``now``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from . import config as config_module
from .errors import Invalid, RetainError

app = typer.Typer(
    help="Retention emails and promotions for online shops: campaigns as code, sent once.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
customers_app = typer.Typer(help="Look at customers and their metrics.", no_args_is_help=True)
app.add_typer(customers_app, name="customers")

# Piped output (CI logs, `make demo | tee`) gets wide tables instead of rich's 80 columns.
_WIDTH = None if sys.stdout.isatty() else 160
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH)

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    config_path: Path | None = None
    database_url: str | None = None


state = _State()


def user_errors(func: F) -> F:
    """Turn engine errors into one line on stderr and exit 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Invalid as exc:
            for problem in exc.problems:
                err.print(str(problem), markup=False)
            err.print(f"error: {len(exc.problems)} problem(s) found", markup=False)
            raise typer.Exit(1) from None
        except RetainError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def settings() -> config_module.Settings:
    return config_module.load(state.config_path, state.database_url)


def engine_for(cfg: config_module.Settings):
    from . import db

    return db.connect(cfg.database.url)


def as_of_moment(value: str | None, cfg: config_module.Settings) -> datetime:
    """``--as-of``: a date means the end of that day in the store's zone; default is now."""
    if not value:
        return datetime.now(UTC)
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=cfg.store.zone)
            return end - timedelta(microseconds=1)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f'"{value}" is not a date or datetime; write 2026-06-30 or 2026-06-30T09:00') from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=cfg.store.zone)
    return moment


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


AsOf = Annotated[str | None, typer.Option("--as-of", help="Date (end of day) or datetime.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (stable keys).")]


@app.callback()
def main(
    config: Annotated[Path | None, typer.Option(
        "--config", envvar="RETAIN_CONFIG", help="Path to config.yaml.")] = None,
    db: Annotated[str | None, typer.Option(
        "--db", help="Database URL; overrides config.yaml and RETAIN_DATABASE_URL.")] = None,
) -> None:
    """Retention email and promotion automation. Example: retain segment campaigns/winback.yaml"""
    state.config_path = config
    state.database_url = db


class ImportKind(StrEnum):
    customers = "customers"
    products = "products"
    orders = "orders"


class ImportFormat(StrEnum):
    auto = "auto"
    generic = "generic"
    shopify = "shopify"


@app.command("import")
@user_errors
def import_command(
    kind: Annotated[ImportKind, typer.Argument(help="customers, products or orders.")],
    file: Annotated[Path, typer.Argument(help="CSV file: generic columns or a Shopify export.")],
    format: Annotated[ImportFormat, typer.Option("--format")] = ImportFormat.auto,
) -> None:
    """Import shop data from CSV. Example: retain import orders orders_export.csv"""
    from . import importer

    cfg = settings()
    result = importer.import_file(engine_for(cfg), cfg, kind.value, file, format.value,
                                  progress=sys.stderr.isatty(), now=datetime.now(UTC))
    out.print(f"{file}: {result.summary()}")


@app.command("segment")
@user_errors
def segment_command(
    file: Annotated[Path, typer.Argument(help="YAML with a segment: mapping, or a campaign.")],
    as_of: AsOf = None,
    as_json: AsJson = False,
    limit: Annotated[int, typer.Option("--limit", help="How many customers to sample.")] = 10,
) -> None:
    """Count a segment's audience and show a sample. Example: retain segment campaigns/winback.yaml
    """
    from . import segments

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    segment = segments.load_file(file)
    result = segments.evaluate(engine_for(cfg), cfg, segment, now, limit=limit)
    if as_json:
        print_json(result)
        return
    out.print(f"{segment.explain()}", markup=False)
    out.print(f"[bold]{result['count']}[/bold] customers as of {now:%Y-%m-%d %H:%M %Z}")
    if result["sample"]:
        table = Table("id", "name", "orders", "spent", "recency", "dormancy", "tier", "lifecycle")
        for row in result["sample"]:
            table.add_row(str(row["customer_id"]), row["name"], str(row["orders"]),
                          str(row["spent"]), str(row["recency_days"]), row["dormancy"],
                          str(row["value_tier"] or "-"), row["lifecycle"])
        out.print(table)


@customers_app.command("show")
@user_errors
def customers_show(
    customer: Annotated[str, typer.Argument(help="Customer id, external id or email.")],
    as_of: AsOf = None,
    as_json: AsJson = False,
) -> None:
    """Show one customer's metrics. Example: retain customers show anna@example.com"""
    from . import metrics

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    data = metrics.for_customer(engine_for(cfg), cfg, customer, now)
    if as_json:
        print_json(data)
        return
    table = Table("metric", "value", show_header=False)
    for key, value in data.items():
        table.add_row(key, "-" if value is None else str(value))
    out.print(table)


@app.command("demo")
@user_errors
def demo_command(
    shop_only: Annotated[bool, typer.Option(
        "--shop-only", help="Build the synthetic shop and stop.")] = False,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="Build a new shop even if the demo database has one.")] = False,
    customers: Annotated[int, typer.Option(help="How many customers.")] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same shop.")] = 7,
    as_of: AsOf = None,
) -> None:
    """Build a synthetic shop and send every campaign through a loopback SMTP server.

    Example: retain --db sqlite:///demo.db demo
    """
    from . import demo

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    offset = now - datetime.now(UTC)
    report = demo.run(engine_for(cfg), cfg, now, customers=customers, seed=seed,
                      shop_only=shop_only, console=out, fresh=fresh,
                      clock=lambda: datetime.now(UTC) + offset)
    if report is None:
        return
    print_run_report(report)
    from . import reports

    db_flag = f" --db {cfg.database.url}" if state.database_url else ""
    out.print(f"Emails as received by the server: {cfg.folder('outbox')}/*.eml", markup=False)
    out.print("Look closer:", markup=False)
    out.print(f"  retain{db_flag} deliveries --limit 20", markup=False)
    for row in reports.deliveries(engine_for(cfg), "winback", status="sent", limit=1):
        out.print(f"  retain{db_flag} preview {row['campaign']} --customer {row['customer']} "
                  "--open", markup=False)
        out.print(f"  retain{db_flag} why {row['customer']}", markup=False)
    out.print(f"  retain{db_flag} simulate --from {now:%Y-%m-%d} --to "
              f"{now + timedelta(days=6):%Y-%m-%d}", markup=False)


CampaignIds = Annotated[list[str] | None, typer.Argument(
    help="Campaign ids (default: every enabled campaign).")]


@app.command("validate")
@user_errors
def validate_command() -> None:
    """Check config.yaml, every campaign and every template. Example: retain validate"""
    from . import validate

    cfg = settings()
    found = validate.check(cfg)
    out.print(f"ok: config.yaml and {len(found)} campaigns are valid "
              f"({', '.join(c.id for c in found)})")


@app.command("plan")
@user_errors
def plan_command(campaigns: CampaignIds = None, as_of: AsOf = None, as_json: AsJson = False,
                 sample: Annotated[int, typer.Option(help="Recipients to show.")] = 5) -> None:
    """Show who would get what, without sending or writing. Example: retain plan winback"""
    from . import planner, validate

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    chosen = validate.load(cfg, campaigns)
    result = planner.summarize(engine_for(cfg), cfg, chosen, now, sample=sample)
    if as_json:
        print_json({"as_of": now.isoformat(), "campaigns": result})
        return
    table = Table("campaign", "kind", "in segment", "recipients", "held out", "suppressed",
                  "skipped", "offers", "offer value", "budget",
                  title=f"Plan as of {now:%Y-%m-%d %H:%M %Z}")
    for c in result:
        skipped = ", ".join(f"{k} {v}" for k, v in c["skipped"].items()) or "-"
        budget = c["budget"]
        limit = " / ".join(x for x in (budget["max_offers"] and f"{budget['max_offers']} offers",
                                       budget["max_value"] and f"{budget['max_value']}") if x)
        table.add_row(c["id"], c["kind"], str(c["in_segment"]), str(c["recipients"]),
                      str(c["held_out"]), str(c["suppressed"]), skipped, str(c["offers"]),
                      c["offer_value"], limit or "-")
    out.print(table)
    for c in result:
        out.print(f"[bold]{c['id']}[/bold]: {c['segment']}", markup=True)
        for warning in c["warnings"]:
            err.print(f"warning: {c['id']}: {warning}", markup=False)
        for example in c["sample"]:
            offer = example["offer"] or {}
            what = ", ".join(example["products"]) or offer.get("kind", "")
            out.print(f"  customer {example['customer']}: {example['occasion']} {what}",
                      markup=False)


class PreviewFormat(StrEnum):
    html = "html"
    text = "text"
    eml = "eml"


@app.command("preview")
@user_errors
def preview_command(
    campaign: Annotated[str, typer.Argument(help="Campaign id.")],
    customer: Annotated[str, typer.Option("--customer", help="Customer id, external id or email.")],
    as_of: AsOf = None,
    format: Annotated[PreviewFormat, typer.Option("--format")] = PreviewFormat.html,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open in the browser.")] = False,
) -> None:
    """The real email for a real customer. Example: retain preview winback --customer 42 --open"""
    from . import preview, validate

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    chosen = validate.load(cfg, [campaign])[0]
    result = preview.build(engine_for(cfg), cfg, chosen, customer, now)
    if result.warning:
        err.print(f"warning: customer {result.customer_id} {result.warning}", markup=False)
    body = {"html": result.html.encode(), "text": result.text.encode(), "eml": result.eml}[format]
    if open_browser and out_file is None:
        import tempfile
        out_file = Path(tempfile.mkstemp(suffix=f".{format.value}", prefix="retain-preview-")[1])
    if out_file is not None:
        out_file.write_bytes(body)
        err.print(f"wrote {out_file} (subject: {result.subject})", markup=False)
        if open_browser:
            import webbrowser
            webbrowser.open(out_file.resolve().as_uri())
        return
    sys.stdout.write(body.decode("utf-8", errors="replace"))


@app.command("run")
@user_errors
def run_command(campaigns: CampaignIds = None, as_of: AsOf = None,
                dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only.")] = False,
                as_json: AsJson = False) -> None:
    """Plan and send now. Example: retain run winback"""
    import time as _time

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from . import runner, schedule, validate
    from .smtp import SmtpTransport

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    chosen = validate.load(cfg, campaigns)
    engine = engine_for(cfg)
    paused = schedule.paused(engine)
    for campaign in chosen:
        if campaign.id in paused:
            if campaigns:
                raise RetainError(f'campaign "{campaign.id}" is paused ({paused[campaign.id]}); '
                                  f"run `retain resume {campaign.id}` first")
            err.print(f"skipping {campaign.id}: paused ({paused[campaign.id]})", markup=False)
    chosen = [c for c in chosen if c.id not in paused]
    transport = None if dry_run else SmtpTransport(cfg.smtp)
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
    table = Table("campaign", "planned", "sent", "failed", "bounced", "suppressed", "held out",
                  "deferred", "capped", "unknown", "skipped",
                  title="Dry run (nothing written)" if report.dry_run else "Run")
    for c in report.campaigns.values():
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(c.skipped.items())) or "-"
        table.add_row(c.id, str(c.planned), str(c.sent), str(c.failed), str(c.bounced),
                      str(c.suppressed), str(c.held_out), str(c.deferred), str(c.capped),
                      str(c.unknown), skipped)
    out.print(table)
    if report.recovered_unknown:
        out.print(f"{report.recovered_unknown} deliveries of an interrupted run are 'unknown' "
                  "(the server may have them); resend on purpose with: retain retry --unknown")
    if report.interrupted:
        err.print(f"stopped: {report.interrupted}", markup=False)
    if report.paused:
        err.print(f"paused: {report.paused}", markup=False)
    if report.paused or report.interrupted:
        raise typer.Exit(2)


@app.command("deliveries")
@user_errors
def deliveries_command(
    campaign: Annotated[str | None, typer.Argument(help="Campaign id.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    as_json: AsJson = False,
) -> None:
    """What happened to whom. Example: retain deliveries winback --status failed --json"""
    from . import reports

    cfg = settings()
    rows = reports.deliveries(engine_for(cfg), campaign, status, limit)
    if as_json:
        print_json({"deliveries": rows})
        return
    table = Table("id", "campaign", "customer", "occasion", "status", "attempts", "sent_at",
                  "reason")
    for r in rows:
        table.add_row(str(r["id"]), r["campaign"], str(r["customer"]), r["occasion"],
                      r["status"], str(r["attempts"]), r["sent_at"] or "-", r["reason"] or "")
    out.print(table)


@app.command("retry")
@user_errors
def retry_command(campaigns: CampaignIds = None,
                  unknown: Annotated[bool, typer.Option(
                      "--unknown", help="Resend deliveries whose outcome is unknown.")] = False
                  ) -> None:
    """Put deliveries back in the queue on purpose. Example: retain retry --unknown"""
    from . import ledger

    if not unknown:
        raise typer.BadParameter("say what to retry: --unknown")
    cfg = settings()
    n = ledger.retry_unknown(engine_for(cfg), campaigns or [], datetime.now(UTC))
    out.print(f"{n} deliveries will be sent again by the next run")


@app.command("unsubscribe")
@user_errors
def unsubscribe_command(
    who: Annotated[str, typer.Argument(help="Email address, or an unsubscribe token.")],
) -> None:
    """Suppress an address for good. Example: retain unsubscribe anna@example.com"""
    from . import suppressions, unsubscribe

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


suppress_app = typer.Typer(help="The suppression list.", no_args_is_help=True)
app.add_typer(suppress_app, name="suppress")


@suppress_app.command("import")
@user_errors
def suppress_import(file: Annotated[Path, typer.Argument(help="CSV or list of addresses.")]
                    ) -> None:
    """Suppress every address in a file. Example: retain suppress import blocklist.csv"""
    from . import suppressions

    cfg = settings()
    read, added = suppressions.import_file(engine_for(cfg), file, datetime.now(UTC))
    out.print(f"{file}: {read} addresses, {added} newly suppressed")


@app.command("bounces")
@user_errors
def bounces_command(path: Annotated[Path, typer.Argument(help="mbox file or Maildir folder.")]
                    ) -> None:
    """Read bounce reports (RFC 3464) and suppress hard bounces. Example: retain bounces ~/Maildir
    """
    from . import bounces

    cfg = settings()
    report = bounces.process(engine_for(cfg), path, datetime.now(UTC))
    out.print(report.summary())


@app.command("scheduler")
@user_errors
def scheduler_command(
    reload_every: Annotated[float | None, typer.Option(
        "--reload-every", help="Re-read campaign files every N seconds (also on SIGHUP).")] = None,
    grace_hours: Annotated[float, typer.Option(
        "--grace-hours", help="Catch up a tick missed while down, if at most this old.")] = 6,
    standby: Annotated[bool, typer.Option(
        "--standby", help="If another scheduler leads, wait and take over when it stops.")
    ] = False,
) -> None:
    """Run every enabled campaign on its schedule, until SIGTERM. Example: retain scheduler"""
    import logging

    from . import leader
    from .scheduler import Scheduler
    from .smtp import SmtpTransport

    # An unattended service reports through its log (stderr); no addresses or secrets are logged.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    cfg = settings()
    engine = engine_for(cfg)
    service = Scheduler(engine, cfg, lambda: SmtpTransport(cfg.smtp), reload_every=reload_every,
                        grace=timedelta(hours=grace_hours))
    service.start()
    if not service.leading and not standby:
        holder = leader.current(engine)
        service.stop()
        raise RetainError(
            f"another scheduler leads ({holder.holder if holder else '?'}, lease until "
            f"{holder.expires_at:%Y-%m-%d %H:%M:%S %Z}); only one may run on a database. "
            "Stop it first, or start this one with --standby to take over when it stops")
    service.install_signals()
    err.print(f"scheduler {'leading' if service.leading else 'on standby'}; "
              f"{len(service.next_runs())} campaigns scheduled; SIGTERM stops it", markup=False)
    try:
        service.wait()
    finally:
        service.stop()
    err.print("scheduler stopped", markup=False)


@app.command("status")
@user_errors
def status_command(as_json: AsJson = False) -> None:
    """The leader, next run of each campaign, the last run, paused campaigns.

    Example: retain status
    """
    from . import status

    cfg = settings()
    data = status.collect(engine_for(cfg), cfg, datetime.now(UTC))
    if as_json:
        print_json(data)
        return
    lead = data["leader"]
    out.print(f"leader: {lead['holder']} (lease until {lead['expires_at']})" if lead
              else "leader: none (no scheduler running)", markup=False)
    table = Table("campaign", "enabled", "schedule", "next run", "last fired", "paused")
    for c in data["campaigns"]:
        table.add_row(c["id"], "yes" if c["enabled"] else "no", c["schedule"] or "-",
                      c["next_run"] or "-", c["last_fire_at"] or "-", c["paused"] or "")
    out.print(table)
    last = data["last_run"]
    if last:
        out.print(f"last run {last['id']} finished {last['finished_at']}: "
                  f"{last['summary']}", markup=False)


@app.command("pause")
@user_errors
def pause_command(campaign: Annotated[str, typer.Argument(help="Campaign id.")],
                  reason: Annotated[str, typer.Option(help="Why (shown by status).")] = "paused "
                  "by hand") -> None:
    """Stop a campaign from running until resumed. Example: retain pause winback"""
    from . import schedule, validate

    cfg = settings()
    known = [c.id for c in validate.check(cfg)]
    schedule.pause(engine_for(cfg), campaign, reason, datetime.now(UTC), known)
    out.print(f"{campaign} is paused; `retain resume {campaign}` starts it again", markup=False)


@app.command("resume")
@user_errors
def resume_command(campaign: Annotated[str, typer.Argument(help="Campaign id.")]) -> None:
    """Let a paused campaign run again. Example: retain resume winback"""
    from . import schedule

    cfg = settings()
    if schedule.resume(engine_for(cfg), campaign):
        out.print(f"{campaign} resumed", markup=False)
    else:
        out.print(f"{campaign} was not paused", markup=False)


@app.command("why")
@user_errors
def why_command(
    customer: Annotated[str, typer.Argument(help="Customer id, external id or email.")],
    campaign: Annotated[str | None, typer.Argument(help="Only this campaign.")] = None,
    as_of: AsOf = None,
    as_json: AsJson = False,
) -> None:
    """Why a customer would or would not get each campaign. Example: retain why 42 winback"""
    from . import explain, validate

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    chosen = validate.load(cfg, [campaign] if campaign else None)
    customer_id, answers = explain.explain(engine_for(cfg), cfg, chosen, customer, now)
    if as_json:
        print_json({"customer": customer_id, "as_of": now.isoformat(),
                    "campaigns": [a.as_dict() for a in answers]})
        return
    table = Table("campaign", "priority", "answer", "because",
                  title=f"Customer {customer_id} as of {now:%Y-%m-%d %H:%M %Z}")
    for a in answers:
        table.add_row(a.campaign, str(a.priority), a.why.value.replace("_", " "), a.detail)
    out.print(table)


@app.command("simulate")
@user_errors
def simulate_command(
    start: Annotated[str, typer.Option("--from", help="First day (or datetime).")],
    end: Annotated[str, typer.Option("--to", help="Last day (included) or datetime.")],
    as_json: AsJson = False,
    sample: Annotated[int, typer.Option(help="Recipients listed per campaign and day.")] = 5,
) -> None:
    """Replay the schedule over a period without sending or writing.

    Example: retain simulate --from 2026-12-01 --to 2026-12-07
    """
    from . import simulate, validate

    cfg = settings()
    first = as_of_moment(start, cfg)
    if len(start) == 10:  # a bare date starts at midnight, not at its end
        first = datetime.combine(date.fromisoformat(start), time(0), tzinfo=cfg.store.zone)
    last = as_of_moment(end, cfg)
    result = simulate.replay(engine_for(cfg), cfg, validate.load(cfg), first, last, sample)
    if as_json:
        print_json(result)
        return
    table = Table("day", "campaign", "tick", "recipients", "held out", "deferred", "capped",
                  "sample (customer: occasion)",
                  title=f"Simulated {result['ticks']} ticks, {start} to {end}: nothing sent")
    for day in result["days"]:
        for c in day["campaigns"]:
            shown = ", ".join(f"{s['customer']}: {s['occasion']}" for s in c["sample"][:3])
            table.add_row(day["date"], c["id"], c["tick"][11:16], str(c["recipients"]),
                          str(c["held_out"]), str(c["deferred"]), str(c["capped"]), shown)
    out.print(table)


if __name__ == "__main__":
    app()
