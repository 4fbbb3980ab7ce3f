"""CSV imports on both databases: every generated file is imported whole, or refused as one
line naming the file, the row and (for a cell) the column, with nothing written."""

from __future__ import annotations

import csv
import io
import re

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from sqlalchemy import func, select

from engine import config, db, tables
from engine.errors import CsvError
from engine.shop import csvformats, importer
from tests.conftest import ROOT
from tests.fuzz.conftest import TIMEOUT, examples
from tests.fuzz.strategies import hostile_text, mostly, mutated
from tests.shopdata import NOW

pytestmark = [pytest.mark.timeout(TIMEOUT), pytest.mark.slow]

HOSTILE = ["", " ", "-1", "0", "1,234", "12,5", "1e9", "NaN", "99999999999999999999",
           "10000000.01", "0001-01-01", "9999-12-31T23:59:59-12:00", "2025-02-30", '"', 'a"b',
           '"x"y', "\x00", "\n", "\r", "é", "x" * 300, "'123", "=1+1", "yes", "EUR"]
VALUES = {
    "customer_id": ["C1", "C2", "C3"], "email": ["a@example.com", "B@Example.com", "c@ex.org"],
    "first_name": ["Ann", "Zoé"], "last_name": ["Lee"], "accepts_marketing": ["yes", "no"],
    "created_at": ["2025-01-05", "2025-03-01 10:00", "2025-04-01T09:00:00+02:00"],
    "country": ["FR", "de"], "timezone": ["Europe/Paris", "UTC"], "tags": ["vip, new", ""],
    "sku": ["MUG-1", "MAT-1"], "name": ["Mug", "Mat"], "price": ["12.50", "1,200.00"],
    "category": ["kitchen"], "compare_at_price": ["15.00", ""], "url": ["https://x.example"],
    "image_url": [""], "order_id": ["O1", "O2", "O3"], "total": ["25.00", "9.90"],
    "status": ["paid", "refunded", "cancelled"], "discount_code": ["", "SPRING"],
    "currency": ["EUR"], "quantity": ["1", "3"], "unit_price": ["12.50"],
}
_CSV_SNIPPETS = [b'"', b'""', b",", b";", b"\t", b"\n", b"\r\n", b"\x00", b"\xff", b"\xe9",
                 b'",', b',"', b"99999999999999999999", b"0001-01-01"]


@st.composite
def csv_files(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["customers", "products", "orders"]))
    required, optional = csvformats.COLUMNS[("generic", kind)]
    header = list(required) + draw(st.lists(st.sampled_from(optional), unique=True, max_size=4))
    header += draw(st.lists(st.sampled_from(["notes", "Email"]), unique=True, max_size=1))
    header = draw(st.permutations(header))
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        rows.append([draw(mostly(st.sampled_from(VALUES.get(column, ["x"])),
                                 st.sampled_from(HOSTILE), hostile_text)) for column in header])
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    if draw(st.integers(0, 3)):
        out = io.StringIO()
        csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows([header, *rows])
        text = out.getvalue()
    else:  # written by hand: quotes and delimiters inside values are not escaped
        text = "\n".join(delimiter.join(row) for row in [header, *rows]) + "\n"
    data = text.encode()
    return kind, draw(mostly(st.just(data), mutated(data, _CSV_SNIPPETS)))


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        found = {table.__tablename__: conn.execute(
            select(func.count()).select_from(table.__table__)).scalar()
            for table in (tables.Customer, tables.Product, tables.Order, tables.OrderItem)}
        found["data_version"] = db.get_meta(conn, "data_version")
    return found


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz-csv") / "config.yaml"
    path.write_text((ROOT / "config.yaml").read_text())
    return config.load(path, environ={})


@given(file=csv_files())
@examples(ci=120)
def test_imports_are_whole_or_refused_at_a_row_and_column(
        tmp_path_factory, settings, databases, file):
    kind, data = file
    path = tmp_path_factory.getbasetemp() / f"fuzz-{kind}.csv"
    path.write_bytes(data)
    for _, engine in databases:
        before = counts(engine)
        try:
            importer.import_file(engine, settings, kind, path, now=NOW)
        except CsvError as exc:
            event(f"refused: {exc.message[:30]}")
            message = str(exc)
            assert "\n" not in message and "Traceback" not in message
            match = re.match(re.escape(str(path)) + r": row (\d+): (column '[^']+': )?\S",
                             message)
            assert match, message
            # A cell's problem names its column; a header's or a row's may not.
            assert counts(engine) == before, message
            continue
        event("imported")
