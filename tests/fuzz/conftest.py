"""Property-based tests over everything a marketer or a shop hands the engine.

Every generated input either loads or is refused with one line naming the file and line (row
and column for CSV); never a traceback, never a hang, never a partial write. Two Hypothesis
profiles, chosen by RETAIN_FUZZ_PROFILE:
- ``ci`` (default, what `make test` runs): few examples, derandomized so a run is repeatable,
  the whole fuzz suite well under a minute;
- ``long`` (`make fuzz`): thousands of examples, random, failures kept in
  .pytest_cache/hypothesis so the next run tries them first.
Each example has a time budget (``deadline``); a hang is stopped by pytest-timeout (TIMEOUT).
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from engine import db
from tests.conftest import ROOT, fresh_postgres

PROFILE = os.environ.get("RETAIN_FUZZ_PROFILE", "ci")
_SHARED = dict(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                      HealthCheck.data_too_large, HealthCheck.filter_too_much],
               print_blob=True)
settings.register_profile("ci", max_examples=30, deadline=timedelta(seconds=10),
                          derandomize=True, database=None, **_SHARED)
settings.register_profile("long", max_examples=3000, deadline=timedelta(seconds=10),
                          database=DirectoryBasedExampleDatabase(
                              str(ROOT / ".pytest_cache" / "hypothesis")), **_SHARED)
settings.load_profile(PROFILE)
# Per test, seconds: far above what the examples need, so only a hang reaches it.
TIMEOUT = {"ci": 240, "long": 4 * 3600}.get(PROFILE, 600)


def examples(ci: int) -> settings:
    """``ci`` examples in the ci profile (a test's own share of the minute); the profile's
    count otherwise."""
    return settings(max_examples=ci) if PROFILE == "ci" else settings()


def assert_one_located_line(message: str, path: Path | str) -> int:
    """``message`` is one line ``path:LINE[:COLUMN]: text``; returns LINE."""
    assert "\n" not in message and "\r" not in message, message
    assert "Traceback" not in message
    match = re.match(re.escape(str(path)) + r":(\d+)(?::\d+)?: \S", message)
    assert match, f"not located at {path}:LINE: {message!r}"
    assert int(match[1]) >= 1
    return int(match[1])


@pytest.fixture(scope="module")
def databases(tmp_path_factory):
    """[(name, engine)]: a SQLite file, and PostgreSQL when RETAIN_TEST_POSTGRES_URL is set."""
    found = [("sqlite", db.connect(f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/fuzz.db"))]
    if os.environ.get("RETAIN_TEST_POSTGRES_URL"):
        found.append(("postgres", fresh_postgres("fuzz")))
    yield found
    for _, engine in found:
        engine.dispose()
