"""The shop's data: import, sync, segment, customers show and forget, and the demo."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from engine.errors import RetainError

from . import (
    AsJson,
    AsOf,
    CustomerRef,
    app,
    as_of_moment,
    customers_app,
    engine_for,
    out,
    print_json,
    settings,
    state,
    user_errors,
)

ImportKind = StrEnum("ImportKind", ["customers", "products", "orders", "fulfillments",
                                   "reviews", "checkouts"])
ImportFormat = StrEnum("ImportFormat", ["auto", "generic", "shopify"])


@app.command("import")
@user_errors
def import_command(
    kind: Annotated[ImportKind, typer.Argument(
        help="customers, products, orders, fulfillments, reviews or checkouts.")],
    file: Annotated[Path, typer.Argument(help="CSV file: generic columns or a Shopify export.")],
    format: Annotated[ImportFormat, typer.Option("--format")] = ImportFormat.auto,
) -> None:
    """Import shop data from CSV. Example: retain import orders orders_export.csv"""
    from engine.shop import importer

    cfg = settings()
    result = importer.import_file(engine_for(cfg), cfg, kind.value, file, format.value,
                                  progress=sys.stderr.isatty(), now=datetime.now(UTC))
    out.print(f"{file}: {result.summary()}")


@app.command("sync")
@user_errors
def sync_command(
    names: Annotated[list[str] | None, typer.Argument(
        help="Source names from config.yaml (default: every source).")] = None,
    as_json: AsJson = False,
) -> None:
    """Bring the shop's data in from its sources now. Example: retain sync shop-db"""
    from engine.consent import erasure
    from engine.shop import sources

    cfg = settings()
    if not cfg.sources:
        raise RetainError("config.yaml has no sources: to sync; add one (see README, Live shop "
                          "data) or import files with `retain import`")
    results = sources.sync(engine_for(cfg), cfg, datetime.now(UTC), names,
                           forget=erasure.forget)
    if as_json:
        print_json({"sources": [r.as_dict() for r in results]})
    else:
        for result in results:
            head = f"{result.source} ({result.kind}): {result.applied} rows applied"
            out.print(head + (f"; error: {result.error}" if result.error else ""), markup=False)
            for note in result.notes:
                out.print(f"  {note}", markup=False)
    if any(r.error for r in results):
        raise typer.Exit(1)


@app.command("segment")
@user_errors
def segment_command(
    file: Annotated[Path, typer.Argument(help="YAML with a segment: mapping, or a campaign.")],
    as_of: AsOf = None,
    as_json: AsJson = False,
    limit: Annotated[int, typer.Option(
        "--limit", min=0, help="How many customers to list; 0 lists every member.")] = 10,
) -> None:
    """Count a segment's audience and show a sample. Example: retain segment campaigns/winback.yaml
    """
    from engine.shop import segments

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    segment = segments.load_file(file)
    result = segments.evaluate(engine_for(cfg), cfg, segment, now, limit=limit or None)
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
    customer: CustomerRef,
    as_of: AsOf = None,
    as_json: AsJson = False,
) -> None:
    """Show one customer's metrics, predictions, deliveries, coupons and redemptions.

    Example: retain customers show anna@example.com
    """
    from engine.shop import metrics, predict

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    data = metrics.for_customer(engine_for(cfg), cfg, customer, now)
    data |= predict.for_customer(engine_for(cfg), data["customer_id"])
    from engine.views import history

    listed = history.deliveries(engine_for(cfg), data["customer_id"], now)
    if as_json:
        print_json({**data, "deliveries": listed})
        return
    table = Table("metric", "value", show_header=False)
    for key, value in data.items():
        table.add_row(key, "-" if value is None else str(value))
    out.print(table)
    if listed:
        sent = Table("delivery", "campaign", "status", "when", "coupon", "redemption",
                     title="deliveries, coupons and redemptions", title_justify="left")
        for row in history.lines(listed):
            sent.add_row(*row)
        out.print(sent)


@customers_app.command("forget")
@user_errors
def customers_forget(customer: CustomerRef) -> None:
    """Erase a customer (orders kept, anonymous) and never email them again.

    Example: retain customers forget anna@example.com
    """
    from engine.consent import erasure

    cfg = settings()
    customer_id = erasure.forget_customer(engine_for(cfg), customer, datetime.now(UTC))
    out.print(f"customer {customer_id} forgotten: name and address erased, orders kept "
              "anonymously, never emailed again", markup=False)


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
    from engine.demo import showcase as demo

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    offset = now - datetime.now(UTC)
    report = demo.run(engine_for(cfg), cfg, now, customers=customers, seed=seed,
                      shop_only=shop_only, console=out, fresh=fresh,
                      clock=lambda: datetime.now(UTC) + offset)
    if report is None:
        return
    from .sending import print_run_report

    print_run_report(report)
    from engine.demo import response

    response.show(engine_for(cfg), cfg, now, out, seed=seed)
    from engine.views import reports

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
