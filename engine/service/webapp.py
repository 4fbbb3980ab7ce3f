"""``retain serve``: the one small web app of the engine, and the server that runs it.

Owns the HTTP side: routing ``POST /webhooks/shopify`` to the Shopify source (verify, store,
apply: shop/sources/shopify.py) and every other path to the one-click unsubscribe endpoint
(consent/optout.py), so one process behind the shop's web server serves both, as
``retain unsubscribe-server`` served the latter alone; reading a request body whole, up to a
limit, before anything is checked (the HMAC covers the raw bytes); on SQLite, one webhook
written at a time by this process's threads (a thread waiting on a lock starts the moment it
is free, where SQLite's busy handler polls with sleeps of up to 100 ms: that, not the work,
made the slowest answers); and a threaded WSGI server from the standard library whose request
log shows method, path and status, never the query string (it carries unsubscribe tokens).
Must not hold business rules; reads the clock only through the ``clock`` it is given.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from datetime import datetime
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from sqlalchemy import Engine

from engine.config import Settings
from engine.consent import erasure, optout
from engine.shop.sources import shopify

log = logging.getLogger(__name__)
WEBHOOKS_PATH = "/webhooks/shopify"
STATUS_TEXT = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized",
               404: "404 Not Found", 405: "405 Method Not Allowed",
               413: "413 Content Too Large"}


def app(settings: Settings, engine: Engine, clock: Callable[[], datetime]):
    """The WSGI application: webhooks at /webhooks/shopify, unsubscribe everywhere else."""
    unsubscribe = optout.app(settings, engine, clock)
    one_writer = threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()

    def reply(start_response, status: int, text: str) -> Iterable[bytes]:
        body = (text + "\n").encode()
        start_response(STATUS_TEXT[status], [("Content-Type", "text/plain; charset=utf-8"),
                                             ("Content-Length", str(len(body)))])
        return [body]

    def application(environ: dict[str, Any], start_response) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").rstrip("/") != WEBHOOKS_PATH:
            return unsubscribe(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            return reply(start_response, 405, "webhooks are POSTed")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > shopify.MAX_BODY:
            return reply(start_response, 413, "the body is too large")
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {key[5:].replace("_", "-"): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        with one_writer:
            answer = shopify.receive(engine, settings, headers, body, clock(), erasure.forget)
        if answer.status != 200:
            log.warning("webhook refused: %s %s", answer.status, answer.text)
        return reply(start_response, answer.status, answer.text)

    return application


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow client does not keep the process from stopping


class _Handler(WSGIRequestHandler):
    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        path = self.path.split("?", 1)[0]
        log.info("%s %s %s", self.command, path, code)


def server(settings: Settings, engine: Engine, host: str, port: int,
           clock: Callable[[], datetime]) -> WSGIServer:
    """A threaded server on ``host:port`` (port 0: any free port); ``serve_forever`` runs it."""
    return make_server(host, port, app(settings, engine, clock), server_class=_Server,
                       handler_class=_Handler)
