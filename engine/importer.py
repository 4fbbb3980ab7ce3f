"""Shop data from CSV into the database: records matched, then written in bulk, all or nothing.

Owns: ``import_file`` and ``ImportResult``; matching each record with what the database holds
(customers by id, and in Shopify files by email; products by SKU; orders by id), writing only
what changed with Core executemany in chunks, and the rule that a file imports whole or not at
all. Must not parse cells (csvfile.py and csvformats.py do) nor compute metrics (it bumps the
data version; metrics are rebuilt from that).

Choices, and why:
- One pass, one transaction: rows are validated as they stream and written a chunk at a time;
  the first bad row raises CsvError and the transaction rolls back, so nothing is written.
  Memory holds one chunk; repeats across chunks are caught by a temporary table of the keys
  seen so far, not a Python set that would grow with the file.
- A Shopify order whose email is unknown creates a minimal customer (no consent, created at
  the order): Shopify exports guest checkouts that the customers export may lack, and the order
  history is what retention needs. A generic order must name a customer already imported;
  otherwise the import is refused, since a typo in an id would silently invent a person.
- Shopify rows without an email (phone-only customers, point-of-sale orders) are skipped and
  counted in the summary: nobody can be emailed about them.
- Consent: accepts_marketing true on a new customer records consent at the row's created_at,
  else at ``now``; a customer who newly opts in on re-import consents at ``now``. An existing
  consent keeps its original time and source ("import:<filename>").
- Re-importing an order replaces its line items, if the file has line-item columns.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, column, delete, insert, or_, select, table
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from . import db, tables
from .config import Settings
from .csvfile import CsvFile
from .csvformats import Context, choose_format, records
from .errors import CsvError, InputError

CHUNK_SIZE = 5000
SQLITE_CACHE_KIB = 64 * 1024  # page cache while importing; see _roomy_cache
KINDS = ("customers", "products", "orders")
FORMATS = ("auto", "generic", "shopify")

CUSTOMERS = tables.Customer.__table__
PRODUCTS = tables.Product.__table__
ORDERS = tables.Order.__table__
ITEMS = tables.OrderItem.__table__
# The order columns a record carries as they are (customer_id is looked up from its key).
RECORD_FIELDS = ("created_at", "local_date", "status", "total_cents", "currency", "discount_code")


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

    def summary(self) -> str:
        records = self.inserted + self.updated + self.unchanged
        head = f"{self.rows} rows" if records == self.rows else \
            f"{self.rows} rows, {records} {self.kind or 'records'}"
        text = f"{head}: {self.inserted} new, {self.updated} updated, {self.unchanged} unchanged"
        if self.customers_created:
            text += f"; {_plural(self.customers_created, 'customer')} added from order emails"
        if self.skipped:
            text += f"; {_plural(self.skipped, 'row')} without an email skipped"
        return text


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass
class _Job:
    """One import in progress: its settings and its running counts."""
    name: str             # the file as the user named it, for error messages
    shopify: bool
    now: datetime | None
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    customers_created: int = 0
    has_items: bool = False            # the file has line-item columns
    customers_by_email: bool = False   # orders name their customer by email, not id

    @cached_property
    def consent_source(self) -> str:
        return f"import:{Path(self.name).name}"

    def moment(self, record: dict[str, Any], *candidates: datetime | None) -> datetime:
        for candidate in candidates:
            if candidate is not None:
                return candidate
        raise CsvError("is empty and no import time was given; add the column or pass now",
                       self.name, record["_row"], "created_at")


def import_file(engine: Engine, settings: Settings, kind: str, path: str | Path,
                fmt: str = "auto", progress: bool = False,
                now: datetime | None = None) -> ImportResult:
    """Import one CSV file of ``kind`` (customers, products, orders); all of it, or nothing.

    ``now`` (aware) is the import time, used where the file gives none: Shopify customers and
    products carry no creation date, and a newly given consent or price cut happens now.
    """
    if kind not in KINDS:
        raise InputError(f'cannot import "{kind}"; choose customers, products or orders')
    if fmt not in FORMATS:
        raise InputError(f'unknown format "{fmt}"; choose auto, generic or shopify')
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    context = Context(settings.store.zone, settings.store.currency, settings.store.url)
    writers: dict[str, Callable[[Connection, list[dict[str, Any]], _Job], None]] = {
        "customers": _write_customers, "products": _write_products, "orders": _write_orders}
    with CsvFile(path) as source:
        shopify = choose_format(source, kind, fmt) == "shopify"
        job = _Job(source.name, shopify, now,
                   has_items=source.has("Lineitem quantity" if shopify else "sku"),
                   customers_by_email=shopify or not source.has("customer_id"))
        try:
            with _fewer_collections(), engine.begin() as conn, _roomy_cache(conn), \
                    _progress_bar(source, progress) as tick:
                _create_scratch(conn)
                for chunk in _chunks(records(source, kind, context), CHUNK_SIZE):
                    writers[kind](conn, chunk, job)
                    tick()
                _drop_scratch(conn)
                if job.inserted or job.updated:  # an import that changed nothing keeps metrics
                    db.bump_data_version(conn)
        except IntegrityError as exc:
            # The first line only: PostgreSQL adds a DETAIL line quoting the value (an address).
            reason = str(exc.orig).splitlines()[0]
            raise CsvError(f"conflicts with data already in the database ({reason}); "
                           "check that ids and emails are not reused", source.name) from None
        return ImportResult(source.rows_read, job.inserted, job.updated, job.unchanged, kind,
                            job.customers_created, source.skipped)


def _write_customers(conn: Connection, chunk: list[dict[str, Any]], job: _Job) -> None:
    id_column, email_column = ("Customer ID", "Email") if job.shopify else ("customer_id", "email")
    _refuse_repeats(conn, chunk, job, lambda r: (
        ((r["external_id"], 0), (r["email_key"], 1)) if r["external_id"] else
        ((r["email_key"], 1),)), (
        (id_column, lambda r: f"customer id '{r['external_id']}'"),
        (email_column, lambda r: "the same email address (compared ignoring case)")))
    found = conn.execute(select(CUSTOMERS).where(or_(
        CUSTOMERS.c.external_id.in_(_chunk_keys(0)),
        CUSTOMERS.c.email_key.in_(_chunk_keys(1))))).all()
    by_id = {row.external_id: row for row in found}
    by_email = {row.email_key: row for row in found}
    new, changed = [], []
    for record in chunk:
        old = by_id.get(record["external_id"])
        if old is None and job.shopify:  # the Customer ID is stable; else the email decides
            old = by_email.get(record["email_key"])
        owner = by_email.get(record["email_key"])
        if owner is not None and owner is not old:
            raise CsvError(f"this address already belongs to customer '{owner.external_id}'; "
                           "one email address is one customer", job.name, record["_row"],
                           email_column)
        values = {k: v for k, v in record.items()
                  if k not in ("_row", "external_id", "created_at")}
        if record["external_id"]:
            values["external_id"] = record["external_id"]
        if record["created_at"] is not None:
            values["created_at"] = record["created_at"]
        if old is None:
            if "external_id" not in values:
                values["external_id"] = _email_customer_id(values["email"])
            values["created_at"] = job.moment(record, record["created_at"], job.now)
            new.append({"first_name": "", "last_name": "", "accepts_marketing": False,
                        "tags": "", **values, **_consent(record, None, job)})
        else:
            values.update(_consent(record, old, job))
            changed.append(_differences(values, old))
    _insert(conn, CUSTOMERS, new, job)
    _update(conn, CUSTOMERS, changed, job)


def _consent(record: dict[str, Any], old: Any, job: _Job) -> dict[str, Any]:
    if "accepts_marketing" not in record:
        return {}
    if not record["accepts_marketing"]:
        return {"consent_at": None, "consent_source": None}
    if old is not None and old.accepts_marketing and old.consent_at is not None:
        return {"consent_at": old.consent_at, "consent_source": old.consent_source}
    # A new customer consented when they signed up; an existing one who opts in, at this import.
    when = job.moment(record, record["created_at"], job.now) if old is None else \
        job.moment(record, job.now, record["created_at"])
    return {"consent_at": when, "consent_source": job.consent_source}


def _email_customer_id(address: str) -> str:
    """A stable id for a customer known only by email, that does not spell the address."""
    return "email:" + hashlib.sha256(address.lower().encode()).hexdigest()[:24]


def _write_products(conn: Connection, chunk: list[dict[str, Any]], job: _Job) -> None:
    _refuse_repeats(conn, chunk, job, lambda r: ((r["sku"], 0),), (
        ("Variant SKU" if job.shopify else "sku", lambda r: f"SKU '{r['sku']}'"),))
    found = conn.execute(select(PRODUCTS).where(PRODUCTS.c.sku.in_(_chunk_keys(0)))).all()
    by_sku = {row.sku: row for row in found}
    new, changed = [], []
    for record in chunk:
        old = by_sku.get(record["sku"])
        values = {k: v for k, v in record.items() if k not in ("_row", "created_at")}
        if record["created_at"] is not None:
            values["created_at"] = record["created_at"]
        price = values["price_cents"]
        compare = values.get("compare_at_price_cents",
                             old.compare_at_price_cents if old is not None else None)
        reduced = compare is not None and price < compare
        if old is None:
            values["created_at"] = job.moment(record, record["created_at"], job.now)
            values["price_reduced_at"] = values["created_at"] if reduced else None
            new.append({"category": "", "url": "", "image_url": "", **values})
            continue
        was_reduced = old.compare_at_price_cents is not None and \
            old.price_cents < old.compare_at_price_cents
        if reduced and (not was_reduced or price < old.price_cents):
            # A newly reduced price is news the new_product campaign announces.
            values["price_reduced_at"] = job.moment(record, job.now)
        changed.append(_differences(values, old))
    _insert(conn, PRODUCTS, new, job)
    _update(conn, PRODUCTS, changed, job)


def _write_orders(conn: Connection, chunk: list[dict[str, Any]], job: _Job) -> None:
    _refuse_repeats(conn, chunk, job, lambda r: ((r["external_id"], 0),), (
        ("Name" if job.shopify else "order_id",
         lambda r: f"order '{r['external_id']}' (keep all rows of an order together)"),))
    customer_ids = _customer_ids(conn, chunk, job)
    found = conn.execute(select(ORDERS).where(ORDERS.c.external_id.in_(_chunk_keys(0)))).all()
    by_id = {row.external_id: row for row in found}
    old_items: dict[int, list[tuple[str, int, int]]] = {}
    if job.has_items and found:
        for item in conn.execute(
                select(ITEMS.c.order_id, ITEMS.c.sku, ITEMS.c.quantity, ITEMS.c.unit_price_cents)
                .where(ITEMS.c.order_id.in_(select(ORDERS.c.id).where(
                    ORDERS.c.external_id.in_(_chunk_keys(0))))).order_by(ITEMS.c.id)):
            old_items.setdefault(item.order_id, []).append(tuple(item[1:]))
    new, new_records, changed, items, replace = [], [], [], [], []
    for record in chunk:
        values = {k: record[k] for k in RECORD_FIELDS}
        values["customer_id"] = customer_ids[record["customer_key"]]
        old = by_id.get(record["external_id"])
        if old is None:
            values["external_id"] = record["external_id"]
            new.append(values)
            new_records.append(record)
            continue
        difference = _differences(values, old)
        if job.has_items and old_items.get(old.id, []) != record["items"]:
            replace.append(old.id)
            items.extend(_item_rows(old.id, record["items"]))
            difference.setdefault("b_id", old.id)
        changed.append(difference)
    if new:
        _insert(conn, ORDERS, new, job)
        if job.has_items:
            # A plain executemany and one lookup: INSERT ... RETURNING of thousands of rows is
            # several times slower on PostgreSQL (psycopg pipelines plain executemany).
            ids = dict(conn.execute(select(ORDERS.c.external_id, ORDERS.c.id).where(
                ORDERS.c.external_id.in_(_chunk_keys(0)))).all())
            for record in new_records:
                items.extend(_item_rows(ids[record["external_id"]], record["items"]))
    _update(conn, ORDERS, changed, job)
    if replace:
        conn.execute(delete(ITEMS).where(ITEMS.c.order_id.in_(replace)))
    if items:
        conn.execute(insert(ITEMS), items)


def _item_rows(order_id: int, items: list[tuple[str, int, int]]) -> Iterator[dict[str, Any]]:
    for sku, quantity, unit_price_cents in items:
        yield {"order_id": order_id, "sku": sku, "quantity": quantity,
               "unit_price_cents": unit_price_cents}


def _customer_ids(conn: Connection, chunk: list[dict[str, Any]], job: _Job) -> dict[str, int]:
    """Customer key (id, or lower-case email) → customers.id; Shopify's unknown emails are added."""
    by_email = job.customers_by_email
    key_column = CUSTOMERS.c.email_key if by_email else CUSTOMERS.c.external_id
    query = select(key_column, CUSTOMERS.c.id).where(key_column.in_(_lookup(conn, {
        r["customer_key"] for r in chunk})))
    known = dict(conn.execute(query).all())
    missing = [r for r in chunk if r["customer_key"] not in known]
    if missing and not job.shopify:
        first = missing[0]
        what = "no customer has this email" if by_email else \
            f"customer '{first['customer_key']}' is not in the database"
        raise CsvError(f"{what}; import the customers file first, or fix the order",
                       job.name, first["_row"], "email" if by_email else "customer_id")
    if missing:
        minimal: dict[str, dict[str, Any]] = {}
        for record in missing:
            minimal.setdefault(record["customer_key"], {
                "external_id": _email_customer_id(record["customer_key"]),
                "email": record["email"], "email_key": record["customer_key"],
                "created_at": record["created_at"], "first_name": "", "last_name": "",
                "accepts_marketing": False, "tags": ""})
        conn.execute(insert(CUSTOMERS), list(minimal.values()))
        job.customers_created += len(minimal)
        known = dict(conn.execute(query).all())
    return known


