"""The shop's data: import, sync, segment, customers show and forget, and the demo."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from engine import display, money
from engine.errors import RetainError

from . import (
    AsJson,
    AsOf,
    CustomerRef,
    app,
    as_of_moment,
    customers_app,
    engine_for,
    invocation,
    out,
    print_json,
    settings,
    show,
    table,
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
    decimal_comma: Annotated[bool, typer.Option(
        "--decimal-comma", help="Amounts are written 12,50 (French or German spreadsheets).")
    ] = False,
) -> None:
    """Import shop data from CSV. Example: retain import orders orders_export.csv"""
    from engine.shop import importer

    cfg = settings()
    result = importer.import_file(engine_for(cfg, create=True), cfg, kind.value, file,
                                  format.value, progress=sys.stderr.isatty(),
                                  now=datetime.now(UTC), decimal_comma=decimal_comma)
    out.print(f"{file}: {result.summary()}", markup=False)


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
    results = sources.sync(engine_for(cfg, create=True), cfg, datetime.now(UTC), names,
                           forget=erasure.forget)
    if as_json:
        print_json({"sources": [r.as_dict() for r in results]})
    else:
        for result in results:
            head = f"{result.source} ({result.kind}): {display.count(result.applied, 'row')} " \
                "applied"
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
    out.print(f"{display.count(result['count'], 'customer')} match this segment as of "
              f"{display.moment(now, cfg.store.zone)}: the segment's conditions alone. "
              "`retain plan` counts, of these, the ones each campaign's kind selects, and who "
              "would get an email now.", markup=False)
    if result["sample"]:
        grid = table("id", "name", "orders", "spent", "days since last order", "dormancy",
                     "tier", "lifecycle", ids=("id",))
        for row in result["sample"]:
            grid.add_row(str(row["customer_id"]), row["name"] or display.MISSING,
                         f"{row['orders']:,}", str(cfg.store.money(money.parse(row["spent"]))),
                         display.blank(row["recency_days"]), display.words(row["dormancy"]),
                         display.blank(row["value_tier"]), display.words(row["lifecycle"]))
        show(grid)


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
    grid = table("metric", "value", ids=("value",))
    grid.show_header = False
    for key, value in data.items():
        grid.add_row(display.words(key), readable(key, value, cfg))
    show(grid)
    if listed:
        sent = table("delivery", "campaign", "status", "when", "coupon", "redemption",
                     ids=("delivery",), title="deliveries, coupons and redemptions")
        for row in history.lines(listed, cfg.store.zone):
            sent.add_row(*row)
        show(sent)


_AMOUNTS = frozenset({"spent", "avg_order_value"})
_WORDS = frozenset({"dormancy", "lifecycle"})


def readable(key: str, value, cfg) -> str:
    """One of ``customers show``'s values as a person reads it: amounts in the store's currency,
    times in its zone, yes or no."""
    if value is None:
        return display.MISSING
    if isinstance(value, bool):
        return display.yes_no(value)
    if key.endswith("_at") and isinstance(value, str):
        return display.moment(datetime.fromisoformat(value), cfg.store.zone)
    if key in _AMOUNTS:
        return str(cfg.store.money(money.parse(str(value))))
    return display.words(value) if key in _WORDS else str(value)


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
    report = demo.run(engine_for(cfg, create=True), cfg, now, customers=customers, seed=seed,
                      shop_only=shop_only, console=out, fresh=fresh,
                      clock=lambda: datetime.now(UTC) + offset)
    if report is None:
        return
    from .sending import print_run_report

    print_run_report(report)
    from engine.demo import response

    response.show(engine_for(cfg), cfg, now, out, seed=seed)
    from engine.views import reports

    again = invocation()
    out.print(f"Emails as received by the server: {cfg.folder('outbox')}/*.eml", markup=False)
    out.print("Look closer:", markup=False)
    out.print(f"  {again} deliveries --limit 20", markup=False)
    for row in reports.deliveries(engine_for(cfg), "winback", status="sent", limit=1):
        out.print(f"  {again} preview {row['campaign']} --customer {row['customer']} --open",
                  markup=False)
        out.print(f"  {again} why {row['customer']}", markup=False)
    out.print(f"  {again} simulate --from {now:%Y-%m-%d} --to "
              f"{now + timedelta(days=6):%Y-%m-%d}", markup=False)
