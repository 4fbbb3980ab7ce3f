"""Segment filters over a six-customer shop whose metrics are worked out by hand below.

NOW is 2026-06-15 12:00 UTC; orders are at noon Paris time ``days ago``.

    name  orders (days ago, total)             spent   dormancy     lifecycle    tier  country
    Ann   70 130 100 (100.00 each)             300.00  drowsy       decline      B     FR
    Bob   10 (50.00)                            50.00  active       exploration  C     DE
    Cleo  130 160 190 220 250 (120.00 each)    600.00  half_asleep  decline      A     -
    Dan   -                                      0.00  none         prospect     -     fr
    Eve   5 (100.00) 20 (80.00), 3 refunded    180.00  active       formation    B     BE
    Fay   1 2 3 4 (25.00 each)                 100.00  active       stable       C     FR
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select
from sqlalchemy.dialects import sqlite

from engine import tables, yamlfile
from engine.errors import SegmentError
from engine.shop import segments
from tests.conftest import BACKENDS, fresh_postgres

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")
NAMES = ["Ann", "Bob", "Cleo", "Dan", "Eve", "Fay"]
CUSTOMERS = {  # name: (email, accepts marketing, country, tags, days since signup)
    "Ann": ("ann@gmail.com", True, "FR", "vip,newsletter", 400),
    "Bob": ("bob@example.com", False, "DE", "", 20),
    "Cleo": ("Cleo@Example.COM", True, None, "vip-old", 800),
    "Dan": ("dan@gmail.com", True, "fr", "newsletter", 5),
    "Eve": ("eve@shop.example", True, "BE", "vip", 60),
    "Fay": ("fay@example.com", False, "FR", "", 30),
}
ORDERS = {  # name: [(days ago, total cents, sku, status)]
    "Ann": [(70, 10000, "MUG-1", "paid"), (100, 10000, "MUG-1", "paid"),
            (130, 10000, "SH-1", "paid")],
    "Bob": [(10, 5000, "BAG-1", "paid")],
    "Cleo": [(d, 12000, "MUG-1", "paid") for d in (130, 160, 190, 220, 250)],
    "Eve": [(5, 10000, "SH-2", "paid"), (20, 8000, "SH-2", "paid"),
            (3, 4000, "BAG-1", "refunded")],
    "Fay": [(d, 2500, "MUG-1", "paid") for d in (1, 2, 3, 4)],
}
PRODUCTS = {"SH-1": "Shoes", "SH-2": "Shoes", "BAG-1": "Bags", "MUG-1": "Kitchen"}


@pytest.fixture(params=BACKENDS)
def shop(request, engine):
    """The six-customer shop; returns (engine, {name: customer id})."""
    target = fresh_postgres("segment") if request.param == "postgres" else engine
    ids = {}
    with target.begin() as conn:
        for sku, category in PRODUCTS.items():
            conn.execute(insert(tables.Product.__table__).values(
                sku=sku, name=sku, category=category, price_cents=1000, created_at=NOW))
        for name in NAMES:
            email, consent, country, tags, signup = CUSTOMERS[name]
            ids[name] = conn.execute(insert(tables.Customer.__table__).values(
                external_id=name.lower(), email=email, email_key=email.lower(), first_name=name,
                accepts_marketing=consent, country=country, tags=tags,
                created_at=NOW - timedelta(days=signup))).inserted_primary_key[0]
            for n, (days, total, sku, status) in enumerate(ORDERS.get(name, [])):
                local = date(2026, 6, 15) - timedelta(days=days)
                order_id = conn.execute(insert(tables.Order.__table__).values(
                    external_id=f"{name}-{n}", customer_id=ids[name],
                    created_at=datetime.combine(local, time(12), tzinfo=PARIS), local_date=local,
                    status=tables.OrderStatus(status), total_cents=total)).inserted_primary_key[0]
                conn.execute(insert(tables.OrderItem.__table__).values(
                    order_id=order_id, sku=sku, unit_price_cents=total))
    yield target, ids
    if target is not engine:
        target.dispose()


def segment_of(text: str, path: str = "segment.yaml") -> segments.Segment:
    return segments.parse(yamlfile.parse(text, path), path)


def names_in(shop, settings, segment) -> set[str]:
    engine, ids = shop
    by_id = {v: k for k, v in ids.items()}
    result = segments.evaluate(engine, settings, segment, NOW, limit=100)
    found = {by_id[row["customer_id"]] for row in result["sample"]}
    assert result["count"] == len(found)
    return found


OPERATOR_CASES = [  # condition, who matches, English
    ("orders: 3", "Ann", "whose number of orders is 3"),
    ("orders: {ne: 1}", "Ann Cleo Dan Eve Fay", "whose number of orders is not 1"),
    ("orders: {lt: 2}", "Bob Dan", "whose number of orders is less than 2"),
    ("orders: {lte: 2}", "Bob Dan Eve", "whose number of orders is at most 2"),
    ("orders: {gt: 3}", "Cleo Fay", "whose number of orders is more than 3"),
    ("orders: {gte: 4}", "Cleo Fay", "whose number of orders is at least 4"),
    ("orders: {between: [2, 3]}", "Ann Eve", "whose number of orders is between 2 and 3"),
    ("orders: {in: [1, 5]}", "Bob Cleo", "whose number of orders is 1 or 5"),
    ("orders: {not_in: [0, 1]}", "Ann Cleo Eve Fay", "whose number of orders is none of 0, 1"),
    ("spent: {gte: 180}", "Ann Cleo Eve", "whose total spend is at least 180.00"),
    ("spent: {lt: 100.5}", "Bob Dan Fay", "whose total spend is less than 100.50"),
    ("avg_order_value: {gt: 99.99}", "Ann Cleo", "whose average order value is more than 99.99"),
    ("recency_days: {gte: 60}", "Ann Cleo", "whose days since the last order is at least 60"),
    ("recency_days: {lt: 60}", "Bob Eve Fay", "whose days since the last order is less than 60"),
    ("days_since_first_order: {between: [10, 130]}", "Ann Bob Eve",
     "whose days since the first order is between 10 and 130"),
    ("days_since_signup: {lte: 20}", "Bob Dan", "whose days since signup is at most 20"),
    ("r_score: 5", "Fay", "whose recency score is 5"),
    ("f_score: {gte: 4}", "Cleo Fay", "whose frequency score is at least 4"),
    ("m_score: {lte: 2}", "Bob Fay", "whose monetary score is at most 2"),
    ("dormancy: [drowsy, half_asleep]", "Ann Cleo", "whose dormancy is drowsy or half asleep"),
    ("dormancy: none", "Dan", "whose dormancy is none"),
    ("dormancy: {not_in: [active, none]}", "Ann Cleo",
     "whose dormancy is none of active, none"),
    ("value_tier: a", "Cleo", "whose value tier is A"),
    ("value_tier: {ne: C}", "Ann Cleo Dan Eve", "whose value tier is not C"),
    ("lifecycle: [stable, formation]", "Eve Fay", "whose lifecycle stage is stable or formation"),
    ("lifecycle: decline", "Ann Cleo", "whose lifecycle stage is decline"),
    ("accepts_marketing: true", "Ann Cleo Dan Eve", "who accept marketing"),
    ("accepts_marketing: {ne: true}", "Bob Fay", "who do not accept marketing"),
    ("country: FR", "Ann Dan Fay", "whose country is FR"),
    ("country: {not_in: [fr, DE]}", "Cleo Eve", "whose country is none of fr, DE"),
    ("email_domain: example.com", "Bob Cleo Fay", "whose email domain is example.com"),
    ("tag: vip", "Ann Eve", "who have the tag vip"),
    ("tag: {ne: vip}", "Bob Cleo Dan Fay", "who do not have the tag vip"),
    ("tag: [vip, newsletter]", "Ann Dan Eve", "who have the tag vip or newsletter"),
    ("bought_category: shoes", "Ann Eve", "who bought from the category shoes"),
    ("bought_category: {not_in: [Bags, Shoes]}", "Cleo Dan Fay",
     "who did not buy from the category Bags or Shoes"),
    ("bought_sku: BAG-1", "Bob", "who bought the SKU BAG-1"),
    ("orders_in_last_days: {days: 30, gte: 2}", "Eve Fay",
     "whose number of orders in the last 30 days is at least 2"),
    ("orders_in_last_days: {days: 30, lt: 1}", "Ann Cleo Dan",
     "whose number of orders in the last 30 days is less than 1"),
    ("spent_in_last_days: {days: 30, gte: 150}", "Eve",
     "whose spend in the last 30 days is at least 150.00"),
    ("spent_in_last_days: {days: 7, between: [0, 99]}", "Ann Bob Cleo Dan",
     "whose spend in the last 7 days is between 0.00 and 99.00"),
]


@pytest.mark.parametrize("condition, who, english", OPERATOR_CASES,
                         ids=[case[0] for case in OPERATOR_CASES])
def test_each_operator_and_field(shop, settings, condition, who, english):
    segment = segment_of(f"all:\n  - {condition}\n")
    assert names_in(shop, settings, segment) == set(who.split())
    assert segment.explain() == "customers " + english


def test_any_and_not_nest(shop, settings):
    segment = segment_of("""
