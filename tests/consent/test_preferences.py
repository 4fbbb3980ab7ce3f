"""Pausing all mail: a customer's "not now", honoured by the planner and `retain why`."""

from __future__ import annotations

import textwrap
from datetime import timedelta

from engine.campaigns import models as campaigns
from engine.campaigns import planner
from engine.consent import preferences, suppressions
from engine.tables import Skip
from engine.views import explain
from tests.shopdata import NOW, Shop

WINBACK = textwrap.dedent("""
    id: winback
    kind: winback
    template: winback.html
    subject: "We miss you"
    steps:
      - {tier: drowsy, coupon: {percent_off: 10}}
""")


def test_a_paused_customer_is_skipped_until_the_pause_ends(engine, settings):
    shop = Shop(engine)
    who = shop.customer(email="Pia@Example.com")
    shop.order(who, days_ago=70, total=3000)
    campaign = campaigns.parse_text(WINBACK)

    until = preferences.pause(engine, who, 30, NOW)
    assert until == NOW + timedelta(days=30)
    state = preferences.state(engine, who, NOW)
    assert state.paused_until == until and not state.unsubscribed

    paused = planner.for_customer(engine, settings, campaign, NOW, who)
    assert paused.skip == Skip.paused
    _, [answer] = explain.explain(engine, settings, [campaign], str(who), NOW)
    assert answer.why == explain.Why.mail_paused and "15 July 2026" in answer.detail

    later = NOW + timedelta(days=31)
    assert planner.for_customer(engine, settings, campaign, later, who).skip is None
    assert preferences.state(engine, who, later).paused_until is None


def test_unsubscribed_is_a_state_the_page_can_show(engine):
    who = Shop(engine).customer(email="ann@example.com")
    suppressions.unsubscribe(engine, who, NOW, source="one-click")
    assert preferences.state(engine, who, NOW).unsubscribed
