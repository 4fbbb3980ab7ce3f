"""The one-click unsubscribe endpoint over real HTTP on loopback (RFC 8058)."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from sqlalchemy import select

from engine import tables
from engine.consent import optout, suppressions, unsubscribe
from tests.shopdata import NOW, Shop


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):  # the test output stays readable
        pass


@pytest.fixture
def endpoint(engine, settings):
    server = make_server("127.0.0.1", 0, optout.app(settings, engine, lambda: NOW),
                         handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/unsubscribe"
    server.shutdown()
    server.server_close()


def call(url: str, data: dict | None = None) -> tuple[int, str]:
    body = urlencode(data).encode() if data is not None else None
    try:
        with urllib.request.urlopen(url, data=body, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_one_click_post_unsubscribes_and_get_only_asks(engine, settings, endpoint):
    who = Shop(engine).customer(email="Reader@Example.com")
    token = unsubscribe.token(settings, who)

    status, page = call(f"{endpoint}?{urlencode({'token': token})}")
    assert status == 200 and "<form method=\"post\">" in page
    with engine.connect() as conn:  # a link scanner's GET unsubscribes nobody
        assert not suppressions.is_suppressed(conn, "reader@example.com")

    # What a mail client sends for List-Unsubscribe-Post: List-Unsubscribe=One-Click.
    status, page = call(f"{endpoint}?{urlencode({'token': token})}",
                        {"List-Unsubscribe": "One-Click"})
    assert status == 200 and "You are unsubscribed" in page
    with engine.connect() as conn:
        assert suppressions.is_suppressed(conn, "reader@example.com")
        consent = conn.execute(select(tables.Customer.__table__.c.accepts_marketing)).scalar()
    assert consent is False


@pytest.mark.parametrize("change", ["forged", "other customer", "empty", "not one-click"])
def test_a_bad_request_changes_nothing(engine, settings, endpoint, change):
    shop = Shop(engine)
    who, other = shop.customer(), shop.customer()
    token = unsubscribe.token(settings, who)
    data = {"List-Unsubscribe": "One-Click"}
    if change == "forged":
        token = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    elif change == "other customer":
        token = f"{other}." + token.split(".", 1)[1]
    elif change == "empty":
        token = ""
    else:
        data = {"List-Unsubscribe": "Yes please"}
    status, _ = call(f"{endpoint}?{urlencode({'token': token})}", data)
    assert status == 400
    with engine.connect() as conn:
        assert conn.execute(select(tables.Suppression.__table__)).first() is None


def test_the_page_is_branded_and_says_you_are_unsubscribed_once_you_are(engine, settings,
                                                                         endpoint):
    """Issue 10, item 10: the page was unstyled and offered the button again afterwards."""
    who = Shop(engine).customer(email="reader@example.com")
    link = f"{endpoint}?{urlencode({'token': unsubscribe.token(settings, who)})}"
    status, page = call(link)
    assert status == 200
    assert settings.store.name in page and settings.store.postal_address in page
    assert "<style>" in page and 'name="viewport"' in page
    assert 'value="30"' in page and 'value="90"' in page  # pause instead of leaving

    call(link, {"List-Unsubscribe": "One-Click"})
    status, page = call(link)  # the footer link, opened again
    assert status == 200 and "You are unsubscribed" in page
    assert "<form" not in page and "<button" not in page
    assert settings.store.postal_address in page


def test_pausing_from_the_page_keeps_the_address_and_says_until_when(engine, settings,
                                                                     endpoint):
    who = Shop(engine).customer(email="reader@example.com")
    link = f"{endpoint}?{urlencode({'token': unsubscribe.token(settings, who)})}"
    status, page = call(link, {"pause": "30"})
    assert status == 200 and "paused until 15 July 2026" in page
    with engine.connect() as conn:
        assert not suppressions.is_suppressed(conn, "reader@example.com")
    status, page = call(link)
    assert "paused until 15 July 2026" in page and 'name="pause"' not in page
    assert call(link, {"pause": "7"})[0] == 400  # only the choices the page offers
