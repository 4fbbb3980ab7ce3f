"""``retain customers show``: the customer's deliveries, coupons and redemptions, by id."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import text
from typer.testing import CliRunner

from engine.cli import app
from engine.shop import redemptions
from tests.shopdata import NOW, Shop
from tests.views.ledgerdata import Ledger

SENT = NOW - timedelta(days=20)


def test_customers_show_lists_deliveries_coupons_and_redemptions(engine, config_path):
    shop, ledger = Shop(engine), Ledger(engine)
    customer = shop.customer(email="anna@example.com")
    ledger.mailed(customer, "BACK-SHOW-1", at=SENT, valid_days=2)
    ledger.delivery(customer, "newsletter", at=SENT + timedelta(days=1), status="held_out",
                    occasion="news:1")
    order = shop.order(customer, at=SENT + timedelta(days=4), total=6000)
    with engine.begin() as conn:
        conn.execute(text("UPDATE orders SET discount_code = 'back show 1' WHERE id = :o"),
                     {"o": order})
        redemptions.refresh(conn)
    args = ["--config", str(config_path), "customers", "show", str(customer), "--as-of",
            NOW.isoformat()]
    shown = CliRunner().invoke(app, args, terminal_width=200)
    assert shown.exit_code == 0, shown.output
    table = shown.output.split("deliveries, coupons and redemptions")[1]
    assert "winback (drowsy:1)" in table and "BACK-SHOW-1" in table
    assert "total 60.00, discount 15.00 (after expiry)" in table
    assert "newsletter (news:1)" in table and "held_out" in table
    assert "@" not in table
    data = json.loads(CliRunner().invoke(app, [*args, "--json"]).output)
    first = data["deliveries"][0]
    assert first["coupon"]["redemption"]["total"] == "60.00"
    assert first["coupon"]["redemption"]["after_expiry"] is True
    assert data["deliveries"][1]["coupon"] is None
