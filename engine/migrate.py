"""Schema revisions: the one a database is at, the one the code expects, and upgrading to it.

Owns: Alembic's configuration, built here in code (the environment and the revisions live in
``engine/migrations/``); the code's head revision; what state a database is in; creating an
empty database at head; upgrading a database in place, all or nothing, including one made
before revisions existed (tables + ``meta.schema_version = "1"``: the baseline, ``0001``);
the one sentence that refuses any other revision and names the fix; writing a new revision.
Must not open the shop's database (``db.connect`` does and calls ``ready``) or define tables.

An empty database is made with ``create_all`` and stamped at head, as Alembic's cookbook
advises ("Building an Up to Date Database from Scratch"): it is fast (every test makes one),
and tests/test_migrations.py proves the chain of revisions builds the same schema, on SQLite
and PostgreSQL.

Alembic (with Mako and Pygments, 9 MB imported) is imported only to write a schema: the check
every command makes on opening a database (``ready``) reads the database's revision with one
SELECT and the code's head from the names of the revision files.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

from engine import tables  # noqa: F401 - registers every table on SQLModel.metadata
from engine.errors import SchemaError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"  # the schema as it was when revisions began
PRE_REVISION_MARK = ("schema_version", "1")  # the meta row such databases carry
UPGRADE = "run `retain db upgrade`"
VERSION_TABLE = "alembic_version"  # Alembic's, where a database's revision is kept


class State(StrEnum):
    empty = "empty"              # no retain table: made at head on first use
    pre_revisions = "pre-revisions"  # made before revisions: the baseline, not yet stamped
    current = "up to date"       # at the code's head
    older = "older"              # at an earlier revision: `retain db upgrade`
    newer = "newer"              # at a revision this code does not know: upgrade retain
    unknown = "unknown"          # retain tables, but neither a revision nor the pre-revision mark


@dataclass(frozen=True)
class Status:
    revision: str | None  # the database's; None when empty or made before revisions
    head: str             # the code's
    state: State

    def problem(self) -> str | None:
        """The one sentence that refuses this database and names the fix; None when usable."""
        match self.state:
            case State.older:
                return (f"this database is at revision {self.revision}, the code expects "
                        f"{self.head}: {UPGRADE}")
            case State.pre_revisions:
                return (f"this database was made before schema revisions, the code expects "
                        f"{self.head}: {UPGRADE}")
            case State.newer:
                return (f"this database is at revision {self.revision}, newer than this code "
                        f"(which expects {self.head}): upgrade retain")
            case State.unknown:
                return ("this database has retain tables but no schema revision: point "
                        "database.url at a retain database or an empty one")
        return None

    def label(self) -> str:
        """The database's revision for people: the id, or what it is without one."""
        return self.revision or {State.empty: "none (empty)",
                                 State.pre_revisions: "none (made before schema revisions)",
                                 }.get(self.state, "none")

    def verdict(self) -> str:
        if self.state is State.empty:
            return (f"empty: retain import, retain demo or retain db upgrade makes it at "
                    f"{self.head}")
        return self.problem() or "up to date"

    def upgraded(self) -> str:
        """What ``upgrade`` did to a database that was in this state."""
        match self.state:
            case State.current:
                return f"already at {self.head}: up to date"
            case State.empty:
                return f"made the schema at {self.head}"
            case State.pre_revisions:
                then = "up to date" if self.head == BASELINE else f"upgraded to {self.head}"
                return (f"recognised a database made before schema revisions as {BASELINE} "
                        f"(baseline); {then}")
        return f"upgraded from {self.revision} to {self.head}"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, in code: the environment in engine/migrations/, run on
    ``connection`` (which the caller holds, inside ``transaction``)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