all:
  - accepts_marketing: true
  - any:
      - tag: vip
      - not: {country: fr}
""")
    assert names_in(shop, settings, segment) == {"Ann", "Cleo", "Eve"}
    assert segment.explain() == ("customers who accept marketing and "
                                 "(who have the tag vip or whose country is not fr)")


def test_not_of_a_list_means_none_of_them(shop, settings):
    segment = segment_of("not:\n  - tag: vip\n  - dormancy: none\n")
    assert names_in(shop, settings, segment) == {"Bob", "Cleo", "Fay"}
    assert segment.explain() == ("customers who do not have the tag vip and "
                                 "whose dormancy is not none")


def test_deep_nesting_reads_by_de_morgan(shop, settings):
    segment = segment_of("""
not:
  all:
    - orders: {gte: 3}
    - any: [{country: fr}, {tag: vip}]
""")
    assert names_in(shop, settings, segment) == {"Bob", "Cleo", "Dan", "Eve"}
    assert segment.explain() == (
        "customers whose number of orders is not at least 3 or "
        "(whose country is not fr and who do not have the tag vip)")


def test_evaluate_counts_and_samples_without_email_addresses(shop, settings):
    engine, ids = shop
    segment = segment_of("dormancy: active\n")
    result = segments.evaluate(engine, settings, segment, NOW, limit=2)
    assert result["count"] == 3
    assert result["explain"] == "customers whose dormancy is active"
    assert result["sample"] == [
        {"customer_id": ids["Bob"], "external_id": "bob", "name": "Bob", "orders": 1,
         "spent": "50.00", "recency_days": 10, "dormancy": "active", "value_tier": "C",
         "lifecycle": "exploration"},
        {"customer_id": ids["Eve"], "external_id": "eve", "name": "Eve", "orders": 2,
         "spent": "180.00", "recency_days": 5, "dormancy": "active", "value_tier": "B",
         "lifecycle": "formation"},
    ]
    assert "@" not in repr(result)
    assert segments.evaluate(engine, settings, segment, NOW, limit=0)["count"] == 3
    everyone = segments.evaluate(engine, settings, segment, NOW, limit=None)["sample"]
    assert [row["name"] for row in everyone] == ["Bob", "Eve", "Fay"]
    assert segments.evaluate(engine, settings, segment_of("orders: 99\n"), NOW) == {
        "count": 0, "sample": [], "explain": "customers whose number of orders is 99"}


def test_where_composes_into_other_queries_with_bound_values(shop, settings):
    engine, ids = shop
    hostile = segment_of("""country: "fr' OR '1'='1"\n""")
    sql = str(hostile.where(NOW).compile(dialect=sqlite.dialect()))
    assert "OR '1'" not in sql and "?" in sql
    segments.evaluate(engine, settings, hostile, NOW)  # refreshes the metrics
    with engine.connect() as conn:
        query = select(tables.Customer.__table__.c.id).select_from(segments.SOURCE)
        assert conn.execute(query.where(hostile.where(NOW))).all() == []
        consenting = segment_of("accepts_marketing: false\n").where(NOW)
        assert set(conn.execute(query.where(consenting)).scalars()) == {ids["Bob"], ids["Fay"]}


def test_load_file_reads_a_campaign_with_a_segment(tmp_path: Path):
    path = tmp_path / "winback.yaml"
    path.write_text("name: Win back\nsegment:\n  any:\n    - dormancy: drowsy\n"
                    "    - value_tier: {in: [A, B]}\n")
    assert segments.load_file(path).explain() == (
        "customers whose dormancy is drowsy or whose value tier is A or B")


ERROR_CASES = [  # the line under "  all:\n", the error after "segment.yaml:"
    ("    - dormacy: drowsy", '3:7: unknown field "dormacy" (did you mean "dormancy"?)'),
    ("    - orders: {gtee: 2}", '3:16: unknown operator "gtee" for orders '
                                '(did you mean "gte"?)'),
    ("    - dormancy: sleepy", '3:7: "sleepy" is not a dormancy (did you mean "sleeping"?)'),
    ("    - dormancy: [drowsy, sleepy]",
     '3:26: "sleepy" is not a dormancy (did you mean "sleeping"?)'),
    ("    - lifecycle: {in: [stable, lost]}",
     '3:32: "lost" is not a lifecycle stage (valid: decline, exploration, formation, '
     'prospect, stable)'),
    ("    - orders: {gte: two}", "3:16: orders needs a whole number, not 'two'"),
    ("    - recency_days: {lt: 3.5}", "3:22: recency_days needs a whole number, not 3.5"),
    ("    - spent: {gte: 10.999}",
     "3:15: spent needs an amount in currency units like 49.90, not 10.999"),
    ("    - accepts_marketing: yes please",
     "3:7: accepts_marketing needs true or false, not 'yes please'"),
    ("    - country: NO", "3:7: country needs text, not False: put the value in quotes "
                          "(YAML reads no, yes, on, off and null as other types)"),
    ("    - dormancy: {gte: drowsy}", '3:18: dormancy cannot use "gte"; it takes eq, ne, in, '
                                      'not_in'),
    ("    - orders: {gte: 1, lte: 5}", "3:7: orders takes exactly one operator; for a range "
                                       "write `orders: {between: [low, high]}`"),
    ("    - spent: {between: [500, 100]}", "3:15: spent: between needs the lower bound first"),
    ("    - tag: {in: vip}", "3:13: tag: in needs a list like [a, b]"),
    ("    - orders_in_last_days: {gte: 2}", "3:7: orders_in_last_days needs days and a "
                                            "comparison, like `orders_in_last_days: "
                                            "{days: 30, gte: 2}`"),
    ("    - spent_in_last_days: {days: 0, gte: 2}",
     "3:28: spent_in_last_days: days must be a whole number of at least 1, not 0"),
    ("    - dormancy: drowsy\n      orders: 2", '4:7: "orders" is beside "dormancy" in one '
                                               'item: start each condition with its own "- " '
                                               "under all: or any:"),
    ("    - any: []", '3:7: "any:" needs a list of conditions, one a line starting with "- "'),
]


@pytest.mark.parametrize("line, message", ERROR_CASES, ids=[c[0].strip() for c in ERROR_CASES])
def test_mistakes_are_located_and_say_the_fix(tmp_path: Path, line, message):
    path = tmp_path / "segment.yaml"
    path.write_text(f"segment:\n  all:\n{line}\n")
    with pytest.raises(SegmentError) as caught:
        segments.load_file(path)
    assert str(caught.value) == f"{path}:{message}"


def test_a_file_without_a_segment_is_refused(tmp_path: Path):
    path = tmp_path / "campaign.yaml"
    path.write_text("name: Win back\n")
    with pytest.raises(SegmentError, match=r"campaign.yaml:1:1: expected a \"segment:\""):
        segments.load_file(path)