def _differences(values: dict[str, Any], old: Any) -> dict[str, Any]:
    """The changed columns of ``old`` (a row) as an update, keyed by b_id; {} when none."""
    changes = {k: v for k, v in values.items() if getattr(old, k) != v}
    return {"b_id": old.id, **changes} if changes else {}


def _insert(conn: Connection, target: Any, rows: list[dict[str, Any]], job: _Job) -> None:
    if rows:
        conn.execute(insert(target), rows)
        job.inserted += len(rows)


def _update(conn: Connection, target: Any, changes: list[dict[str, Any]], job: _Job) -> None:
    """Execute the changes grouped by the columns they set (executemany needs one shape)."""
    job.unchanged += sum(1 for change in changes if not change)
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for change in filter(None, changes):
        shapes.setdefault(tuple(sorted(change)), []).append(change)
        job.updated += 1
    for columns, rows in shapes.items():
        setting = {c: bindparam(c) for c in columns if c != "b_id"}
        if setting:
            conn.execute(target.update().where(target.c.id == bindparam("b_id")).values(setting),
                         rows)


# Scratch tables, private to one import's connection. Keys are looked up by joining them rather
# than with IN lists of 5,000 bound values, which cost SQLAlchemy more than the query itself;
# the driver's executemany fills them, as they hold plain text and have no SQLAlchemy types.
#   import_keys  every key (id, email, SKU; slot says which) of the file so far: repeats
#                across chunks are found in SQL, so memory stays flat at a million rows
#   chunk_keys   the current chunk's keys, also used to fetch its matches
#   lookup_keys  the customer keys the current chunk of orders refers to
SCRATCH = {"import_keys": "slot INTEGER, import_key VARCHAR, first_row INTEGER, "
                          "PRIMARY KEY (slot, import_key)",
           "chunk_keys": "slot INTEGER, import_key VARCHAR, first_row INTEGER, "
                         "PRIMARY KEY (slot, import_key)",
           "lookup_keys": "import_key VARCHAR PRIMARY KEY"}
