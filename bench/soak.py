"""Soak: the unattended scheduler on a living shop, 90 simulated days, no real sleeping.

Builds the synthetic demo shop (3,000 customers by default) in a fresh SQLite file, configures a
frequency cap (3 emails per customer in any 7 days) and quiet hours (21:00-08:00 in the
customer's zone) on a copy of the repository's settings, starts a real SMTP server on loopback
and a ``Scheduler`` whose clock is simulated, then walks the days: each day's new orders and
sign-ups arrive through the day (``demo.add_day``, between the ticks), every cron tick of the
enabled campaigns fires at its moment (``simulate.ticks``), and the scheduler's ``send_due``
runs every 3 simulated hours so mail held back by quiet hours, and retries, go out. By default
the server also misbehaves a little, always for the same addresses: 0.2 % bounce (550 5.1.1),
0.3 % get a 451 on their first message (retried), 0.1 % see the connection dropped after DATA
(outcome unknown); ``--faults`` sets these rates, ``--no-faults`` turns them off.

At the end it checks the ledger and what the server received, prints the figures (simulated
days, ticks, runs, messages, wall time, peak memory) and exits 1 if a check fails:
  1. cap: no customer got more than ``count`` emails (status sent, by sent_at) in any
     ``days``-long window;
  2. once: no (campaign, customer, occasion) twice in the ledger, no Message-ID twice at the
     server, and the server holds exactly the ledger's sent messages;
  3. reached: nothing left planned/sending/failed past its next attempt, nobody given up on,
     and every deferred delivery was deferred at its campaign's last tick (still waiting for
     room under the cap) or replaced by a later delivery of the same campaign;
  4. quiet: no email sent (ledger sent_at, and the Date header at the server) between 21:00
     and 08:00 in the customer's zone.

    .venv/bin/python bench/soak.py [--customers 3000] [--days 90] [--quick] [--db PATH]
                                   [--faults 2,3,1 | --no-faults] [--start 2026-03-01] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import logging
import pstats
import re
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import text

from engine import config, db
from engine.campaigns import planner
from engine.delivery import ledger
from engine.demo import showcase as demo
from engine.service import schedule
from engine.service.scheduler import Scheduler
from engine.transport.mailserver import DROP, MailServer
from engine.transport.smtp import SmtpTransport
from engine.views import simulate

ROOT = Path(__file__).resolve().parent.parent
CAP = config.FrequencyCap(count=3, days=7)
QUIET = config.QuietHours(start="21:00", end="08:00")
SEND_DUE_EVERY = timedelta(hours=3)
# Starts on 1 March: the US (8 March) and Europe (29 March) move their clocks during the run.
DEFAULT_START = date(2026, 3, 1)


class SimClock:
    """The scheduler's clock: it only moves when the soak moves it."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:  # for the transport's rate limit and domain back-off
        return self.now.timestamp()


def settings_for(url: str, port: int) -> config.Settings:
    """The repository's settings, on the soak's database and server, with a cap and quiet
    hours."""
    base = config.load(ROOT / "config.yaml", environ={})
    smtp = base.smtp.model_copy(update={"host": "127.0.0.1", "port": port, "security": "none",
                                        "username": None, "password": None})
    return base.model_copy(update={
        "database": config.Database(url=url), "smtp": smtp,
        "limits": config.Limits(max_emails_per_customer=CAP), "quiet_hours": QUIET})


# -- the misbehaving server ------------------------------------------------------------------

class Faults:
    """The server's script: the same addresses always bounce, get a 451 or a dropped
    connection (the last two on their first message only). Rates are per thousand addresses."""

    def __init__(self, bounce: int = 2, busy: int = 3, drop: int = 1):
        self.limits = (bounce, bounce + busy, bounce + busy + drop)
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    @property
    def enabled(self) -> bool:
        return self.limits[2] > 0

    def __call__(self, stage: str, address: str) -> str | None:
        if not self.enabled or stage not in ("rcpt", "data"):
            return None
        roll = int.from_bytes(hashlib.sha256(address.lower().encode()).digest()[:4]) % 1000
        bounce, busy, drop = self.limits
        if stage == "rcpt":
            if roll < bounce:
                self.counts["bounce"] += 1
                return "550 5.1.1 No such user here"
            return None
        with self.lock:
            first = address not in self.seen
            self.seen.add(address)
        if first and bounce <= roll < busy:
            self.counts["451"] += 1
            return "451 4.3.0 Mailbox busy, try again later"
        if first and busy <= roll < drop:
            self.counts["drop"] += 1
            return DROP
        return None


