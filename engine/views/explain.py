"""``retain why``: for one customer, every campaign and the reason they would or would not get it.

Owns the closed vocabulary of answers (``Why``) and the order they are checked in, which is the
order the planner applies them: paused, suppressed (what and when: "unsubscribed on 2026-06-14
(one click)"; the segment's consent condition would otherwise hide it), outside the segment
(naming the conditions that fail), not eligible for the kind (not dormant, under the spend
floor...), no consent, all mail paused by the customer, an offer that would save too little,
already received this occasion, cooldown, nothing to offer, held out, capped or deferred by a
higher-priority campaign, over budget, waiting for quiet hours to end; and, over all of them,
stale shop data (the stale-data guard holds every campaign back). Runs the planner for that
one customer with the segment ignored, so the answer is the planner's own. Must not write.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, func, select

from engine.campaigns import limits, planner
from engine.campaigns import models as cm
from engine.config import Settings
from engine.consent import preferences, suppressions
from engine.mail.templating import format_date
from engine.service import schedule
from engine.shop import freshness, metrics, segments
from engine.tables import Customer, CustomerMetrics, Delivery, DeliveryStatus, Skip

CUSTOMERS, METRICS, DELIVERIES = Customer.__table__, CustomerMetrics.__table__, Delivery.__table__
S = DeliveryStatus


class Why(StrEnum):
    would_receive = "would_receive"          # planned now (or when quiet hours end)
    paused = "paused"                        # the campaign is paused
    not_in_segment = "not_in_segment"        # a segment condition fails
    not_eligible = "not_eligible"            # the kind's own rule (dormancy tier, spend)
    no_consent = "no_consent"
    already_received = "already_received"    # this occasion is in the ledger
    cooldown = "cooldown"
    nothing_to_offer = "nothing_to_offer"
    suppressed = "suppressed"
    held_out = "held_out"                    # in the control group
    capped = "capped"                        # frequency cap, dropped
    deferred = "deferred"                    # frequency cap, tried next run
    over_budget = "over_budget"
    small_saving = "small_saving"            # the bundle's offer would save them too little
    mail_paused = "mail_paused"              # the customer paused all mail for a while
    quiet_hours = "quiet_hours"              # would get it, once quiet hours end
    stale_data = "stale_data"                # the shop's data is too old: campaigns wait
    too_late = "too_late"                    # a flow's step came more than max_late late


@dataclass(frozen=True)
class Answer:
    campaign: str
    kind: str
    priority: int
    why: Why
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "why": self.why.value}


def explain(engine: Engine, settings: Settings, chosen: list[cm.Campaign], customer_ref: str,
            now: datetime) -> tuple[int, list[Answer]]:
    """(customer id, one answer per campaign, highest priority first)."""
    customer_id = metrics.for_customer(engine, settings, customer_ref, now)["customer_id"]
    paused = schedule.paused(engine)
    with engine.connect() as conn:
        suppressed = suppressions.entry_for(conn, customer_id)
    caps = limits.Caps(engine, settings, now, in_memory=True)
    stale = freshness.check(engine, settings, now)
    answers, takers = [], []
    for campaign in sorted(chosen, key=lambda c: -c.priority):
        answer = _answer(engine, settings, campaign, customer_id, now, paused, caps, takers,
                         suppressed)
        if answer.why in (Why.would_receive, Why.quiet_hours):
            takers.append(campaign.id)
        if stale is not None and answer.why != Why.paused:
            answer = Answer(answer.campaign, answer.kind, answer.priority, Why.stale_data,
                            f"{stale.sentence(settings.store.zone)}. With fresh data: "
                            f"{answer.why.value.replace('_', ' ')}: {answer.detail}")
        answers.append(answer)
    return customer_id, answers


def _answer(engine: Engine, settings: Settings, campaign: cm.Campaign, customer_id: int,
            now: datetime, paused: dict[str, str], caps: limits.Caps,
            takers: list[str], suppressed: suppressions.Entry | None = None) -> Answer:
    def answer(why: Why, detail: str) -> Answer:
        return Answer(campaign.id, campaign.kind, campaign.priority, why, detail)

    if campaign.id in paused:
        return answer(Why.paused, f"the campaign is paused: {paused[campaign.id]}")
    if suppressed is not None and suppressions.blocks(suppressed.reason,
                                                      campaign.transactional):
        return answer(Why.suppressed, suppressed.describe(settings.store.zone))
    if campaign.segment is not None:
        failing = failing_conditions(engine, campaign.segment, customer_id, now)
        if failing:
            return answer(Why.not_in_segment, "not in the segment: " + "; ".join(failing))
    candidate = planner.as_if_in_segment(engine, settings, campaign, now, customer_id,
                                         caps=caps)
    if candidate is None:
        return answer(Why.not_eligible, _not_eligible(engine, campaign, customer_id))
    if candidate.skip is not None:
        return _skipped(engine, settings, campaign, candidate, answer, now)
    status = candidate.status
    if status == S.suppressed:
        return answer(Why.suppressed, "the address is on the suppression list (unsubscribed, "
                      "bounced or imported)")
    if status == S.held_out:
        return answer(Why.held_out, f"in the control group ({campaign.holdout:.0%} of the "
                      "audience gets nothing, to measure the campaign's lift)")
    if status in (S.capped, S.deferred):
        by = f"; taken by {', '.join(takers)}" if takers else ""
        return answer(Why(status.value), f"{candidate.reason}{by}")
    what = _what(candidate)
    if candidate.not_before is not None:
        local = candidate.not_before.astimezone(settings.store.zone)
        return answer(Why.quiet_hours, f"would get {what} after quiet hours, at "
                      f"{local:%Y-%m-%d %H:%M %Z} (store time)")
    return answer(Why.would_receive, f"would get {what}")


def _skipped(engine: Engine, settings: Settings, campaign: cm.Campaign,
             candidate: planner.Candidate, answer, now: datetime) -> Answer:
    skip = candidate.skip
    if skip == Skip.no_consent:
        return answer(Why.no_consent, "has not agreed to receive marketing email")
    if skip == Skip.already_received:
        status, when, reason = _past(engine, campaign.id, candidate.customer_id,
                                     candidate.occasion)
        if status == S.failed.value and reason:
            return answer(Why.already_received, f"this occasion ({candidate.occasion}) was "
                          f"planned on {when} and failed: {reason}")
        if status == S.held_out.value:
            return answer(Why.held_out, f"in the control group for this occasion "
                          f"({candidate.occasion}) since {when}: gets nothing, to measure lift")
        return answer(Why.already_received, f"already got this occasion ({candidate.occasion}) "
                      f"on {when} (status {status})")
    if skip == Skip.cooldown:
        return answer(Why.cooldown, f"got this campaign within its {campaign.cooldown_days}-day "
                      "cooldown")
    if skip == Skip.paused:
        chosen = preferences.state(engine, candidate.customer_id, now)
        until = chosen.paused_until
        return answer(Why.mail_paused, "asked to pause all mail" + (
            f" until {format_date(until.astimezone(settings.store.zone).date())}"
            if until else ""))
    if skip == Skip.small_saving:
        return answer(Why.small_saving, candidate.reason or "the offer would save too little")
    if skip == Skip.too_late:
        return answer(Why.too_late, f"the step {candidate.occasion} was due more than "
                      f"{cm.duration_text(campaign.max_late)} ago (max_late): the shop's data "
                      "came too late, so it is skipped rather than sent out of time")
    if skip == Skip.over_budget:
        return answer(Why.over_budget, "the run's offer budget would be spent before them")
    return answer(Why.nothing_to_offer, {
        "new_product": "no new product in the categories they bought from, or all of them "
                       "were announced to them already",
        "bundle": "owns none or all of every bundle",
    }.get(campaign.kind, "nothing to offer them at this date"))


def _what(candidate: planner.Candidate) -> str:
    offer = candidate.offer
    if candidate.products and offer is None:
        return "a digest of " + ", ".join(candidate.products)
    if offer is None:
        return "a nudge" if candidate.nudge else "the email"
    if offer.kind == "coupon":
        value = f"{offer.percent_off}% off" if offer.percent_off else "an amount off"
        return f"a {value} coupon ({candidate.occasion})"
    if offer.kind == "gift":
        return f"a gift: {offer.gift_name} ({offer.period})"
    return f"the rest of bundle {offer.bundle_name}: {', '.join(offer.bundle_skus)}"


def _past(engine: Engine, campaign_id: str, customer_id: int,
          occasion: str | None) -> tuple[str, str, str | None]:
    """The ledger's status, date and reason for an occasion already recorded."""
    with engine.connect() as conn:
        row = conn.execute(select(DELIVERIES.c.status, DELIVERIES.c.planned_at,
                                  DELIVERIES.c.reason).where(
            DELIVERIES.c.campaign_id == campaign_id, DELIVERIES.c.customer_id == customer_id,
            DELIVERIES.c.occasion == occasion)).first()
    if row is None:
        return "?", "?", None
    return (str(getattr(row.status, "value", row.status)), f"{row.planned_at:%Y-%m-%d}",
            row.reason)


