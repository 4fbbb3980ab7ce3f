"""Database engine and schema.

Owns: creating the SQLAlchemy engine for a URL (SQLite file by default, PostgreSQL for scale),
the SQLite pragmas that make one file safe for a scheduler and a CLI at once (WAL, busy timeout,
foreign keys), creating the schema, and the small ``meta`` facts (schema and data versions).
Must not hold queries about the shop; those live with the concept they serve.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlmodel import SQLModel

from engine import tables  # noqa: F401 - registers every table on SQLModel.metadata
from engine.errors import ConfigError

SCHEMA_VERSION = "1"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the scheduler write while the CLI reads; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@lru_cache(maxsize=8)
def connect(url: str) -> Engine:
    """The engine for ``url``, schema created if missing. Cached per URL within a process."""
    try:
        engine = create_engine(url, future=True)
    except (ArgumentError, ImportError, ValueError) as exc:
        raise ConfigError(f'cannot use the database URL "{redact(url)}": {exc}. '
                          'Use sqlite:///path/to/file.db or postgresql+psycopg://...') from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        create_schema(engine)
    except OperationalError as exc:
        raise ConfigError(f'cannot open the database "{redact(url)}": {exc.orig}') from None
    return engine


def create_schema(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine)
    with engine.begin() as conn:
        if get_meta(conn, "schema_version") is None:
            set_meta(conn, "schema_version", SCHEMA_VERSION)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


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
