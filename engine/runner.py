"""One run: plan every campaign at ``now``, then claim → render → send → record each delivery.

The same code path serves ``retain run`` and every scheduled tick. Order of work: mark the
``sending`` rows of dead runs ``unknown``; plan campaigns by priority and write the plans to the
ledger; then send what is due, each message claimed in its own committed transaction before its
DATA goes out and recorded after the server's reply. A bounce suppresses the address; a policy
refusal (5.7.x) or too many bounces pauses the run without suppressing anyone.

Reads no clock of its own: ``now`` fixes the plan, and an injected ``clock`` stamps sends and
schedules retries (the CLI passes the wall clock, tests a fake one).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from . import campaigns as cm
from . import compose, ledger, planner, render, suppressions
from .config import Settings
from .tables import Coupon, DeliveryStatus
from .transport import OutgoingMessage, SendStatus, Transport, backoff

S = DeliveryStatus
Clock = Callable[[], datetime]
PAGE = 200


@dataclass
class CampaignReport:
    id: str
    planned: int = 0
    held_out: int = 0
    suppressed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    unknown: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunReport:
    run_id: str
    campaigns: dict[str, CampaignReport] = field(default_factory=dict)
    recovered_unknown: int = 0
    paused: str | None = None
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "dry_run": self.dry_run, "paused": self.paused,
                "recovered_unknown": self.recovered_unknown,
                "campaigns": [c.as_dict() for c in self.campaigns.values()]}


class _Pause(Exception):
    pass


class Sender:
    """Turns claimed deliveries into messages and records what the transport says."""

    def __init__(self, engine: Engine, settings: Settings, campaigns: dict[str, cm.Campaign],
                 transport: Transport, run_id: str, clock: Clock, report: RunReport):
        self.engine, self.settings, self.campaigns = engine, settings, campaigns
        self.transport, self.run_id, self.clock, self.report = transport, run_id, clock, report
        self.renderer = render.Renderer(settings.folder("templates"),
                                        compose.store_context(settings))
        self.delivery = settings.delivery
        self.lock = threading.Lock()
        self.paused: str | None = None
        self.stop: threading.Event | None = None  # set by a graceful shutdown
        self.attempted = 0
        self.bounced = 0

    def send_page(self, ids: list[int]) -> None:
        with self.engine.connect() as conn:
            prefetched = _Prefetch(conn, ids)
        for delivery_id in ids:
            if self.halted():
                return
            self._send_one(delivery_id, prefetched)

    def halted(self) -> bool:
        """Paused by the server's answers, or asked to stop: claim nothing more."""
        return bool(self.paused) or (self.stop is not None and self.stop.is_set())

    def _send_one(self, delivery_id: int, prefetched: _Prefetch) -> None:
        now = self.clock()
        with self.engine.begin() as conn:
            claimed = ledger.claim(conn, delivery_id, self.run_id, now)
            if claimed is None:
                return  # another run took it
            customer = prefetched.customer(conn, claimed.customer_id)
            # Checked again right before sending: an unsubscribe during the run counts at once.
            if suppressions.is_suppressed(conn, customer["email"]):
                ledger.mark(conn, claimed.id, S.suppressed, now, reason="suppressed before send")
                self._count(claimed.campaign_id, "suppressed")
                return
        campaign = self.campaigns[claimed.campaign_id]
        message = self._message(campaign, claimed, customer, prefetched, now)
        outcome = self.transport.send(message)
        self._record(claimed, customer, message, outcome)

    def _message(self, campaign: cm.Campaign, claimed: ledger.Claimed, customer: dict,
                 prefetched: _Prefetch, now: datetime) -> OutgoingMessage:
        context = compose.context(self.settings, campaign, customer, claimed.payload,
                                  prefetched.codes.get(claimed.id), now, prefetched.products)
        rendered = self.renderer.render(campaign.template,
                                        compose.subject_for(campaign, claimed.payload), context)
        message_id = compose.message_id(self.settings, claimed.id, claimed.campaign_id)
        data = compose.mime(self.settings, rendered, customer, message_id, campaign.id, now)
        return OutgoingMessage(mail_from=compose.return_path(self.settings),
                               rcpt_to=customer["email"], data=data, message_id=message_id)

    def _record(self, claimed: ledger.Claimed, customer: dict, message: OutgoingMessage,
                outcome) -> None:
        now = self.clock()
        status = outcome.status
        detail = f"{outcome.code or ''} {outcome.enhanced or ''} {outcome.detail}".strip()
        with self.engine.begin() as conn:
            if status == SendStatus.sent:
                ledger.mark(conn, claimed.id, S.sent, now, message_id=message.message_id)
            elif status == SendStatus.bounced:
                ledger.mark(conn, claimed.id, S.bounced, now, reason=detail,
                            message_id=message.message_id)
                suppressions.add(conn, customer["email"], "bounced", f"smtp {detail[:60]}", now)
            elif status == SendStatus.unknown:
                ledger.mark(conn, claimed.id, S.unknown, now, reason=detail,
                            message_id=message.message_id)
            else:  # failed (transient) or blocked (about us): try again later
                delay = max(outcome.retry_after or 0,
                            backoff(claimed.attempts, self.delivery.retry_base_seconds,
                                    self.delivery.retry_cap_seconds))
                retry_at = now + timedelta(seconds=delay)
                if claimed.attempts >= self.delivery.max_attempts:
                    retry_at, detail = None, f"gave up after {claimed.attempts} attempts: {detail}"
                ledger.mark(conn, claimed.id, S.failed, now, reason=detail, retry_at=retry_at)
        self._count(claimed.campaign_id, {SendStatus.blocked: "failed"}.get(status, status.value))
        with self.lock:
            self.attempted += 1
            self.bounced += status == SendStatus.bounced
            if status == SendStatus.blocked:
                self.paused = (f"the mail server refused us ({detail}); fix the sender or "
                               "account, then run again — nobody was suppressed")
            elif (self.attempted >= self.delivery.bounce_rate_min_sends and
                  self.bounced / self.attempted > self.delivery.max_bounce_rate):
                self.paused = (f"{self.bounced} of {self.attempted} messages bounced, more "
                               f"than {self.delivery.max_bounce_rate:.0%}; clean the list, "
                               "then run again")

    def _count(self, campaign_id: str, what: str) -> None:
        with self.lock:
            report = self.report.campaigns.setdefault(campaign_id, CampaignReport(campaign_id))
            setattr(report, what, getattr(report, what) + 1)


