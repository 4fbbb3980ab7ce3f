"""`retain suppressions list|remove`, and `retain why` naming the suppression (what, when, how)
instead of "not in the segment". Addresses never appear: customers by id, others masked."""

from __future__ import annotations

import json
from datetime import timedelta

from engine.consent import suppressions
from tests.cli.conftest import invoke
from tests.shopdata import NOW, Shop

AS_OF = ["--as-of", "2026-06-15T14:00"]


def dormant_shop(engine) -> tuple[int, int]:
    shop = Shop(engine)
    clicked = shop.customer(email="Clicked@Example.com")
    shop.order(clicked, days_ago=70, total=3000)
    listed = shop.customer(email="listed@example.com")
    shop.order(listed, days_ago=70, total=3000)
    return clicked, listed


def test_why_names_the_unsubscribe_with_its_date_and_way(engine, project, config_path):
    clicked, listed = dormant_shop(engine)
    suppressions.unsubscribe(engine, clicked, NOW - timedelta(days=1), source="one-click")
    blocklist = project / "blocklist.csv"
    blocklist.write_text("email\nlisted@example.com\n")
    assert invoke(config_path, "suppress", "import", str(blocklist)).exit_code == 0

    result = invoke(config_path, "why", str(clicked), "winback", "--json", *AS_OF)
    [answer] = json.loads(result.output)["campaigns"]
    assert answer["why"] == "suppressed"
    assert answer["detail"] == "unsubscribed on 2026-06-14 (one click)"
    [answer] = json.loads(invoke(config_path, "why", str(listed), "winback", "--json",
                                 *AS_OF).output)["campaigns"]
    assert answer["why"] == "suppressed"
    assert answer["detail"].startswith("imported from blocklist.csv on ")


def test_list_shows_customers_reasons_and_dates_without_addresses(engine, project,
                                                                    config_path):
    clicked, _ = dormant_shop(engine)
    suppressions.unsubscribe(engine, clicked, NOW - timedelta(days=1), source="one-click")
    with engine.begin() as conn:
        suppressions.add(conn, "stranger@elsewhere.example", "bounced", "smtp 550 5.1.1", NOW)
    shown = invoke(config_path, "suppressions", "list")
    assert shown.exit_code == 0, shown.output
    assert "clicked@example.com" not in shown.output.lower()
    assert "stranger@" not in shown.output
    assert "one click" in shown.output and "2026-06-14" in shown.output
    data = json.loads(invoke(config_path, "suppressions", "list", "--json").output)
    rows = {row["reason"]: row for row in data["suppressions"]}
    assert rows["unsubscribed"]["customer"] == clicked
    assert rows["unsubscribed"]["created_at"] == "2026-06-14T12:00:00+00:00"
    assert rows["unsubscribed"]["source"] == "one-click"
    assert rows["bounced"]["customer"] is None
    assert rows["bounced"]["address"] == "s***@elsewhere.example"
    only = json.loads(invoke(config_path, "suppressions", "list", "--reason", "bounced",
                             "--json").output)
    assert [row["reason"] for row in only["suppressions"]] == ["bounced"]


def test_remove_lifts_a_suppression_and_says_consent_stays_withdrawn(engine, project,
                                                                     config_path):
    clicked, _ = dormant_shop(engine)
    suppressions.unsubscribe(engine, clicked, NOW - timedelta(days=1), source="one-click")
    removed = invoke(config_path, "suppressions", "remove", str(clicked))
    assert removed.exit_code == 0, removed.output
    assert "consent" in removed.output
    [answer] = json.loads(invoke(config_path, "why", str(clicked), "winback", "--json",
                                 *AS_OF).output)["campaigns"]
    assert answer["why"] == "not_in_segment" and "accept marketing" in answer["detail"]
    again = invoke(config_path, "suppressions", "remove", "clicked@example.com")
    assert again.exit_code == 1 and "not on the suppression list" in again.output
    with engine.begin() as conn:
        suppressions.add(conn, "stranger@elsewhere.example", "bounced", "smtp", NOW)
    assert invoke(config_path, "suppressions", "remove",
                  "Stranger@Elsewhere.example").exit_code == 0
    data = json.loads(invoke(config_path, "suppressions", "list", "--json").output)
    assert data["suppressions"] == []
