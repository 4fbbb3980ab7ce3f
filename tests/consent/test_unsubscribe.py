"""Unsubscribe tokens cannot be forged or moved to someone else, and a genuine one — from the
link in a received email — suppresses the address for good, through `retain unsubscribe`."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from engine import tables
from engine.cli import app
from engine.consent import unsubscribe
from engine.delivery import runner
from engine.errors import ConfigError
from engine.transport.mailserver import MailServer
from engine.transport.smtp import SmtpTransport
from tests.campaignfiles import load_campaign, write_campaign
from tests.crash_sender import pointed_at
from tests.shopdata import NOW, Shop


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """The CLI reads the environment: the test's config.yaml must be what counts."""
    for name in ("RETAIN_UNSUBSCRIBE_SECRET", "RETAIN_DATABASE_URL", "RETAIN_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def with_secret(settings, secret: str | None):
    return settings.model_copy(update={"unsubscribe": settings.unsubscribe.model_copy(
        update={"secret": SecretStr(secret) if secret is not None else None})})


def test_a_genuine_token_is_accepted_and_names_its_customer_and_list(settings):
    token = unsubscribe.token(settings, 42)
    assert unsubscribe.verify(settings, token) == (42, "marketing")
    assert unsubscribe.verify(settings, unsubscribe.token(settings, 42, "news")) == (42, "news")
    assert unsubscribe.token(settings, 42) == token  # the same link in every email


@pytest.mark.parametrize("tamper", [
    lambda t: "43" + t[2:],                           # moved to another customer
    lambda t: t.replace(".marketing.", ".news."),     # moved to another list
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # one character of the MAC changed
    lambda t: t[:-4],                                 # MAC cut short
    lambda t: t + "A",                                # MAC made longer
    lambda t: t.rsplit(".", 1)[0],                    # no MAC at all
    lambda t: t.upper(),
    lambda t: "",
    lambda t: "garbage",
    lambda t: "x.marketing." + t.rsplit(".", 1)[1],   # not a customer id
    lambda t: "9" * 5000 + ".marketing." + t.rsplit(".", 1)[1],
    lambda t: " " + t,
])
def test_a_forged_or_altered_token_is_rejected(settings, tamper):
    token = unsubscribe.token(settings, 42)
    forged = tamper(token)
    assert forged != token
    assert unsubscribe.verify(settings, forged) is None


def test_a_token_made_with_another_secret_is_rejected(settings):
    theirs = unsubscribe.token(with_secret(settings, "someone-elses-secret"), 42)
    assert unsubscribe.verify(settings, theirs) is None


def test_without_a_secret_no_token_is_made_or_accepted(settings):
    unset = with_secret(settings, "")
    with pytest.raises(ConfigError, match="RETAIN_UNSUBSCRIBE_SECRET"):
        unsubscribe.token(unset, 42)
    with pytest.raises(ConfigError):
        unsubscribe.verify(unset, unsubscribe.token(settings, 42))


def test_links_and_headers_carry_the_token(settings):
    token = unsubscribe.token(settings, 7)
    assert unsubscribe.url(settings, 7) == \
        f"https://maison-verte.example/unsubscribe?token={token}"
    with_query = settings.model_copy(update={"unsubscribe": settings.unsubscribe.model_copy(
        update={"url": "https://shop.example/u?lang=fr", "mailto": None})})
    assert unsubscribe.url(with_query, 7) == f"https://shop.example/u?lang=fr&token={token}"
    headers = unsubscribe.headers(with_query, 7)
    assert headers["List-Unsubscribe"] == f"<https://shop.example/u?lang=fr&token={token}>"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def token_in_received_email(engine, settings, project, tmp_path, address: str) -> str:
    shop = Shop(engine)
    customer = shop.customer(email=address)
    shop.order(customer, days_ago=70, total=4000)
    campaign = load_campaign(write_campaign(tmp_path))
    with MailServer() as server:
        local = pointed_at(settings, server.port)
        with SmtpTransport(local.smtp) as transport:
            runner.run(engine, local, [campaign], NOW, transport)
    [message] = server.messages
    link = re.search(rb"List-Unsubscribe: <([^>]+)>", message.data).group(1).decode()
    return parse_qs(urlparse(link).query)["token"][0]


def suppressions(engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [(r.email_key, str(r.reason), r.source) for r in conn.execute(
            select(tables.Suppression.__table__))]


def test_retain_unsubscribe_with_the_token_from_an_email_suppresses_the_address(
        engine, settings, project, tmp_path, config_path):
    token = token_in_received_email(engine, settings, project, tmp_path, "Anna@Example.com")

    result = CliRunner().invoke(app, ["--config", str(config_path), "unsubscribe", token])

    assert result.exit_code == 0, result.output
    assert "unsubscribed" in result.output and "anna" not in result.output.lower()
    assert suppressions(engine) == [("anna@example.com", "unsubscribed", "token")]
    customers = tables.Customer.__table__
    with engine.connect() as conn:
        assert conn.execute(select(customers.c.accepts_marketing)).scalar_one() is False
    # Clicking twice is harmless.
    again = CliRunner().invoke(app, ["--config", str(config_path), "unsubscribe", token])
    assert again.exit_code == 0 and len(suppressions(engine)) == 1


def test_retain_unsubscribe_refuses_a_forged_token_and_changes_nothing(
        engine, settings, project, tmp_path, config_path):
    token = token_in_received_email(engine, settings, project, tmp_path, "anna@example.com")
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")

    result = CliRunner().invoke(app, ["--config", str(config_path), "unsubscribe", forged])

    assert result.exit_code != 0
    assert "not an email address, nor a valid unsubscribe token" in result.output
    assert suppressions(engine) == []