CHUNK_KEYS = table("chunk_keys", column("slot"), column("import_key"))
LOOKUP_KEYS = table("lookup_keys", column("import_key"))


def _create_scratch(conn: Connection) -> None:
    for name, columns in SCRATCH.items():
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({columns})")
        conn.exec_driver_sql(f"DELETE FROM {name}")  # rows an earlier, failed import left


def _drop_scratch(conn: Connection) -> None:
    for name in SCRATCH:
        conn.exec_driver_sql(f"DROP TABLE {name}")


def _marks(conn: Connection, count: int) -> str:
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * count)


def _chunk_keys(slot: int) -> Any:
    return select(CHUNK_KEYS.c.import_key).where(CHUNK_KEYS.c.slot == slot)


def _lookup(conn: Connection, keys: Iterable[str]) -> Any:
    conn.exec_driver_sql("DELETE FROM lookup_keys")
    conn.exec_driver_sql(f"INSERT INTO lookup_keys VALUES ({_marks(conn, 1)})",
                         [(key,) for key in keys])
    return select(LOOKUP_KEYS.c.import_key)


# Keys are (key, slot): the slot picks the column and description an error message uses.
KeysOf = Callable[[dict[str, Any]], Iterable[tuple[str, int]]]
Slots = tuple[tuple[str, Callable[[dict[str, Any]], str]], ...]


