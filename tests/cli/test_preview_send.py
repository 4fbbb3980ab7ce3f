"""`retain preview CAMPAIGN --customer X --send-to ADDRESS`: the real email, subject marked
[TEST], through the configured SMTP server to that address only, outside the ledger."""

from __future__ import annotations

import email
from email import policy

from sqlalchemy import func, select
from typer.testing import CliRunner

from engine import config, tables
from engine.cli import app
from engine.consent import unsubscribe
from engine.transport.mailserver import MailServer
from tests.shopdata import Shop


def rows(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table.__table__)).scalar()


def send(config_path, port: int, *args: str):
    return CliRunner().invoke(app, ["--config", str(config_path), "preview", "winback",
                                    *args], env={"RETAIN_SMTP_PORT": str(port)})


def test_a_test_send_reaches_only_the_given_address_and_writes_nothing(engine, project,
                                                                       config_path):
    shop = Shop(engine)
    customer = shop.customer(email="zoe@example.com", first_name="Zoé")
    shop.order(customer, days_ago=70, total=3000)
    with MailServer() as server:
        result = send(config_path, server.port, "--customer", str(customer), "--as-of",
                      "2026-06-15", "--send-to", "marketer@shop.example")
        assert result.exit_code == 0, result.output
        [received] = server.messages
    assert received.rcpt_tos == ("marketer@shop.example",)
    message = email.message_from_bytes(received.data, policy=policy.default)
    assert message["Subject"].startswith("[TEST] ")
    assert message["To"] == "marketer@shop.example"
    assert "zoe@example.com" not in received.data.decode("utf-8", "replace")
    assert "zoe@example.com" not in result.output
    assert "[TEST]" in result.output
    # Outside the ledger: no delivery, no coupon; its unsubscribe link unsubscribes nobody.
    assert rows(engine, tables.Delivery) == 0 and rows(engine, tables.Coupon) == 0
    settings = config.load(config_path, environ={})
    link = message["List-Unsubscribe"].split("token=", 1)[1].split(">", 1)[0]
    assert unsubscribe.verify(settings, link)[0] != customer


def test_a_refused_test_send_says_what_the_server_said(engine, project, config_path):
    shop = Shop(engine)
    customer = shop.customer()
    shop.order(customer, days_ago=70, total=3000)
    with MailServer(replies={"rcpt": "550 5.1.1 No such user"}) as server:
        result = send(config_path, server.port, "--customer", str(customer), "--as-of",
                      "2026-06-15", "--send-to", "nobody@shop.example")
    assert result.exit_code == 1
    assert "550" in result.output and "No such user" in result.output
    assert rows(engine, tables.Delivery) == 0
