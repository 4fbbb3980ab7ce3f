"""The demo's aftermath: the injected effect is said, the report printed, report.html written
next to outbox/, and running it again adds no order."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from rich.console import Console
from sqlalchemy import text

from engine.demo import response
from engine.demo.showcase import run

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@pytest.mark.slow
def test_the_demo_shows_the_report_after_a_few_days(engine, settings, project):
    screen = Console(file=io.StringIO(), width=200)
    run(engine, settings, NOW, customers=600, console=screen)
    page = response.show(engine, settings, NOW, screen)
    shown = screen.file.getvalue()
    assert "injected effect: mailed customers order within 5 days with a 12% chance, " \
           "held-out ones with 4%" in shown
    assert "winback (window 5 days)" in shown and "lift, 95 % interval" in shown
    assert page == settings.folder("outbox").parent / "report.html"
    assert "<svg" in page.read_text()
    with engine.connect() as conn:
        orders = conn.execute(text("SELECT count(*) FROM orders")).scalar()
        redeemed = conn.execute(text(
            "SELECT count(*) FROM coupons WHERE redeemed_order_id IS NOT NULL")).scalar()
    assert redeemed > 0  # codes typed in lower case redeemed their coupons
    response.show(engine, settings, NOW, screen)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM orders")).scalar() == orders
