"""Database engines and the small ``meta`` facts.

Owns: creating the SQLAlchemy engine for a URL (SQLite file by default, PostgreSQL for scale),
the SQLite pragmas that make one file safe for a scheduler and a CLI at once (WAL, busy timeout,
foreign keys), making sure the schema is at the code's revision before use (``engine.migrate``
does the revisions), the ``meta`` facts (data version, metrics as-of), and how a batch travels
on each database: ``insert_many`` and ``update_many`` (many rows into a table, or changed in
it, in one statement) and ``among`` (a column in a batch's keys).
Must not hold queries about the shop; those live with the concept they serve. Keeps no engine:
``connect`` returns a new one, which its caller holds and disposes (the CLI holds one per
command).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from sqlalchemy import (
    Engine,
    Enum,
    String,
    Table,
    any_,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.sql.dml import Insert, Update
from sqlalchemy.sql.elements import ColumnElement

from engine import migrate, tables
from engine.controlchars import one_line  # a driver's message spans lines (psycopg's)
from engine.errors import ConfigError, NotFound

BUSY_WAIT_SECONDS = 30  # how long a SQLite writer waits for another one before giving up


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the scheduler write while the CLI reads; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_WAIT_SECONDS * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def connect(url: str, *, check_revision: bool = True, create: bool = True) -> Engine:
    """A new engine for ``url``, which the caller holds and disposes.

    With ``check_revision`` (every command but ``retain db``), the database must be at the
    code's schema revision: an empty one is made there, any other is refused with the fix
    (``SchemaError``). Without it, only whether the database can be opened is checked.
    Without ``create`` (every command but ``retain import`` and ``retain demo``), a SQLite file
    that does not exist is refused (``NotFound``, with how to point at the right one) instead of
    being made, and so is a database without retain's tables when the revision is checked:
    reading an empty database would report zeros as if they were the shop's. (``retain db``
    may look at an empty database, and make its schema.)
    """
    try:
        # Many rows with RETURNING (insert_many on SQLite) go as multi-row VALUES pages. Pages
        # of 100 rows, not SQLAlchemy's 1,000: SQLite compiles a statement per page shape and
        # the driver keeps each compiled one in every pooled connection's cache; at 1,000 rows
        # of 11 columns they held 25 MB after a million-customer plan, and compiling them cost
        # a third of its time.
        engine = create_engine(url, **({"insertmanyvalues_page_size": 100}
                                       if url.startswith("sqlite") else {}))
    except (ArgumentError, ImportError, ValueError) as exc:
        raise ConfigError(f'cannot use the database URL "{redact(url)}": {exc}. '
                          'Use sqlite:///path/to/file.db or postgresql+psycopg://...') from None
    if engine.dialect.name == "sqlite":
        file = sqlite_file(engine)
        if not create and file is not None and not file.exists():
            engine.dispose()
            raise NotFound(missing(url, file))
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        if not create and check_revision and \
                migrate.status(engine).state is migrate.State.empty:
            raise NotFound(missing(url, sqlite_file(engine)))
        if check_revision:
            migrate.ready(engine)
        else:
            engine.connect().close()
    except OperationalError as exc:
        engine.dispose()
        raise ConfigError(f'cannot open the database "{redact(url)}": '
                          f"{one_line(str(exc.orig))}") from None
    except BaseException:
        engine.dispose()
        raise
    return engine


def sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite database; None for PostgreSQL and in-memory databases."""
    name = engine.url.database if engine.dialect.name == "sqlite" else None
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name).resolve()


def missing(url: str, file: Path | None) -> str:
    """The one sentence for a database that is not there (or holds no retain tables): where it
    was looked for, how to point at the right one, and how to make one. Other databases in the
    same folder (``make demo`` writes demo.db) are named with the ``--db`` that opens them."""
    if file is not None and file.exists():
        head = f"{file} has no retain data yet"
    else:
        head = f"no database at {file or redact(url)}"
    hint = ""
    if file is not None:
        here = Path.cwd().resolve()
        others = sorted(p for p in file.parent.glob("*.db") if p != file and p.stat().st_size)
        if others:
            shown = [str(p.relative_to(here)) if p.is_relative_to(here) else str(p)
                     for p in others[:3]]
            hint = " (" + ", ".join(f"--db sqlite:///{name}" for name in shown) + \
                " would open " + ("it" if len(shown) == 1 else "one of them") + ")"
    return (f"{head}: point at the shop's database with --db URL{hint}, RETAIN_DATABASE_URL or "
            "database.url in config.yaml, or make one with `retain import` (the shop's CSV "
            "files) or `retain demo`")


def create_schema(engine: Engine) -> None:
    """Every table at the code's revision, on a database that has none (tests empty one)."""
    migrate.create(engine)


def dialect_insert(bind: Engine | Connection, table: Table) -> Insert:
    """``INSERT`` into ``table`` in the dialect's form, with ``on_conflict_*`` available."""
    return (postgresql if bind.dialect.name == "postgresql" else sqlite).insert(table)


def insert_many(conn: Connection, table: Table, rows: list[dict]
                ) -> tuple[Insert, list[dict] | dict[str, list]]:
    """The INSERT for ``rows`` (dicts with the same keys) into ``table``, in the dialect's
    form (``on_conflict_*`` and ``excluded`` available), and the parameters to execute it
    with: ``conn.execute(statement, parameters)``.

    On PostgreSQL the rows travel as one array a column through ``unnest()``: a statement of
    the same text whatever the number of rows. A multi-row VALUES list, which psycopg rewrites
    placeholder by placeholder for every page of 1,000 rows, was a third of a 100 k-customer
    plan's time; this halves the inserts. Elsewhere, an executemany of the rows.
    """
    if conn.dialect.name != "postgresql":
        return sqlite.insert(table), rows
    return _unnest_insert(table, tuple(rows[0])), _arrays(rows)


