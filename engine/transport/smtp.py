"""Sending over SMTP: a pool of reused connections, a rate limit, and back-off on our side.

Owns: opening connections as ``settings.smtp`` says (plain, STARTTLS or implicit TLS; AUTH when
a username is set), one SMTP transaction per message (MAIL, RCPT, DATA pipelined in one write
when the server offers PIPELINING, RFC 2920, else one at a time; either way each reply is read
at its stage, so a connection lost after the payload is told apart from one lost before it),
handing connections to worker threads (at most ``max_connections``), the messages-per-second
limit shared by all connections, and two back-offs that hold messages without trying them
(``held``):

- the server's: a refused connection, a 421 or a refused AUTH/MAIL stops new connections for
  ``delivery.connection_backoff_seconds``, doubling while it goes on; connections that still
  work carry on, and while recovering one new connection is tried at a time. So a 421 storm
  costs a connection per back-off window, not one per queued message.
- a recipient domain's: only after ``delivery.domain_backoff_after`` 450/451/452 in a row for
  that domain. One recipient's 451 is about that message (the runner retries it); it does not
  silence a domain with millions of customers.

Must not: decide retries or suppressions (it reports an ``Outcome``; the runner acts), log an
address (domains only) or the password, read the wall clock (``clock``/``sleep`` are injected
and default to the monotonic clock, which only paces sending).
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import threading
import time
from dataclasses import replace

from engine.config import Delivery, Smtp
from engine.transport import (
    CLOSING,
    DEFER_CODES,
    Outcome,
    OutgoingMessage,
    Scope,
    SendStatus,
    Stage,
    classify,
    domain_of,
    dropped,
    held,
)
from engine.transport.pacing import Backoff, Clock, RateLimiter, Sleep

log = logging.getLogger(__name__)


SERVER = ""  # the server's key in its Backoff: one server per transport


class _Refused(Exception):
    """Opening a connection failed or was held back; ``outcome`` says which, and how long."""

    def __init__(self, outcome: Outcome):
        self.outcome = outcome


class SmtpTransport:
    """Thread-safe SMTP sending through up to ``settings.max_connections`` reused connections.

    ``ssl_context`` defaults to the system's trust store with hostname checks; pass another
    (say, one that trusts a test certificate) to change whom the client trusts.
    """

    def __init__(self, settings: Smtp, *, delivery: Delivery | None = None,
                 clock: Clock = time.monotonic, sleep: Sleep = time.sleep,
                 ssl_context: ssl.SSLContext | None = None, local_hostname: str | None = None,
                 burst: float = 1.0):
        self.settings = settings
        pacing = delivery or Delivery()  # config.yaml's delivery: section, for its back-offs
        # One context for all connections: loading the trust store costs ~40 ms each time.
        self._ssl_context = ssl_context or (
            ssl.create_default_context() if settings.security != "none" else None)
        if settings.username and settings.security == "none" and not _loopback(settings.host):
            log.warning("smtp.security is none: the SMTP password would cross the network "
                        "unencrypted; set security: starttls or ssl")
        self._local_hostname = local_hostname
        self.limiter = RateLimiter(settings.rate_per_second, burst, clock, sleep)
        self.connections = settings.max_connections  # a worker's share may be smaller
        self.server = Backoff(pacing.connection_backoff_seconds,
                              pacing.connection_backoff_cap_seconds, 1, clock)
        self.domains = Backoff(pacing.domain_backoff_seconds, pacing.domain_backoff_cap_seconds,
                               pacing.domain_backoff_after, clock)
        self._idle: list[smtplib.SMTP] = []   # LIFO: the last used is the least likely stale
        self._open = 0                         # connections idle + in use + being opened
        self._unproven = 0                     # new connections before their first reply
        self._closed = False
        self._pool = threading.Condition()
        self.connections_opened = 0            # a counter for tests and benchmarks

    # -- the Transport protocol --------------------------------------------------------------

    def send(self, message: OutgoingMessage) -> Outcome:
        domain = domain_of(message.rcpt_to)
        wait = self.domains.remaining(domain)
        if wait > 0:
            outcome = held(Scope.domain, wait, f"{domain} kept answering 'try again later'")
        else:
            self.limiter.wait()
            outcome = self._send_once(message, allow_stale_retry=True)
            if outcome.scope is Scope.message and outcome.code in DEFER_CODES:
                # A "later" about this message; only several in a row hold back its domain.
                outcome = replace(outcome, retry_after=self.domains.signal(domain) or None)
            elif outcome.scope is Scope.message:
                self.domains.clear(domain)
        quiet = outcome.status in (SendStatus.sent, SendStatus.held)
        log.log(logging.DEBUG if quiet else logging.INFO, "%s to %s: %s %s", outcome.status,
                domain, outcome.code or "-", outcome.enhanced or "")
        return outcome

    def share(self, rate_per_second: float, connections: int) -> None:
        """Send at most ``rate_per_second`` through at most ``connections`` from now on (a
        worker's share of the fleet's limits); connections over the new count close on return."""
        with self._pool:
            self.limiter.per_second = rate_per_second
            # A tenth of a second's worth may go at once: a worker woken late on a busy host
            # catches up within that, instead of losing its share for good.
            self.limiter.burst = max(1.0, rate_per_second / 10)
            self.connections = max(1, connections)
            self._pool.notify_all()

    def deferred_for(self, domain: str) -> float:
        """Seconds this transport will still hold back mail to ``domain`` (0.0: none)."""
        return self.domains.remaining(domain.lower())

    def held_for(self) -> float:
        """Seconds before this transport opens a new connection again (0.0: it may now)."""
        return self.server.remaining(SERVER)

    def close(self) -> None:
        """QUIT idle connections; connections in use are closed when their send returns."""
        with self._pool:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._pool.notify_all()
        for connection in idle:
            _quit(connection)

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one message -------------------------------------------------------------------------

    def _send_once(self, message: OutgoingMessage, allow_stale_retry: bool) -> Outcome:
        try:
            connection, fresh = self._checkout()
        except _Refused as refused:
            return refused.outcome
        outcome, stage, reusable = Outcome(SendStatus.failed), Stage.mail, False
        try:
            outcome, stage, reusable = _transact(connection, message)
        finally:
            # A reused connection the server closed while idle, or a per-connection message
            # limit (421 to MAIL): nothing about this message was sent yet, so one retry on a
            # fresh connection is safe and saves the message a retry hours later.
            stale = (stage is Stage.mail and outcome.code in (None, CLOSING) and not fresh
                     and allow_stale_retry and outcome.status is SendStatus.failed)
            outcome = self._judge_server(outcome, fresh, stale)
            self._checkin(connection, reusable)
        if stale:
            return self._send_once(message, allow_stale_retry=False)
        return outcome

    # -- the pool ----------------------------------------------------------------------------

    def _judge_server(self, outcome: Outcome, fresh: bool, stale: bool) -> Outcome:
        """After a transaction: back new connections off (a 421, a dropped connection) or, when
        a new connection carried a message, forgive the server. Done before the connection
        goes back, so that threads waiting for one see it."""
        with self._pool:
            if fresh:
                self._unproven -= 1
            if not stale and _slows_server(outcome):
                return replace(outcome, retry_after=self.server.signal(SERVER))
            if fresh and outcome.tried:
                self.server.clear(SERVER)
        return outcome

    def _checkout(self) -> tuple[smtplib.SMTP, bool]:
        """An idle connection, or a new one while under max_connections and the server is not
        held back, else wait for one in use; ``_Refused`` when there is none to wait for.

        While the server recovers from a back-off, one new connection at a time is tried: the
        others wait until it has carried its first message (or failed)."""
        with self._pool:
            while True:
                if self._closed:
                    raise _Refused(dropped(Stage.connect, smtplib.SMTPServerDisconnected(
                        "the transport was closed")))
                if self._idle:
                    return self._idle.pop(), False
                wait = self.server.remaining(SERVER)
                probing = self._unproven and self.server.signals(SERVER)
                if not wait and not probing and self._open < self.connections:
                    self._open += 1
                    self._unproven += 1
                    break
                if wait and not self._open:
                    raise _Refused(held(Scope.server, wait,
                                        "the mail server refused us a moment ago; waiting"))
                self._pool.wait()
        try:
            return self._connect(), True
        except OSError as error:  # smtplib's and ssl's errors too: each becomes an Outcome
            outcome = _refusal(error)
            with self._pool:
                if outcome.status is SendStatus.failed:  # before anyone else looks
                    outcome = replace(outcome, retry_after=self.server.signal(SERVER))
                self._open -= 1
                self._unproven -= 1
                self._pool.notify_all()
            raise _Refused(outcome) from None
        except BaseException:
            with self._pool:
                self._open -= 1
                self._unproven -= 1
                self._pool.notify_all()
            raise

    def _checkin(self, connection: smtplib.SMTP, reusable: bool) -> None:
        with self._pool:
            keep = reusable and not self._closed and self._open <= self.connections
            if keep:
                self._idle.append(connection)
            else:
                self._open -= 1
            self._pool.notify_all()
        if keep:
            return
        if reusable:
            _quit(connection)   # closed while in use: say goodbye properly
        else:
            _drop(connection)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = self._ssl_context
        connection: smtplib.SMTP
        if s.security == "ssl":
            connection = smtplib.SMTP_SSL(s.host, s.port, self._local_hostname,
                                          timeout=s.timeout_seconds, context=context)
        else:
            connection = smtplib.SMTP(s.host, s.port, self._local_hostname,
                                      timeout=s.timeout_seconds)
        try:
            connection.ehlo_or_helo_if_needed()
            if s.security == "starttls":
                connection.starttls(context=context)
                connection.ehlo()
            if s.username:  # "" means no AUTH, so config.yaml can leave it ${VAR:-}
                password = s.password.get_secret_value() if s.password else ""
                connection.login(s.username, password)
        except BaseException:
            _drop(connection)
            raise
        with self._pool:
            self.connections_opened += 1
        log.debug("connected to %s:%s (%s)", s.host, s.port, s.security)
        return connection


def _transact(connection: smtplib.SMTP, message: OutgoingMessage
              ) -> tuple[Outcome, Stage, bool]:
    """MAIL, RCPT, DATA on an open connection → (outcome, stage reached, connection reusable).

    Pipelined (RFC 2920) when the server offers PIPELINING: two round trips a message instead
    of four. One command at a time otherwise, and for SMTPUTF8 addresses (smtplib switches the
    command encoding for those)."""
    options = _mail_options(connection, message)
    if "SMTPUTF8" not in options and connection.has_extn("pipelining"):
        return _pipelined(connection, message, options)
    return _one_at_a_time(connection, message, options)


def _one_at_a_time(connection: smtplib.SMTP, message: OutgoingMessage, options: list[str]
                   ) -> tuple[Outcome, Stage, bool]:
    stage = Stage.mail
    try:
        # putcmd + getreply, not mail()/rcpt(): those parse each address again (~20 µs each);
        # OutgoingMessage already refused line breaks in the addresses.
        if "SMTPUTF8" in options:  # smtplib switches the command encoding for these
            code, text = connection.mail(message.mail_from, options)
        else:
            connection.putcmd("mail", _mail_from(message, options))
            code, text = connection.getreply()
        if code == 250:
            stage = Stage.rcpt
            if "SMTPUTF8" in options:
                code, text = connection.rcpt(message.rcpt_to)
            else:
                connection.putcmd("rcpt", f"TO:<{message.rcpt_to}>")
                code, text = connection.getreply()
        if code in (250, 251):
            stage = Stage.data
            code, text = connection.docmd("DATA")
    except OSError as error:  # includes smtplib.SMTPServerDisconnected and timeouts
        return dropped(stage, error), stage, False
    if code == 354:
        return _payload(connection, message)
    outcome = classify(code, text, stage)
    # Abandon the half-made transaction so the connection can carry the next message.
    return outcome, stage, code != CLOSING and _reset(connection)


# What each pipelined command's reply must be for the transaction to go on.
_PIPELINE = ((Stage.mail, (250,)), (Stage.rcpt, (250, 251)), (Stage.data, (354,)))


def _pipelined(connection: smtplib.SMTP, message: OutgoingMessage, options: list[str]
               ) -> tuple[Outcome, Stage, bool]:
    """MAIL, RCPT and DATA in one write, then their three replies in order (RFC 2920).

    The first refusal is the outcome, at its stage; the later replies are still read so the
    connection stays in step. A 421, or a connection lost after a refusal, ends the
    connection with the refusal as the outcome: the server closes, nothing was sent."""
    refusal: tuple[Outcome, Stage] | None = None
    stage = Stage.mail
    try:
        connection.send(f"MAIL {_mail_from(message, options)}\r\n"
                        f"RCPT TO:<{message.rcpt_to}>\r\nDATA\r\n")
        for stage, accepted in _PIPELINE:
            code, text = connection.getreply()
            if refusal is None and code not in accepted:
                refusal = classify(code, text, stage), stage
            if code == CLOSING:   # the server hangs up: the later replies never come
                return *refusal, False
        if refusal is None:
            return _payload(connection, message)
        if code == 354:
            # RFC 2920 3.1: the server took DATA after refusing MAIL or every RCPT. End that
            # empty message; its reply says nothing about ours.
            connection.send(".\r\n")
            if connection.getreply()[0] == CLOSING:
                return *refusal, False
    except OSError as error:  # includes smtplib.SMTPServerDisconnected and timeouts
        return (*refusal, False) if refusal else (dropped(stage, error), stage, False)
    # Abandon the half-made transaction so the connection can carry the next message.
    return *refusal, _reset(connection)


def _payload(connection: smtplib.SMTP, message: OutgoingMessage
             ) -> tuple[Outcome, Stage, bool]:
    """After a 354: the message and the server's verdict on it. A connection lost from here on
    may have delivered it (``dropped`` says ``unknown`` once the whole payload went out)."""
    stage = Stage.payload
    try:
        connection.send(_wire(message.data))
        stage = Stage.final
        code, text = connection.getreply()
    except OSError as error:
        return dropped(stage, error), stage, False
    return classify(code, text, stage), stage, code != CLOSING


def _refusal(error: OSError) -> Outcome:
    """What a failure to open a connection means: transient, or ``blocked`` (settings)."""
    if isinstance(error, smtplib.SMTPResponseException):  # a 421/554 greeting, AUTH refused
        return classify(error.smtp_code, error.smtp_error, Stage.connect)
    if isinstance(error, ssl.SSLError):   # wrong port or protocol, untrusted certificate
        return _blocked(dropped(Stage.connect, error))
    if isinstance(error, smtplib.SMTPException) and \
            not isinstance(error, smtplib.SMTPServerDisconnected):
        return _blocked(dropped(Stage.connect, error))  # no STARTTLS or AUTH offered: a mismatch
    return dropped(Stage.connect, error)  # refused, unreachable, hung up, timed out: try later


def _slows_server(outcome: Outcome) -> bool:
    """A 421, or a transient failure about the connection: new connections wait."""
    return outcome.code == CLOSING or (outcome.scope is Scope.server
                                       and outcome.status is SendStatus.failed)


def _reset(connection: smtplib.SMTP) -> bool:
    try:
        return connection.rset()[0] == 250
    except OSError:
        return False


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _blocked(outcome: Outcome) -> Outcome:
    return replace(outcome, status=SendStatus.blocked)


def _mail_options(connection: smtplib.SMTP, message: OutgoingMessage) -> list[str]:
    options = []
    if not message.data.isascii() and connection.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    if not (message.mail_from + message.rcpt_to).isascii() and connection.has_extn("smtputf8"):
        options.append("SMTPUTF8")
    return options


def _mail_from(message: OutgoingMessage, options: list[str]) -> str:
    """MAIL's argument: the envelope sender and its options (BODY=8BITMIME ...)."""
    return f"FROM:<{message.mail_from}>" + "".join(" " + o for o in options)


_LINE_END = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


def _wire(data: bytes) -> bytes:
    """The DATA payload: CRLF line ends, leading dots doubled (RFC 5321 4.5.2), final dot."""
    # The regexes cost ~0.3 ms each on 20 KB; the counts ~10 µs, and render already wrote CRLF.
    if not data.count(b"\n") == data.count(b"\r") == data.count(b"\r\n"):
        data = _LINE_END.sub(b"\r\n", data)
    if data.startswith(b".") or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _quit(connection: smtplib.SMTP) -> None:
    try:
        connection.quit()
    except (OSError, smtplib.SMTPException):
        _drop(connection)


def _drop(connection: smtplib.SMTP) -> None:
    try:
        connection.close()
    except OSError:
        pass
