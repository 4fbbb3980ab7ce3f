"""The database's schema: which revision it is at, upgrading it in place, adding a revision."""

from __future__ import annotations

from typing import Annotated

import typer

from . import app, engine_for, out, settings, user_errors

db_app = typer.Typer(help="The database's schema revision: see it, upgrade it.",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("current")
@user_errors
def current_command() -> None:
    """Print the database's schema revision, the code's, and whether they match.

    Example: retain db current
    """
    from engine import db, migrate

    cfg = settings()
    status = migrate.status(engine_for(cfg, check_revision=False))
    out.print(f"database: {status.label()} ({db.redact(cfg.database.url)})", markup=False)
    out.print(f"code:     {status.head}", markup=False)
    out.print(status.verdict(), markup=False)


@db_app.command("upgrade")
@user_errors
def upgrade_command() -> None:
    """Upgrade the database's schema in place to the code's revision, in one transaction.

    Example: retain db upgrade
    """
    from engine import migrate

    before = migrate.upgrade(engine_for(settings(), check_revision=False))
    out.print(before.upgraded(), markup=False)


@db_app.command("revision")
@user_errors
def revision_command(
    message: Annotated[str, typer.Argument(help="What the schema change is, a few words.")],
) -> None:
    """For developers: write the next revision from what engine/tables.py adds to the schema.

    Example: retain db revision "add redemptions"
    """
    from engine import migrate

    path = migrate.new_revision(message)
    out.print(f"wrote {path}: read and complete it, then run make test", markup=False)
