"""Customer metrics on hand-computed shops, in a real SQLite file (and PostgreSQL when
RETAIN_TEST_POSTGRES_URL points at a throwaway database).

NOW is 2026-06-15 12:00 UTC = 14:00 in Europe/Paris (config.yaml's store zone), so "today" is
2026-06-15 and an order on local date 2026-04-16 is 60 days old.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from itertools import count
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select, update

from engine import db, tables, yamlfile
from engine.errors import NotFound
from engine.shop import metrics, segments
from tests.conftest import on_each_backend

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")
TODAY = date(2026, 6, 15)
_ids = count(1)


shop = on_each_backend("metrics")


def customer(conn, email=None, external_id=None, first_name="Ann", last_name="Lee",
             accepts_marketing=True, created_at=NOW - timedelta(days=400), **extra) -> int:
    n = next(_ids)
    email = email or f"c{n}@example.com"
    values = dict(external_id=external_id or f"ext-{n}", email=email, email_key=email.lower(),
                  first_name=first_name, last_name=last_name,
                  accepts_marketing=accepts_marketing, created_at=created_at, **extra)
    return conn.execute(insert(tables.Customer.__table__).values(**values)).inserted_primary_key[0]


def order(conn, customer_id, created_at=None, *, days_ago=None, total=1000, status="paid",
          local_date=None):
    """An order; ``days_ago`` puts it at noon Paris time that many local days before TODAY."""
    if created_at is None:
        created_at = datetime.combine(TODAY - timedelta(days=days_ago), datetime.min.time(),
                                      tzinfo=PARIS).replace(hour=12)
    local = local_date or created_at.astimezone(PARIS).date()
    conn.execute(insert(tables.Order.__table__).values(
        external_id=f"o{next(_ids)}", customer_id=customer_id, created_at=created_at,
        local_date=local, status=tables.OrderStatus(status), total_cents=total))


def rows(shop, settings, now=NOW) -> dict[int, dict]:
    metrics.refresh(shop, settings, now)
    with shop.connect() as conn:
        result = conn.execute(select(tables.CustomerMetrics.__table__)).mappings()
        return {row["customer_id"]: dict(row) for row in result}


def test_recency_boundaries_set_the_dormancy_tier(shop, settings):
    expected = {59: "active", 60: "drowsy", 119: "drowsy", 120: "half_asleep",
                239: "half_asleep", 240: "sleeping", 0: "active"}
    with shop.begin() as conn:
        ids = {}
        for days in expected:
            ids[days] = customer(conn)
            order(conn, ids[days], days_ago=days)
    got = rows(shop, settings)
    for days, tier in expected.items():
        assert got[ids[days]]["recency_days"] == days
        assert got[ids[days]]["dormancy"] == tier, days


def test_recency_counts_calendar_days_in_the_store_zone(shop, settings):
    with shop.begin() as conn:
        late = customer(conn)   # 23:59 in Paris on the 14th, 21:59 UTC
        order(conn, late, datetime(2026, 6, 14, 21, 59, tzinfo=UTC))
        early = customer(conn)  # 00:01 in Paris on the 15th, still the 14th in UTC
        order(conn, early, datetime(2026, 6, 14, 22, 1, tzinfo=UTC))
    got = rows(shop, settings)
    assert (got[late]["recency_days"], got[early]["recency_days"]) == (1, 0)
    # Two minutes later in UTC but across midnight in Paris: every recency grows by one day.
    before_midnight = datetime(2026, 6, 15, 21, 59, tzinfo=UTC)
    after_midnight = datetime(2026, 6, 15, 22, 1, tzinfo=UTC)
    assert rows(shop, settings, before_midnight)[early]["recency_days"] == 0
    assert rows(shop, settings, after_midnight)[early]["recency_days"] == 1


def test_only_paid_orders_before_now_count(shop, settings):
    with shop.begin() as conn:
        buyer = customer(conn)
        order(conn, buyer, days_ago=10, total=2500)
        order(conn, buyer, days_ago=5, total=9900, status="refunded")
        order(conn, buyer, days_ago=4, total=7700, status="cancelled")
        order(conn, buyer, NOW, total=5000)                       # at now: not yet
        order(conn, buyer, NOW + timedelta(days=3), total=5000)   # in the future
        only_cancelled = customer(conn)
        order(conn, only_cancelled, days_ago=3, status="cancelled")
        prospect = customer(conn)
    got = rows(shop, settings)
    assert got[buyer]["orders"] == 1
    assert got[buyer]["spent_cents"] == 2500
    assert got[buyer]["recency_days"] == 10
    for nobody in (only_cancelled, prospect):
        row = got[nobody]
        assert (row["orders"], row["spent_cents"], row["avg_order_value_cents"]) == (0, 0, 0)
        assert row["dormancy"] == "none" and row["lifecycle"] == "prospect"
        assert row["recency_days"] is None and row["value_tier"] is None
        assert row["first_order_at"] is None and row["last_order_at"] is None
        assert (row["r_score"], row["f_score"], row["m_score"]) == (None, None, None)


def test_quintile_scores_and_value_tiers_on_ten_buyers(shop, settings):
    """Buyer k (1..10) has k orders, spends k * 10.00 and last ordered 11 - k days ago."""
    with shop.begin() as conn:
        buyers = []
        for k in range(1, 11):
            buyers.append(customer(conn))
            for i in range(k):
                order(conn, buyers[-1], days_ago=11 - k + i * 300, total=1000)
        prospect = customer(conn)
    got = rows(shop, settings)
    scores = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [got[b]["m_score"] for b in buyers] == scores
    assert [got[b]["f_score"] for b in buyers] == scores
    assert [got[b]["r_score"] for b in buyers] == scores  # the most recent buyer scores 5
    # Top 20 % by spend are A, next 30 % B, the other half C; prospects have no tier.
    assert [got[b]["value_tier"] for b in buyers] == list("CCCCCBBBAA")
    assert got[prospect]["value_tier"] is None and got[prospect]["m_score"] is None


def test_ties_share_a_score_and_join_the_better_tier(shop, settings):
    """Spends 100, 90, 90, 70, 60, ..., 10: the two 90s tie for places 2-3."""
    spends = [100, 90, 90, 70, 60, 50, 40, 30, 20, 10]
    with shop.begin() as conn:
        buyers = []
        for spend in spends:
            buyers.append(customer(conn))
            order(conn, buyers[-1], days_ago=5, total=spend * 100)
    got = rows(shop, settings)
    assert [got[b]["value_tier"] for b in buyers] == list("AAABBCCCCC")
    assert got[buyers[1]]["m_score"] == got[buyers[2]]["m_score"] == 4
    # Everyone ordered once on the same day: one tie, one score for all.
    assert {got[b]["f_score"] for b in buyers} == {1}
    assert {got[b]["r_score"] for b in buyers} == {1}


def test_lifecycle_stages_and_decline(shop, settings):
    cases = {  # (orders, days ago of the last one) -> stage
        (1, 5): "exploration", (1, 300): "exploration", (2, 5): "formation",
        (3, 59): "formation", (4, 5): "stable", (9, 1): "stable", (2, 60): "decline",
        (4, 61): "decline",
    }
    with shop.begin() as conn:
        ids = {}
        for (n, last), _stage in cases.items():
            ids[n, last] = customer(conn)
            for i in range(n):
                order(conn, ids[n, last], days_ago=last + i)
    got = rows(shop, settings)
    assert {key: got[cid]["lifecycle"] for key, cid in ids.items()} == cases


def test_amounts_and_dates_of_a_buyer(shop, settings):
    with shop.begin() as conn:
        buyer = customer(conn)
        first = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
        last = datetime(2026, 6, 1, 18, 0, tzinfo=UTC)
        order(conn, buyer, first, total=10000)
        order(conn, buyer, last, total=10001)  # average 100.005 rounds half up to 100.01
    row = rows(shop, settings)[buyer]
    assert (row["orders"], row["spent_cents"], row["avg_order_value_cents"]) == (2, 20001, 10001)
    assert (row["first_order_at"], row["last_order_at"]) == (first, last)


def test_a_total_spend_past_two_to_the_31_cents_is_kept_whole(shop, settings):
    """€30 M in two orders: past 32-bit cents (€21.4 M), which PostgreSQL's INTEGER refused
    ("integer out of range"), so the refresh failed for every customer; now BIGINT."""
    with shop.begin() as conn:
        wholesale = customer(conn)
        for days_ago in (30, 10):
            order(conn, wholesale, days_ago=days_ago, total=1_500_000_000)
        order(conn, customer(conn), days_ago=5, total=4_000)
    row = rows(shop, settings)[wholesale]
    assert (row["spent_cents"], row["avg_order_value_cents"]) == (3_000_000_000, 1_500_000_000)
    shown = metrics.for_customer(shop, settings, str(wholesale), NOW)  # customers show --json
    assert (shown["spent"], shown["value_tier"]) == ("30000000.00", "A")
    big = segments.parse(yamlfile.parse("spent: {gte: 25000000}\n", "big.yaml"), "big.yaml")
    assert segments.count(shop, big, NOW) == 1


def test_for_customer_finds_by_id_external_id_or_email(shop, settings):
    with shop.begin() as conn:
        anna = customer(conn, email="Anna.Berg@Example.com", external_id="shop-77",
                        first_name="Anna", last_name="Berg", accepts_marketing=False)
        order(conn, anna, datetime(2026, 5, 1, 8, 0, tzinfo=UTC), total=12345)
    by_id = metrics.for_customer(shop, settings, str(anna), NOW)
    assert metrics.for_customer(shop, settings, "shop-77", NOW) == by_id
    assert metrics.for_customer(shop, settings, "anna.berg@EXAMPLE.com", NOW) == by_id
    assert by_id == {
        "customer_id": anna, "external_id": "shop-77", "name": "Anna Berg", "orders": 1,
        "spent": "123.45", "avg_order_value": "123.45",
        "first_order_at": "2026-05-01T08:00:00+00:00",
        "last_order_at": "2026-05-01T08:00:00+00:00", "recency_days": 45,
        "r_score": 1, "f_score": 1, "m_score": 1, "dormancy": "active", "value_tier": "A",
        "lifecycle": "exploration", "accepts_marketing": False,
    }
    json.dumps(by_id)  # the CLI prints it as JSON


def test_for_customer_of_a_prospect_and_of_nobody(shop, settings):
    with shop.begin() as conn:
        newcomer = customer(conn)
    data = metrics.for_customer(shop, settings, str(newcomer), NOW)
    assert (data["orders"], data["spent"], data["lifecycle"]) == (0, "0.00", "prospect")
    assert data["last_order_at"] is None and data["value_tier"] is None
    with pytest.raises(NotFound, match='no customer matches "nobody@example.com"'):
        metrics.for_customer(shop, settings, "nobody@example.com", NOW)


def test_refresh_is_cached_until_data_changes(shop, settings):
    with shop.begin() as conn:
        buyer = customer(conn)
        order(conn, buyer, days_ago=10)
    assert rows(shop, settings)[buyer]["orders"] == 1
    with shop.begin() as conn:  # written behind the importers' back: no data_version bump
        order(conn, buyer, days_ago=8)
    assert rows(shop, settings)[buyer]["orders"] == 1
    # Same local date, no order created in between: still the cached rows.
    assert rows(shop, settings, NOW + timedelta(hours=2))[buyer]["orders"] == 1
    with shop.begin() as conn:
        db.bump_data_version(conn)
    assert rows(shop, settings)[buyer]["orders"] == 2


def test_refresh_rebuilds_when_now_or_thresholds_move(shop, settings):
    with shop.begin() as conn:
        buyer = customer(conn)
        order(conn, buyer, days_ago=59)
        order(conn, buyer, NOW + timedelta(hours=1))  # created after the first refresh's now
    assert rows(shop, settings)[buyer]["orders"] == 1
    assert rows(shop, settings, NOW + timedelta(hours=2))[buyer]["orders"] == 2
    with shop.begin() as conn:
        conn.execute(update(tables.Order.__table__).values(status="cancelled")
                     .where(tables.Order.__table__.c.created_at > NOW))
        db.bump_data_version(conn)
    assert rows(shop, settings, NOW + timedelta(days=1))[buyer]["dormancy"] == "drowsy"
    stricter = settings.model_copy(update={"metrics": settings.metrics.model_copy(update={
        "dormancy_days": settings.metrics.dormancy_days.model_copy(update={"drowsy": 90})})})
    assert rows(shop, stricter, NOW + timedelta(days=1))[buyer]["dormancy"] == "active"


def test_summary_counts_every_category(shop, settings):
    with shop.begin() as conn:
        for days in (1, 2, 70, 130, 300):
            order(conn, customer(conn), days_ago=days)
        customer(conn)
    result = metrics.summary(shop, settings, NOW)
    assert result["customers"] == 6
    assert result["dormancy"] == {"none": 1, "active": 2, "drowsy": 1, "half_asleep": 1,
                                  "sleeping": 1}
    assert result["lifecycle"] == {"prospect": 1, "exploration": 5, "formation": 0,
                                   "stable": 0, "decline": 0}
    assert result["value_tier"] == {"A": 5, "B": 0, "C": 0}  # equal spend: one tie, tier A


def test_metrics_refuse_a_naive_now(shop, settings):
    with pytest.raises(ValueError, match="aware"):
        metrics.refresh(shop, settings, datetime(2026, 6, 15, 12, 0))
