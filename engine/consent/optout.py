"""The one-click unsubscribe endpoint (RFC 8058) as a small WSGI application.

Owns the HTTP side of unsubscribing: a POST with ``List-Unsubscribe=One-Click`` and a valid
token (what Gmail or Apple Mail send when the reader presses "unsubscribe") suppresses the
address at once; a GET (the link in the footer) only shows a page (pages.py) — with a button to
leave and the choice to pause all mail for 30 or 90 days instead, or saying that they are
unsubscribed or paused already — because mail scanners follow links and must not unsubscribe
anyone; a POST with ``pause=30`` pauses (preferences.py). A forged or altered token changes
nothing. Mount ``app(settings, engine)`` under ``unsubscribe.url`` in any WSGI server, or run
``retain unsubscribe-server`` for a simple setup. Reads the clock for the suppression's time
through the ``clock`` it is given. Must not send.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import Engine

from engine.config import Settings
from engine.consent import pages, preferences, suppressions, unsubscribe
from engine.errors import NotFound


def app(settings: Settings, engine: Engine, clock: Callable[[], datetime]):
    """The WSGI application; ``clock`` stamps the suppression (the command line's wall clock)."""
    store = settings.store

    def respond(start_response, status: str, page: str) -> Iterable[bytes]:
        body = page.encode()
        start_response(status, [("Content-Type", "text/html; charset=utf-8"),
                                ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-store")])
        return [body]

    def application(environ: dict[str, Any], start_response) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        form: dict[str, list[str]] = {}
        if method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            form = parse_qs(environ["wsgi.input"].read(min(length, 10_000)).decode(
                "utf-8", "replace"))
        token = (form.get("token") or query.get("token") or [""])[0]
        verified = unsubscribe.verify(settings, token) if token else None
        if verified is None:
            return respond(start_response, "400 Bad Request", pages.invalid(store))
        customer_id = verified[0]
        if method == "GET":
            try:
                chosen = preferences.state(engine, customer_id, clock())
            except NotFound:  # a genuine token for a customer deleted since: nothing to do
                return respond(start_response, "200 OK", pages.unsubscribed(store))
            page = pages.unsubscribed(store) if chosen.unsubscribed else \
                pages.paused(store, chosen.paused_until, token) if chosen.paused_until else \
                pages.ask(store, token)
            return respond(start_response, "200 OK", page)
        if method != "POST":
            return respond(start_response, "405 Method Not Allowed",
                           pages.message(store, "Not allowed", "Use the link in the email."))
        pause = (form.get("pause") or [""])[0]
        if pause:
            if pause not in {str(days) for days in preferences.PAUSE_DAYS}:
                return respond(start_response, "400 Bad Request", pages.message(
                    store, "Not a pause we offer", "Choose one of the pauses on the page."))
            try:
                until = preferences.pause(engine, customer_id, int(pause), clock())
            except NotFound:
                return respond(start_response, "200 OK", pages.unsubscribed(store))
            return respond(start_response, "200 OK", pages.paused(store, until, token))
        if (form.get("List-Unsubscribe") or [""])[0] != "One-Click":
            return respond(start_response, "400 Bad Request", pages.message(
                store, "Not a one-click request",
                "The request must carry List-Unsubscribe=One-Click (RFC 8058)."))
        try:
            suppressions.unsubscribe(engine, customer_id, clock(), source="one-click")
        except NotFound:  # a genuine token for a customer deleted since: nothing to do
            pass
        return respond(start_response, "200 OK", pages.unsubscribed(store))

    return application
