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

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

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
                                  progress=True)
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
    customers: Annotated[int, typer.Option(help="How many customers.")] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same shop.")] = 7,
    as_of: AsOf = None,
) -> None:
    """Build a synthetic shop and show its segments. Example: retain --db sqlite:///demo.db demo"""
    from . import demo

    cfg = settings()
    now = as_of_moment(as_of, cfg)
    demo.run(engine_for(cfg), cfg, now, customers=customers, seed=seed, shop_only=shop_only,
             console=out)
