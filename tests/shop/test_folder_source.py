"""The drop-folder source over a real folder: files imported whole, moved to done/ or failed/,
and a file still being written left alone until it is complete."""

from __future__ import annotations

from sqlalchemy import func, select

from engine import tables
from engine.consent import erasure
from engine.shop import sources
from engine.shop.sources import syncstate
from tests.conftest import NOW
from tests.sourcedata import CUSTOMERS, orders_csv, with_sources

FOLDER = "  - {name: drop, kind: folder, path: drop, settle_seconds: 0}\n"


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table.__table__)).scalar()


def sync(engine, settings, sleep=lambda s: None, now=NOW):
    return sources.sync(engine, settings, now, forget=erasure.forget, sleep=sleep)[0]


def test_new_files_import_in_name_order_and_move_to_done(engine, config_path, tmp_path):
    settings = with_sources(config_path, FOLDER)
    drop = tmp_path / "drop"
    drop.mkdir()
    # Name order imports the customers before the orders that refer to them.
    (drop / "2026-06-15-orders.csv").write_text(orders_csv(
        ("O-1", "C1", "2026-06-14T10:00:00+02:00", "40.00")))
    (drop / "2026-06-15-customers.csv").write_text(CUSTOMERS)
    (drop / "notes.txt").write_text("not a CSV: ignored")
    result = sync(engine, settings)
    assert result.error is None and result.applied == 3
    assert sorted(p.name for p in (drop / "done").iterdir()) == [
        "2026-06-15-customers.csv", "2026-06-15-orders.csv"]
    assert sorted(p.name for p in drop.iterdir()) == ["done", "notes.txt"]
    assert count(engine, tables.Order) == 1
    state = syncstate.read(engine)["drop"]
    assert state.last_success_at == NOW and state.rows_applied == 3 and state.last_error is None

    # The same name dropped again is imported again (nothing changes) and kept beside the first.
    (drop / "2026-06-15-customers.csv").write_text(CUSTOMERS)
    assert sync(engine, settings).applied == 0
    assert (drop / "done" / "2026-06-15-customers-1.csv").exists()


def test_a_half_written_file_waits_for_the_next_pass(engine, config_path, tmp_path):
    settings = with_sources(config_path, FOLDER)
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "customers.csv").write_text(CUSTOMERS)
    partial = drop / "orders.csv"
    # Without its final newline: the writer has not finished the last row.
    partial.write_text(orders_csv(("O-1", "C1", "2026-06-14", "40.00")) + "O-2,C2,2026-06-1")
    result = sync(engine, settings)
    assert any("orders.csv: still being written" in note for note in result.notes)
    assert partial.exists() and count(engine, tables.Order) == 0

    # Still growing between the two looks (the writer appends while the pass waits).
    with open(partial, "a") as writer:
        def more_rows_arrive(seconds):
            writer.write("4,35.00\nO-3,C1,2026-06-15,10.00\n")
            writer.flush()
        result = sync(engine, settings, sleep=more_rows_arrive)
    assert partial.exists() and count(engine, tables.Order) == 0

    # Complete and still: imported whole.
    result = sync(engine, settings)
    assert result.error is None and not partial.exists()
    assert count(engine, tables.Order) == 3


def test_a_bad_file_moves_to_failed_with_the_row_and_column(engine, config_path, tmp_path):
    settings = with_sources(config_path, FOLDER)
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a-customers.csv").write_text(CUSTOMERS)
    (drop / "b-orders.csv").write_text(orders_csv(
        ("O-1", "C1", "2026-06-14", "40.00"), ("O-2", "C2", "2026-06-14", "forty")))
    (drop / "c-mystery.csv").write_text("x,y\n1,2\n")
    result = sync(engine, settings)
    assert result.failed_files == ["b-orders.csv", "c-mystery.csv"]
    error = (drop / "failed" / "b-orders.csv.error.txt").read_text()
    assert "row 3" in error and "'total'" in error and "1234.50" in error
    assert "start its name with" in (drop / "failed" / "c-mystery.csv.error.txt").read_text()
    assert count(engine, tables.Order) == 0            # all or nothing: O-1 is not in either
    assert count(engine, tables.Customer) == 2         # the good file still imported
    state = syncstate.read(engine)["drop"]
    assert state.last_success_at == NOW and "c-mystery.csv" in state.last_error


def test_a_missing_folder_is_an_error_of_the_source_not_a_crash(engine, config_path):
    settings = with_sources(config_path, FOLDER)
    result = sync(engine, settings)
    assert "does not exist" in result.error
    state = syncstate.read(engine)["drop"]
    assert state.last_success_at is None and "drop" in state.last_error
