"""Shared fixtures: a real config.yaml and a real SQLite file in a temporary folder."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from engine import config, db

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """A copy of the repository's config.yaml whose database is a file in tmp_path."""
    path = tmp_path / "config.yaml"
    text = (ROOT / "config.yaml").read_text()
    path.write_text(text.replace("sqlite:///retain.db", "sqlite:///test.db"))
    return path


@pytest.fixture
def settings(config_path: Path) -> config.Settings:
    return config.load(config_path, environ={})


@pytest.fixture
def engine(settings: config.Settings):
    eng = db.connect(settings.database.url)
    yield eng
    eng.dispose()
    db.connect.cache_clear()


@pytest.fixture
def project(tmp_path: Path, config_path: Path) -> Path:
    """tmp_path laid out like the repository: config.yaml, campaigns/, templates/."""
    for folder in ("campaigns", "templates"):
        if (ROOT / folder).exists():
            shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path
