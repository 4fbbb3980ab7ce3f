"""Secrets and customer addresses never appear in what the engine prints or logs.

The whole command line is driven as a person would drive it — validate, plan, run through a
real SMTP server that demands a login, then status, deliveries and why — with the SMTP password
and the unsubscribe signing key coming from environment variables, as config.yaml says. Every
line printed and every log record (at DEBUG) is then searched for the secrets and for each
customer's address.
"""

from __future__ import annotations

import logging

from typer.testing import CliRunner

from engine import db
from engine.cli import app
from engine.transport.mailserver import MailServer
from tests.campaignfiles import write_campaign
from tests.shopdata import NOW, Shop

PASSWORD = "pw-7f3a9c1e-never-printed"
SIGNING_KEY = "key-0b5d2e8f-never-printed"
ADDRESSES = [f"Person.{n}@Customers.example" for n in range(6)]


def test_a_whole_session_prints_and_logs_no_secret_and_no_address(project, monkeypatch, caplog):
    (project / "campaigns").mkdir(exist_ok=True)
    for old in (project / "campaigns").glob("*.yaml"):
        old.unlink()
    write_campaign(project / "campaigns")
    engine = db.connect(f"sqlite:///{project / 'test.db'}")
    shop = Shop(engine)
    customers = [shop.customer(email=address) for address in ADDRESSES]
    for customer in customers:
        shop.order(customer, days_ago=70)
    engine.dispose()

    runner = CliRunner()
    config = str(project / "config.yaml")
    as_of = ["--as-of", NOW.isoformat()]
    with MailServer(credentials=("shop", PASSWORD)) as server, \
            caplog.at_level(logging.DEBUG):
        monkeypatch.setenv("RETAIN_SMTP_PORT", str(server.port))
        monkeypatch.setenv("RETAIN_SMTP_USERNAME", "shop")
        monkeypatch.setenv("RETAIN_SMTP_PASSWORD", PASSWORD)
        monkeypatch.setenv("RETAIN_UNSUBSCRIBE_SECRET", SIGNING_KEY)
        printed = []
        for command in (["validate"], ["plan", *as_of], ["run", *as_of], ["status"],
                        ["deliveries"], ["deliveries", "--json"], ["why", str(customers[0])]):
            result = runner.invoke(app, ["--config", config, *command])
            printed.append(f"$ retain {' '.join(command)}\n{result.output}")
            assert result.exit_code == 0, printed[-1]

    delivered = sorted(rcpt.lower() for m in server.messages for rcpt in m.rcpt_tos)
    assert delivered == sorted(a.lower() for a in ADDRESSES)  # it really sent, with the login
    everything = "\n".join(printed) + "\n" + caplog.text
    assert caplog.records, "the run logs what it does"
    for secret in (PASSWORD, SIGNING_KEY):
        assert secret not in everything
    for address in ADDRESSES:
        assert address.lower() not in everything.lower()
        assert address.split("@")[0].lower() not in everything.lower()
