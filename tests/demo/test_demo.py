"""The synthetic demo shop: deterministic, ends at now, gives every segment and campaign work."""

from __future__ import annotations

import email
import email.policy
import hashlib
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console
from sqlalchemy import func, insert, select, text
from typer.testing import CliRunner

from engine import config, db, tables
from engine.cli import app
from engine.demo.showcase import build_shop, run
from engine.errors import ConfigError
from engine.shop import metrics

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
CUSTOMERS = 600
SHOP_TABLES = ("products", "customers", "orders", "order_items")


def digest(engine) -> str:
    """A fingerprint of every row of the shop tables, in id order."""
    sha = hashlib.sha256()
    with engine.connect() as conn:
        for name in SHOP_TABLES:
            for row in conn.execute(text(f"SELECT * FROM {name} ORDER BY id")):
                sha.update(repr(tuple(row)).encode())
    return sha.hexdigest()


def count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def other_engine(tmp_path: Path, name: str):
    return db.connect(f"sqlite:///{tmp_path / name}")


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """One shop of 600 customers as of NOW, shared by the tests that only read it."""
    folder = tmp_path_factory.mktemp("shop")
    path = folder / "config.yaml"
    path.write_text((ROOT / "config.yaml").read_text().replace("retain.db", "shop.db"))
    settings = config.load(path, environ={})
    engine = db.connect(settings.database.url)
    stats = build_shop(engine, settings, NOW, customers=CUSTOMERS, seed=7)
    yield engine, settings, stats
    engine.dispose()


def test_same_seed_and_now_build_the_same_shop(engine, settings, tmp_path):
    build_shop(engine, settings, NOW, customers=CUSTOMERS, seed=7)
    twin = other_engine(tmp_path, "twin.db")
    build_shop(twin, settings, NOW, customers=CUSTOMERS, seed=7)
    other_seed = other_engine(tmp_path, "other.db")
    build_shop(other_seed, settings, NOW, customers=CUSTOMERS, seed=8)

    assert digest(engine) == digest(twin)
    assert digest(engine) != digest(other_seed)


@pytest.mark.parametrize("now", [
    NOW,
    # Twenty minutes into the first of the month (store time): this month's orders must fit.
    datetime(2026, 11, 1, 0, 20, tzinfo=ZoneInfo("Europe/Paris")),
], ids=["mid-month", "just-after-midnight-on-the-first"])
def test_history_ends_at_now(engine, settings, now):
    stats = build_shop(engine, settings, now, customers=CUSTOMERS, seed=7)
    newest = count(engine, "SELECT max(created_at) FROM orders")
    newest = datetime.fromisoformat(newest).replace(tzinfo=UTC)

    assert newest <= now and newest == stats.last_order_at
    assert now - newest < timedelta(days=2)
    with engine.connect() as conn:
        oldest = conn.execute(select(func.min(tables.Order.created_at))).scalar_one()
        assert now - timedelta(days=3 * 365 + 1) <= oldest
        # local_date is the calendar day in the store's zone
        zone = settings.store.zone
        for created_at, local_date in conn.execute(
                select(tables.Order.created_at, tables.Order.local_date)):
            assert created_at.astimezone(zone).date() == local_date
    with engine.connect() as conn:
        later = select(func.count()).where(tables.Product.created_at > now)
        assert conn.execute(later).scalar_one() == 0


def test_totals_are_sums_of_items_and_products_exist_before_their_sales(shop):
    engine, _, stats = shop
    assert stats.products >= 50 and stats.customers == CUSTOMERS
    assert count(engine, """SELECT count(*) FROM orders o WHERE total_cents !=
        (SELECT sum(quantity * unit_price_cents) FROM order_items WHERE order_id = o.id)""") == 0
    assert count(engine, """SELECT count(*) FROM order_items i JOIN orders o ON o.id = i.order_id
        JOIN products p ON p.sku = i.sku WHERE o.created_at < p.created_at""") == 0
    assert count(engine, """SELECT count(*) FROM orders o WHERE (SELECT count(*) FROM order_items
        WHERE order_id = o.id) NOT BETWEEN 1 AND 4""") == 0
    refunded = count(engine, "SELECT count(*) FROM orders WHERE status = 'refunded'")
    cancelled = count(engine, "SELECT count(*) FROM orders WHERE status = 'cancelled'")
    assert 0.01 < refunded / stats.orders < 0.06
    assert 0.005 < cancelled / stats.orders < 0.04
    assert count(engine, "SELECT count(*) FROM orders WHERE discount_code IS NOT NULL") > 0


