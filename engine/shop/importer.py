"""Shop data from CSV into the database: one file, streamed in chunks, all or nothing.

Owns: ``import_file`` and ``ImportResult``: it opens the file, settles its format, streams its
records a chunk at a time to the writer of their kind (upserts.py) inside one transaction, and
bumps the data version when anything changed; also how an import runs (garbage collector,
SQLite page cache, progress bar). Must not parse cells (csvfile.py and csvformats.py do), match
or write rows itself (upserts.py does), nor compute metrics (they are rebuilt from the bumped
data version).

Choices, and why:
- One pass, one transaction: rows are validated as they stream and written a chunk at a time;
  the first bad row raises CsvError and the transaction rolls back, so nothing is written.
  Memory holds one chunk; repeats across chunks are caught by a temporary table of the keys
  seen so far (importkeys.py), not a Python set that would grow with the file.
- Shopify rows without an email (phone-only customers, point-of-sale orders) are skipped and
  counted in the summary: nobody can be emailed about them.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from engine import db
from engine.config import Settings
from engine.display import count
from engine.errors import CsvError, InputError
from engine.shop import eventupserts, redemptions, upserts
from engine.shop.csvfile import CsvFile
from engine.shop.csvformats import Context, choose_format, records
from engine.shop.importkeys import create_scratch, drop_scratch
from engine.shop.upserts import Job

CHUNK_SIZE = 5000
SQLITE_CACHE_KIB = 32 * 1024  # page cache while importing; see _roomy_cache
KINDS = ("customers", "products", "orders", *eventupserts.WRITERS)


def _write_orders(conn: Connection, chunk: list[dict[str, Any]], job: Job) -> None:
    upserts.WRITERS["orders"](conn, chunk, job)
    eventupserts.after_orders(conn, chunk, job)


WRITERS = {**upserts.WRITERS, **eventupserts.WRITERS, "orders": _write_orders}
FORMATS = ("auto", "generic", "shopify")


@dataclass(frozen=True)
class ImportResult:
    """What one import did. inserted/updated/unchanged count records (an order may span rows)."""
    rows: int
    inserted: int
    updated: int
    unchanged: int
    kind: str = ""
    customers_created: int = 0  # minimal customers made for unknown emails in Shopify orders
    skipped: int = 0            # Shopify rows without an email
    normalised: int = 0         # names whose line breaks or control characters were removed

    def summary(self) -> str:
        records = self.inserted + self.updated + self.unchanged
        head = count(self.rows, "row") if records == self.rows else \
            f"{count(self.rows, 'row')}, {records:,} {self.kind or 'records'}"
        text = (f"{head}: {self.inserted:,} new, {self.updated:,} updated, "
                f"{self.unchanged:,} unchanged")
        if self.customers_created:
            text += f"; {count(self.customers_created, 'customer')} added from order emails"
        if self.skipped:
            text += f"; {count(self.skipped, 'row')} without an email skipped"
        if self.normalised:
            text += (f"; {count(self.normalised, 'name')} had line breaks or control "
                     "characters, replaced by a space or removed")
        return text


def import_file(engine: Engine, settings: Settings, kind: str, path: str | Path,
                fmt: str = "auto", progress: bool = False,
                now: datetime | None = None, decimal_comma: bool = False) -> ImportResult:
    """Import one CSV file of ``kind`` (customers, products, orders); all of it, or nothing.

    ``now`` (aware) is the import time, used where the file gives none: Shopify customers and
    products carry no creation date, and a newly given consent or price cut happens now.
    ``decimal_comma``: the file writes amounts 12,50 (else the file's first amount with a
    decimal mark decides, and one written the other way is refused: csvfile.Amounts).
    """
    if kind not in KINDS:
        raise InputError(f'cannot import "{kind}"; choose {", ".join(KINDS)}')
    if fmt not in FORMATS:
        raise InputError(f'unknown format "{fmt}"; choose auto, generic or shopify')
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    context = context_of(settings)
    with CsvFile(path, decimal_comma=decimal_comma) as source:
        shopify = choose_format(source, kind, fmt) == "shopify"
        job = Job(source.name, shopify, now,
                  has_items=source.has("Lineitem quantity" if shopify else "sku"),
                  customers_by_email=shopify or not source.has("customer_id"))
        try:
            with _fewer_collections(), engine.begin() as conn, _roomy_cache(conn), \
                    _progress_bar(source, progress) as tick:
                write(conn, kind, records(source, kind, context), job, tick)
        except IntegrityError as exc:
            raise conflict(exc, source.name) from None
        return ImportResult(source.rows_read, job.inserted, job.updated, job.unchanged, kind,
                            job.customers_created, source.skipped, job.normalised)


def context_of(settings: Settings) -> Context:
    """The store facts a record may fall back on (zone, currency, URL)."""
    return Context(settings.store.zone, settings.store.currency, settings.store.url)


def write(conn: Connection, kind: str, items: Iterable[dict[str, Any]], job: Job,
          tick: Callable[[], None] = lambda: None) -> None:
    """Write ``items`` (records of ``kind``) a chunk at a time inside the caller's transaction,
    and bump the data version when anything changed."""
    write_kinds(conn, [(kind, items)], job, tick)


def write_kinds(conn: Connection, batches: Iterable[tuple[str, Iterable[dict[str, Any]]]],
                job: Job, tick: Callable[[], None] = lambda: None) -> None:
    """``write`` for several kinds in turn (a webhook's customer, order and fulfillments), with
    one set of scratch tables and one data-version bump. Sources apply records through here."""
    create_scratch(conn)
    codes: set[str] | None = set()  # the discount codes the orders carry, while they are few
    for kind, items in batches:
        for chunk in _chunks(items, CHUNK_SIZE):
            WRITERS[kind](conn, chunk, job)
            if kind == "orders":
                codes = redemptions.keys_of(chunk, codes)
            tick()
    drop_scratch(conn)
    if job.inserted or job.updated:  # an import that changed nothing keeps metrics
        redemptions.refresh(conn, codes)
        db.bump_data_version(conn)


def conflict(exc: IntegrityError, name: str) -> CsvError:
    """A unique key the records broke, as one line without the value (it may be an address)."""
    reason = str(exc.orig).splitlines()[0]  # PostgreSQL's DETAIL line quotes the value
    return CsvError(f"conflicts with data already in the database ({reason}); check that ids "
                    "and emails are not reused", name)


def _chunks(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often while importing. Every row allocates a few
    dicts and tuples, none of them in cycles, so frequent collections only re-scan the same live
    objects: 12 % of a large import's CPU time (bench/import.py). Reference counting still
    frees each chunk, so memory stays flat."""
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


@contextmanager
def _roomy_cache(conn: Connection) -> Iterator[None]:
    """On SQLite, a 32 MiB page cache while importing: with the default 2 MiB the index pages
    of one large transaction spill to disk (600,000 rows: 41 s instead of 27 s, bench/import.py).
    A fixed size, so memory stays flat; 64 MiB was no faster (1 M rows: 25.3 s against 26.2 s
    of CPU) and made the process 163 MiB instead of 126. The connection's own setting is
    restored after."""
    if conn.dialect.name != "sqlite":
        yield
        return
    previous = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {int(previous)}")


@contextmanager
def _progress_bar(source: CsvFile, enabled: bool) -> Iterator[Callable[[], None]]:
    """A bar on stderr measured in bytes of the file, updated once a chunk."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"importing {Path(source.name).name}", total=source.size)
        yield lambda: bar.update(task, completed=source.bytes_read())
