"""`retain import --decimal-comma`: a French or German spreadsheet's export, read as written."""

from __future__ import annotations

from tests.cli.conftest import invoke


def test_import_takes_decimal_comma(engine, project, config_path, tmp_path):
    path = tmp_path / "products.csv"
    path.write_text("sku;name;price\nA;Mat;7\nB;Strap;1.234\n")
    plain = invoke(config_path, "import", "products", str(path))
    assert plain.exit_code == 1 and "--decimal-comma" in plain.output
    told = invoke(config_path, "import", "products", str(path), "--decimal-comma")
    assert told.exit_code == 0, told.output
    assert "2 rows: 2 new" in told.output