def test_consent_addresses_and_zones_look_like_a_real_shop(shop):
    engine, _, _ = shop
    with engine.connect() as conn:
        customers = conn.execute(select(tables.Customer)).all()
    accepting = [c for c in customers if c.accepts_marketing]
    assert 0.78 <= len(accepting) / len(customers) <= 0.92
    assert all(c.consent_at is not None and c.consent_at <= NOW and c.consent_source
               for c in accepting)
    assert all(c.consent_at is None and c.consent_source is None
               for c in customers if not c.accepts_marketing)
    assert len({c.email_key for c in customers}) == len(customers)
    assert {c.email.rsplit("@", 1)[1] for c in customers} <= {
        "example.com", "example.org", "example.net"}
    for c in customers:
        ZoneInfo(c.timezone)
        assert c.timezone.startswith("America/") == (c.country in ("US", "CA"))
    tags = {tag for c in customers for tag in c.tags.split(",") if tag}
    assert {"vip", "wholesale", "newsletter"} <= tags


def test_every_campaign_kind_has_work(shop):
    engine, settings, _ = shop
    two_weeks_ago = NOW - timedelta(days=14)
    p = tables.Product
    with engine.connect() as conn:
        # new_product: new and newly reduced products
        new = select(func.count()).where(p.created_at >= two_weeks_ago)
        reduced = select(func.count()).where(p.price_reduced_at >= two_weeks_ago,
                                             p.compare_at_price_cents > p.price_cents)
        assert conn.execute(new).scalar_one() >= 3
        assert conn.execute(reduced).scalar_one() >= 3
    # spend_threshold: customers near 150 this month, and over it
    month = str(NOW.astimezone(settings.store.zone).date().replace(day=1))
    spent = """SELECT count(*) FROM (SELECT customer_id, sum(total_cents) AS s FROM orders
               WHERE status = 'paid' AND local_date >= :month GROUP BY customer_id)
               WHERE s BETWEEN :low AND :high"""
    assert count(engine, spent, month=month, low=12000, high=14999) >= 0.03 * CUSTOMERS
    assert count(engine, spent, month=month, low=15000, high=10**9) >= 0.02 * CUSTOMERS
    # bundle: the yoga mat is bought with the yoga strap in a good share of its orders
    mats = count(engine, """SELECT count(*) FROM order_items i JOIN products p ON p.sku = i.sku
                 WHERE p.name = 'Yoga mat'""")
    pairs = count(engine, """SELECT count(*) FROM order_items a
        JOIN products pa ON pa.sku = a.sku AND pa.name = 'Yoga mat'
        JOIN order_items b ON b.order_id = a.order_id
        JOIN products pb ON pb.sku = b.sku AND pb.name = 'Yoga strap'""")
    assert mats >= 20 and pairs / mats > 0.4
    # seasonality: November and December sell more a month than the rest of the year
    per_month = dict(db_rows(engine, """SELECT CAST(strftime('%m', local_date) AS INTEGER),
                                        count(*) FROM orders GROUP BY 1"""))
    quiet = [per_month[m] for m in (1, 2, 3, 4, 7, 8, 9, 10)]
    assert min(per_month[11], per_month[12]) > max(quiet)


def db_rows(engine, sql: str):
    with engine.connect() as conn:
        return conn.execute(text(sql)).all()


def test_every_stage_and_tier_is_well_represented(shop):
    engine, settings, _ = shop
    metrics.refresh(engine, settings, NOW)
    m = tables.CustomerMetrics
    for column, vocabulary in ((m.lifecycle, tables.Lifecycle), (m.dormancy, tables.Dormancy),
                               (m.value_tier, tables.ValueTier)):
        with engine.connect() as conn:
            counts = dict(conn.execute(select(column, func.count()).group_by(column)).all())
        for value in vocabulary:
            assert counts.get(value, 0) >= 0.03 * CUSTOMERS, (column, value, counts)


