"""The lift's interval itself: it finds a known effect, and with no effect it covers zero about
95 % of the time (seeded, so the test is deterministic)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from sqlalchemy import insert

from engine import tables
from engine.views import lift, results
from engine.views.lift import Group
from tests.shopdata import NOW

SENT = NOW - timedelta(days=20)


def _shop_with_effect(engine, mailed: int, held: int, mailed_rate: float, held_rate: float,
                      seed: int) -> None:
    """``mailed`` sent and ``held`` held-out customers; each orders within the window with the
    group's probability (€40 an order), written in bulk."""
    rng = np.random.default_rng(seed)
    with engine.begin() as conn:
        people = [{"external_id": f"c{i}", "email": f"c{i}@example.com",
                   "email_key": f"c{i}@example.com", "created_at": SENT - timedelta(days=400)}
                  for i in range(mailed + held)]
        conn.execute(insert(tables.Customer.__table__), people)
        ids = [row[0] for row in conn.exec_driver_sql("SELECT id FROM customers ORDER BY id")]
        deliveries, orders = [], []
        for index, customer in enumerate(ids):
            is_mailed = index < mailed
            deliveries.append({"campaign_id": "winback", "customer_id": customer,
                               "occasion": f"drowsy:{index}", "planned_at": SENT,
                               "status": "sent" if is_mailed else "held_out",
                               "sent_at": SENT if is_mailed else None})
            if rng.random() < (mailed_rate if is_mailed else held_rate):
                at = SENT + timedelta(hours=float(rng.uniform(1, 100)))
                orders.append({"external_id": f"o{index}", "customer_id": customer,
                               "created_at": at, "local_date": at.date(), "status": "paid",
                               "total_cents": 4000})
        conn.execute(insert(tables.Delivery.__table__), deliveries)
        if orders:
            conn.execute(insert(tables.Order.__table__), orders)


def test_a_known_effect_is_found_with_the_true_lift_inside_the_interval(engine, settings):
    """Mailed customers convert at 12 %, held-out ones at 4 %: the lift is 8 points."""
    _shop_with_effect(engine, mailed=3000, held=3000, mailed_rate=0.12, held_rate=0.04, seed=11)
    winback = results.build(engine, settings, NOW).as_dict()["campaigns"][0]
    low, high = winback["conversion"]["ci95"]
    assert low < 0.08 < high
    assert low > 0 and winback["conversion"]["significant"]
    assert winback["verdict"] == "lift"
    revenue_low, revenue_high = (float(x) for x in winback["revenue_per_recipient"]["ci95"])
    assert revenue_low < 0.08 * 40 < revenue_high  # €3.20 more per recipient
    assert winback["more_recipients_needed"] is None


def test_with_no_effect_the_interval_covers_zero_about_95_percent_of_the_time():
    rng = np.random.default_rng(2026)
    repeats, n_mailed, n_held, rate = 2000, 900, 100, 0.08  # a 10 % holdout, as shipped
    covered = 0
    for _ in range(repeats):
        mailed = Group(n_mailed, int(rng.binomial(n_mailed, rate)))
        held = Group(n_held, int(rng.binomial(n_held, rate)))
        difference = lift.conversion(mailed, held)
        covered += difference.low <= 0 <= difference.high
    share = covered / repeats
    assert 0.93 <= share <= 0.975, share  # 2,000 repeats: ±1 point is two standard errors


def test_no_effect_reads_not_significant_yet_with_recipients_needed(engine, settings):
    _shop_with_effect(engine, mailed=300, held=300, mailed_rate=0.06, held_rate=0.04, seed=5)
    winback = results.build(engine, settings, NOW).as_dict()["campaigns"][0]
    assert not winback["conversion"]["significant"]
    assert winback["verdict"].startswith("not significant yet")
    assert winback["more_recipients_needed"] > 0
    assert f"{winback['more_recipients_needed']:,} more recipients" in winback["verdict"]


def test_revenue_per_recipient_matches_the_orders():
    mailed = Group(n=4, converted=2, revenue=6000, revenue_sq=2000 ** 2 + 4000 ** 2)
    held = Group(n=2, converted=0)
    difference = lift.revenue_per_recipient(mailed, held)
    assert (difference.mailed, difference.holdout, difference.lift) == (1500, 0, 1500)
    assert difference.low < 1500 < difference.high
