"""One customer's data never stops anybody else's mail.

A value a message can carry safely is made safe (line breaks become spaces, control characters
go, long words are folded as RFC 2047 encoded words) and the customer gets their email; data a
message cannot carry fails that one delivery, for good, with a reason naming the customer and
the field, and the run goes on. Both render paths isolate: composing in the run's process and
in render worker processes. Everything goes through a real SMTP server on loopback.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from html import unescape

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from engine import tables
from engine.cli import app
from engine.config import QuietHours
from engine.delivery import compose, ledger
from engine.transport.mailserver import MailServer
from tests.campaignfiles import load_campaign, write_campaign
from tests.crash_sender import send
from tests.shopdata import Shop

CUSTOMERS = tables.Customer.__table__
LONG_NAME = "Z" * 2000  # one word, longer than a header line may be (998)
HOSTILE_FIRST = ("Ann\r\nBcc: victim@example.com\x00\x07\x1b[31m\u202eevil\u202c 😀 "
                 "{{ 7*7 }} <script>alert(1)</script> " + LONG_NAME)
HOSTILE_LAST = LONG_NAME + "\n\t\x00O'Brien"
HOSTILE_COUNTRY = "Llanfair" * 200 + "\r\n\x00"
C0 = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # in a header, once CRLF is taken out


def delivery(engine, customer_id: int) -> tables.Delivery:
    with engine.connect() as conn:
        return conn.execute(select(ledger.DELIVERIES).where(
            ledger.DELIVERIES.c.customer_id == customer_id)).one()


def received_by(server: MailServer, address: str) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m.data, policy=email.policy.default)
            for m in server.messages if m.rcpt_tos == (address,)]


def hostile(shop: Shop, address: str = "hostile@example.com") -> int:
    """A drowsy customer with every kind of hostile value at once."""
    customer = shop.customer(email=address, first_name=HOSTILE_FIRST,
                             country=HOSTILE_COUNTRY, timezone="Mars/Olympus_Mons\x00")
    with shop.engine.begin() as conn:  # Shop.customer writes "Lee"; this one is hostile too
        conn.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == customer)
                     .values(last_name=HOSTILE_LAST))
    shop.order(customer, days_ago=70, total=4000)
    return customer


def header_lines(data: bytes) -> list[bytes]:
    head = data.split(b"\r\n\r\n", 1)[0]
    return head.split(b"\r\n")


def assert_rfc_clean(data: bytes) -> None:
    """CRLF line ends only, no line over 998 octets, no control character in any header."""
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    for line in header_lines(data):
        assert line.isascii() and not C0.search(line), line[:120]
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert not parsed.defects
    assert "Bcc" not in parsed and len(parsed.get_all("To")) == 1


# --- defect 1, as found: one line break in one name stopped every run ------------------------

def test_a_line_break_in_one_first_name_stops_nobody(engine, settings, project, winback,
                                                      server):
    shop = Shop(engine)
    others = shop.buyers(20, days_ago=70)
    marie = shop.customer(email="marie@example.com", first_name="Ann\nMarie")
    shop.order(marie, days_ago=70, total=4000)

    report = send(engine, settings, winback, server)

    assert report.campaigns["winback"].sent == 21
    [message] = received_by(server, "marie@example.com")
    assert message["Subject"].startswith("Ann Marie, we miss you")
    assert len(server.messages) == len(others) + 1


def test_a_2000_character_name_is_folded_not_a_crash(engine, settings, project, winback,
                                                     server):
    shop = Shop(engine)
    shop.buyers(3, days_ago=70)
    long = shop.customer(email="long@example.com", first_name=LONG_NAME)
    shop.order(long, days_ago=70, total=4000)

    report = send(engine, settings, winback, server)

    assert report.campaigns["winback"].sent == 4
    [received] = [m for m in server.messages if m.rcpt_tos == ("long@example.com",)]
    assert_rfc_clean(received.data)
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    assert message["Subject"] == f"{LONG_NAME}, we miss you: 10% off"


# --- per-message isolation in a campaign of thousands, on both render paths ----------------

RENDER_PATHS = [pytest.param(0, id="composed-in-the-run"),
                pytest.param(1, id="render-worker-processes")]


@pytest.mark.slow
@pytest.mark.parametrize("render_processes", RENDER_PATHS)
def test_one_hostile_customer_among_thousands_stops_nobody(
        engine, settings, project, winback, server, config_path, render_processes):
    shop = Shop(engine)
    others = shop.buyers(2000, days_ago=70)
    bad = hostile(shop)
    # An address no header can carry (non-ASCII before the @ needs SMTPUTF8): cannot be sent.
    unsendable = shop.customer(email="zoë@example.com", first_name="Zoë")
    shop.order(unsendable, days_ago=70, total=4000)
    # Quiet hours read each customer's time zone: the hostile one is no zone at all.
    settings = settings.model_copy(update={"quiet_hours": QuietHours(start="21:00", end="08:00")})

    report = send(engine, settings, winback, server, render_processes=render_processes)

    counts = report.campaigns["winback"]
    assert (counts.sent, counts.failed) == (len(others) + 1, 1)
    assert {m.rcpt_tos[0] for m in server.messages} == \
        {f"c{n}@example.com" for n in range(1, 2001)} | {"hostile@example.com"}
    # The hostile customer's values could all be made safe: delivered, RFC-clean, escaped.
    [received] = [m for m in server.messages if m.rcpt_tos == ("hostile@example.com",)]
    assert_rfc_clean(received.data)
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    assert message["Subject"] == ("Ann Bcc: victim@example.com[31mevil 😀 {{ 7*7 }} "
                                  f"<script>alert(1)</script> {LONG_NAME}, we miss you: 10% off")
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert (f"We miss you, Ann Bcc: victim@example.com[31mevil 😀 {{{{ 7*7 }}}} "
            f"<script>alert(1)</script> {LONG_NAME}</h1>") in unescape(html)  # printed, not run
    assert "\u202e" not in message.get_body(("plain",)).get_content()
    assert delivery(engine, bad).status == "sent"
    # The address that cannot be carried fails alone, for good, saying who and which field.
    failed = delivery(engine, unsendable)
    assert failed.status == "failed" and failed.next_attempt_at is None
    assert failed.reason.startswith(f"customer {unsendable}, field customer.email: the "
                                    "recipient address has non-ASCII characters before the @")
    assert "zoë@" not in failed.reason

    again = send(engine, settings, winback, server, render_processes=render_processes)
    assert again.campaigns["winback"].sent == again.campaigns["winback"].failed == 0
    assert delivery(engine, unsendable).attempts == 1  # not tried again and again
    assert len(server.messages) == len(others) + 1


def test_a_failure_for_good_shows_in_deliveries_and_why(engine, settings, project, winback,
                                                        server, config_path):
    shop = Shop(engine)
    shop.buyers(3, days_ago=70)
    unsendable = shop.customer(email="zoë@example.com")
    shop.order(unsendable, days_ago=70, total=4000)
    send(engine, settings, winback, server)
    cli = CliRunner()

    listed = cli.invoke(app, ["--config", str(config_path), "deliveries", "winback",
                              "--status", "failed", "--json"])
    why = cli.invoke(app, ["--config", str(config_path), "why", str(unsendable), "winback",
                           "--as-of", "2026-06-15", "--json"])

    assert listed.exit_code == 0, listed.output
    assert f"customer {unsendable}, field customer.email: the recipient address" in listed.output
    assert why.exit_code == 0, why.output
    [answer] = json.loads(why.output)["campaigns"]
    assert answer["why"] == "already_received"
    assert answer["detail"].startswith("this occasion (drowsy:2026-04-06) was planned on "
                                       "2026-06-15 and failed: ")
    assert f"failed: customer {unsendable}, field customer.email: the recipient" in \
        answer["detail"]
    assert "zoë@" not in listed.output + why.output


@pytest.mark.postgres
def test_a_failure_for_good_is_recorded_the_same_on_postgresql(settings, project, winback,
                                                              server):
    from tests.conftest import fresh_postgres

    engine = fresh_postgres("isolation")
    on_pg = settings.model_copy(update={"database": settings.database.model_copy(
        update={"url": str(engine.url.render_as_string(hide_password=False))})})
    shop = Shop(engine)
    shop.buyers(5, days_ago=70)
    unsendable = shop.customer(email="zoë@example.com", first_name="Ann\nMarie")
    shop.order(unsendable, days_ago=70, total=4000)
    try:
        report = send(engine, on_pg, winback, server)
        again = send(engine, on_pg, winback, server)
        failed = delivery(engine, unsendable)
    finally:
        engine.dispose()
    assert (report.campaigns["winback"].sent, report.campaigns["winback"].failed) == (5, 1)
    assert again.campaigns["winback"].failed == 0 and failed.attempts == 1
    assert failed.status == "failed" and failed.next_attempt_at is None
    assert failed.reason.startswith(f"customer {unsendable}, field customer.email: ")


# --- a template that fails on one customer's value, on both render paths ----------------------

COUNTRY_TEMPLATE = ('{% extends "base.html" %}{% block content %}\n'
                    "<p>Shipping to {{ customer.country.lower() }}</p>\n{% endblock %}")


def shipping_campaign(project, tmp_path, shop: Shop, customers: int):
    """A winback campaign whose template prints the customer's country in lower case, and
    ``customers`` drowsy customers in France."""
    (project / "templates" / "country.html").write_text(COUNTRY_TEMPLATE)
    for _ in range(customers):
        shop.order(shop.customer(country="FR"), days_ago=70, total=4000)
    return load_campaign(write_campaign(tmp_path, template="country.html"))


def test_a_value_the_template_fails_on_fails_that_delivery_alone(engine, settings, project,
                                                                 tmp_path, server):
    shop = Shop(engine)
    campaign = shipping_campaign(project, tmp_path, shop, 30)
    nowhere = shop.customer(email="nowhere@example.com", country=None)
    shop.order(nowhere, days_ago=70, total=4000)

    report = send(engine, settings, campaign, server)

    assert (report.campaigns["winback"].sent, report.campaigns["winback"].failed) == (30, 1)
    assert "nowhere@example.com" not in {m.rcpt_tos[0] for m in server.messages}
    failed = delivery(engine, nowhere)
    assert failed.status == "failed" and failed.next_attempt_at is None
    assert failed.reason.startswith(f"customer {nowhere}, field customer.country: the template "
                                    "fails on their data (")
    assert "country.html:2" in failed.reason


@pytest.mark.slow
def test_a_render_worker_returns_the_unsendable_with_the_others(engine, project, tmp_path,
                                                                 composed_both_ways):
    shop = Shop(engine)
    campaign = shipping_campaign(project, tmp_path, shop, 5)
    nowhere = shop.customer(country=None)
    shop.order(nowhere, days_ago=70, total=4000)
    zoe = shop.customer(email="zoë@example.com", country="FR")
    shop.order(zoe, days_ago=70, total=4000)
    here, there = composed_both_ways(campaign)
    assert there == here
    unsendable = {u.delivery_id: u.reason for u in here if isinstance(u, compose.Unsendable)}
    assert sorted(unsendable) == [delivery(engine, nowhere).id, delivery(engine, zoe).id]
    assert unsendable[delivery(engine, nowhere).id].startswith(
        f"customer {nowhere}, field customer.country: ")
    assert unsendable[delivery(engine, zoe).id].startswith(
        f"customer {zoe}, field customer.email: ")
    assert sum(isinstance(r, compose.Ready) for r in here) == 5


# --- retain preview: a safe preview, or one line naming the customer and the field -----------

def test_preview_of_the_hostile_customer_is_safe(engine, project, config_path, tmp_path):
    shop = Shop(engine)
    bad = hostile(shop)
    out = tmp_path / "preview.eml"

    result = CliRunner().invoke(app, ["--config", str(config_path), "preview", "winback",
                                      "--customer", str(bad), "--as-of", "2026-06-15",
                                      "--format", "eml", "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert_rfc_clean(out.read_bytes())
    html = email.message_from_bytes(out.read_bytes(), policy=email.policy.default) \
        .get_body(("html",)).get_content()
    assert "&lt;script&gt;" in html and "<script>alert" not in html


def test_preview_of_an_unsendable_customer_is_one_line_naming_customer_and_field(
        engine, project, config_path):
    shop = Shop(engine)
    unsendable = shop.customer(email="zoë@example.com")
    shop.order(unsendable, days_ago=70, total=4000)

    result = CliRunner().invoke(app, ["--config", str(config_path), "preview", "winback",
                                      "--customer", str(unsendable), "--as-of", "2026-06-15"])

    assert result.exit_code == 1
    assert result.output.startswith(f"error: customer {unsendable}, field customer.email: the "
                                    "recipient address has non-ASCII characters")
    assert "Traceback" not in result.output and "zoë@" not in result.output