@cache
def scripts() -> ScriptDirectory:
    """The revision files. They are part of the code, so they are read once per process."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head() -> str | None:
    """The revision the code expects: the highest-numbered revision file, as revisions are
    numbered in sequence (``new_revision`` writes the next); Alembic's own head, which
    tests/test_migrations.py checks, without importing Alembic."""
    files = (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    return max((file.name[:4] for file in files), default=None)


def _known() -> set[str]:
    return {script.revision for script in scripts().walk_revisions()}


def status(engine: Engine) -> Status:
    with engine.connect() as conn:
        return _status(conn)


def _status(conn: Connection) -> Status:
    code = head()
    names = set(inspect(conn).get_table_names())
    revision = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() \
        if VERSION_TABLE in names else None
    if not names & set(SQLModel.metadata.tables):  # a stamp alone, its tables dropped, is empty
        return Status(None, code, State.empty)
    if revision is not None:
        state = (State.current if revision == code else
                 State.older if revision in _known() else State.newer)
        return Status(revision, code, state)
    if "meta" in names and conn.execute(
            text("SELECT value FROM meta WHERE key = :k"),
            {"k": PRE_REVISION_MARK[0]}).scalar() == PRE_REVISION_MARK[1]:
        return Status(None, code, State.pre_revisions)
    return Status(None, code, State.unknown)


def ready(engine: Engine) -> None:
    """Make sure the database is at the code's head: an empty one is made there, any other
    revision is refused (``SchemaError``, one sentence with the fix)."""
    found = status(engine)
    if found.state is State.empty:
        try:
            create(engine)
        except DBAPIError:  # another process made it first: fine if it is at head now
            found = status(engine)
            if found.state is not State.current:
                raise
        return
    if problem := found.problem():
        raise SchemaError(problem)


def create(engine: Engine) -> None:
    """Every table at the code's head, on a database without them: ``create_all``, stamped."""
    with transaction(engine) as conn:
        SQLModel.metadata.create_all(conn)
        _stamp(conn, head())


def upgrade(engine: Engine) -> Status:
    """Bring the database to the code's head in one transaction; return its state before.

    A database made before revisions is stamped at the baseline first (its schema is the
    baseline's) and its old ``meta.schema_version`` mark dropped: ``alembic_version`` is now
    the one record of the schema.
    """
    before = status(engine)
    if before.state in (State.newer, State.unknown):
        raise SchemaError(before.problem())
    if before.state is State.empty:
        create(engine)
    elif before.state is not State.current:
        with transaction(engine) as conn:
            if before.state is State.pre_revisions:
                conn.execute(text("DELETE FROM meta WHERE key = :k"), {"k": PRE_REVISION_MARK[0]})
                _stamp(conn, BASELINE)
            from alembic import command

            command.upgrade(alembic_config(conn), "head")
    return before


def _stamp(conn: Connection, revision: str) -> None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(conn)
    if context.get_current_heads():  # a stamp left behind by tables dropped since
        conn.execute(text(f"DELETE FROM {context.version_table}"))
    context.stamp(scripts(), revision)


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction around a schema change, DDL included, so it is all or nothing.

    PostgreSQL's DDL is transactional. Python's sqlite3 begins a transaction only before
    INSERT/UPDATE/DELETE, so on SQLite the driver is put in autocommit and the transaction begun
    here: BEGIN IMMEDIATE takes the write lock first, so a scheduler waits instead of reading a
    half-changed schema. Foreign keys are off meanwhile, as SQLite's "making other kinds of
    table schema changes" procedure asks (a batch operation copies a table and drops the old
    one), and checked before the commit.
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
                if broken is not None:
                    raise SchemaError(f"the schema change leaves a row of {broken[0]} pointing at "
                                      f"a missing row of {broken[2]}; nothing was changed")
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
        finally:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")


def new_revision(message: str) -> Path:
    """Write the next revision file: what tables.py has that the head schema lacks, found by
    Alembic's autogenerate against a throwaway SQLite database built by the revisions so far.

    A developer's tool: it writes into engine/migrations/versions/ of the source tree. The file
    must be read and completed by hand (data moves, PostgreSQL enum values autogenerate does
    not see); tests/test_migrations.py then runs it on both databases.
    """
    from alembic import command

    number = f"{int(head() or 0) + 1:04d}"
    with tempfile.TemporaryDirectory(prefix="retain-revision-") as folder:
        engine = create_engine(f"sqlite:///{folder}/head.db")
        try:
            with transaction(engine) as conn:
                command.upgrade(alembic_config(conn), "head")
            with engine.begin() as conn:
                config = alembic_config(conn)
                # The new file is formatted by ruff (a dev dependency) to the project's style.
                config.set_section_option("post_write_hooks", "hooks", "ruff")
                config.set_section_option("post_write_hooks", "ruff.type", "module")
                config.set_section_option("post_write_hooks", "ruff.module", "ruff")
                config.set_section_option("post_write_hooks", "ruff.options",
                                          "format REVISION_SCRIPT_FILENAME")
                script = command.revision(config, message, autogenerate=True, rev_id=number)
        finally:
            engine.dispose()
    scripts.cache_clear()  # the new file is part of the code from now on
    return Path(script.path)
