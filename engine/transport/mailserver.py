"""A real SMTP server on loopback, for the demo and for every test that sends mail.

Owns: running aiosmtpd in a background thread (a context manager), keeping what it accepted
(``messages``, and ``outbox/<n>.eml`` files when an outbox is given), counting connections, and
answering as a test asks: any reply to the greeting, AUTH, MAIL, RCPT or after DATA, ``DROP``
to hang up without a reply, ``KEEP_AND_DROP`` to keep a message and hang up before the reply
(the reply is lost), AUTH with one login, STARTTLS or implicit TLS with a given certificate,
and PIPELINING (RFC 2920) offered in the EHLO reply when asked (``pipelining=True``; aiosmtpd
answers pipelined commands in order whether offered or not). ``pipelined`` counts the MAIL
commands that arrived with the next command already behind them: a client that pipelines.

Must not: relay mail anywhere, or be used as a production mail server. It is a sink.

    with MailServer(replies={"rcpt": {"gone@example.com": "550 5.1.1 User unknown"},
                             "data": ["451 4.3.0 Try later", None]}) as server:
        ...  # send to 127.0.0.1:server.port
    server.messages  # [Received(mail_from, rcpt_tos, data, connection, tls), ...]

A reply of ``"421 ..."`` also closes the connection afterwards, as RFC 5321 3.8 says a server
does; so does any reply to the greeting. Scripts see a stage (``"connect"``, ``"auth"``,
``"mail"``, ``"rcpt"``, ``"data"``) and what it concerns (``""`` for the greeting, the login
for AUTH, the address for MAIL and RCPT, the first recipient for DATA) and return a reply line,
or None to go on normally.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

DROP = "DROP"   # scripted reply: close the connection without answering
KEEP_AND_DROP = "KEEP_AND_DROP"  # at DATA: keep the message, close before the 250 goes out

Script = Callable[[str, str], "str | None"]
Replies = Mapping[str, "Mapping[str, str | None] | Sequence[str | None] | str"]


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    connection: int   # 1 for the first connection the server saw, 2 for the next ...
    tls: bool         # whether it came over TLS (STARTTLS or implicit)


def reply_table(replies: Replies) -> Script:
    """A script from a table: per stage, a reply for every command, per address, or in turn.

    ``{"rcpt": {"a@x.org": "550 5.1.1 No such user"}}`` answers RCPT for that address;
    ``{"data": ["451 4.3.0 Busy", None]}`` answers the first DATA with 451, the second normally
    (and every later one normally); ``{"mail": "421 4.7.0 Closing"}`` answers every MAIL.
    """
    turns = {stage: list(r) for stage, r in replies.items()
             if not isinstance(r, str | Mapping)}
    lock = threading.Lock()

    def script(stage: str, address: str) -> str | None:
        rule = replies.get(stage)
        if isinstance(rule, str):
            return rule
        if isinstance(rule, Mapping):
            return rule.get(address.lower(), rule.get(address))
        if stage in turns:
            with lock:
                return turns[stage].pop(0) if turns[stage] else None
        return None

    return script


class MailServer:
    """aiosmtpd on ``host:port`` (port 0: a free port, read ``.port`` once started)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, outbox: Path | None = None,
                 script: Script | None = None, replies: Replies | None = None,
                 credentials: tuple[str, str] | None = None,
                 tls_context: ssl.SSLContext | None = None,
                 ssl_context: ssl.SSLContext | None = None, pipelining: bool = False):
        self.host, self.outbox = host, Path(outbox) if outbox else None
        self.script = script or (reply_table(replies) if replies else None)
        self.credentials = credentials
        self.messages: list[Received] = []
        self.connections = 0
        self.pipelining = pipelining
        self.pipelined = 0   # MAIL commands that came with the next command behind them
        self._lock = threading.Lock()
        options: dict[str, Any] = {"tls_context": tls_context, "require_starttls": False}
        if credentials:
            # Loopback only: allow AUTH without TLS so tests need no certificate.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            options.update(auth_required=True, auth_require_tls=False,
                           authenticator=self._authenticate)
        self._controller = _Controller(self, host, port, ssl_context, options)

    @property
    def port(self) -> int:
        return self._controller.port

    def start(self) -> MailServer:
        # aiosmtpd logs every recipient at INFO: customers' addresses must not reach logs.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        if self.outbox:
            self.outbox.mkdir(parents=True, exist_ok=True)
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> MailServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- aiosmtpd handler hooks (they run in the server's thread) -----------------------------

    def _scripted(self, server: SMTP, stage: str, address: str) -> str | None:
        reply = self.script(stage, address) if self.script else None
        if reply == KEEP_AND_DROP and stage == "data":
            return reply
        if reply == DROP:
            server.transport.close()
            return "250 OK"   # never reaches the client: the transport is closed
        if reply and reply.startswith("421"):
            server.loop.call_soon(server.transport.close)  # after the reply is written
        return reply

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname   # what aiosmtpd does itself when there is no hook
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")   # before the last line, "250 HELP"
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> Any:
        # Bytes read off the socket and not yet parsed: the next command came with this one.
        # aiosmtpd's stream buffer is private: if it moves, the count stays 0, the server works.
        if getattr(getattr(server, "_reader", None), "_buffer", None):
            with self._lock:
                self.pipelined += 1
        reply = self._scripted(server, "mail", address)
        return MISSING if reply is None else reply

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> Any:
        reply = self._scripted(server, "rcpt", address)
        return MISSING if reply is None else reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        first = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        reply = self._scripted(server, "data", first)
        if reply is not None and reply != KEEP_AND_DROP:
            return reply
        data = envelope.original_content or b""
        tls = server.transport.get_extra_info("ssl_object") is not None
        with self._lock:
            number = len(self.messages) + 1
            self.messages.append(Received(envelope.mail_from or "", tuple(envelope.rcpt_tos),
                                          data, getattr(server, "connection_number", 0), tls))
        if self.outbox:
            _write_atomically(self.outbox / f"{number:06d}.eml", data)
        if reply == KEEP_AND_DROP:
            server.transport.close()  # the message is kept; its 250 never reaches the client
        return "250 OK"

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else ""
        reply = self.script("auth", login) if self.script else None
        if reply:
            return AuthResult(success=False, handled=False, message=reply)
        ok = (isinstance(auth_data, LoginPassword) and self.credentials is not None
              and (login, auth_data.password.decode()) == self.credentials)
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535

    def _greeting(self) -> str | None:
        """The scripted reply to a new connection instead of the 220 greeting, if any."""
        return self.script("connect", "") if self.script else None

    def _count_connection(self, server: SMTP) -> None:
        with self._lock:
            self.connections += 1
            server.connection_number = self.connections  # type: ignore[attr-defined]


class _Controller(Controller):
    """aiosmtpd's Controller, able to bind port 0 and tell the server about each connection."""

    def __init__(self, owner: MailServer, host: str, port: int,
                 ssl_context: ssl.SSLContext | None, options: dict[str, Any]):
        super().__init__(owner, hostname=host, port=port, ssl_context=ssl_context, **options)
        self._owner = owner
        self._triggered = False

    def factory(self) -> SMTP:
        server = _Smtp(self.handler, **self.SMTP_kwargs)
        # The first connection is Controller.start() checking that the server answers.
        if self._triggered:
            self._owner._count_connection(server)
            server.scripted = True
        self._triggered = True
        return server

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]  # the port the OS chose for 0
        super()._trigger_server()


class _Smtp(SMTP):
    """aiosmtpd's SMTP session, able to refuse a connection at the greeting (a 421 storm)."""

    scripted = False  # the Controller's own start-up check is never refused

    async def _handle_client(self) -> None:
        reply = self.event_handler._greeting() if self.scripted else None
        if reply is None:
            return await super()._handle_client()
        await self.push(reply)
        self.transport.close()


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def serve(host: str = "127.0.0.1", port: int = 8025, outbox: Path = Path("outbox"),
          stop: threading.Event | None = None, ready: threading.Event | None = None) -> None:
    """Run a sink until ``stop`` is set (or Ctrl-C), writing what arrives to ``outbox``.

    For a thread: ``ready`` is set once the server listens. Code that can use a ``with`` block
    is simpler with ``MailServer(host, port, outbox=...)`` itself.
    """
    stop = stop or threading.Event()
    with MailServer(host, port, outbox=outbox):
        if ready:
            ready.set()
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    serve()
