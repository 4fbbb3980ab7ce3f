"""The one-click unsubscribe endpoint (RFC 8058) as a small WSGI application.

Owns the HTTP side of unsubscribing: a POST with ``List-Unsubscribe=One-Click`` and a valid
token (what Gmail or Apple Mail send when the reader presses "unsubscribe") suppresses the
address at once; a GET (the link in the footer) only shows a page with a button, because mail
scanners follow links and must not unsubscribe anyone. A forged or altered token changes
nothing. Mount ``app(settings, engine)`` under ``unsubscribe.url`` in any WSGI server, or run
``retain unsubscribe-server`` for a simple setup. Reads the clock for the suppression's time
through the ``clock`` it is given. Must not send.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import Engine

from engine.config import Settings
from engine.consent import suppressions, unsubscribe
from engine.errors import NotFound

PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>
<body style="font-family: Georgia, serif; max-width: 32em; margin: 3em auto; padding: 0 1em">
<h1>{title}</h1><p>{text}</p>{form}<p><a href="{store_url}">{store}</a></p></body></html>"""


def app(settings: Settings, engine: Engine, clock: Callable[[], datetime]):
    """The WSGI application; ``clock`` stamps the suppression (the command line's wall clock)."""

    def respond(start_response, status: str, title: str, text: str, token: str = "",
                form: bool = False) -> Iterable[bytes]:
        button = (f'<form method="post"><input type="hidden" name="token" '
                  f'value="{html.escape(token)}"><input type="hidden" name="List-Unsubscribe" '
                  f'value="One-Click"><button type="submit">Unsubscribe</button></form>'
                  if form else "")
        body = PAGE.format(title=html.escape(title), text=html.escape(text), form=button,
                           store_url=html.escape(settings.store.url),
                           store=html.escape(settings.store.name)).encode()
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
            return respond(start_response, "400 Bad Request", "This link is not valid",
                           "The unsubscribe link is incomplete or was changed. Use the link "
                           "from the email itself, or reply to it and we will remove you.")
        if method == "GET":
            return respond(start_response, "200 OK", "Unsubscribe",
                           f"Stop receiving marketing emails from {settings.store.name}?",
                           token=token, form=True)
        if method != "POST":
            return respond(start_response, "405 Method Not Allowed", "Not allowed",
                           "Use the link in the email.")
        if (form.get("List-Unsubscribe") or [""])[0] != "One-Click":
            return respond(start_response, "400 Bad Request", "Not a one-click request",
                           "The request must carry List-Unsubscribe=One-Click (RFC 8058).")
        try:
            suppressions.unsubscribe(engine, verified[0], clock(), source="one-click")
        except NotFound:  # a genuine token for a customer deleted since: nothing to do
            pass
        return respond(start_response, "200 OK", "You are unsubscribed",
                       f"{settings.store.name} will not send you marketing emails any more.")

    return application
