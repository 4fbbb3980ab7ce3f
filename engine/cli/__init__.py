"""The ``retain`` command line: parse, call one engine function, print.

This module holds the app, the global options and what every command shares; the commands
live beside it, a group a module: ``shop`` (import, segment, customers, demo), ``campaigns``
(validate, plan, preview, why, simulate), ``sending`` (run, deliveries, retry, unsubscribe,
suppress, bounces), ``service`` (scheduler, status, pause, resume), ``database`` (db current,
upgrade, revision), ``predict`` (evaluate). Each command is a few lines over an engine
function. Domain errors (``RetainError``) become one line on stderr and exit code 1; no
traceback is shown for a user's mistake. The command line and the scheduler are the only
places that read the wall clock: everything below takes ``now``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from engine import config as config_module
from engine.errors import Invalid, RetainError

if TYPE_CHECKING:
    from sqlalchemy import Engine

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
    """What one command holds: the options, and the database engine it opened (at most one,
    disposed when the command ends; ``main`` arranges that)."""

    config_path: Path | None = None
    database_url: str | None = None
    engine: Engine | None = None

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None


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


def engine_for(cfg: config_module.Settings, *, check_revision: bool = True) -> Engine:
    """The command's database engine, opened on first use. Its schema must be at the code's
    revision (an empty database is made there); ``retain db`` passes ``check_revision=False``."""
    if state.engine is None:
        from engine import db

        state.engine = db.connect(cfg.database.url, check_revision=check_revision)
    return state.engine


def transport_for(cfg: config_module.Settings):
    """The transport config.yaml asks for: SMTP, or .eml files in paths.outbox."""
    if cfg.delivery.transport == "file":
        from engine.transport import FileTransport

        return FileTransport(cfg.folder("outbox"))
    from engine.transport.smtp import SmtpTransport

    return SmtpTransport(cfg.smtp, delivery=cfg.delivery)


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


def skipped_cell(counts) -> str:
    """A campaign's skips by reason, for a table cell: "cooldown 2, no_consent 5" or "-"."""
    return ", ".join(f"{k} {v}" for k, v in counts.skipped_sorted().items()) or "-"


AsOf = Annotated[str | None, typer.Option("--as-of", help="Date (end of day) or datetime.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (stable keys).")]
Host = Annotated[str, typer.Option(help="Address to listen on.")]
Port = Annotated[int, typer.Option(help="Port to listen on.")]


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "--config", envvar="RETAIN_CONFIG", help="Path to config.yaml.")] = None,
    db: Annotated[str | None, typer.Option(
        "--db", help="Database URL; overrides config.yaml and RETAIN_DATABASE_URL.")] = None,
) -> None:
    """Retention email and promotion automation. Example: retain segment campaigns/winback.yaml"""
    state.config_path = config
    state.database_url = db
    ctx.call_on_close(state.close)


CampaignIds = Annotated[list[str] | None, typer.Argument(
    help="Campaign ids (default: every enabled campaign).")]
CUSTOMER_HELP = "Customer id, external id or email."
CustomerRef = Annotated[str, typer.Argument(help=CUSTOMER_HELP)]


# The commands, one module a group; importing them registers them on ``app``, in this order
# (the order --help lists them).
# isort: off
from . import shop, campaigns, sending, report, service, database, predict  # noqa: E402,F401
# isort: on
