"""How much email a customer may get, and when: the frequency cap and quiet hours.

Owns: counting the marketing emails a customer got (or is about to get) in the cap's window,
across campaigns — campaigns are planned in priority order, so the higher priority takes the
room first — and the first moment outside quiet hours in the customer's own time zone (the
store's when the customer has none). Reads the ledger; must not write it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine, and_, func, or_, select

from engine import db
from engine.config import QuietHours, Settings
from engine.tables import Delivery, DeliveryStatus

DELIVERIES = Delivery.__table__
S = DeliveryStatus
# What uses up the cap: mail on its way (planned, sending, failed with a retry to come) counts
# whenever it was planned, since it goes out now or later; mail that went out (sent, unknown,
# bounced) counts by when it went. A held-out, suppressed, deferred or capped delivery sent
# nothing.
ON_ITS_WAY = (S.planned.value, S.sending.value, S.failed.value)
WENT_OUT = (S.sent.value, S.unknown.value, S.bounced.value)


class Caps:
    """The frequency cap for one run. ``in_memory`` also counts this run's own planned mail
    (for dry runs, where nothing is written between campaigns)."""

    def __init__(self, engine: Engine, settings: Settings, now: datetime,
                 in_memory: bool = False):
        self.engine, self.now = engine, now
        self.cap = settings.limits.max_emails_per_customer
        self.in_memory = in_memory
        self.this_run: Counter[int] = Counter()
        self.recent: dict[int, int] = {}

    @property
    def active(self) -> bool:
        return self.cap is not None

    def prepare(self, ids: list[int]) -> None:
        """Load the batch's recent counts in one query."""
        if not self.active or not ids:
            return
        since = self.now - timedelta(days=self.cap.days)
        d = DELIVERIES.c
        # Sent time, not plan time: a retry or quiet hours can send days after the plan. The
        # window is closed ([since, now]) so two sends exactly `days` apart both count.
        went_at = func.coalesce(d.sent_at, d.claimed_at, d.planned_at)
        counted = or_(and_(d.status.in_(ON_ITS_WAY), d.next_attempt_at.is_not(None)),
                      and_(d.status.in_(WENT_OUT), went_at >= since))
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(d.customer_id, func.count())
                # Transactional mail (a shipping notice) is not counted against the cap.
                .where(db.among(conn, d.customer_id, ids), counted, d.transactional.is_(False))
                .group_by(d.customer_id))
            self.recent = dict(rows.all())

    def used(self, customer_id: int) -> int:
        return self.recent.get(customer_id, 0) + self.this_run[customer_id]

    def full(self, customer_id: int) -> bool:
        """No room for one more email to this customer in the cap's window."""
        return self.active and self.used(customer_id) >= self.cap.count

    def take(self, customer_id: int) -> None:
        """One more email planned for this customer (counted here only ``in_memory``: otherwise
        the ledger has it before the next campaign's ``prepare``)."""
        if self.active and self.in_memory:
            self.this_run[customer_id] += 1

    def reason(self, customer_id: int) -> str:
        return (f"frequency cap: {self.used(customer_id)} emails in the last {self.cap.days} "
                f"days (at most {self.cap.count}); higher-priority campaigns go first")


def zone_of(customer_zone: str | None, store_zone: ZoneInfo) -> ZoneInfo:
    if customer_zone:
        try:
            return ZoneInfo(customer_zone)
        except (ZoneInfoNotFoundError, ValueError):
            pass  # an unknown zone in shop data falls back to the store's
    return store_zone


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def in_quiet_hours(moment: datetime, zone: ZoneInfo, quiet: QuietHours) -> bool:
    local = moment.astimezone(zone).time()
    start, end = _clock(quiet.start), _clock(quiet.end)
    if start < end:
        return start <= local < end
    return local >= start or local < end  # the window spans midnight


def next_allowed(moment: datetime, zone: ZoneInfo, quiet: QuietHours | None) -> datetime:
    """``moment`` itself, or the end of the quiet hours it falls in, in ``zone``."""
    if quiet is None or not in_quiet_hours(moment, zone, quiet):
        return moment
    local = moment.astimezone(zone)
    end = _clock(quiet.end)
    candidate = datetime.combine(local.date(), end, tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=zone)
    return candidate


def quiet_zones(zones: Iterable[str | None], store_zone: ZoneInfo, quiet: QuietHours | None,
                now: datetime) -> dict[str | None, datetime]:
    """Of these customer time zones (None: unknown), those in quiet hours at ``now``, each with
    the moment its quiet hours end. Mail is grouped by zone: a few zones, not a row each."""
    if quiet is None:
        return {}
    held = {}
    for name in zones:
        zone = zone_of(name, store_zone)
        until = next_allowed(now, zone, quiet)
        if until > now:
            held[name] = until
    return held
