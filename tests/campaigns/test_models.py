"""Campaign models: the spend period of a spend_threshold campaign, day by day."""

from __future__ import annotations

import pickle
import textwrap
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.campaigns import models

PARIS = ZoneInfo("Europe/Paris")


def spend_campaign(period: str, period_days: int | None = None) -> models.SpendThreshold:
    extra = f"period_days: {period_days}\n" if period_days else ""
    return models.parse_text(textwrap.dedent(f"""\
        id: spend
        kind: spend_threshold
        template: spend_threshold.html
        subject: "Your gift"
        threshold: 150
        gift: {{gift_card: 15}}
        period: {period}
        """) + extra)


@pytest.mark.parametrize(("period", "days", "day", "key", "first", "last"), [
    ("month", None, date(2026, 6, 15), "2026-06", date(2026, 6, 1), date(2026, 6, 30)),
    ("month", None, date(2026, 6, 1), "2026-06", date(2026, 6, 1), date(2026, 6, 30)),
    ("month", None, date(2024, 2, 10), "2024-02", date(2024, 2, 1), date(2024, 2, 29)),
    ("month", None, date(2026, 12, 31), "2026-12", date(2026, 12, 1), date(2026, 12, 31)),
    # ISO weeks, Monday to Sunday; the key is the ISO year, which may not be the day's year.
    ("week", None, date(2026, 6, 15), "2026-W25", date(2026, 6, 15), date(2026, 6, 21)),
    ("week", None, date(2026, 6, 21), "2026-W25", date(2026, 6, 15), date(2026, 6, 21)),
    ("week", None, date(2026, 1, 1), "2026-W01", date(2025, 12, 29), date(2026, 1, 4)),
    ("week", None, date(2027, 1, 1), "2026-W53", date(2026, 12, 28), date(2027, 1, 3)),
    # A rolling window: the period_days days ending on the day.
    ("days", 30, date(2026, 6, 15), "30d:2026-06-15", date(2026, 5, 17), date(2026, 6, 15)),
    ("days", 1, date(2026, 6, 15), "1d:2026-06-15", date(2026, 6, 15), date(2026, 6, 15)),
])
def test_spend_period_of_a_day(period, days, day, key, first, last):
    found = models.spend_period(spend_campaign(period, days), day)
    assert (found.key, found.first_day, found.last_day) == (key, first, last)


@pytest.mark.parametrize(("first", "starts_utc"), [
    (date(2026, 6, 1), datetime(2026, 5, 31, 22, 0, tzinfo=UTC)),   # summer time
    (date(2026, 3, 29), datetime(2026, 3, 28, 23, 0, tzinfo=UTC)),  # clocks go forward that day
    (date(2026, 10, 25), datetime(2026, 10, 24, 22, 0, tzinfo=UTC)),  # and back
])
def test_a_period_starts_at_midnight_in_the_store_zone(first, starts_utc):
    period = models.SpendPeriod("x", first, first)
    assert period.starts_at(PARIS) == starts_utc


def test_every_shipped_campaign_travels_to_a_render_worker_intact():
    """Render worker processes receive the campaigns by pickle (delivery/renderworkers.py):
    a segment's field must survive the trip and mean the same there."""
    folder = Path(__file__).resolve().parents[2] / "campaigns"
    for campaign in models.load_folder(folder):
        copy = pickle.loads(pickle.dumps(campaign))
        assert copy == campaign
