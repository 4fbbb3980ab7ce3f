"""`retain plan` and `retain preview` show what would happen without writing or sending."""

from __future__ import annotations

import email
import json
from email import policy

from sqlalchemy import func, select
from typer.testing import CliRunner

from engine import tables
from engine.cli import app
from tests.shopdata import Shop


def invoke(config_path, *args):
    return CliRunner().invoke(app, ["--config", str(config_path), *args])


def deliveries(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(tables.Delivery.__table__)).scalar()


def shop_with_a_drowsy_and_an_active_customer(engine) -> tuple[int, int]:
    shop = Shop(engine)
    shop.product("YOGA-001", price=4900)
    drowsy = shop.customer(email="Drowsy@Example.com", first_name="Zoé")
    shop.order(drowsy, days_ago=70, items={"YOGA-001": 4900})
    active = shop.customer(email="active@example.com")
    shop.order(active, days_ago=3, items={"YOGA-001": 4900})
    return drowsy, active


def test_plan_json_lists_each_campaign_and_writes_nothing(engine, project, config_path):
    drowsy, _ = shop_with_a_drowsy_and_an_active_customer(engine)
    result = invoke(config_path, "plan", "--as-of", "2026-06-15", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    by_id = {c["id"]: c for c in plan["campaigns"]}
    assert set(by_id) == {"winback", "new-arrivals", "spend-gift", "bundles", "post_purchase",
                          "review_apology", "review_thanks", "abandoned_checkout", "vip"}
    winback = by_id["winback"]
    assert winback["kind"] == "winback"
    assert winback["recipients"] + winback["held_out"] == 1
    if winback["recipients"]:
        assert winback["sample"][0]["customer"] == drowsy
        assert winback["offers"] == 1 and winback["offer_value"] == "4.90"  # 10 % of 49.00
    assert deliveries(engine) == 0


def test_plan_and_dry_run_json_keep_the_keys_readme_documents(engine, project, config_path):
    shop_with_a_drowsy_and_an_active_customer(engine)
    plan = json.loads(invoke(config_path, "plan", "--as-of", "2026-06-15", "--json").output)
    assert set(plan) == {"as_of", "campaigns"}
    assert set(plan["campaigns"][0]) == {
        "id", "kind", "enabled", "segment", "in_segment", "eligible", "recipients", "held_out",
        "suppressed", "deferred", "capped", "skipped", "offers", "offer_value", "budget",
        "sample", "warnings"}
    run = invoke(config_path, "run", "--dry-run", "--as-of", "2026-06-15", "--json")
    assert run.exit_code == 0, run.output
    report = json.loads(run.output)
    assert set(report) == {"run_id", "dry_run", "paused", "interrupted", "recovered_unknown",
                           "campaigns"}
    winback = next(c for c in report["campaigns"] if c["id"] == "winback")
    assert set(winback) == {"id", "planned", "held_out", "suppressed", "deferred", "capped",
                            "skipped", "sent", "failed", "bounced", "unknown", "cancelled"}
    assert winback["planned"] + winback["held_out"] == 1 and winback["sent"] == 0
    assert deliveries(engine) == 0

def test_plan_of_one_unknown_campaign_is_a_one_line_error(engine, project, config_path):
    result = invoke(config_path, "plan", "winbak")
    assert result.exit_code == 1
    assert result.output.strip() == 'error: no campaign with id "winbak" (did you mean "winback"?)'


def test_preview_renders_the_real_email_for_a_real_customer(engine, project, config_path,
                                                            tmp_path):
    shop_with_a_drowsy_and_an_active_customer(engine)
    out = tmp_path / "preview.eml"
    result = invoke(config_path, "preview", "winback", "--customer", "drowsy@example.com",
                    "--as-of", "2026-06-15", "--format", "eml", "--out", str(out))
    assert result.exit_code == 0, result.output
    message = email.message_from_bytes(out.read_bytes(), policy=policy.default)
    assert message["To"] == "Drowsy@Example.com"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "PREVIEW-CODE" in html and "PREVIEW-CODE" in text
    assert "12 rue des Lilas" in html and "Zo" in text
    assert deliveries(engine) == 0


def test_preview_of_a_customer_outside_the_segment_warns_why(engine, project, config_path):
    shop = Shop(engine)
    shop.product("YOGA-001", price=4900)
    no_consent = shop.customer(consent=False)
    shop.order(no_consent, days_ago=70, items={"YOGA-001": 4900})
    result = invoke(config_path, "preview", "winback", "--customer", str(no_consent),
                    "--as-of", "2026-06-15", "--format", "text")
    assert result.exit_code == 0, result.output
    assert f"warning: customer {no_consent} would not get it (not in segment)" in result.output
    assert "who accept marketing" in result.output
    assert "PREVIEW-CODE" in result.output


def test_preview_says_when_there_is_nothing_to_show(engine, project, config_path):
    _, active = shop_with_a_drowsy_and_an_active_customer(engine)
    result = invoke(config_path, "preview", "winback", "--customer", str(active),
                    "--as-of", "2026-06-15")
    assert result.exit_code == 1
    assert "no email to preview" in result.output and "dormancy tier is active" in result.output


def test_plan_warns_about_skus_missing_from_the_catalogue(engine, project, config_path):
    shop_with_a_drowsy_and_an_active_customer(engine)
    result = invoke(config_path, "plan", "bundles", "--as-of", "2026-06-15")
    assert result.exit_code == 0, result.output
    assert 'warning: bundles: bundle yoga-starter: sku "YOGA-002" is not in the product ' \
        "catalogue" in result.output
