"""CSV import: generic and Shopify files into a real SQLite database (and PostgreSQL when
RETAIN_TEST_POSTGRES_URL points at a throwaway database); errors that change nothing.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from engine import db
from engine.errors import CsvError
from engine.shop import importer
from tests.conftest import on_each_backend

DATA = Path(__file__).parents[1] / "data" / "import"
NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


engine = on_each_backend("importer")


def run(engine, settings, kind, path, fmt="auto", now=NOW):
    return importer.import_file(engine, settings, kind, path, fmt, now=now)


def rows(engine, sql, **params):
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def one(engine, sql, **params):
    found = rows(engine, sql, **params)
    assert len(found) == 1, found
    return found[0]


def state(engine):
    """Everything an import may write: row counts and the data version."""
    with engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                  for t in ("customers", "products", "orders", "order_items")}
        counts["data_version"] = db.get_meta(conn, "data_version")
    return counts


def write(tmp_path: Path, name: str, body: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(body.encode(encoding))
    return path


def utc(value: str | datetime) -> datetime:
    """A stored UTC time: text from SQLite, a naive datetime from PostgreSQL."""
    return (datetime.fromisoformat(value) if isinstance(value, str) else value).replace(tzinfo=UTC)


@pytest.fixture
def shop(engine, settings):
    """Generic customers and products already imported."""
    run(engine, settings, "customers", DATA / "customers.csv")
    run(engine, settings, "products", DATA / "products.csv")
    return engine


# --- generic files -------------------------------------------------------------------------

def test_generic_customers(engine, settings):
    result = run(engine, settings, "customers", DATA / "customers.csv")
    assert result.summary() == "3 rows: 3 new, 0 updated, 0 unchanged"
    anna = one(engine, "SELECT * FROM customers WHERE external_id = 'C1'")
    assert anna["tags"] == "vip,newsletter"
    assert anna["accepts_marketing"] == 1
    # Consent is dated by the row's created_at (10:00 at +01:00), not by the import.
    assert utc(anna["consent_at"]) == datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    assert anna["consent_source"] == "import:customers.csv"
    bob = one(engine, "SELECT * FROM customers WHERE external_id = 'C2'")
    assert (bob["email"], bob["email_key"]) == ("Bob@Example.com", "bob@example.com")
    assert bob["consent_at"] is None and bob["consent_source"] is None
    # A date alone is midnight in the store's zone (Europe/Paris, +02:00 in May).
    assert utc(bob["created_at"]) == datetime(2024, 5, 11, 22, 0, tzinfo=UTC)
    assert bob["timezone"] is None


def test_generic_products_and_first_import_of_a_reduced_price(engine, settings):
    run(engine, settings, "products", DATA / "products.csv")
    products = {p["sku"]: p for p in rows(engine, "SELECT * FROM products")}
    assert products["LS-S"]["price_cents"] == 4900
    assert products["LS-S"]["compare_at_price_cents"] == 5900
    assert products["LS-S"]["price_reduced_at"] == products["LS-S"]["created_at"]
    assert products["CANDLE-1"]["price_cents"] == 2500
    assert products["CANDLE-1"]["price_reduced_at"] is None
    assert products["CHAIR-1"]["price_cents"] == 110000  # "1,100.00"
    assert products["CHAIR-1"]["url"] == ""


def test_a_price_cut_below_compare_at_is_dated_now(engine, settings, tmp_path):
    run(engine, settings, "products", DATA / "products.csv")
    cut = write(tmp_path, "products.csv", (
        "sku,name,price,compare_at_price\n"
        "CANDLE-1,Scented Candle,19.00,25.00\n"
        "LS-S,Linen Shirt S,49.00,59.00\n"))
    result = run(engine, settings, "products", cut)
    assert (result.updated, result.unchanged) == (1, 1)
    candle = one(engine, "SELECT * FROM products WHERE sku = 'CANDLE-1'")
    assert utc(candle["price_reduced_at"]) == NOW
    # Columns the file lacks are kept: the category came from the first import.
    assert candle["category"] == "Candles"
    shirt = one(engine, "SELECT * FROM products WHERE sku = 'LS-S'")
    assert utc(shirt["price_reduced_at"]) == datetime(2025, 8, 31, 22, 0, tzinfo=UTC)


def test_generic_orders_one_row_per_order(shop, settings):
    result = run(shop, settings, "orders", DATA / "orders.csv")
    assert result.summary() == "4 rows: 4 new, 0 updated, 0 unchanged"
    orders = {o["external_id"]: o for o in rows(shop, "SELECT * FROM orders")}
    assert orders["O-1"]["total_cents"] == 5980
    assert orders["O-1"]["discount_code"] == "WELCOME10"
    assert utc(orders["O-1"]["created_at"]) == datetime(2025, 10, 7, 7, 50, 26, tzinfo=UTC)
    # No offset: store time. 23:30 in Paris is 21:30 UTC, still the 7th locally.
    assert utc(orders["O-2"]["created_at"]) == datetime(2025, 10, 7, 21, 30, tzinfo=UTC)
    assert str(orders["O-2"]["local_date"]) == "2025-10-07"
    assert orders["O-2"]["status"] == "refunded"       # "Refunded"
    assert orders["O-2"]["currency"] == "EUR"          # empty: the store's currency
    assert orders["O-3"]["total_cents"] == 123450      # "1,234.50"
    assert orders["O-3"]["status"] == "paid"           # "completed"
    assert orders["O-4"]["status"] == "cancelled"      # "canceled"
    assert rows(shop, "SELECT * FROM order_items") == []
    c1 = one(shop, "SELECT id FROM customers WHERE external_id = 'C1'")["id"]
    assert orders["O-1"]["customer_id"] == orders["O-3"]["customer_id"] == c1


def test_generic_orders_one_row_per_item_semicolons_bom_and_emails(shop, settings):
    result = run(shop, settings, "orders", DATA / "order_items.csv")
    assert result.summary() == "3 rows, 2 orders: 2 new, 0 updated, 0 unchanged"
    items = rows(shop, "SELECT o.external_id, i.sku, i.quantity, i.unit_price_cents "
                       "FROM order_items i JOIN orders o ON o.id = i.order_id ORDER BY i.id")
    assert [tuple(i.values()) for i in items] == [
        ("O-10", "LS-S", 1, 4900), ("O-10", "CANDLE-1", 1, 1800), ("O-11", "CANDLE-1", 2, 2500)]
    # "BOB@example.com" finds customer C2 (Bob@Example.com): emails match ignoring case.
    o11 = one(shop, "SELECT c.external_id FROM orders o JOIN customers c ON c.id = o.customer_id "
                    "WHERE o.external_id = 'O-11'")
    assert o11["external_id"] == "C2"


def test_reimported_order_items_are_replaced_not_duplicated(shop, settings, tmp_path):
    run(shop, settings, "orders", DATA / "order_items.csv")
    changed = write(tmp_path, "order_items.csv", (
        "order_id,email,created_at,total,sku,quantity,unit_price\n"
        "O-10,anna@example.com,2025-11-02T14:00:00+01:00,49.00,LS-S,1,49.00\n"
        "O-11,BOB@example.com,2025-11-03,50.00,CANDLE-1,2,25.00\n"))
    result = run(shop, settings, "orders", changed)
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 1)
    items = rows(shop, "SELECT i.sku FROM order_items i JOIN orders o ON o.id = i.order_id "
                       "WHERE o.external_id = 'O-10'")
    assert items == [{"sku": "LS-S"}]
    assert one(shop, "SELECT total_cents FROM orders WHERE external_id = 'O-10'") == {
        "total_cents": 4900}
    assert state(shop)["order_items"] == 2



def test_a_reimport_across_chunks_updates_only_what_changed(shop, settings, tmp_path,
                                                            monkeypatch):
    """Changes of different columns (statuses, amounts, times, codes and consents set or
    cleared) in several chunks: each row gets its own new values, the rest stay."""
    run(shop, settings, "orders", DATA / "orders.csv")
    monkeypatch.setattr(importer, "CHUNK_SIZE", 2)
    customers = write(tmp_path, "customers.csv", (
        "customer_id,email,first_name,last_name,accepts_marketing,created_at\n"
        "C1,anna@example.com,Anna,Martin,no,2024-03-01T10:00:00+01:00\n"
        "C2,Bob@Example.com,Bob,Dupont,yes,2024-05-12\n"
        "C3,carla@example.com,Carla,Rossi,true,2025-01-20 18:30\n"))
    result = run(shop, settings, "customers", customers)
    assert (result.inserted, result.updated, result.unchanged) == (0, 2, 1)
    people = {c["external_id"]: c for c in rows(shop, "SELECT * FROM customers")}
    assert people["C1"]["consent_at"] is None and people["C1"]["consent_source"] is None
    assert people["C2"]["last_name"] == "Dupont"
    assert utc(people["C2"]["consent_at"]) == NOW  # opted in at this import
    assert people["C2"]["consent_source"] == "import:customers.csv"
    assert people["C3"]["last_name"] == "Rossi" and people["C3"]["consent_at"] is not None

    orders = write(tmp_path, "orders.csv", (
        "order_id,customer_id,created_at,total,status,discount_code,currency\n"
        "O-1,C1,2025-10-07T09:50:26+02:00,59.80,refunded,,EUR\n"
        "O-2,C2,2025-10-07 23:30,53.90,Refunded,,\n"
        "O-3,C1,2025-10-09,\"1,234.50\",completed,,EUR\n"
        "O-4,C3,2025-10-11T08:00:00Z,30.00,paid,SPRING,EUR\n"
        "O-5,C2,2025-10-12,12.00,paid,,EUR\n"))
    version = state(shop)["data_version"]
    result = run(shop, settings, "orders", orders)
    assert (result.inserted, result.updated, result.unchanged) == (1, 2, 2)
    found = {o["external_id"]: o for o in rows(shop, "SELECT * FROM orders")}
    assert (found["O-1"]["status"], found["O-1"]["discount_code"]) == ("refunded", None)
    assert found["O-1"]["total_cents"] == 5980
    assert (found["O-2"]["status"], found["O-3"]["total_cents"]) == ("refunded", 123450)
    assert (found["O-4"]["status"], found["O-4"]["total_cents"]) == ("paid", 3000)
    assert found["O-4"]["discount_code"] == "SPRING"
    assert utc(found["O-4"]["created_at"]) == datetime(2025, 10, 11, 8, 0, tzinfo=UTC)
    assert str(found["O-4"]["local_date"]) == "2025-10-11"
    assert found["O-5"]["total_cents"] == 1200
    assert state(shop)["data_version"] != version

# --- Shopify exports -----------------------------------------------------------------------

def test_shopify_customers_export(engine, settings):
    result = run(engine, settings, "customers", DATA / "customers_export.csv")
    assert result.summary() == ("3 rows, 2 customers: 2 new, 0 updated, 0 unchanged; "
                                "1 row without an email skipped")
    anna = one(engine, "SELECT * FROM customers WHERE email_key = 'anna@example.com'")
    assert anna["external_id"] == "7210448301122"  # written '7210448301122
    assert anna["country"] == "FR"
    assert anna["tags"] == "vip,newsletter"
    assert anna["accepts_marketing"] == 1
    # The export has no creation date: the import time stands in for both.
    assert utc(anna["consent_at"]) == utc(anna["created_at"]) == NOW
    assert anna["consent_source"] == "import:customers_export.csv"
    bob = one(engine, "SELECT * FROM customers WHERE email_key = 'bob@example.com'")
    assert bob["accepts_marketing"] == 0 and bob["consent_at"] is None


def test_shopify_products_export_one_product_per_variant(engine, settings):
    result = run(engine, settings, "products", DATA / "products_export.csv")
    assert result.summary() == "4 rows, 3 products: 3 new, 0 updated, 0 unchanged"
    products = {p["sku"]: p for p in rows(engine, "SELECT * FROM products")}
    assert set(products) == {"LS-S", "LS-M", "CANDLE-1"}
    small, medium, candle = products["LS-S"], products["LS-M"], products["CANDLE-1"]
    assert (small["name"], medium["name"], candle["name"]) == (
        "Linen Shirt - S", "Linen Shirt - M", "Scented Candle")
    assert small["category"] == medium["category"] == "Shirts"
    assert candle["category"] == "Candles"  # no Type: the last step of Product Category
    assert small["url"] == "https://maison-verte.example/products/linen-shirt"
    assert small["image_url"].endswith("/linen-shirt.jpg")
    assert medium["image_url"].endswith("/linen-shirt-m.jpg")  # its Variant Image
    assert (small["price_cents"], small["compare_at_price_cents"]) == (4900, 5900)
    assert utc(small["price_reduced_at"]) == NOW
    assert medium["price_reduced_at"] is None


def test_shopify_orders_export(engine, settings):
    run(engine, settings, "customers", DATA / "customers_export.csv")
    result = run(engine, settings, "orders", DATA / "orders_export.csv")
    assert result.summary() == ("6 rows, 4 orders: 4 new, 0 updated, 0 unchanged; "
                                "1 customer added from order emails; "
                                "1 row without an email skipped")
    orders = {o["external_id"]: o for o in rows(
        engine, "SELECT o.*, c.email_key FROM orders o JOIN customers c ON c.id = o.customer_id")}
    assert set(orders) == {"#1001", "#1002", "#1003", "#1004"}  # #1005 has no email

    first = orders["#1001"]
    assert first["email_key"] == "anna@example.com"
    assert (first["status"], first["total_cents"], first["discount_code"]) == (
        "paid", 5980, "WELCOME10")
    assert utc(first["created_at"]) == datetime(2025, 10, 7, 7, 50, 26, tzinfo=UTC)
    items = rows(engine, "SELECT sku, quantity, unit_price_cents FROM order_items "
                         "WHERE order_id = :id ORDER BY id", id=first["id"])
    assert [tuple(i.values()) for i in items] == [("LS-S", 2, 2400), ("CANDLE-1", 1, 1800)]

    refunded = orders["#1002"]
    assert refunded["email_key"] == "bob@example.com"  # BOB@Example.com in the export
    assert refunded["status"] == "refunded"
    # 00:30 at +02:00 is 22:30 UTC the day before; the store's calendar date is the 8th.
    assert utc(refunded["created_at"]) == datetime(2025, 10, 7, 22, 30, tzinfo=UTC)
    assert str(refunded["local_date"]) == "2025-10-08"

    partly = orders["#1003"]
    assert (partly["status"], partly["total_cents"]) == ("paid", 110000 - 2550)

    cancelled = orders["#1004"]
    assert cancelled["status"] == "cancelled"
    # 20:30 at -04:00 is 00:30 UTC on the 8th, 02:30 in Paris.
    assert utc(cancelled["created_at"]) == datetime(2025, 10, 8, 0, 30, tzinfo=UTC)
    assert str(cancelled["local_date"]) == "2025-10-08"
    carla = one(engine, "SELECT * FROM customers WHERE email_key = 'carla@example.com'")
    assert carla["accepts_marketing"] == 0 and carla["consent_at"] is None
    assert "carla" not in carla["external_id"]  # the made-up id does not spell the address
    assert utc(carla["created_at"]) == utc(cancelled["created_at"])


def test_a_shopify_file_imported_as_generic_names_the_missing_column(engine, settings):
    with pytest.raises(CsvError) as caught:
        run(engine, settings, "orders", DATA / "orders_export.csv", fmt="generic")
    message = str(caught.value)
    assert "row 1" in message and "'order_id'" in message
    assert "Columns found: Name, Email, Financial Status" in message


def test_a_misspelt_column_gets_a_hint(engine, settings, tmp_path):
    path = write(tmp_path, "products.csv", "sku,name,prize\nA,a,1\n")
    with pytest.raises(CsvError, match="'price' is missing .* \\(is 'prize' meant to be it\\?\\)"):
        run(engine, settings, "products", path)


def test_a_file_of_another_kind_is_named(engine, settings):
    with pytest.raises(CsvError, match="looks like a Shopify orders export"):
        run(engine, settings, "customers", DATA / "orders_export.csv")


# --- idempotence -----------------------------------------------------------------------------

@pytest.mark.parametrize("files", [
    [("customers", "customers.csv"), ("products", "products.csv"), ("orders", "orders.csv"),
     ("orders", "order_items.csv")],
    [("customers", "customers_export.csv"), ("products", "products_export.csv"),
     ("orders", "orders_export.csv")],
], ids=["generic", "shopify"])
def test_importing_the_same_files_twice_changes_nothing(engine, settings, files):
    for kind, name in files:
        run(engine, settings, kind, DATA / name)
    before = state(engine)
    snapshot = {t: rows(engine, f"SELECT * FROM {t} ORDER BY id")
                for t in ("customers", "products", "orders", "order_items")}
    for kind, name in files:
        # Later, with another clock: nothing time-dependent may move either.
        result = run(engine, settings, kind, DATA / name, now=datetime(2026, 3, 1, tzinfo=UTC))
        assert result.inserted == result.updated == result.customers_created == 0
        assert " 0 new, 0 updated," in result.summary()
    assert state(engine) == before  # data_version included: metrics need no rebuild
    assert snapshot == {t: rows(engine, f"SELECT * FROM {t} ORDER BY id") for t in snapshot}


# --- errors: row, column, and nothing written -----------------------------------------------

ORDERS_HEAD = "order_id,customer_id,created_at,total,status\n"
GOOD_ORDER = "O-1,C1,2025-10-07,10.00,paid\n"


@pytest.mark.parametrize(("kind", "body", "row", "column", "says"), [
    ("orders", ORDERS_HEAD + GOOD_ORDER + "O-2,C1,2025-13-01,10.00,paid\n",
     3, "created_at", '"2025-13-01" is not a date'),
    ("orders", ORDERS_HEAD + GOOD_ORDER + "O-2,C1,2025-10-08,\"12,5x\",paid\n",
     3, "total", '"12,5x" is not an amount; write it like 1234.50'),
    ("orders", ORDERS_HEAD + GOOD_ORDER + "O-2,C1,2025-10-08,\"12,50\",paid\n",
     3, "total", "\"12,50\" has a decimal comma, but row 2 (column 'total') has a decimal "
     "point: the file mixes both; export it again with one of them"),
    ("orders", ORDERS_HEAD + "O-2,C1,2025-10-08,\"1,250\",paid\n" + GOOD_ORDER,
     2, "total", "ambiguous"),
    ("orders", ORDERS_HEAD + GOOD_ORDER + "O-2,C1,2025-10-08,10.00,shipped-ish\n",
     3, "status", '"shipped-ish" is not an order status; write one of '),
    ("orders", ORDERS_HEAD + GOOD_ORDER + "O-2,C404,2025-10-08,10.00,paid\n",
     3, "customer_id", "customer 'C404' is not in the database"),
    ("orders", ORDERS_HEAD + GOOD_ORDER + "O-2,C1,2025-10-08,,paid\n",
     3, "total", "is empty; every order needs its total"),
    ("orders", "order_id,customer_id,created_at,total,sku,quantity\n"
     "O-1,C1,2025-10-07,10.00,LS-S,1\nO-1,C2,2025-10-07,10.00,CANDLE-1,1\n",
     3, "customer_id", "differs from row 2, where order 'O-1' starts"),
    ("orders", ORDERS_HEAD + GOOD_ORDER + "O-2,C1,2025-10-08,10.00,paid\n" + GOOD_ORDER,
     4, "order_id", "repeats order 'O-1' (keep all rows of an order together) from row 2"),
    ("customers", "customer_id,email\nC7,new@example.com\nC8,ANNA@example.com\n",
     3, "email", "already belongs to customer 'C1'"),
    ("customers", "customer_id,email\nC7,dup@example.com\nC8,Dup@Example.com\n",
     3, "email", "repeats the same email address (compared ignoring case) from row 2"),
    ("customers", "customer_id,email,accepts_marketing\nC7,x@example.com,maybe\n",
     2, "accepts_marketing", '"maybe" is not yes or no'),
    ("customers", "customer_id,email,timezone\nC7,x@example.com,Mars/Olympus\n",
     2, "timezone", "is not a time zone"),
    ("customers", "customer_id,email\nC7,not-an-address\n",
     2, "email", "is not an email address"),
    ("products", "sku,name,price\nNEW-1,New,10.00\nNEW-2,Newer,-3\n",
     3, "price", '"-3" is not an amount'),
], ids=["date", "amount", "decimal-comma", "thousands-or-decimal", "status", "unknown-customer",
        "empty-total", "order-rows-disagree", "order-repeated", "email-taken",
        "email-twice-by-case", "yes-no", "timezone", "email", "negative-price"])
def test_a_bad_cell_names_row_and_column_and_writes_nothing(
        shop, settings, tmp_path, kind, body, row, column, says):
    before = state(shop)
    path = write(tmp_path, f"{kind}.csv", body)
    with pytest.raises(CsvError) as caught:
        run(shop, settings, kind, path)
    message = str(caught.value)
    assert message.startswith(f"{path}: row {row}: column '{column}': "), message
    assert says in message
    assert state(shop) == before


def test_a_missing_required_column_is_named_with_the_columns_found(shop, settings, tmp_path):
    before = state(shop)
    path = write(tmp_path, "orders.csv", "order_id,customer_id,created_at,amount\n"
                                         "O-1,C1,2025-10-07,10.00\n")
    with pytest.raises(CsvError) as caught:
        run(shop, settings, "orders", path)
    assert str(caught.value) == (
        f"{path}: row 1: required column 'total' is missing from the generic orders header. "
        "Columns found: order_id, customer_id, created_at, amount")
    assert state(shop) == before


def test_a_file_that_is_not_utf8_is_refused_at_its_row(shop, settings, tmp_path):
    before = state(shop)
    path = write(tmp_path, "customers.csv", "customer_id,email,first_name\n"
                 "C7,a@example.com,Anne\nC8,b@example.com,Ren\xe9e\n", encoding="latin-1")
    with pytest.raises(CsvError) as caught:
        run(shop, settings, "customers", path)
    message = str(caught.value)
    assert message.startswith(f"{path}: row 3: column 'first_name': the file is not UTF-8 text "
                              "(byte 0xe9")
    assert "CSV UTF-8" in message
    assert state(shop) == before


def test_a_header_that_is_not_utf8_is_row_1(engine, settings, tmp_path):
    path = write(tmp_path, "customers.csv", "customer_id,email,pr\xe9nom\n", encoding="latin-1")
    with pytest.raises(CsvError, match=r"customers.csv: row 1: the file is not UTF-8 text"):
        run(engine, settings, "customers", path)


def test_an_empty_file_asks_for_a_header(engine, settings, tmp_path):
    with pytest.raises(CsvError, match="the file is empty; its first row must name the columns"):
        run(engine, settings, "customers", write(tmp_path, "customers.csv", "\n"))


def test_a_cell_too_large_for_csv_is_refused_at_its_row(shop, settings, tmp_path):
    before = state(shop)
    huge = "x" * (17 * 1024 * 1024)
    path = write(tmp_path, "products.csv", f"sku,name,price\nA,a,1\nB,{huge},1\n")
    with pytest.raises(CsvError, match="row 3: cannot be read as CSV .*field larger than"):
        run(shop, settings, "products", path)
    assert state(shop) == before


def test_an_error_in_a_later_chunk_rolls_back_the_chunks_written(
        shop, settings, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_SIZE", 2)
    before = state(shop)
    lines = [f"O-{n},C1,2025-10-07,10.00,paid\n" for n in range(1, 8)]
    lines[5] = "O-6,C1,2025-10-07,10.00,lost\n"
    path = write(tmp_path, "orders.csv", ORDERS_HEAD + "".join(lines))
    with pytest.raises(CsvError, match="row 7: column 'status'"):
        run(shop, settings, "orders", path)
    assert state(shop) == before


def test_a_key_repeated_in_a_later_chunk_is_refused(shop, settings, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_SIZE", 2)
    before = state(shop)
    path = write(tmp_path, "products.csv", "sku,name,price\nA,a,1\nB,b,1\nC,c,1\nA,a,1\n")
    with pytest.raises(CsvError) as caught:
        run(shop, settings, "products", path)
    assert str(caught.value) == (f"{path}: row 5: column 'sku': repeats SKU 'A' from row 2; "
                                 "each must appear once in a file")
    assert state(shop) == before


def test_unknown_email_in_generic_orders_is_refused(shop, settings, tmp_path):
    path = write(tmp_path, "orders.csv", "order_id,email,created_at,total\n"
                                         "O-1,stranger@example.com,2025-10-07,10.00\n")
    with pytest.raises(CsvError, match="row 2: column 'email': no customer has this email"):
        run(shop, settings, "orders", path)
    assert state(shop)["orders"] == 0


def test_shopify_status_must_be_known(engine, settings, tmp_path):
    body = (DATA / "orders_export.csv").read_text().replace(",refunded,", ",chargeback,", 1)
    path = write(tmp_path, "orders_export.csv", body)
    with pytest.raises(CsvError) as caught:
        run(engine, settings, "orders", path)
    assert "row 4: column 'Financial Status': \"chargeback\" is not an order status" in str(
        caught.value)
    assert state(engine)["customers"] == 0


def test_no_import_time_and_none_in_the_file_is_refused(engine, settings):
    with pytest.raises(CsvError, match="row 2: column 'created_at': is empty and no import time"):
        run(engine, settings, "customers", DATA / "customers_export.csv", now=None)


def test_a_missing_file_is_a_clear_error(engine, settings, tmp_path):
    with pytest.raises(CsvError, match="cannot read the file .*check the path"):
        run(engine, settings, "orders", tmp_path / "nope.csv")


def test_progress_bar_goes_to_stderr_and_changes_nothing(engine, settings, tmp_path, capsys):
    shutil.copy(DATA / "customers.csv", tmp_path / "customers.csv")
    result = importer.import_file(engine, settings, "customers", tmp_path / "customers.csv",
                                  progress=True, now=NOW)
    assert result.inserted == 3
    assert capsys.readouterr().out == ""


PRODUCTS_COMMA = "sku;name;price;compare_at_price\nA;Mat;12,50;15,00\nB;Strap;1.234,00;\n"


def test_a_decimal_comma_export_is_read_when_unambiguous_or_when_told(engine, settings,
                                                                      tmp_path):
    path = write(tmp_path, "products.csv", PRODUCTS_COMMA)
    run(engine, settings, "products", path)
    assert rows(engine, "SELECT sku, price_cents, compare_at_price_cents FROM products "
                "ORDER BY sku") == [
        {"sku": "A", "price_cents": 1250, "compare_at_price_cents": 1500},
        {"sku": "B", "price_cents": 123400, "compare_at_price_cents": None}]
    told = write(tmp_path, "told.csv", "sku;name;price\nC;Cup;1.234\nD;Mug;7\n")
    importer.import_file(engine, settings, "products", told, now=NOW, decimal_comma=True)
    assert one(engine, "SELECT price_cents FROM products WHERE sku = 'C'")["price_cents"] \
        == 123400


def test_a_file_told_decimal_comma_refuses_a_decimal_point_at_its_row(engine, settings,
                                                                      tmp_path):
    before = state(engine)
    path = write(tmp_path, "products.csv", "sku;name;price\nA;Mat;12,50\nB;Strap;13.90\n")
    with pytest.raises(CsvError) as caught:
        importer.import_file(engine, settings, "products", path, now=NOW, decimal_comma=True)
    assert str(caught.value).startswith(f"{path}: row 3: column 'price': \"13.90\" has a "
                                        "decimal point, not a decimal comma")
    assert state(engine) == before


def test_summary_wording():
    assert importer.ImportResult(1200, 1180, 20, 0).summary() == \
        "1,200 rows: 1,180 new, 20 updated, 0 unchanged"
    assert importer.ImportResult(1, 1, 0, 0).summary() == "1 row: 1 new, 0 updated, 0 unchanged"


# --- names on one line: normalised and counted, never a refused file -------------------------
# (PostgreSQL stores no NUL: before, such a name failed the whole import there.)

NORMALISED = "had line breaks or control characters, replaced by a space or removed"


def names(engine, sql) -> dict[str, tuple]:
    return {r.pop("key"): tuple(r.values()) for r in rows(engine, sql)}


def test_line_breaks_and_control_characters_in_names_are_normalised_and_counted(
        engine, settings, tmp_path):
    path = write(tmp_path, "customers.csv", (
        "customer_id,email,first_name,last_name\n"
        'C1,ann@example.com,"Ann\r\nMarie",Lee\n'          # a line break inside a quoted cell
        "C2,bob@example.com,Bob\x00,\x1b[31mRed\u202eKing\n"  # NUL; ESC, then an RTL override
        "C3,cy@example.com,Cy\tJo,Plain\n"
        "C4,dee@example.com,Zoë,O'Brien\n"))

    result = run(engine, settings, "customers", path)

    assert result.summary() == f"4 rows: 4 new, 0 updated, 0 unchanged; 4 names {NORMALISED}"
    assert names(engine, "SELECT external_id AS key, first_name, last_name FROM customers") == {
        "C1": ("Ann Marie", "Lee"), "C2": ("Bob", "[31mRedKing"), "C3": ("Cy Jo", "Plain"),
        "C4": ("Zoë", "O'Brien")}


def test_a_clean_reimport_of_normalised_names_changes_nothing(engine, settings, tmp_path):
    run(engine, settings, "customers", write(tmp_path, "dirty.csv", (
        "customer_id,email,first_name\n" 'C1,ann@example.com,"Ann\nMarie"\n')))
    clean = write(tmp_path, "clean.csv", "customer_id,email,first_name\n"
                                         "C1,ann@example.com,Ann Marie\n")

    assert run(engine, settings, "customers", clean).summary() == \
        "1 row: 0 new, 0 updated, 1 unchanged"


def test_product_names_from_a_shopify_export_are_normalised_too(engine, settings, tmp_path):
    path = write(tmp_path, "products_export.csv", (
        "Handle,Title,Variant SKU,Variant Price\n"
        'mat,"Yoga mat\n(blue)",MAT-1,49.00\n'
        "tea,Sencha\x07 100 g,TEA-1,8.90\n"))

    assert run(engine, settings, "products", path).summary().endswith(f"; 2 names {NORMALISED}")
    assert names(engine, "SELECT sku AS key, name FROM products") == {
        "MAT-1": ("Yoga mat (blue)",), "TEA-1": ("Sencha 100 g",)}
