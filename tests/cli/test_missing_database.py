"""A command that reads a database that does not exist says so, and how to point at the right
one; only ``retain import`` and ``retain demo`` make a new database."""

from __future__ import annotations

import pytest

from engine import db
from engine.errors import NotFound
from tests.cli.conftest import invoke

READERS = [
    ["plan"], ["plan", "winback"], ["segment", "campaigns/winback.yaml"], ["status"],
    ["deliveries"], ["customers", "show", "1"], ["why", "1"],
    ["preview", "winback", "--customer", "1"], ["simulate", "--from", "2026-06-01", "--to",
                                                  "2026-06-02"],
    ["db", "current"], ["db", "upgrade"], ["run", "--dry-run"], ["pause", "winback"],
]


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_a_command_on_a_missing_database_says_so_and_makes_none(project, config_path, args,
                                                                 monkeypatch):
    monkeypatch.chdir(project)
    result = invoke(config_path, *args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("error: no database at ")
    assert str(project / "test.db") in message
    assert "--db" in message and "retain import" in message
    assert not (project / "test.db").exists()


def test_the_message_names_a_database_beside_it(project, config_path, monkeypatch):
    """After `make demo` the shop is in demo.db: a plain `retain plan` points there."""
    monkeypatch.chdir(project)
    db.connect(f"sqlite:///{project / 'demo.db'}").dispose()
    result = invoke(config_path, "plan")
    assert result.exit_code == 1
    assert "--db sqlite:///demo.db" in result.output
    assert not (project / "test.db").exists()


def test_an_empty_database_file_is_refused_the_same_way(project, config_path, monkeypatch):
    monkeypatch.chdir(project)
    (project / "test.db").write_bytes(b"")
    result = invoke(config_path, "plan")
    assert result.exit_code == 1
    assert "has no retain data yet" in result.output and "retain import" in result.output


def test_import_makes_the_database(project, config_path, tmp_path):
    csv = tmp_path / "customers.csv"
    csv.write_text("customer_id,email\nc1,ann@example.com\n")
    result = invoke(config_path, "import", "customers", str(csv))
    assert result.exit_code == 0, result.output
    assert (project / "test.db").exists()
    assert invoke(config_path, "customers", "show", "c1").exit_code == 0


def test_connect_without_create_refuses_a_missing_file(tmp_path):
    with pytest.raises(NotFound, match="no database at"):
        db.connect(f"sqlite:///{tmp_path / 'none.db'}", create=False)
    assert not (tmp_path / "none.db").exists()
    db.connect(f"sqlite:///{tmp_path / 'made.db'}").dispose()  # the library default makes one
    db.connect(f"sqlite:///{tmp_path / 'made.db'}", create=False).dispose()
