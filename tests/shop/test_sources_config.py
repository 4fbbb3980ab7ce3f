"""config.yaml's sources: and data: sections refused with the line to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError
from tests.sourcedata import with_sources

ROOT = Path(__file__).resolve().parents[2]


def test_sources_are_checked_with_the_line_to_fix(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text((ROOT / "config.yaml").read_text())
    with pytest.raises(ConfigError) as bad_query:
        with_sources(path, "  - name: shop-db\n    kind: sql\n    url: sqlite:///x.db\n"
                     "    queries:\n      orders: DELETE FROM orders WHERE x > :since\n")
    assert "must be a SELECT" in str(bad_query.value)
    assert f"{path}:" in str(bad_query.value)
    with pytest.raises(ConfigError, match=r'"a day" is not a duration; write it like 90s'):
        with_sources(path, "  - {name: drop, kind: folder, path: drop}\n",
                     "data: {max_age: a day}\n")
    with pytest.raises(ConfigError, match="two sources are named"):
        with_sources(path, "  - {name: drop, kind: folder, path: a}\n"
                     "  - {name: drop, kind: folder, path: b}\n")
    loaded = with_sources(path, "  - {name: drop, kind: folder, path: drop, sync_every: 2m}\n",
                          "data: {max_age: 2d}\n")
    assert loaded.sources[0].sync_every.total_seconds() == 120
    assert loaded.data.max_age.days == 2
