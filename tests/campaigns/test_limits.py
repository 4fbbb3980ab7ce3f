"""Frequency cap across campaigns and quiet hours in the customer's own time zone."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from engine import config, tables
from engine.campaigns import models as campaigns
from engine.delivery import runner
from engine.transport import MemoryTransport
from tests.conftest import on_each_backend
from tests.shopdata import NOW, Shop

WINBACK = """
    id: winback
    kind: winback
    template: winback.html
    subject: "We miss you"
    priority: 60
    steps:
      - {tier: drowsy, coupon: {percent_off: 10}}
"""
BUNDLE = """
    id: sets
    kind: bundle
    template: bundle.html
    subject: "Complete the set"
    priority: 30
    on_cap: ON_CAP
    bundles:
      - {id: pair, skus: [MAT, STRAP], discount_percent: 10}
"""


def load(text: str):
    return campaigns.parse_text(textwrap.dedent(text))


def with_limits(settings, **changes):
    return settings.model_copy(update=changes)


def deliveries(engine) -> dict[tuple[str, int], tuple[str, str | None]]:
    d = tables.Delivery.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(d.c.campaign_id, d.c.customer_id, d.c.status, d.c.reason))
        return {(r.campaign_id, r.customer_id): (str(r.status.value), r.reason) for r in rows}


engine = on_each_backend("limits")


@pytest.fixture
def shop(engine):
    shop = Shop(engine)
    shop.product("MAT", price=4000)
    shop.product("STRAP", price=1000)
    return shop


@pytest.mark.parametrize("on_cap", ["defer", "drop"])
def test_the_higher_priority_campaign_wins_the_cap(engine, settings, shop, project, on_cap):
    both = shop.customer()          # drowsy and owns half the bundle: both campaigns want them
    shop.order(both, days_ago=70, items={"MAT": 4000})
    settings = with_limits(settings, limits=config.Limits(
        max_emails_per_customer=config.FrequencyCap(count=1, days=7)))
    settings = settings.model_copy(update={"source": str(project / "config.yaml")})
    chosen = [load(BUNDLE.replace("ON_CAP", on_cap)), load(WINBACK)]
    outbox = MemoryTransport()
    report = runner.run(engine, settings, chosen, NOW, outbox)

    assert report.campaigns["winback"].sent == 1
    ledger = deliveries(engine)
    status, reason = ledger[("sets", both)]
    assert status == ("deferred" if on_cap == "defer" else "capped")
    assert "frequency cap: 1 emails in the last 7 days" in reason
    assert len(outbox.sent) == 1

    # A week later the cap has room again: deferred mail goes out, dropped mail never does.
    later = runner.run(engine, settings, chosen, NOW + timedelta(days=8), outbox)
    if on_cap == "defer":
        assert later.campaigns["sets"].sent == 1
        assert deliveries(engine)[("sets", both)][0] == "sent"
    else:
        assert later.campaigns["sets"].sent == 0
        assert deliveries(engine)[("sets", both)][0] == "capped"


def test_the_cap_counts_mail_of_earlier_runs(engine, settings, shop, project):
    who = shop.customer()
    shop.order(who, days_ago=70, items={"MAT": 4000})
    settings = with_limits(settings, limits=config.Limits(
        max_emails_per_customer=config.FrequencyCap(count=1, days=7)),
        source=str(project / "config.yaml"))
    outbox = MemoryTransport()
    runner.run(engine, settings, [load(WINBACK)], NOW, outbox)
    second = runner.run(engine, settings, [load(BUNDLE.replace("ON_CAP", "defer"))],
                        NOW + timedelta(days=2), outbox)
    assert second.campaigns["sets"].deferred == 1 and len(outbox.sent) == 1


def test_quiet_hours_hold_mail_until_morning_in_the_customers_zone(engine, settings, project):
    shop = Shop(engine)
    paris = shop.customer(timezone="Europe/Paris")
    new_york = shop.customer(timezone="America/New_York")
    nowhere = shop.customer(timezone="Mars/Olympus")   # unknown zone: the store's is used
    night = datetime(2026, 6, 15, 3, 0, tzinfo=UTC)    # 05:00 in Paris, 23:00 in New York
    for who in (paris, new_york, nowhere):
        shop.order(who, at=night - timedelta(days=70))
    settings = settings.model_copy(update={
        "quiet_hours": config.QuietHours(start="21:00", end="08:00"),
        "source": str(project / "config.yaml")})
    chosen = [load(WINBACK)]
    outbox = MemoryTransport()

    first = runner.run(engine, settings, chosen, night, outbox)
    assert first.campaigns["winback"].planned == 3 and len(outbox.sent) == 0
    d = tables.Delivery.__table__
    with engine.connect() as conn:
        waits = dict(conn.execute(select(d.c.customer_id, d.c.next_attempt_at)).all())
    assert waits[paris] == datetime(2026, 6, 15, 6, 0, tzinfo=UTC)      # 08:00 Paris
    assert waits[nowhere] == waits[paris]
    assert waits[new_york] == datetime(2026, 6, 15, 12, 0, tzinfo=UTC)  # 08:00 New York

    morning_paris = runner.run(engine, settings, chosen, datetime(2026, 6, 15, 6, 5, tzinfo=UTC),
                               outbox, plan=False)
    assert morning_paris.campaigns["winback"].sent == 2
    morning_ny = runner.run(engine, settings, chosen, datetime(2026, 6, 15, 12, 5, tzinfo=UTC),
                            outbox, plan=False)
    assert morning_ny.campaigns["winback"].sent == 1
    assert len(outbox.sent) == 3


def test_the_cap_counts_mail_by_when_it_went_out(engine, settings, shop, project):
    """Planned eight days ago but sent two days ago (a retry, quiet hours): it still counts."""
    from sqlalchemy import update

    who = shop.customer()
    shop.order(who, days_ago=70, items={"MAT": 4000})
    settings = with_limits(settings, limits=config.Limits(
        max_emails_per_customer=config.FrequencyCap(count=1, days=7)))
    outbox = MemoryTransport()
    runner.run(engine, settings, [load(WINBACK)], NOW - timedelta(days=8), outbox)
    d = tables.Delivery.__table__
    with engine.begin() as conn:
        conn.execute(update(d).values(sent_at=NOW - timedelta(days=2)))
    later = runner.run(engine, settings, [load(BUNDLE.replace("ON_CAP", "defer"))], NOW,
                       outbox)
    assert later.campaigns["sets"].deferred == 1


def test_a_retry_that_falls_due_at_night_waits_for_the_morning(engine, settings, project):
    """Quiet hours are checked again when sending, not only when planning."""
    shop = Shop(engine)
    who = shop.customer(timezone="Europe/Paris")
    evening = datetime(2026, 6, 15, 16, 0, tzinfo=UTC)         # 18:00 in Paris: allowed
    shop.order(who, at=evening - timedelta(days=70))
    settings = settings.model_copy(update={
        "quiet_hours": config.QuietHours(start="21:00", end="08:00")})
    chosen = [load(WINBACK)]
    runner.run(engine, settings, chosen, evening, transport=None)   # planned, not sent yet
    d = tables.Delivery.__table__
    night = datetime(2026, 6, 15, 20, 30, tzinfo=UTC)          # 22:30 in Paris
    outbox = MemoryTransport()
    runner.run(engine, settings, chosen, night, outbox, plan=False)
    assert not outbox.sent
    with engine.connect() as conn:
        waiting = conn.execute(select(d.c.next_attempt_at)).scalar()
    assert waiting == datetime(2026, 6, 16, 6, 0, tzinfo=UTC)  # 08:00 in Paris
    morning = runner.run(engine, settings, chosen, waiting, outbox, plan=False)
    assert morning.campaigns["winback"].sent == 1
    with engine.begin() as conn:  # the send itself happened outside quiet hours
        assert conn.execute(select(d.c.sent_at)).scalar() == waiting
