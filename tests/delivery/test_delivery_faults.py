"""What a run does when the mail server says no: a real aiosmtpd on loopback scripted to answer
421, 451, 550 5.1.1, 554 5.7.1 or to hang up after DATA, and a real SQLite ledger.

Time is a fake clock: retries within a run "sleep" by moving it, so nothing really waits.
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select, text, update

from engine import tables
from engine.campaigns import planner
from engine.consent import suppressions
from engine.delivery import ledger, outbox, runner
from engine.shop import importer
from engine.transport.mailserver import DROP, MailServer
from engine.transport.smtp import SmtpTransport
from tests.campaignfiles import load_campaign, write_campaign
from tests.clock import FakeClock
from tests.crash_sender import pointed_at
from tests.delivery.hostile import received, rows
from tests.shopdata import NOW, Shop

MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)", re.M | re.I)


def once(replies: dict[tuple[str, str], str]):
    """A server script answering each (stage, address) its reply the first time only."""
    left = dict(replies)
    lock = threading.Lock()

    def script(stage: str, address: str) -> str | None:
        with lock:
            return left.pop((stage, address.lower()), None)
    return script


@pytest.fixture
def shop(engine):
    return Shop(engine)


@pytest.fixture
def winback(tmp_path):
    return load_campaign(write_campaign(tmp_path))


def drowsy(shop: Shop, *addresses: str) -> dict[str, int]:
    """A consenting customer per address, last order 70 days ago: each gets one winback email."""
    ids = {}
    for address in addresses:
        ids[address] = shop.customer(email=address)
        shop.order(ids[address], days_ago=70, total=4000)
    return ids


def run(engine, settings, campaign, server, clock: FakeClock | None = None, now=NOW,
        **delivery) -> runner.RunReport:
    clock = clock or FakeClock(now)
    local = pointed_at(settings, server.port, **delivery)
    with SmtpTransport(local.smtp, delivery=local.delivery, clock=clock.monotonic,
                       sleep=clock.sleep) as transport:
        return runner.run(engine, local, [campaign], now, transport, clock=clock,
                          sleep=clock.sleep)


def suppressed(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {r.email_key: str(r.reason) for r in conn.execute(
            select(tables.Suppression.__table__))}


def test_transient_refusals_are_retried_within_the_run_without_waiting(
        engine, settings, project, shop, winback):
    drowsy(shop, "busy@a.example", "later@b.example", "fine@c.example")
    script = once({("rcpt", "busy@a.example"): "421 4.7.0 Too many connections, closing",
                   ("data", "later@b.example"): "451 4.3.0 Temporary failure, try later"})
    clock = FakeClock()
    with MailServer(script=script) as server:
        report = run(engine, settings, winback, server, clock, retry_base_seconds=1)

    assert sorted(received(server)) == ["busy@a.example", "fine@c.example", "later@b.example"]
    assert report.campaigns["winback"].sent == 3 and report.paused is None
    ledger_rows = rows(engine)
    # The 451 refused later@b's message: one attempt spent. The 421 closed the connection: a
    # refusal of every message, so busy@a's try is not counted against it.
    assert {a: (str(r.status), r.attempts) for a, r in ledger_rows.items()} == {
        "busy@a.example": ("sent", 1), "later@b.example": ("sent", 2),
        "fine@c.example": ("sent", 1)}
    assert clock.slept and sum(clock.slept) >= 1  # the retries waited on the fake clock
    assert suppressed(engine) == {}


def test_a_transient_failure_that_outlasts_the_run_waits_for_the_next(
        engine, settings, project, shop, winback):
    drowsy(shop, "later@b.example")
    with MailServer(replies={"data": "451 4.3.0 Try again later"}) as server:
        report = run(engine, settings, winback, server, retry_base_seconds=600)
    row = rows(engine)["later@b.example"]
    assert report.campaigns["winback"].failed == 1 and server.messages == []
    assert str(row.status) == "failed" and "451" in row.reason
    assert row.next_attempt_at >= NOW + timedelta(seconds=300)  # backed off, not hammered

    with MailServer() as server:
        report = run(engine, settings, winback, server, now=NOW + timedelta(hours=1))
    assert received(server) == ["later@b.example"]
    assert str(rows(engine)["later@b.example"].status) == "sent"


def test_an_unknown_mailbox_bounces_and_stays_suppressed_after_a_reimport(
        engine, settings, project, shop, winback, tmp_path):
    ids = drowsy(shop, "gone@example.com", "here@example.com")
    with MailServer(replies={"rcpt": {"gone@example.com": "550 5.1.1 User unknown"}}) as server:
        report = run(engine, settings, winback, server)

    assert received(server) == ["here@example.com"]
    assert report.campaigns["winback"].bounced == 1 and report.paused is None
    gone = rows(engine)["gone@example.com"]
    assert str(gone.status) == "bounced" and "5.1.1" in gone.reason
    assert suppressed(engine) == {"gone@example.com": "bounced"}

    # The shop exports its customers again, the address in capitals, consent given anew:
    # the address stays suppressed.
    customers = tables.Customer.__table__
    with engine.begin() as conn:
        external_id = conn.execute(select(customers.c.external_id).where(
            customers.c.id == ids["gone@example.com"])).scalar_one()
        conn.execute(update(customers).where(customers.c.id == ids["gone@example.com"])
                     .values(accepts_marketing=False))
    csv = tmp_path / "customers.csv"
    csv.write_text("customer_id,email,first_name,last_name,accepts_marketing,created_at\n"
                   f"{external_id},Gone@Example.com,Ann,Lee,yes,2025-01-10\n")
    importer.import_file(engine, settings, "customers", csv, "generic", now=NOW)
    with engine.connect() as conn:
        consenting = conn.execute(select(customers.c.id).where(
            customers.c.email_key == "gone@example.com", customers.c.accepts_marketing)).all()
    assert consenting  # the import gave consent again ...
    assert suppressed(engine) == {"gone@example.com": "bounced"}  # ... the list still wins
    (tmp_path / "second").mkdir()
    other = load_campaign(write_campaign(tmp_path / "second", id="winback2"))
    with MailServer() as server:
        report = run(engine, settings, other, server)
    assert received(server) == ["here@example.com"]
    assert report.campaigns["winback2"].suppressed == 1


def test_a_policy_refusal_pauses_the_run_and_suppresses_nobody(engine, settings, project, shop,
                                                                winback):
    addresses = [f"c{n}@example.com" for n in range(12)]
    drowsy(shop, *addresses)
    with MailServer(replies={"data": "554 5.7.1 Message rejected as spam"}) as server:
        report = run(engine, settings, winback, server)

    assert report.paused and "5.7.1" in report.paused and "nobody was suppressed" in report.paused
    assert server.messages == [] and suppressed(engine) == {}
    states = {str(r.status) for r in rows(engine).values()}
    assert states <= {"planned", "failed"} and "planned" in states  # the rest was not tried
    with engine.connect() as conn:
        run_row = conn.execute(select(tables.Run.__table__)
                               .where(tables.Run.__table__.c.id == report.run_id)).one()
    assert "5.7.1" in run_row.paused_reason

    # Once the sender is fixed, the next run sends every one of them, once.
    with MailServer() as server:
        run(engine, settings, winback, server, now=NOW + timedelta(hours=1))
    assert sorted(received(server)) == sorted(addresses)


def test_too_many_bounces_pause_the_run(engine, settings, project, shop, winback):
    addresses = [f"{'bad' if n % 2 else 'good'}{n}@example.com" for n in range(40)]
    drowsy(shop, *addresses)
    unknown_users = {a: "550 5.1.1 No such user" for a in addresses if a.startswith("bad")}
    with MailServer(replies={"rcpt": unknown_users}) as server:
        report = run(engine, settings, winback, server, bounce_rate_min_sends=10,
                     max_bounce_rate=0.2)

    assert report.paused and "bounced" in report.paused
    states = [str(r.status) for r in rows(engine).values()]
    assert states.count("planned") >= 20 and "sending" not in states
    assert set(suppressed(engine)) == {a for a, r in rows(engine).items()
                                       if str(r.status) == "bounced"}


def test_a_connection_dropped_after_data_is_unknown_and_resent_only_on_purpose(
        engine, settings, project, shop, winback):
    drowsy(shop, "flaky@example.com", "fine@example.com")
    with MailServer(replies={"data": {"flaky@example.com": DROP}}) as server:
        report = run(engine, settings, winback, server)
        assert received(server) == ["fine@example.com"]
        assert report.campaigns["winback"].unknown == 1
        flaky = rows(engine)["flaky@example.com"]
        assert str(flaky.status) == "unknown"

        server.script = None  # the server works again; the next run still must not resend
        run(engine, settings, winback, server, now=NOW + timedelta(hours=1))
        assert received(server) == ["fine@example.com"]
        assert str(rows(engine)["flaky@example.com"].status) == "unknown"

        assert ledger.retry_unknown(engine, ["winback"], NOW + timedelta(hours=2)) == 1
        run(engine, settings, winback, server, now=NOW + timedelta(hours=2))
    assert received(server) == ["fine@example.com", "flaky@example.com"]
    resent = server.messages[-1].data
    assert MESSAGE_ID.search(resent).group(1).decode() == flaky.message_id  # recognisable
    assert str(rows(engine)["flaky@example.com"].status) == "sent"


def test_suppression_is_checked_right_before_each_send(engine, settings, project, shop,
                                                       winback):
    addresses = [f"c{n}@example.com" for n in range(6)]
    drowsy(shop, *addresses)
    ledger.record_plan(engine, planner.plan(engine, settings, winback, NOW), NOW)
    # Between the plan and the run: one unsubscribes, one withdraws consent in a re-import.
    with engine.begin() as conn:
        suppressions.add(conn, "C1@Example.com", "unsubscribed", "test", NOW)
        conn.execute(update(tables.Customer.__table__)
                     .where(tables.Customer.__table__.c.email == "c2@example.com")
                     .values(accepts_marketing=False))

    def unsubscribe_c5_during_the_run(stage: str, address: str) -> None:
        if (stage, address) == ("rcpt", "c0@example.com"):  # c5's email is composed by now
            suppressions.unsubscribe(engine, "c5@example.com", NOW, source="test")

    with MailServer(script=unsubscribe_c5_during_the_run) as server:
        local = settings.model_copy(update={"smtp": settings.smtp.model_copy(
            update={"max_connections": 1})})
        report = run(engine, local, winback, server)

    assert received(server) == ["c0@example.com", "c3@example.com", "c4@example.com"]
    ledger_rows = rows(engine)
    for address in ("c1@example.com", "c2@example.com", "c5@example.com"):
        assert str(ledger_rows[address].status) == "suppressed"
        assert ledger_rows[address].reason == outbox.SUPPRESSED_AT_SEND
    assert report.campaigns["winback"].suppressed == 3
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM deliveries WHERE status = 'sending'")
                            ).scalar() == 0


def test_an_unreachable_server_stops_the_run_at_once_and_loses_nothing(engine, settings, shop,
                                                                       winback, project):
    """Three connection failures in a row: the run stops with a sentence saying what to check,
    nobody is suppressed, no campaign is paused, and the next run sends everything."""
    people = drowsy(shop, *(f"p{n}@example.com" for n in range(12)))
    with MailServer() as server:
        gone = SimpleNamespace(port=server.port)  # nothing listens there any more
    report = run(engine, settings, winback, gone)
    assert report.interrupted and "cannot reach the mail server" in report.interrupted
    assert "smtp.host" in report.interrupted and report.paused is None
    counts = ledger.counts(engine)["winback"]
    assert counts.get("sent", 0) == 0 and "sending" not in counts
    with engine.connect() as conn:
        assert not conn.execute(select(tables.Suppression.__table__)).first()
    with MailServer() as back:
        again = run(engine, settings, winback, back, now=NOW + timedelta(hours=1))
        assert again.interrupted is None
        assert len(back.messages) == len(people)
    assert ledger.counts(engine)["winback"] == {"sent": len(people)}
