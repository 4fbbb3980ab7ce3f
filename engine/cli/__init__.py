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
import os
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from engine import config as config_module
from engine import display
from engine.errors import Invalid, RetainError

if TYPE_CHECKING:
    from sqlalchemy import Engine

app = typer.Typer(
    help="Retention emails and promotions for online shops: campaigns as code, sent once.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: typer's rich panels print "<bool>" beside every flag (--open <bool>).
    rich_markup_mode=None,
)
customers_app = typer.Typer(help="Look at customers and their metrics.", no_args_is_help=True)
app.add_typer(customers_app, name="customers")

# Piped output (CI logs, `make demo | tee`) gets wide tables instead of rich's 80 columns,
# unless COLUMNS says how wide.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
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
        from sqlalchemy.exc import OperationalError  # here: `retain --help` stays quick

        try:
            return func(*args, **kwargs)
        except Invalid as exc:
            for problem in exc.problems:
                err.print(str(problem), markup=False)
            err.print(f"error: {display.count(len(exc.problems), 'problem')} found",
                      markup=False)
            raise typer.Exit(1) from None
        except RetainError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(1) from None
        except OperationalError as exc:  # the database itself: busy past its wait, or gone
            from engine import db

            err.print(f"error: {db.unavailable(exc)}", markup=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def settings() -> config_module.Settings:
    return config_module.load(state.config_path, state.database_url)


def engine_for(cfg: config_module.Settings, *, check_revision: bool = True,
               create: bool = False) -> Engine:
    """The command's database engine, opened on first use. Its schema must be at the code's
    revision; ``retain db`` passes ``check_revision=False``. A database that does not exist is
    refused with how to point at the right one: only ``import``, ``sync`` (an import from the
    shop's sources) and ``demo`` pass ``create``."""
    if state.engine is None:
        from engine import db

        state.engine = db.connect(cfg.database.url, check_revision=check_revision,
                                  create=create)
    return state.engine


def invocation() -> str:
    """How to run retain again from a fresh shell in this folder: the program (its path when it
    lives in a virtualenv a new shell has not activated), and this command's ``--config`` and
    ``--db`` when a new shell would not find them by itself."""
    import shlex
    import shutil

    program = "retain"
    script = Path(sys.argv[0])
    if script.name.startswith("retain") and script.exists():
        venv = os.environ.get("VIRTUAL_ENV")
        path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
                if not venv or Path(p).resolve() != (Path(venv) / "bin").resolve()]
        found = shutil.which("retain", path=os.pathsep.join(path))
        if found is None or Path(found).resolve() != script.resolve():
            here = Path.cwd().resolve()
            full = script.resolve()
            program = str(full.relative_to(here)) if full.is_relative_to(here) else str(full)
    words = [program]
    config = state.config_path or os.environ.get("RETAIN_CONFIG")
    if config and Path(config).resolve() != Path(config_module.DEFAULT_CONFIG).resolve():
        words += ["--config", str(config)]
    url = state.database_url or os.environ.get("RETAIN_DATABASE_URL")
    if url:
        words += ["--db", url]
    return " ".join(shlex.quote(word) for word in words)


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


def table(*columns: str, title: str | None = None, ids: tuple[str, ...] = ()) -> Table:
    """A table whose ``ids`` columns never wrap and whose other cells wrap at words and fold a
    word too long for the column: nothing is ever cut short with "…". Print it with ``show``."""
    grid = Table(title=title, title_justify="left")
    for name in columns:
        grid.add_column(name, no_wrap=name in ids, overflow="fold")
    return grid


def show(grid: Table, console: Console | None = None) -> None:
    """Print ``grid``; when even its narrowest layout (whole ids, words unbroken) is wider than
    the terminal, print each row as a block of "column  value" lines instead."""
    console = console or out
    # Measured as if the screen were endless: rich clamps a measurement to the width it gets.
    natural = Measurement.get(console, console.options.update_width(100_000), grid)
    if natural.minimum <= console.width:
        console.print(grid)
        return
    if grid.title:
        console.print(grid.title, markup=False)
    cells = [list(column.cells) for column in grid.columns]
    for row in range(grid.row_count):
        record = Table.grid(padding=(0, 2))
        record.add_column(no_wrap=True, style="bold")
        record.add_column(overflow="fold")
        for column, values in zip(grid.columns, cells, strict=True):
            record.add_row(str(column.header), values[row])
        console.print(record)
        if row < grid.row_count - 1:
            console.print()


def warn(message: str) -> None:
    """A warning a command goes on after, on stderr."""
    err.print(f"warning: {message}", markup=False)


def print_json(data: Any) -> None:
    """JSON on stdout; times in it are ISO 8601 in UTC (display.jsonable)."""
    sys.stdout.write(json.dumps(data, indent=2, default=display.jsonable, ensure_ascii=False)
                     + "\n")


def skipped_cell(counts) -> str:
    """A campaign's skips by reason, for a table cell: "cooldown 2, no consent 5" or "-"."""
    return counts.skipped_words() or display.MISSING


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
