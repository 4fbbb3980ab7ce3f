"""The SQL source: the shop's own database (any SQLAlchemy URL), read only, since a watermark.

Owns one sync of a ``kind: sql`` source: for each kind with a query (customers, products,
orders, fulfillments, reviews, checkouts, in that order, so orders find their customers), run
it in a read-only transaction with ``:since`` bound to the newest ``updated_at`` seen so far
minus ``overlap``, stream its rows (columns named as the generic CSV columns) into a private
CSV file, and import that file through the importer: the same checks, the same all-or-nothing
transaction, the same memory bound as ``retain import``, and errors that name the query and the
result row. A true ``deleted`` column in the customers query forgets the customer. The new
watermark is kept only when every kind synced. Must not write to the shop's database, send or
render, nor read the clock.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import Connection

from engine.config import Settings, SqlSource
from engine.errors import CsvError, InputError
from engine.shop import importer
from engine.shop.sources import syncstate
from engine.shop.sources.types import Forget, SyncResult

# The kinds in the order they sync, and the column that orders a kind's rows within one
# updated_at (an order's line items must come on consecutive rows).
KEYS = {"customers": "customer_id", "products": "sku", "orders": "order_id",
        "fulfillments": "order_id", "reviews": "review_id", "checkouts": "checkout_id"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CENT = Decimal("0.01")
YES = frozenset({"1", "true", "t", "yes", "y"})


def _read_only(conn: Connection) -> None:
    """Make the transaction read only where the database can say so (give the source a
    read-only database user as well: that is the guarantee on every database)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    elif dialect == "sqlite":
        conn.exec_driver_sql("PRAGMA query_only = ON")
    elif dialect in ("mysql", "mariadb"):
        conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")


def _cell(value: Any, zone: ZoneInfo) -> str:
    """A database value as the generic CSV writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=zone)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):  # money columns: numeric(12,4) and the like
        return str(value.quantize(CENT, rounding=ROUND_HALF_UP))
    if isinstance(value, float):
        return f"{value:.2f}" if value != int(value) else str(int(value))
    return str(value)


def _moment(value: Any, zone: ZoneInfo) -> datetime | None:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return None
    return (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(UTC)


class _Batch:
    """One kind's query result written to a private CSV file, with what the sync needs back:
    the newest updated_at, and the customers marked deleted."""

    def __init__(self, folder: Path, kind: str):
        self.path = folder / f"{kind}.csv"
        self.rows = 0
        self.newest: datetime | None = None
        self.deleted: list[dict[str, str]] = []

    def write(self, columns: list[str], rows: Iterator[Any], zone: ZoneInfo) -> None:
        at = columns.index("updated_at")
        gone = columns.index("deleted") if "deleted" in columns else -1
        with open(self.path, "w", newline="", encoding="utf-8") as handle:
            out = csv.writer(handle)
            out.writerow(columns)
            for row in rows:
                moment = _moment(row[at], zone)
                if moment is not None and (self.newest is None or moment > self.newest):
                    self.newest = moment
                if gone >= 0 and str(row[gone]).lower() in YES:
                    self.deleted.append(dict(zip(columns, map(str, row), strict=True)))
                    continue
                out.writerow([_cell(value, zone) for value in row])
                self.rows += 1


def _query(source: SqlSource, kind: str) -> str:
    inner = getattr(source.queries, kind).strip().rstrip(";")
    return f"SELECT * FROM ({inner}) AS q ORDER BY q.updated_at, q.{KEYS[kind]}"


def _read(shop: Engine, source: SqlSource, kind: str, since: datetime, zone: ZoneInfo,
          batch: _Batch) -> None:
    with shop.connect() as conn, conn.begin():
        _read_only(conn)
        result = conn.execution_options(stream_results=True, yield_per=5000).execute(
            text(_query(source, kind)), {"since": since.astimezone(zone).replace(tzinfo=None)})
        columns = [name.lower() for name in result.keys()]
        for needed in ("updated_at", KEYS[kind]):
            if needed not in columns:
                raise InputError(f'the {kind} query of source "{source.name}" returns no '
                                 f"{needed} column; add it (SELECT ..., x AS {needed})")
        batch.write(columns, iter(result), zone)


def sync(engine: Engine, settings: Settings, source: SqlSource, now: datetime,
         forget: Forget) -> SyncResult:
    zone = ZoneInfo(source.timezone or settings.store.timezone)
    with engine.connect() as conn:
        marks = syncstate.watermark(conn, source.name)
    result = SyncResult(source.name, source.kind, arrived=True, watermark=dict(marks))
    shop = create_engine(source.url.get_secret_value())
    try:
        with tempfile.TemporaryDirectory(prefix="retain-sync-") as folder:
            for kind in KEYS:
                if getattr(source.queries, kind) is None:
                    continue
                since = (datetime.fromisoformat(marks[kind]) - source.overlap) \
                    if kind in marks else EPOCH
                batch = _Batch(Path(folder), kind)
                _read(shop, source, kind, since, zone, batch)
                try:
                    imported = importer.import_file(engine, settings, kind, batch.path,
                                                    "generic", now=now)
                except CsvError as exc:
                    row = f"result row {exc.row - 1}: " if exc.row and exc.row > 1 else ""
                    raise InputError(f'source "{source.name}", {kind} query: {row}'
                                     f"{exc.message}") from None
                result.applied += imported.inserted + imported.updated
                forgotten = _forget(engine, source, batch.deleted, now, forget)
                result.applied += forgotten
                result.notes.append(f"{kind}: {batch.rows} rows read, {imported.inserted} new, "
                                    f"{imported.updated} updated" +
                                    (f", {forgotten} forgotten" if forgotten else ""))
                if batch.newest is not None:
                    result.watermark[kind] = batch.newest.isoformat()
    finally:
        shop.dispose()
    return result


def _forget(engine: Engine, source: SqlSource, deleted: list[dict[str, str]], now: datetime,
            forget: Forget) -> int:
    """Forget the customers the shop marked deleted; how many were known here."""
    if not deleted:
        return 0
    with engine.begin() as conn:
        return sum(forget(conn, now, f"sql:{source.name}", external_id=row.get("customer_id"),
                          email=row.get("email") if "@" in row.get("email", "") else None)
                   is not None for row in deleted)

