"""Sending over SMTP: a pool of reused connections, a rate limit, and per-domain back-off.

Owns: opening connections as ``settings.smtp`` says (plain, STARTTLS or implicit TLS; AUTH when
a username is set), one SMTP transaction per message (MAIL, RCPT, DATA driven step by step so a
connection lost after the payload is told apart from one lost before it), handing connections
to worker threads (at most ``max_connections``), the messages-per-second limit shared by all
connections, and backing off a recipient domain that answered 421/450/451/452.

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
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from engine.transport import (
    DEFER_CODES,
    Outcome,
    OutgoingMessage,
    SendStatus,
    Stage,
    backoff,
    classify,
    domain_of,
    dropped,
)

if TYPE_CHECKING:
    from engine.config import Smtp

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class RateLimiter:
    """A token bucket shared by threads: on average ``per_second`` messages, ``burst`` at once.

    A caller that finds the bucket empty reserves its token (the count goes negative) and then
    sleeps outside the lock, so waiting threads are served in turn and none starves.
    """

    def __init__(self, per_second: float, burst: float = 1.0,
                 clock: Clock = time.monotonic, sleep: Sleep = time.sleep):
        if per_second <= 0 or burst < 1:
            raise ValueError("per_second must be positive and burst at least 1")
        self.per_second, self.burst = per_second, burst
        self._clock, self._sleep = clock, sleep
        self._tokens = burst
        self._updated = clock()
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Take one token, sleeping until it is due; returns the seconds slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst,
                               self._tokens + (now - self._updated) * self.per_second)
            self._updated = now
            self._tokens -= 1
            delay = -self._tokens / self.per_second if self._tokens < 0 else 0.0
        if delay > 0:
            self._sleep(delay)
        return delay


class DomainThrottle:
    """Remembers which recipient domains asked us to slow down, and until when."""

    def __init__(self, base: float = 30.0, cap: float = 900.0, clock: Clock = time.monotonic):
        self.base, self.cap = base, cap
        self._clock = clock
        self._strikes: dict[str, tuple[int, float]] = {}  # domain → (deferrals in a row, until)
        self._lock = threading.Lock()

    def remaining(self, domain: str) -> float:
        """Seconds until ``domain`` may be tried again; 0.0 when it may be tried now."""
        with self._lock:
            entry = self._strikes.get(domain)
        return max(0.0, entry[1] - self._clock()) if entry else 0.0

    def defer(self, domain: str) -> float:
        """Back the domain off: base, 2×base, ... up to cap. Returns the seconds."""
        with self._lock:
            strikes = self._strikes.get(domain, (0, 0.0))[0] + 1
            delay = backoff(strikes, self.base, self.cap)
            self._strikes[domain] = (strikes, self._clock() + delay)
        return delay

    def clear(self, domain: str) -> None:
        with self._lock:
            self._strikes.pop(domain, None)


class SmtpTransport:
    """Thread-safe SMTP sending through up to ``settings.max_connections`` reused connections.

    ``ssl_context`` defaults to the system's trust store with hostname checks; pass another
    (say, one that trusts a test certificate) to change whom the client trusts.
    """

    def __init__(self, settings: Smtp, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep,
                 ssl_context: ssl.SSLContext | None = None, local_hostname: str | None = None,
                 burst: float = 1.0, domain_backoff: tuple[float, float] = (30.0, 900.0)):
        self.settings = settings
        # One context for all connections: loading the trust store costs ~40 ms each time.
        self._ssl_context = ssl_context or (
            ssl.create_default_context() if settings.security != "none" else None)
        if settings.username and settings.security == "none" and not _loopback(settings.host):
            log.warning("smtp.security is none: the SMTP password would cross the network "
                        "unencrypted; set security: starttls or ssl")
        self._local_hostname = local_hostname
        self.limiter = RateLimiter(settings.rate_per_second, burst, clock, sleep)
        self.throttle = DomainThrottle(*domain_backoff, clock=clock)
        self._idle: list[smtplib.SMTP] = []   # LIFO: the last used is the least likely stale
        self._open = 0                         # connections idle + in use + being opened
        self._closed = False
        self._pool = threading.Condition()
        self.connections_opened = 0            # a counter for tests and benchmarks

    # -- the Transport protocol --------------------------------------------------------------

    def send(self, message: OutgoingMessage) -> Outcome:
        domain = domain_of(message.rcpt_to)
        wait = self.throttle.remaining(domain)
        if wait > 0:
            return Outcome(SendStatus.failed, detail=f"{domain} asked us to back off",
                           retry_after=wait)
        self.limiter.wait()
        outcome, stage = self._send_once(message, allow_stale_retry=True)
        if outcome.status is SendStatus.sent:
            self.throttle.clear(domain)
        elif (outcome.status is SendStatus.failed and outcome.code in DEFER_CODES
              and stage not in (Stage.connect, Stage.mail)):
            # Only a reply about the recipient defers its domain; a 421 to our greeting or
            # MAIL is the server speaking for every domain.
            outcome = replace(outcome, retry_after=self.throttle.defer(domain))
        log_level = logging.DEBUG if outcome.status is SendStatus.sent else logging.INFO
        log.log(log_level, "%s to %s: %s %s", outcome.status, domain,
                outcome.code or "-", outcome.enhanced or "")
        return outcome

    def deferred_for(self, domain: str) -> float:
        """Seconds this transport will still refuse to try ``domain`` (0.0: not deferred)."""
        return self.throttle.remaining(domain.lower())

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

    def _send_once(self, message: OutgoingMessage, allow_stale_retry: bool
                   ) -> tuple[Outcome, Stage]:
        try:
            connection, fresh = self._checkout()
        except smtplib.SMTPResponseException as error:
            return classify(error.smtp_code, error.smtp_error, Stage.connect), Stage.connect
        except ssl.SSLError as error:      # wrong port or protocol, untrusted certificate
            return _blocked(dropped(Stage.connect, error)), Stage.connect
        except smtplib.SMTPServerDisconnected as error:
            return dropped(Stage.connect, error), Stage.connect
        except smtplib.SMTPException as error:  # no STARTTLS or AUTH offered: settings mismatch
            return _blocked(dropped(Stage.connect, error)), Stage.connect
        except OSError as error:           # refused, unreachable, timed out: try later
            return dropped(Stage.connect, error), Stage.connect
        outcome, stage, reusable = _transact(connection, message)
        self._checkin(connection, reusable)
        # A reused connection the server closed while idle, or a per-connection message limit
        # (421 to MAIL): nothing about this message was sent yet, so one retry on a fresh
        # connection is safe and saves the message a retry hours later.
        stale = stage is Stage.mail and (outcome.code in (None, 421))
        if stale and not fresh and allow_stale_retry and outcome.status is SendStatus.failed:
            return self._send_once(message, allow_stale_retry=False)
        return outcome, stage

    # -- the pool ----------------------------------------------------------------------------

    def _checkout(self) -> tuple[smtplib.SMTP, bool]:
        """An idle connection, or a new one while under max_connections, else wait for one."""
        with self._pool:
            while True:
                if self._closed:
                    raise smtplib.SMTPServerDisconnected("the transport was closed")
                if self._idle:
                    return self._idle.pop(), False
                if self._open < self.settings.max_connections:
                    self._open += 1
                    break
                self._pool.wait()
        try:
            connection = self._connect()
        except BaseException:
            with self._pool:
                self._open -= 1
                self._pool.notify()
            raise
        return connection, True

    def _checkin(self, connection: smtplib.SMTP, reusable: bool) -> None:
        with self._pool:
            keep = reusable and not self._closed
            if keep:
                self._idle.append(connection)
            else:
                self._open -= 1
            self._pool.notify()
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
    """MAIL, RCPT, DATA on an open connection → (outcome, stage reached, connection reusable)."""
    stage = Stage.mail
    try:
        # putcmd + getreply, not mail()/rcpt(): those parse each address again (~20 µs each);
        # OutgoingMessage already refused line breaks in the addresses.
        options = _mail_options(connection, message)
        if "SMTPUTF8" in options:  # smtplib switches the command encoding for these
            code, text = connection.mail(message.mail_from, options)
        else:
            connection.putcmd("mail", f"FROM:<{message.mail_from}>" +
                              "".join(" " + o for o in options))
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
        if code == 354:
            stage = Stage.payload
            connection.send(_wire(message.data))
            stage = Stage.final
            code, text = connection.getreply()
            return classify(code, text, stage), stage, code != 421
    except OSError as error:  # includes smtplib.SMTPServerDisconnected and timeouts
        return dropped(stage, error), stage, False
    outcome = classify(code, text, stage)
    # Abandon the half-made transaction so the connection can carry the next message.
    return outcome, stage, code != 421 and _reset(connection)


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