class _Prefetch:
    """A page's customers, coupon codes and products in three queries."""

    def __init__(self, conn, ids: list[int]):
        d, coupons = ledger.DELIVERIES, Coupon.__table__
        rows = conn.execute(select(d.c.customer_id, d.c.payload).where(d.c.id.in_(ids))).all()
        self.customers = compose.customer_rows(conn, sorted({r.customer_id for r in rows}))
        self.codes = dict(conn.execute(select(coupons.c.delivery_id, coupons.c.code)
                                       .where(coupons.c.delivery_id.in_(ids))).all())
        self.products = compose.product_rows(
            conn, compose.skus_of([json.loads(r.payload) for r in rows]))

    def customer(self, conn, customer_id: int) -> dict:
        if customer_id not in self.customers:
            self.customers.update(compose.customer_rows(conn, [customer_id]))
        return self.customers[customer_id]


def run(engine: Engine, settings: Settings, chosen: Iterable[cm.Campaign], now: datetime,
        transport: Transport | None, *, clock: Clock | None = None, dry_run: bool = False,
        sleep: Callable[[float], None] | None = None,
        progress: Callable[[int], None] | None = None,
        stop: threading.Event | None = None) -> RunReport:
    """Plan and deliver ``chosen`` campaigns at ``now``. ``dry_run`` plans without writing."""
    chosen = sorted(chosen, key=lambda c: -c.priority)
    clock = clock or (lambda: now)
    run_id = ledger.start_run(engine, [c.id for c in chosen], now) if not dry_run else "dry-run"
    report = RunReport(run_id=run_id, dry_run=dry_run)
    if not dry_run:
        report.recovered_unknown = ledger.recover(engine, now, current_run=run_id)
    for campaign in chosen:
        stats = planner.PlanStats()
        batches = planner.plan(engine, settings, campaign, now, stats)
        if dry_run:
            for _ in batches:
                pass
        else:
            ledger.record_plan(engine, batches, now)
        entry = report.campaigns.setdefault(campaign.id, CampaignReport(campaign.id))
        entry.planned, entry.held_out = stats.recipients, stats.held_out
        entry.suppressed, entry.skipped = stats.suppressed, dict(stats.skipped)
    if dry_run or transport is None:
        return report
    sender = Sender(engine, settings, {c.id: c for c in chosen}, transport, run_id, clock, report)
    sender.stop = stop
    try:
        _deliver(engine, sender, [c.id for c in chosen], clock, sleep, progress)
    finally:
        report.paused = sender.paused
        ledger.finish_run(engine, run_id, clock(), report.as_dict(), sender.paused)
    return report


def _deliver(engine: Engine, sender: Sender, campaign_ids: list[str], clock: Clock,
             sleep: Callable[[float], None] | None, progress: Callable[[int], None] | None
             ) -> None:
    """Send everything due; retry transient failures within the run while they fall due soon."""
    deadline = clock() + timedelta(seconds=sender.delivery.retry_within_run_seconds)
    while not sender.halted():
        after = 0
        while not sender.halted():
            ids = ledger.due(engine, campaign_ids, clock(), after_id=after, limit=PAGE)
            if not ids:
                break
            sender.send_page(ids)
            after = ids[-1]
            if progress:
                progress(len(ids))
        retry_at = ledger.next_retry(engine, campaign_ids)
        if retry_at is None or sleep is None or retry_at > deadline:
            return
        wait = (retry_at - clock()).total_seconds()
        if wait > 0:
            sleep(wait)
