"""The suppression list: imported from a file, keyed by address, all or nothing."""

from __future__ import annotations

from sqlalchemy import func, select
from typer.testing import CliRunner

from engine import tables
from engine.cli import app
from engine.consent import suppressions
from tests.shopdata import NOW, Shop


def suppressed(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(tables.Suppression.__table__.c.email_key)).scalars())


def test_suppress_import_reads_an_email_column_case_insensitively(engine, config_path,
                                                                   tmp_path):
    path = tmp_path / "blocklist.csv"
    path.write_text("name,Email\nAnn,ANN@Example.com\nBob,bob@example.org\n\n")
    result = CliRunner().invoke(app, ["--config", str(config_path), "suppress", "import",
                                      str(path)])
    assert result.exit_code == 0, result.output
    assert "2 addresses, 2 newly suppressed" in result.output
    assert suppressed(engine) == {"ann@example.com", "bob@example.org"}
    again = CliRunner().invoke(app, ["--config", str(config_path), "suppress", "import",
                                     str(path)])
    assert "2 addresses, 0 newly suppressed" in again.output


def test_a_bad_line_names_its_row_and_nothing_is_written(engine, tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("a@example.com\nnot an address\nc@example.com\n")
    try:
        suppressions.import_file(engine, path, NOW)
    except Exception as exc:  # noqa: BLE001 - the message is what a user sees
        assert str(exc) == f'{path}: row 2: column \'email\': "not an address" is not an ' \
            "email address"
    else:
        raise AssertionError("a bad line must be refused")
    assert suppressed(engine) == set()


def test_unsubscribe_withdraws_consent_and_matches_the_address_in_any_case(engine):
    shop = Shop(engine)
    who = shop.customer(email="Zed@Example.com")
    suppressions.unsubscribe(engine, "zed@EXAMPLE.com", NOW)
    with engine.connect() as conn:
        consent = conn.execute(select(tables.Customer.__table__.c.accepts_marketing).where(
            tables.Customer.__table__.c.id == who)).scalar()
        assert consent is False
        assert conn.execute(select(func.count()).select_from(
            tables.Suppression.__table__)).scalar() == 1
        assert suppressions.is_suppressed(conn, "ZED@example.com")
