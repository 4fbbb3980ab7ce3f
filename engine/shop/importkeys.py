"""The keys of one import, kept in temporary tables: repeats refused, matches fetched by join.

Owns: the scratch tables private to one import's connection (created at its start, dropped at
its end), ``refuse_repeats`` (a key an earlier row of the file already used is refused with the
row of its first use), and the two key sets the writers join against: ``chunk_keys(slot)``, the
current chunk's keys, and ``lookup(conn, keys)``, the customer keys a chunk of orders names.
Repeats across chunks are found in SQL, not in a Python set that would grow with the file, so
memory stays flat at a million rows. Must not read or write the shop's tables (upserts.py does)
nor decide what a key is (each writer passes its own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Integer, String, column, select, table
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import TableClause

from engine import db
from engine.errors import CsvError

# Scratch tables, private to one import's connection. Keys are looked up by joining them rather
# than with IN lists of 5,000 bound values, which cost SQLAlchemy more than the query itself.
# _fill fills them.
#   import_keys  every key (id, email, SKU; slot says which) of the file so far: repeats
#                across chunks are found in SQL, so memory stays flat at a million rows
#   chunk_keys   the current chunk's keys, also used to fetch its matches
#   lookup_keys  the customer keys the current chunk of orders refers to
SCRATCH = {"import_keys": "slot INTEGER, import_key VARCHAR, first_row INTEGER, "
                          "PRIMARY KEY (slot, import_key)",
           "chunk_keys": "slot INTEGER, import_key VARCHAR, first_row INTEGER, "
                         "PRIMARY KEY (slot, import_key)",
           "lookup_keys": "import_key VARCHAR PRIMARY KEY"}
CHUNK_KEYS = table("chunk_keys", column("slot", Integer), column("import_key", String),
                   column("first_row", Integer))
LOOKUP_KEYS = table("lookup_keys", column("import_key", String))


def create_scratch(conn: Connection) -> None:
    """The scratch tables, empty, on this import's connection."""
    for name, columns in SCRATCH.items():
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({columns})")
        _empty(conn, name)  # rows an earlier, failed import left


def drop_scratch(conn: Connection) -> None:
    """Drop them once the import has written everything."""
    for name in SCRATCH:
        conn.exec_driver_sql(f"DROP TABLE {name}")


def _empty(conn: Connection, name: str) -> None:
    """Empty a scratch table. On PostgreSQL by TRUNCATE: nothing vacuums a temporary table,
    so the rows DELETE left dead piled up, chunk after chunk, under every later scan and join
    (a million-row import slowed fourfold from its start to its end)."""
    verb = "TRUNCATE" if conn.dialect.name == "postgresql" else "DELETE FROM"
    conn.exec_driver_sql(f"{verb} {name}")


def _fill(conn: Connection, scratch: TableClause, rows: list[tuple]) -> None:
    """Insert ``rows`` (tuples in the columns' order) into an empty scratch table. On
    PostgreSQL in one statement (``db.insert_many``): the driver's executemany sends a statement
    a row, and two chunks of keys took as long as a chunk of orders. On SQLite the driver's
    executemany of the tuples, which skips SQLAlchemy's work on every row (half the time)."""
    if not rows:
        return
    names = scratch.c.keys()
    if conn.dialect.name == "postgresql":
        records = [dict(zip(names, row, strict=True)) for row in rows]
        conn.execute(*db.insert_many(conn, scratch, records))
        return
    marks = ", ".join("?" * len(names))
    conn.exec_driver_sql(f"INSERT INTO {scratch.name} VALUES ({marks})", rows)


def chunk_keys(slot: int) -> Any:
    """The current chunk's keys of ``slot``, as a subquery to match the shop's tables on."""
    return select(CHUNK_KEYS.c.import_key).where(CHUNK_KEYS.c.slot == slot)


def lookup(conn: Connection, keys: Iterable[str]) -> Any:
    """Hold ``keys`` (customer keys) in lookup_keys; a subquery of them to match on."""
    _empty(conn, "lookup_keys")
    _fill(conn, LOOKUP_KEYS, [(key,) for key in keys])
    return select(LOOKUP_KEYS.c.import_key)


# Keys are (key, slot): the slot picks the column and description an error message uses.
KeysOf = Callable[[dict[str, Any]], Iterable[tuple[str, int]]]
Slots = tuple[tuple[str, Callable[[dict[str, Any]], str]], ...]


def refuse_repeats(conn: Connection, chunk: list[dict[str, Any]], name: str,
                   keys_of: KeysOf, slots: Slots) -> None:
    """Refuse a record whose key (id, email, SKU) an earlier row of the file ``name`` already
    used. Leaves the chunk's keys in chunk_keys for the lookups that follow."""
    seen: dict[tuple[int, str], int] = {}  # (slot, key) → row
    for record in chunk:
        for key, slot in keys_of(record):
            if (slot, key) in seen:
                _repeat(name, record, slots[slot], seen[slot, key])
            seen[slot, key] = record["_row"]
    _empty(conn, "chunk_keys")
    _fill(conn, CHUNK_KEYS, [(slot, key, row) for (slot, key), row in seen.items()])
    # CROSS JOIN makes SQLite walk the chunk and probe the register; with a plain JOIN it scans
    # the whole register for every chunk, and a million-row import turns quadratic.
    earlier = conn.exec_driver_sql(
        "SELECT chunk_keys.slot, chunk_keys.import_key, import_keys.first_row FROM chunk_keys "
        "CROSS JOIN import_keys WHERE import_keys.slot = chunk_keys.slot "
        "AND import_keys.import_key = chunk_keys.import_key LIMIT 1").first()
    if earlier is not None:
        slot, key, first_row = earlier
        record = next(r for r in chunk if r["_row"] == seen[slot, key])
        _repeat(name, record, slots[slot], first_row)
    conn.exec_driver_sql("INSERT INTO import_keys SELECT * FROM chunk_keys")


def _repeat(name: str, record: dict[str, Any],
            slot: tuple[str, Callable[[dict[str, Any]], str]], row: int) -> None:
    column_name, describe = slot
    raise CsvError(f"repeats {describe(record)} from row {row}; each must appear once in a file",
                   name, record["_row"], column_name)