def _refuse_repeats(conn: Connection, chunk: list[dict[str, Any]], job: _Job,
                    keys_of: KeysOf, slots: Slots) -> None:
    """Refuse a record whose key (id, email, SKU) an earlier row of the file already used.
    Leaves the chunk's keys in chunk_keys for the lookups that follow."""
    seen: dict[tuple[int, str], int] = {}  # (slot, key) → row
    for record in chunk:
        for key, slot in keys_of(record):
            if (slot, key) in seen:
                _repeat(job, record, slots[slot], seen[slot, key])
            seen[slot, key] = record["_row"]
    conn.exec_driver_sql("DELETE FROM chunk_keys")
    conn.exec_driver_sql(f"INSERT INTO chunk_keys VALUES ({_marks(conn, 3)})",
                         [(slot, key, row) for (slot, key), row in seen.items()])
    # CROSS JOIN makes SQLite walk the chunk and probe the register; with a plain JOIN it scans
    # the whole register for every chunk, and a million-row import turns quadratic.
    earlier = conn.exec_driver_sql(
        "SELECT chunk_keys.slot, chunk_keys.import_key, import_keys.first_row FROM chunk_keys "
        "CROSS JOIN import_keys WHERE import_keys.slot = chunk_keys.slot "
        "AND import_keys.import_key = chunk_keys.import_key LIMIT 1").first()
    if earlier is not None:
        slot, key, first_row = earlier
        record = next(r for r in chunk if r["_row"] == seen[slot, key])
        _repeat(job, record, slots[slot], first_row)
    conn.exec_driver_sql("INSERT INTO import_keys SELECT * FROM chunk_keys")


def _repeat(job: _Job, record: dict[str, Any],
            slot: tuple[str, Callable[[dict[str, Any]], str]], row: int) -> None:
    column_name, describe = slot
    raise CsvError(f"repeats {describe(record)} from row {row}; each must appear once in a file",
                   job.name, record["_row"], column_name)


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
    """On SQLite, a 64 MiB page cache while importing: with the default 2 MiB the index pages
    of one large transaction spill to disk (600,000 rows: 41 s instead of 27 s, bench/import.py).
    A fixed size, so memory stays flat; the connection's own setting is restored after."""
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
