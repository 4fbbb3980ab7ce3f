"""Shared fixtures: a real config.yaml and a real SQLite file in a temporary folder."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy  # noqa: F401 - see below
import pytest

from engine import config, db

# numpy is loaded in the suite's process from the start, so every test fits the predictions
# in-process whatever ran before it (engine/shop/refit.py fits in a child process only where
# numpy is not loaded yet; test_predict runs that path in a process of its own).

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def without_caps(text: str) -> str:
    """config.yaml without its frequency cap and quiet hours: a test of anything else must not
    depend on the hour it runs at (tests of caps and quiet hours set their own)."""
    text = re.sub(r"^limits:\n(?:[ #].*\n|\n(?=[ #]))*", "", text, flags=re.M)
    return re.sub(r"^quiet_hours:.*\n", "", text, flags=re.M)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """A copy of the repository's config.yaml whose database is a file in tmp_path, without
    the frequency cap and quiet hours (``without_caps``)."""
    path = tmp_path / "config.yaml"
    text = without_caps((ROOT / "config.yaml").read_text())
    path.write_text(text.replace("sqlite:///retain.db", "sqlite:///test.db"))
    return path


@pytest.fixture
def settings(config_path: Path) -> config.Settings:
    return config.load(config_path, environ={})


@pytest.fixture
def engine(settings: config.Settings):
    """The test's own database, made at the code's schema revision (create_all, stamped)."""
    eng = db.connect(settings.database.url)
    yield eng
    eng.dispose()


@pytest.fixture
def project(tmp_path: Path, config_path: Path) -> Path:
    """tmp_path laid out like the repository: config.yaml, campaigns/, templates/."""
    for folder in ("campaigns", "templates"):
        if (ROOT / folder).exists():
            shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def fresh_postgres(what: str):
    """The PostgreSQL test database (RETAIN_TEST_POSTGRES_URL) emptied, or skip ``what``.

    `make test` starts a throwaway server and sets the variable (scripts/with-postgres.sh).
    """
    import os

    url = os.environ.get("RETAIN_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(f"set RETAIN_TEST_POSTGRES_URL to run the {what} tests on PostgreSQL")
    pg = db.connect(url, check_revision=False)  # whatever the last test left: emptied below
    with pg.begin() as conn:  # a throwaway database: start from an empty schema
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    db.create_schema(pg)
    return pg


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def on_each_backend(what: str):
    """An ``engine`` fixture that runs each test of a module twice: on the SQLite test file and
    on the PostgreSQL test database, emptied. In a module: ``engine = on_each_backend("planner")``.
    """
    @pytest.fixture(params=BACKENDS)
    def engine(request, settings):
        if request.param == "sqlite":
            found = db.connect(settings.database.url)
        else:
            found = fresh_postgres(what)
        yield found
        found.dispose()

    return engine


def settings_on(engine, settings: config.Settings) -> config.Settings:
    """``settings`` pointed at ``engine``'s database (for code that opens its own connections)."""
    url = engine.url.render_as_string(hide_password=False)
    return settings.model_copy(update={"database": settings.database.model_copy(
        update={"url": url})})
