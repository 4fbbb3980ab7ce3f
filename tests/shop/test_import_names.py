"""Names from a shop's export arrive on one line: line breaks, NUL and other control characters
are normalised on the way in and counted in the import's summary, never a refused file (nor,
on PostgreSQL, which stores no NUL, a database error)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.shop import importer
from tests.conftest import BACKENDS, fresh_postgres

NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def engine(request, engine):
    """The SQLite test file, or the PostgreSQL test database emptied."""
    if request.param == "sqlite":
        yield engine
        return
    pg = fresh_postgres("import names")
    yield pg
    pg.dispose()


def write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_bytes(body.encode("utf-8"))
    return path


def names(engine, sql: str) -> dict[str, tuple]:
    with engine.connect() as conn:
        return {row[0]: tuple(row[1:]) for row in conn.execute(text(sql))}


def test_line_breaks_and_control_characters_in_names_are_normalised_and_counted(
        engine, settings, tmp_path):
    path = write(tmp_path, "customers.csv", (
        "customer_id,email,first_name,last_name\n"
        'C1,ann@example.com,"Ann\r\nMarie",Lee\n'          # a line break inside a quoted cell
        "C2,bob@example.com,Bob\x00,\x1b[31mRed\u202eKing\n"  # NUL; ESC, then an RTL override
        "C3,cy@example.com,Cy\tJo,Plain\n"
        "C4,dee@example.com,Zoë,O'Brien\n"))

    result = importer.import_file(engine, settings, "customers", path, now=NOW)

    assert result.summary() == ("4 rows: 4 new, 0 updated, 0 unchanged; 4 names had line breaks "
                                "or control characters, replaced by a space or removed")
    assert names(engine, "SELECT external_id, first_name, last_name FROM customers") == {
        "C1": ("Ann Marie", "Lee"), "C2": ("Bob", "[31mRedKing"), "C3": ("Cy Jo", "Plain"),
        "C4": ("Zoë", "O'Brien")}


def test_a_clean_reimport_of_normalised_names_changes_nothing(engine, settings, tmp_path):
    dirty = write(tmp_path, "dirty.csv", "customer_id,email,first_name\n"
                                         'C1,ann@example.com,"Ann\nMarie"\n')
    importer.import_file(engine, settings, "customers", dirty, now=NOW)
    clean = write(tmp_path, "clean.csv", "customer_id,email,first_name\n"
                                         "C1,ann@example.com,Ann Marie\n")

    again = importer.import_file(engine, settings, "customers", clean, now=NOW)

    assert again.summary() == "1 rows: 0 new, 0 updated, 1 unchanged"


def test_product_names_from_a_shopify_export_are_normalised_too(engine, settings, tmp_path):
    path = write(tmp_path, "products_export.csv", (
        "Handle,Title,Variant SKU,Variant Price\n"
        'mat,"Yoga mat\n(blue)",MAT-1,49.00\n'
        "tea,Sencha\x07 100 g,TEA-1,8.90\n"))

    result = importer.import_file(engine, settings, "products", path, now=NOW)

    assert result.summary().endswith("; 2 names had line breaks or control characters, "
                                     "replaced by a space or removed")
    assert names(engine, "SELECT sku, name FROM products") == {
        "MAT-1": ("Yoga mat (blue)",), "TEA-1": ("Sencha 100 g",)}