def test_refuses_a_database_with_customers_and_changes_nothing(engine, settings):
    build_shop(engine, settings, NOW, customers=300, seed=7)
    before = digest(engine)

    with pytest.raises(ConfigError, match="already holds 300 customers"):
        build_shop(engine, settings, NOW, customers=300, seed=9)
    assert digest(engine) == before


def test_replace_rebuilds_even_after_campaigns_issued_coupons(engine, settings):
    build_shop(engine, settings, NOW, customers=300, seed=7)
    first = digest(engine)
    with engine.begin() as conn:
        conn.execute(insert(tables.Coupon).values(
            code="WB-TEST", campaign_id="winback", customer_id=1, issued_at=NOW))

    build_shop(engine, settings, NOW, customers=300, seed=7, replace=True)

    assert digest(engine) == first
    assert count(engine, "SELECT count(*) FROM coupons") == 0


def test_demo_will_not_replace_a_shop_it_did_not_build(engine, settings):
    with engine.begin() as conn:
        conn.execute(insert(tables.Customer).values(
            external_id="real-1", email="Real@Example.com", email_key="real@example.com",
            created_at=NOW))

    with pytest.raises(ConfigError, match="did not build"):
        run(engine, settings, NOW, customers=100, shop_only=True)
    assert count(engine, "SELECT count(*) FROM customers") == 1


@pytest.mark.slow
def test_demo_sends_every_campaign_once_and_prints_counts(engine, project):
    # The shipped config.yaml as it is: frequency cap and quiet hours included.
    (project / "config.yaml").write_text(
        (ROOT / "config.yaml").read_text().replace("sqlite:///retain.db", "sqlite:///test.db"))
    settings = config.load(project / "config.yaml", environ={})
    screen = Console(file=io.StringIO(), width=160)
    report = run(engine, settings, NOW, customers=CUSTOMERS, console=screen)

    shown = screen.file.getvalue()
    assert "orders" in shown and str(settings.database.url) in shown
    for heading in ("Dormancy tier", "Lifecycle stage", "Value tier"):
        assert heading in shown
    for name in [*tables.Dormancy, *tables.Lifecycle]:
        assert f" {name.value} " in shown
    # Every campaign in campaigns/ ran, through a real SMTP server writing to outbox/.
    assert set(report.campaigns) == {"winback", "new-arrivals", "spend-gift", "bundles",
                                     "post_purchase", "review_apology", "review_thanks",
                                     "abandoned_checkout", "vip"}
    sent = sum(c.sent for c in report.campaigns.values())
    assert {c.campaign_id: c.sent for c in report.campaigns.values() if c.sent == 0} == {}
    outbox = settings.folder("outbox")
    assert len(list(outbox.glob("*.eml"))) == sent
    assert str(outbox) in shown
    assert_demo_pictures_are_inline(outbox)
    # Issue 10, item 8: three emails in one minute, and a nudge at 04:34. The cap defers, quiet
    # hours hold mail for customers whose night it is (14:00 in Paris is 05:00 in Los Angeles),
    # and the summary says so.
    assert sum(c.deferred + c.capped for c in report.campaigns.values()) > 0
    waiting = re.search(r"(\d+) emails wait for the morning", shown)
    assert waiting and int(waiting.group(1)) > 0
    assert "at most 2 emails in 7 days" in shown and "21:00" in shown and "08:00" in shown
    assert_no_one_got_more_than_the_cap(engine)
    # Running the demo again reuses the shop and the ledger: nothing is sent twice. The four
    # older kinds send nothing new; a marketing flow sends a customer one message a run, so a
    # customer with two due steps (two checkouts, early access and an anniversary) gets the next.
    again = run(engine, settings, NOW, customers=CUSTOMERS, console=screen)
    assert {c.campaign_id for c in again.campaigns.values() if c.sent} <= {
        "abandoned_checkout", "vip", "review_apology", "review_thanks"}
    assert count(engine, "SELECT count(*) FROM (SELECT campaign_id, customer_id, occasion "
                 "FROM deliveries GROUP BY 1, 2, 3 HAVING count(*) > 1)") == 0