UPDATE_KEY = "b_id"  # the key of update_many's rows that names the row to update (its id)


def update_many(conn: Connection, table: Table, rows: list[dict]
                ) -> tuple[Update, list[dict] | dict[str, list]]:
    """The UPDATE of ``rows`` (dicts with the same keys: ``b_id``, the id of the row to
    update, and the columns to set) in ``table``, and the parameters to execute it with:
    ``conn.execute(statement, parameters)``.

    On PostgreSQL, ``UPDATE ... FROM unnest()`` of one array a column, as ``insert_many``:
    psycopg's executemany sends a statement a row (a re-import that changed every order took
    longer than the first import). Elsewhere, an executemany of the rows.
    """
    postgres = conn.dialect.name == "postgresql"
    statement = _update(table, tuple(rows[0]), postgres)
    return statement, _arrays(rows) if postgres else rows


@lru_cache(maxsize=64)
def _unnest_insert(table: Table, columns: tuple[str, ...]) -> Insert:
    picked = _unnested(table, columns)
    return postgresql.insert(table).from_select(columns, select(*picked.values()))


@lru_cache(maxsize=64)
def _update(table: Table, columns: tuple[str, ...], postgres: bool) -> Update:
    setting = [name for name in columns if name != UPDATE_KEY]
    if not postgres:
        return (table.update().where(table.c.id == bindparam(UPDATE_KEY))
                .values({name: bindparam(name) for name in setting}))
    picked = _unnested(table, columns)
    return (table.update().where(table.c.id == picked[UPDATE_KEY])
            .values({name: picked[name] for name in setting}))


def _unnested(table: Table, columns: tuple[str, ...]) -> dict[str, ColumnElement]:
    """PostgreSQL: ``unnest()`` of one array parameter a column (``_arrays`` fills them), each
    column read as the table's column of its name (``b_id`` as its id) is typed.

    The statement holds no values, and is built once a table and set of columns: one holding
    a chunk's arrays kept them alive, in a reference cycle, until a full garbage collection
    (an import that collects rarely grew by 2 MiB a chunk)."""
    def column_of(name: str):
        return table.c.id if name == UPDATE_KEY else table.c[name]

    def array_type(column):  # enums travel as text and are cast back in the SELECT
        return String() if isinstance(column.type, Enum) else column.type

    arrays = [bindparam(f"many_{name}", type_=ARRAY(array_type(column_of(name))))
              for name in columns]
    source = func.unnest(*arrays).table_valued(*columns).render_derived()
    return {name: cast(source.c[name], column_of(name).type)
            if isinstance(column_of(name).type, Enum) else source.c[name] for name in columns}


def _arrays(rows: list[dict]) -> dict[str, list]:
    """The parameters of an ``_unnested`` statement: ``rows`` as one list a column."""
    return {f"many_{name}": [row[name] for row in rows] for name in rows[0]}


def among(bind: Engine | Connection, column, values) -> ColumnElement:
    """``column IN values`` for a batch of keys (a planner batch's customer ids), with the keys
    as one parameter: one statement text whatever their number.

    An IN list of 2,000 placeholders is a large statement of its own: psycopg parsed and bound
    it value by value for every batch (a tenth of a 100 k-customer plan's time on PostgreSQL),
    and SQLite's driver kept a compiled copy in each pooled connection's statement cache (a
    plan's memory grew by 25 MB over a million customers). On PostgreSQL the keys travel as
    an array, ``column = ANY(:keys)``; on SQLite as a JSON array, ``column IN (SELECT value
    FROM json_each(:keys))``, which SQLite seeks key by key like a list.
    """
    values = list(values)
    if bind.dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    keys = func.json_each(bindparam(None, json.dumps(values), type_=String()))
    return column.in_(select(literal_column("value")).select_from(keys))


def unavailable(error: OperationalError) -> str:
    """What to tell someone whose command the database stopped: busy, or gone."""
    if "database is locked" in str(error.orig):
        return (f"the database is busy: another process has been writing to it for "
                f"{BUSY_WAIT_SECONDS} s (a run, an import or a sync); try again when it is done")
    return (f"the database stopped answering: {one_line(str(error.orig))}; check that it is "
            "running and reachable, then try again")


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


# meta key set by `retain demo`: this database holds the synthetic demo shop, whose products
# have no real pictures (its emails attach drawn ones; a real shop's never do).
DEMO_SHOP = "demo_shop"


def get_meta(conn: Connection, key: str) -> str | None:
    return conn.execute(text("SELECT value FROM meta WHERE key = :k"), {"k": key}).scalar()


def set_meta(conn: Connection, key: str, value: str) -> None:
    table = tables.Meta.__table__
    updated = conn.execute(table.update().where(table.c.key == key).values(value=value))
    if updated.rowcount == 0:
        conn.execute(table.insert().values(key=key, value=value))


def bump_data_version(conn: Connection) -> None:
    """Record that shop data changed, so cached metrics are rebuilt before the next read."""
    current = int(get_meta(conn, "data_version") or 0)
    set_meta(conn, "data_version", str(current + 1))
