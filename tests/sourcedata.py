"""Helpers for source tests: config.yaml with a ``sources:`` section, and small CSV files."""

from __future__ import annotations

from pathlib import Path

from engine import config

CUSTOMERS = """customer_id,email,first_name,accepts_marketing,created_at
C1,anna@example.com,Anna,yes,2024-01-10
C2,bob@example.com,Bob,yes,2024-01-11
"""


def with_sources(config_path: Path, sources_yaml: str, extra: str = "") -> config.Settings:
    """config.yaml at ``config_path`` with ``sources:`` (YAML list text) appended, loaded."""
    text = config_path.read_text().split("\nsources:")[0]
    config_path.write_text(text + "\nsources:\n" + sources_yaml + extra)
    return config.load(config_path, environ={})


def orders_csv(*rows: tuple[str, str, str, str]) -> str:
    """Generic orders: (order_id, customer_id, created_at, total) rows."""
    return "order_id,customer_id,created_at,total\n" + "".join(
        ",".join(row) + "\n" for row in rows)