def assert_no_one_got_more_than_the_cap(engine) -> None:
    with engine.connect() as conn:
        most = conn.execute(text(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM deliveries WHERE status IN "
            "('sent', 'planned') AND NOT transactional "  # a shipping notice is not capped
            "GROUP BY customer_id) AS per_customer")).scalar()
    assert most <= 2


def assert_demo_pictures_are_inline(outbox: Path) -> None:
    """Issue 10, item 6: the demo's product images pointed to a host that does not exist. Each
    picture is in the message itself, by Content-ID, with alt text and a width."""
    from PIL import Image

    pictured = 0
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        markup = message.get_body(("html",)).get_content()
        parts = {f"cid:{part['Content-ID'].strip('<>')}": part for part in message.walk()
                 if part["Content-ID"]}
        for tag in re.findall(r"<img\b[^>]*>", markup):
            source = re.search(r'src="([^"]+)"', tag).group(1)
            assert source in parts, source
            assert re.search(r'alt="[^"]+"', tag) and re.search(r'width="\d+"', tag), tag
            picture = Image.open(io.BytesIO(parts[source].get_content()))
            assert picture.width >= 260
            pictured += 1
    assert pictured > 0


def test_cli_builds_the_shop_and_prints_counts(config_path, tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    args = ["--config", str(config_path), "--db", url, "demo", "--shop-only",
            "--customers", "500", "--as-of", "2026-06-15"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "500 customers" in result.output and "60 products" in result.output
    assert "orders" in result.output and "demo.db" in result.output
    # Running it again replaces its own shop rather than refusing
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    check = db.connect(url)
    assert count(check, "SELECT count(*) FROM customers") == 500
    check.dispose()


def test_add_day_brings_buyers_back_and_signs_people_up_the_same_in_any_windows(
        engine, settings, tmp_path):
    """Days after the build: repeat orders (lapsed buyers come back, which ends their dormancy)
    and sign-ups; a day written in two windows is the same as written at once."""
    from engine.demo.showcase import add_day
    from engine.shop import metrics

    build_shop(engine, settings, NOW, customers=CUSTOMERS, seed=7)
    twin = other_engine(tmp_path, "twin.db")
    build_shop(twin, settings, NOW, customers=CUSTOMERS, seed=7)
    zone = settings.store.zone
    first = NOW.astimezone(zone).date() + timedelta(days=1)
    days = [first + timedelta(days=n) for n in range(14)]
    metrics.refresh(engine, settings, NOW)
    before = dict(db_rows(engine, "SELECT customer_id, dormancy FROM customer_metrics"))
    written = []
    for day in days:
        written.append(add_day(engine, settings, day, seed=7))
        noon = datetime.combine(day, datetime.min.time().replace(hour=12), tzinfo=zone)
        add_day(twin, settings, day, seed=7, until=noon)
        add_day(twin, settings, day, seed=7, since=noon)
    assert digest(engine) == digest(twin)

    end = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    new_orders = "FROM orders o WHERE o.created_at >= :start"
    start = datetime.combine(first, datetime.min.time(), tzinfo=zone).astimezone(UTC)
    start = start.replace(tzinfo=None).isoformat(" ")
    assert count(engine, f"SELECT count(*) {new_orders}", start=start) == \
        sum(d.orders for d in written) > 14
    assert count(engine, f"""SELECT count(*) {new_orders} AND (o.total_cents != (SELECT
        sum(quantity * unit_price_cents) FROM order_items WHERE order_id = o.id)
        OR o.local_date != date(o.created_at, '+2 hours'))""", start=start) == 0  # CEST
    signups = sum(d.signups for d in written)
    assert signups > 0 and count(engine, "SELECT count(*) FROM customers") == CUSTOMERS + signups
    assert count(engine, "SELECT max(external_id) FROM customers") == \
        f"demo-c-{CUSTOMERS + signups:06d}"
    metrics.refresh(engine, settings, end)
    after = dict(db_rows(engine, "SELECT customer_id, dormancy FROM customer_metrics"))
    woken = [c for c, tier in before.items()
             if tier in ("drowsy", "half_asleep", "sleeping") and after[c] == "active"]
    assert len(woken) >= 3
    # A day already written is refused, and nothing changes.
    fingerprint = digest(engine)
    with pytest.raises(ConfigError, match="in time order"):
        add_day(engine, settings, days[3], seed=7)
    assert digest(engine) == fingerprint
