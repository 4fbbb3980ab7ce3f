"""`retain why` names the reason for each campaign, as the planner decides it."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from engine import config
from engine.campaigns import models as campaigns
from engine.campaigns import planner
from engine.cli import app
from engine.consent import suppressions
from engine.delivery import runner
from engine.service import schedule
from engine.transport import MemoryTransport
from engine.views import explain
from engine.views.explain import Why
from tests.shopdata import NOW, Shop

WINBACK = """
    id: winback
    kind: winback
    template: winback.html
    subject: "We miss you"
    priority: 60
    holdout: HOLDOUT
    segment:
      all:
        - accepts_marketing: true
        - orders: {lte: 3}
    steps:
      - {tier: drowsy, coupon: {percent_off: 10}}
"""
SPEND = """
    id: gift
    kind: spend_threshold
    template: spend_threshold.html
    subject: "A gift"
    priority: 90
    threshold: 50
    gift: {gift_card: 5}
"""


def load(text: str, holdout: float = 0.0):
    return campaigns.parse_text(textwrap.dedent(text).replace("HOLDOUT", str(holdout)))


def why(engine, settings, chosen, customer, now=NOW) -> dict[str, explain.Answer]:
    _, answers = explain.explain(engine, settings, chosen, str(customer), now)
    return {a.campaign: a for a in answers}


def drowsy(shop: Shop, **customer) -> int:
    who = shop.customer(**customer)
    shop.order(who, days_ago=70, total=3000)
    return who


def test_each_reason_is_named(engine, settings, project):
    shop = Shop(engine)
    chosen = [load(WINBACK)]
    eligible = drowsy(shop)
    active = shop.customer()
    shop.order(active, days_ago=5)
    loyal = shop.customer()
    for days in (70, 200, 300, 400):
        shop.order(loyal, days_ago=days)
    no_consent = drowsy(shop, consent=False)
    gone = drowsy(shop, email="Gone@Example.com")
    with engine.begin() as conn:
        suppressions.add(conn, "gone@example.com", "unsubscribed", "test", NOW)

    assert why(engine, settings, chosen, eligible)["winback"].why == Why.would_receive
    assert "10% off coupon" in why(engine, settings, chosen, eligible)["winback"].detail
    answer = why(engine, settings, chosen, active)["winback"]
    assert answer.why == Why.not_eligible and "dormancy tier is active" in answer.detail
    answer = why(engine, settings, chosen, loyal)["winback"]
    assert answer.why == Why.not_in_segment
    assert answer.detail == "not in the segment: whose number of orders is at most 3"
    # Consent is a segment condition here, and the planner's own rule besides.
    assert why(engine, settings, chosen, no_consent)["winback"].why == Why.not_in_segment
    open_to_all = [load(WINBACK.replace("        - accepts_marketing: true\n", ""))]
    assert why(engine, settings, open_to_all, no_consent)["winback"].why == Why.no_consent
    assert why(engine, settings, chosen, gone)["winback"].why == Why.suppressed

    runner.run(engine, settings, chosen, NOW, MemoryTransport())
    answer = why(engine, settings, chosen, eligible)["winback"]
    assert answer.why == Why.already_received and "drowsy:" in answer.detail

    schedule.pause(engine, "winback", "new offer coming", NOW)
    answer = why(engine, settings, chosen, eligible)["winback"]
    assert answer.why == Why.paused and "new offer coming" in answer.detail


def test_holdout_cap_and_quiet_hours_are_named(engine, settings, project):
    shop = Shop(engine)
    people = [drowsy(shop) for _ in range(12)]
    held = next(p for p in people if planner.in_holdout("winback", p, 0.5))
    chosen = [load(WINBACK, holdout=0.5)]
    assert why(engine, settings, chosen, held)["winback"].why == Why.held_out

    big_spender = drowsy(shop)
    shop.order(big_spender, days_ago=0, total=6000)  # spent this month: the gift wants them
    shop.order(big_spender, at=NOW - timedelta(days=75), total=100)
    capped = settings.model_copy(update={"limits": config.Limits(
        max_emails_per_customer=config.FrequencyCap(count=1, days=7))})
    free = next(p for p in people if not planner.in_holdout("winback", p, 0.5))
    answers = why(engine, capped, [load(SPEND), load(WINBACK)], free)
    assert answers["winback"].why == Why.would_receive  # the gift does not want them
    shop.order(free, days_ago=1, total=6000)
    answers = why(engine, capped, [load(SPEND), load(WINBACK)], free, NOW)
    assert answers["gift"].why == Why.would_receive
    assert answers["winback"].why == Why.not_eligible  # the new order woke them up

    night = datetime(2026, 6, 15, 2, 0, tzinfo=UTC)
    quiet = settings.model_copy(update={"quiet_hours": config.QuietHours(start="21:00",
                                                                         end="08:00")})
    answer = why(engine, quiet, [load(WINBACK)], free, night)["winback"]
    assert answer.why == Why.not_eligible
    sleeper = next(p for p in people if p not in (held, free)
                   and not planner.in_holdout("winback", p, 0.5))
    answer = why(engine, quiet, [load(WINBACK, 0.5)], sleeper, night)["winback"]
    assert answer.why == Why.quiet_hours and "08:00" in answer.detail


def test_a_higher_priority_campaign_takes_the_cap(engine, settings, project):
    shop = Shop(engine)
    both = drowsy(shop)
    shop.order(both, days_ago=2, total=1000)
    shop.order(both, at=NOW - timedelta(days=1), total=5000)
    settings = settings.model_copy(update={"limits": config.Limits(
        max_emails_per_customer=config.FrequencyCap(count=1, days=7))})
    gift = load(SPEND)
    second = load(SPEND.replace("id: gift", "id: second-gift").replace("priority: 90",
                                                                         "priority: 10"))
    answers = why(engine, settings, [second, gift], both)
    assert answers["gift"].why == Why.would_receive
    assert answers["second-gift"].why == Why.deferred
    assert "taken by gift" in answers["second-gift"].detail
    dropped = load(SPEND.replace("id: gift", "id: dropped").replace("priority: 90",
                                                                    "priority: 5")
                   + "    on_cap: drop\n")
    answers = why(engine, settings, [dropped, gift], both)
    assert answers["dropped"].why == Why.capped
    assert "frequency cap: 1 emails in the last 7 days" in answers["dropped"].detail


def test_why_command_prints_json(engine, settings, project, config_path):
    shop = Shop(engine)
    who = drowsy(shop)
    result = CliRunner().invoke(app, ["--config", str(config_path), "why", str(who),
                                      "--as-of", "2026-06-15", "--json"])
    assert result.exit_code == 0, result.output
    assert '"why": "would_receive"' in result.output


def test_why_names_a_bundle_that_would_save_too_little(engine, settings):
    shop = Shop(engine)
    shop.product("MAT", price=4000, name="Yoga mat")
    shop.product("STRAP", price=1000, name="Yoga strap")
    who = shop.customer()
    shop.order(who, days_ago=10, items={"MAT": 4000})
    bundle = load("""
        id: sets
        kind: bundle
        template: bundle.html
        subject: "Complete the set"
        bundles:
          - {id: pair, skus: [MAT, STRAP], price: 50}
    """)
    answer = why(engine, settings, [bundle], who)["sets"]
    assert answer.why == Why.small_saving
    assert "lower price" in answer.detail and "Yoga mat & Yoga strap" in answer.detail
