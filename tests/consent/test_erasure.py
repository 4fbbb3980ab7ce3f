"""Forgetting a customer: erased, orders kept for the metrics, never mailed again, not even
after an old export brings the address back."""

from __future__ import annotations

from sqlalchemy import select
from typer.testing import CliRunner

from engine import tables
from engine.cli import app
from engine.consent import suppressions
from engine.shop import importer, metrics
from tests.conftest import NOW
from tests.shopdata import Shop


def test_retain_customers_forget_erases_the_person_and_keeps_the_orders(
        engine, settings, config_path, tmp_path):
    shop = Shop(engine)
    anna = shop.customer(email="Anna@Example.com", first_name="Anna", tags="vip")
    shop.order(anna, days_ago=70, total=5000)
    cli = CliRunner()
    done = cli.invoke(app, ["--config", str(config_path), "customers", "forget",
                            "anna@example.com"])
    assert done.exit_code == 0, done.output
    assert "anna" not in done.output.lower()                  # no address in the output
    with engine.connect() as conn:
        row = conn.execute(select(tables.Customer.__table__).where(
            tables.Customer.__table__.c.id == anna)).one()
        assert (row.email, row.first_name, row.tags, row.accepts_marketing) == ("", "", "",
                                                                                 False)
        assert suppressions.is_suppressed(conn, "anna@example.com")
    assert metrics.for_customer(engine, settings, str(anna), NOW)["spent"] == "50.00"

    again = cli.invoke(app, ["--config", str(config_path), "customers", "forget", str(anna)])
    assert again.exit_code == 1 and "forgotten already" in again.output

    # An old export re-imported later brings the address back to the record: still suppressed.
    export = tmp_path / "customers.csv"
    export.write_text(f"customer_id,email,accepts_marketing\n{row.external_id},"
                      "anna@example.com,yes\n")
    importer.import_file(engine, settings, "customers", export, now=NOW)
    with engine.connect() as conn:
        assert suppressions.is_suppressed(conn, "anna@example.com")
