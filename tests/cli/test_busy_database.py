"""A command the database stops (SQLite busy past its wait: another process holds a long write)
ends with one sentence saying so and what to do, never a traceback."""

from __future__ import annotations

import sqlite3

from engine import db
from tests.cli.conftest import invoke


def test_a_command_behind_a_long_write_says_the_database_is_busy(project, config_path,
                                                                  monkeypatch):
    monkeypatch.chdir(project)
    path = project / "test.db"
    db.connect(f"sqlite:///{path}").dispose()
    monkeypatch.setattr(db, "BUSY_WAIT_SECONDS", 0)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a long import
    try:
        result = invoke(config_path, "unsubscribe", "ann@example.com")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    message = result.output.strip().splitlines()[-1]
    assert message == ("error: the database is busy: another process has been writing to it "
                       "for 0 s (a run, an import or a sync); try again when it is done")
    assert "ann@example.com" not in result.output