def _not_eligible(engine: Engine, campaign: cm.Campaign, customer_id: int) -> str:
    if isinstance(campaign, cm.Winback):
        with engine.connect() as conn:
            tier = conn.execute(select(METRICS.c.dormancy).where(
                METRICS.c.customer_id == customer_id)).scalar()
        tiers = ", ".join(s.tier for s in campaign.steps)
        return (f"their dormancy tier is {getattr(tier, 'value', tier)}; this campaign has "
                f"steps for {tiers}")
    if isinstance(campaign, cm.SpendThreshold):
        return (f"their counted spend this period is below the threshold of {campaign.threshold}"
                + (f" (and more than {campaign.nudge.within} away)" if campaign.nudge else ""))
    return "the campaign's rules do not select them at this date"


def failing_conditions(engine: Engine, segment: segments.Segment, customer_id: int,
                       now: datetime) -> list[str]:
    """In English, the top-level conditions of ``segment`` this customer does not meet."""
    root = segment.root
    parts = list(root.children) if isinstance(root, segments.Group) and root.kind == "all" \
        else [root]
    failing = []
    with engine.connect() as conn:
        for part in parts:
            one = segments.Segment(root=part, path=segment.path)
            hit = conn.execute(select(func.count()).select_from(segments.SOURCE).where(
                CUSTOMERS.c.id == customer_id, one.where(now))).scalar()
            if not hit:
                failing.append(one.explain().removeprefix("customers "))
    return failing