@dataclass
class Received:
    """What the server took, reduced to what the checks need (the bodies are let go)."""
    ids: Counter[str] = field(default_factory=Counter)
    dated: list[tuple[int, datetime]] = field(default_factory=list)  # delivery id, Date header

    def drain(self, server: MailServer) -> None:
        # Called between runs, when no message is in flight.
        taken = server.messages[:]
        del server.messages[:len(taken)]
        for message in taken:
            head = message.data.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
            message_id = _header(head, "Message-ID")
            self.ids[message_id] += 1
            number = re.match(r"<d(\d+)\.", message_id)
            self.dated.append((int(number.group(1)) if number else -1,
                               parsedate_to_datetime(_header(head, "Date"))))


def _header(head: str, name: str) -> str:
    found = re.search(rf"^{name}:\s*(.+)$", head, re.IGNORECASE | re.MULTILINE)
    return found.group(1).strip() if found else ""


# -- the walk through the days ---------------------------------------------------------------

@dataclass
class Tally:
    ticks: int = 0
    send_due_calls: int = 0
    orders: int = 0
    returning: int = 0
    signups: int = 0
    by_campaign: dict[str, Counter] = field(default_factory=dict)


def walk(engine, settings, scheduler: Scheduler, clock: SimClock, server: MailServer,
         received: Received, first_day: date, days: int, seed: int) -> Tally:
    zone, tally = settings.store.zone, Tally()
    chosen = list(scheduler.campaigns.values())
    started = time.perf_counter()
    for n in range(days):
        day = first_day + timedelta(days=n)
        day_start = datetime.combine(day, datetime.min.time(), tzinfo=zone)
        day_end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone)
        events = [(tick, 0, campaign.id) for tick, campaign
                  in simulate.ticks(chosen, zone, day_start, day_end)]
        moment = day_start.astimezone(UTC)
        while moment < day_end:
            events.append((moment, 1, None))
            moment += SEND_DUE_EVERY
        events.sort(key=lambda e: (e[0], e[1]))  # stable: ticks keep their priority order
        since = day_start
        for at, _, campaign_id in events:
            if campaign_id and at > since:  # orders placed since arrive before a plan
                _add(engine, settings, day, seed, since, at, tally)
                since = at
            clock.now = at
            if campaign_id:
                tally.ticks += 1
                report = scheduler.fire(campaign_id)
            else:
                tally.send_due_calls += 1
                report = scheduler.send_due()
            received.drain(server)
            if report is not None:
                for entry in report.campaigns.values():
                    counts = tally.by_campaign.setdefault(entry.campaign_id, Counter())
                    counts.update({k: v for k, v in entry.run_dict().items()
                                   if isinstance(v, int)})
        _add(engine, settings, day, seed, since, day_end, tally)
        if (n + 1) % 10 == 0 or n + 1 == days:
            print(f"  day {n + 1:3d} ({day}): {sum(received.ids.values()):,} messages so far, "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    clock.now = datetime.combine(first_day + timedelta(days=days), datetime.min.time(),
                                 tzinfo=zone)
    scheduler.send_due()  # the end: whatever fell due at the last moment goes out
    received.drain(server)
    return tally


def _add(engine, settings, day, seed, since, until, tally: Tally) -> None:
    stats = demo.add_day(engine, settings, day, seed=seed, since=since, until=until)
    tally.orders += stats.orders
    tally.returning += stats.returning
    tally.signups += stats.signups


# -- the checks ------------------------------------------------------------------------------

def rows(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def check_cap(engine) -> list[str]:
    """Sends sorted per customer: send i and send i+count closer than ``days`` break the cap."""
    found = rows(engine, """
        SELECT customer_id, earlier, sent_at FROM (
            SELECT customer_id, sent_at,
                   LAG(sent_at, :count) OVER (PARTITION BY customer_id ORDER BY sent_at)
                       AS earlier
            FROM deliveries WHERE status = 'sent')
        WHERE earlier IS NOT NULL AND julianday(sent_at) - julianday(earlier) < :days
        ORDER BY customer_id""", count=CAP.count, days=CAP.days)
    problems = [f"customer {c}: {CAP.count + 1} emails between {a} and {b}" for c, a, b in found]
    return _summarise(problems)


def check_once(engine, received: Received) -> list[str]:
    problems = [f"{campaign}/{customer}/{occasion} is in the ledger {n} times"
                for campaign, customer, occasion, n in rows(engine, """
        SELECT campaign_id, customer_id, occasion, count(*) FROM deliveries
        GROUP BY campaign_id, customer_id, occasion HAVING count(*) > 1""")]
    problems += [f"the server received {mid} {n} times"
                 for mid, n in received.ids.items() if n > 1]
    ledger_ids = {status: {mid for (mid,) in rows(
        engine, "SELECT message_id FROM deliveries WHERE status = :s", s=status)}
        for status in ("sent", "unknown")}
    missing = ledger_ids["sent"] - set(received.ids)
    stray = set(received.ids) - ledger_ids["sent"] - ledger_ids["unknown"]
    problems += [f"the ledger says {mid} was sent; the server never got it"
                 for mid in sorted(missing)]
    problems += [f"the server got {mid}, which the ledger does not call sent"
                 for mid in sorted(stray)]
    return _summarise(problems)


def check_reached(engine, settings, chosen, first_day: date, end: datetime,
                  notes: list[str]) -> list[str]:
    end_value = _db_time(end)
    problems = [f"{n} deliveries of {campaign} still {status} past their next attempt"
                for campaign, status, n in rows(engine, """
        SELECT campaign_id, status, count(*) FROM deliveries
        WHERE status = 'sending' OR (status IN ('planned', 'failed')
                                     AND next_attempt_at <= :end)
        GROUP BY campaign_id, status""", end=end_value)]
    problems += [f"{n} deliveries of {campaign} given up after failing {attempts} times"
                 for campaign, attempts, n in rows(engine, """
        SELECT campaign_id, max(attempts), count(*) FROM deliveries
        WHERE status = 'failed' AND next_attempt_at IS NULL GROUP BY campaign_id""")]
    # A deferred delivery waits for room under the cap: each tick of its campaign plans it
    # again (sent, or deferred anew with that tick's planned_at). So one still deferred must
    # have been deferred at the campaign's last tick, or been replaced by a later delivery of
    # the campaign, or its occasion no longer applies (a winback episode ended by an order, a
    # month's gift gone with the month); the planner, asked about that customer at the last
    # tick, says which.
    zone = settings.store.zone
    start = datetime.combine(first_day, datetime.min.time(), tzinfo=zone)
    by_id = {c.id: c for c in chosen}
    last_tick = {}
    for tick, campaign in simulate.ticks(chosen, zone, start, end):
        last_tick[campaign.id] = tick
    fates: Counter[str] = Counter()
    for campaign_id, customer_id, occasion, planned_at, later in rows(engine, """
            SELECT d.campaign_id, d.customer_id, d.occasion, d.planned_at, EXISTS (
                SELECT 1 FROM deliveries l WHERE l.campaign_id = d.campaign_id
                AND l.customer_id = d.customer_id AND l.planned_at > d.planned_at)
            FROM deliveries d WHERE d.status = 'deferred'
            ORDER BY d.campaign_id, d.customer_id"""):
        planned = datetime.fromisoformat(str(planned_at)).replace(tzinfo=UTC)
        if planned == last_tick.get(campaign_id):
            fates["waiting at the last tick"] += 1
        elif later:
            fates["replaced by a later delivery"] += 1
        elif not _still_offered(engine, settings, by_id[campaign_id], last_tick[campaign_id],
                                customer_id, occasion):
            fates["occasion over"] += 1
        else:
            problems.append(f"{campaign_id}/{customer_id}/{occasion}: deferred at {planned}, "
                            "still due at the last tick, never planned again")
    notes.append("deferred at the end: " + (", ".join(f"{n} {fate}" for fate, n in fates.items())
                                            or "none"))
    return _summarise(problems)


def _still_offered(engine, settings, campaign, tick: datetime, customer_id: int,
                   occasion: str) -> bool:
    """Whether the campaign, planned at ``tick`` for this customer alone, offers ``occasion``."""
    candidate = planner.for_customer(engine, settings, campaign, tick, customer_id)
    return candidate is not None and candidate.occasion == occasion \
        and candidate.status is not None


def check_quiet(engine, settings, received: Received) -> list[str]:
    store_zone = settings.store.zone
    zones: dict[str | None, ZoneInfo] = {}

    def zone_of(name: str | None) -> ZoneInfo:
        if name not in zones:
            try:
                zones[name] = ZoneInfo(name) if name else store_zone
            except (ZoneInfoNotFoundError, ValueError):
                zones[name] = store_zone
        return zones[name]

    start, end = (datetime.strptime(t, "%H:%M").time() for t in (QUIET.start, QUIET.end))

    def quiet(moment: datetime, zone_name: str | None) -> bool:
        local = moment.astimezone(zone_of(zone_name)).time()
        return local >= start or local < end  # 21:00-08:00 spans midnight

    problems = []
    zone_by_delivery = {}
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=5000).execute(text("""
            SELECT d.id, d.campaign_id, d.customer_id, d.sent_at, c.timezone
            FROM deliveries d JOIN customers c ON c.id = d.customer_id
            WHERE d.status IN ('sent', 'unknown')"""))
        for delivery_id, campaign_id, customer_id, sent_at, zone_name in result:
            zone_by_delivery[delivery_id] = zone_name
            if sent_at is None:
                continue
            moment = datetime.fromisoformat(str(sent_at)).replace(tzinfo=UTC)
            if quiet(moment, zone_name):
                local = moment.astimezone(zone_of(zone_name))
                problems.append(f"{campaign_id} to customer {customer_id} sent at "
                                f"{local:%Y-%m-%d %H:%M} {zone_name}")
    for delivery_id, dated in received.dated:
        if delivery_id in zone_by_delivery and quiet(dated, zone_by_delivery[delivery_id]):
            local = dated.astimezone(zone_of(zone_by_delivery[delivery_id]))
            problems.append(f"the server got delivery {delivery_id} dated {local:%Y-%m-%d %H:%M}"
                            f" {zone_by_delivery[delivery_id]}")
    return _summarise(problems)


def _summarise(problems: list[str], shown: int = 5) -> list[str]:
    if len(problems) <= shown:
        return problems
    return problems[:shown] + [f"... and {len(problems) - shown} more"]


def _db_time(moment: datetime) -> str:
    """How UTCDateTime stores a moment in SQLite, for comparisons in raw SQL."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ")


# -- main ------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 300 customers, 10 days")
    parser.add_argument("--faults", default="2,3,1", metavar="BOUNCE,BUSY,DROP",
                        help="per thousand addresses: 550 bounce, 451 on the first message, "
                             "connection dropped after the first DATA (default 2,3,1)")
    parser.add_argument("--no-faults", action="store_true",
                        help="a server that accepts everything (--faults 0,0,0)")
    parser.add_argument("--db", type=Path, help="SQLite file to build (default: a temp folder)")
    parser.add_argument("--start", type=date.fromisoformat, default=DEFAULT_START)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile the walk")
    args = parser.parse_args()
    if args.quick:
        args.customers, args.days = min(args.customers, 300), min(args.days, 10)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="retain-soak-") as folder:
        path = args.db or Path(folder) / "soak.db"
        if path.exists():
            print(f"{path} exists; give --db a new file", file=sys.stderr)
            return 2
        return soak(args, f"sqlite:///{path.resolve()}")


def soak(args, url: str) -> int:
    wall, cpu = time.perf_counter(), time.process_time()
    faults = Faults(*(0, 0, 0) if args.no_faults else
                    (int(n) for n in args.faults.split(",")))
    with MailServer(script=faults) as server:
        settings = settings_for(url, server.port)
        zone = settings.store.zone
        start = datetime.combine(args.start, datetime.min.time(), tzinfo=zone)
        end = datetime.combine(args.start + timedelta(days=args.days), datetime.min.time(),
                               tzinfo=zone)
        engine = db.connect(url)
        built = time.perf_counter()
        stats = demo.build_shop(engine, settings, start, customers=args.customers,
                                seed=args.seed)
        built = time.perf_counter() - built
        print(f"shop: {stats.customers:,} customers, {stats.orders:,} orders as of {start:%Y-%m-%d}"
              f" (built in {built:.1f} s); cap {CAP.count} per {CAP.days} days, quiet "
              f"{QUIET.start}-{QUIET.end}, faults {'on' if faults.enabled else 'off'}",
              flush=True)
        clock = SimClock(start)
        scheduler = Scheduler(engine, settings, lambda: SmtpTransport(
            settings.smtp, clock=clock.seconds, sleep=lambda _seconds: None), clock=clock)
        scheduler.start(paused=True)
        received = Received()
        profiler = cProfile.Profile() if args.profile else None
        walked = time.perf_counter()
        try:
            if profiler:
                profiler.enable()
            tally = walk(engine, settings, scheduler, clock, server, received, args.start,
                         args.days, args.seed)
        finally:
            if profiler:
                profiler.disable()
            scheduler.stop()
        walked = time.perf_counter() - walked
        chosen = list(scheduler.campaigns.values())
    checked, notes = time.perf_counter(), []
    paused = schedule.paused(engine)
    if paused:
        notes.append("paused campaigns: " + "; ".join(f"{c} ({why})" for c, why in paused.items()))
    checks = {"1 cap": check_cap(engine),
              "2 once": check_once(engine, received),
              "3 reached": check_reached(engine, settings, chosen, args.start, end, notes),
              "4 quiet": check_quiet(engine, settings, received)}
    checked = time.perf_counter() - checked
    report(engine, args, tally, scheduler, received, faults, checks, notes,
           {"build": built, "walk": walked, "checks": checked,
            "total": time.perf_counter() - wall, "cpu": time.process_time() - cpu})
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    engine.dispose()
    return 1 if any(checks.values()) else 0


def report(engine, args, tally: Tally, scheduler: Scheduler, received: Received, faults: Faults,
           checks: dict[str, list[str]], notes: list[str], seconds: dict[str, float]) -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    messages = sum(received.ids.values())
    print(f"\nsimulated days    {args.days}")
    print(f"ticks             {tally.ticks} (send_due called {tally.send_due_calls} times)")
    print(f"runs              {len(scheduler.runs)}")
    print(f"messages received {messages:,}")
    print(f"new orders        {tally.orders:,} ({tally.returning:,} by returning customers), "
          f"{tally.signups:,} sign-ups")
    print(f"wall time         {seconds['total']:.1f} s (shop {seconds['build']:.1f} s, walk "
          f"{seconds['walk']:.1f} s, checks {seconds['checks']:.1f} s); CPU {seconds['cpu']:.1f} s "
          "(all threads)")
    print(f"peak memory       {peak:.0f} MB (max RSS)")
    if faults.enabled:
        print(f"server faults     {dict(faults.counts)}")
    print("\nper campaign (summed over runs):")
    keys = ("planned", "sent", "deferred", "capped", "held_out", "failed", "bounced", "unknown",
            "suppressed")
    print("  " + f"{'campaign':14}" + "".join(f"{k:>11}" for k in keys))
    for campaign_id, counts in sorted(tally.by_campaign.items()):
        print("  " + f"{campaign_id:14}" + "".join(f"{counts[k]:>11,}" for k in keys))
    print("ledger at the end: " + "; ".join(
        f"{cid} " + ", ".join(f"{s} {n:,}" for s, n in sorted(by_status.items()))
        for cid, by_status in sorted(ledger.counts(engine).items())))
    for note in notes:
        print(note)
    print("\nchecks:")
    for name, problems in checks.items():
        print(f"  {name:10} {'ok' if not problems else 'FAILED'}")
        for problem in problems:
            print(f"      {problem}")


if __name__ == "__main__":
    sys.exit(main())
