"""Transports against a real aiosmtpd server on 127.0.0.1 (engine.mailserver), real files."""

from __future__ import annotations

import email
import email.policy
import logging
import shutil
import socket
import ssl
import subprocess
import threading
from email.message import EmailMessage
from pathlib import Path

import pytest
from pydantic import SecretStr

from engine import config
from engine.transport import (
    FileTransport,
    MemoryTransport,
    Outcome,
    OutgoingMessage,
    Scope,
    SendStatus,
    Stage,
    backoff,
    classify,
)
from engine.transport.mailserver import DROP, MailServer, serve
from engine.transport.pacing import Backoff, RateLimiter
from engine.transport.smtp import SmtpTransport
from tests.clock import FakeClock

SENDER = "bounces@maison-verte.example"

# The ``server`` fixture (conftest.py) with and without PIPELINING offered: both paths of a send.
both_paths = pytest.mark.parametrize("pipelining", [False, True],
                                     ids=["one-at-a-time", "pipelining"])


def make_message(rcpt: str = "ada@example.com", n: int = 1, body: str = "") -> OutgoingMessage:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Maison Verte <hello@maison-verte.example>"
    msg["To"] = rcpt
    msg["Subject"] = f"Votre remise n°{n}"
    msg["Message-ID"] = f"<{n}.test@maison-verte.example>"
    msg.set_content(body or f"Bonjour,\n.une ligne qui commence par un point\nmessage {n}\n")
    return OutgoingMessage(SENDER, rcpt, msg.as_bytes(), msg["Message-ID"])


def smtp_for(settings: config.Settings, server: MailServer, **changes) -> config.Smtp:
    """The repository's config.yaml SMTP section, pointed at the test server."""
    return settings.smtp.model_copy(update={"port": server.port, **changes})


# -- delivery over SMTP ------------------------------------------------------------------------

def test_message_arrives_intact(transport, server):
    sent = make_message("ada@example.com", body="Prix : 12,50 €\n.point en tête\nfin\n")
    outcome = transport.send(sent)
    assert outcome.status is SendStatus.sent and outcome.code == 250
    [received] = server.messages
    assert received.mail_from == SENDER and received.rcpt_tos == ("ada@example.com",)
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["Subject"] == "Votre remise n°1"
    assert parsed["Message-ID"] == "<1.test@maison-verte.example>"
    # The line starting with a dot survives SMTP's dot-stuffing; the euro sign its encoding.
    assert parsed.get_content().replace("\r\n", "\n") == "Prix : 12,50 €\n.point en tête\nfin\n"


def test_bare_line_feeds_are_sent_as_crlf(transport, server):
    # email's default policy writes bare LF; SMTP needs CRLF (aiosmtpd refuses long bare lines).
    msg = EmailMessage()
    msg["To"], msg["Subject"], msg["Message-ID"] = "ada@example.com", "LF", "<lf@x.example>"
    msg.set_content("line one\n" + "x" * 900 + "\n.dot\n")
    data = msg.as_bytes()
    assert b"\r\n" not in data
    outcome = transport.send(OutgoingMessage(SENDER, "ada@example.com", data, "<lf@x.example>"))
    assert outcome.status is SendStatus.sent
    received = server.messages[0].data
    assert received.count(b"\n") == received.count(b"\r\n") and b"\r\n.dot\r\n" in received


def test_one_connection_carries_many_messages(transport, server):
    outcomes = [transport.send(make_message(f"c{n}@example.com", n)) for n in range(5)]
    assert {o.status for o in outcomes} == {SendStatus.sent}
    assert len(server.messages) == 5
    assert server.connections == 1 and transport.connections_opened == 1


def test_421_fails_and_the_next_send_reconnects_after_a_pause(settings, server):
    clock = FakeClock()
    server.script = lambda stage, address: "421 4.3.2 Shutting down" if stage == "data" else None
    with SmtpTransport(smtp_for(settings, server), clock=clock.monotonic,
                       sleep=clock.sleep) as transport:
        outcome = transport.send(make_message("ada@example.com"))
        assert (outcome.status, outcome.code, outcome.enhanced) == (SendStatus.failed, 421,
                                                                    "4.3.2")
        server.script = None
        assert transport.send(make_message("bob@other.example", 2)).status is SendStatus.held
        clock.advance(seconds=outcome.retry_after)
        assert transport.send(make_message("bob@other.example", 2)).status is SendStatus.sent
    assert server.connections == 2


@both_paths
def test_a_server_wide_421_holds_new_connections_not_the_recipient_domain(transport, server):
    server.script = lambda stage, _: "421 4.7.0 Too busy, closing" if stage == "mail" else None
    outcome = transport.send(make_message("ada@example.com"))
    assert outcome.status is SendStatus.failed and outcome.code == 421
    assert outcome.scope is Scope.server and not outcome.tried   # no attempt of the message
    assert transport.deferred_for("example.com") == 0
    assert 0 < transport.held_for() <= outcome.retry_after


@both_paths
def test_421_to_mail_on_a_reused_connection_is_retried_on_a_fresh_one(settings, server):
    # A per-connection message limit: nothing of the message was sent, so resend at once.
    with SmtpTransport(smtp_for(settings, server)) as smtp:
        assert smtp.send(make_message("a@example.com", 1)).status is SendStatus.sent
        server.script = lambda stage, _: ("421 4.7.0 Too many messages on this connection"
                                          if stage == "mail" and server.connections == 1
                                          else None)
        assert smtp.send(make_message("b@example.com", 2)).status is SendStatus.sent
    assert [m.connection for m in server.messages] == [1, 2]


def test_451_is_a_transient_failure_with_a_delay(settings):
    replies = {"data": ["451 4.3.0 Local error, try later", None],
               "rcpt": {"gone@example.org": "550 5.1.1 User unknown"}}
    with MailServer(replies=replies) as server, SmtpTransport(smtp_for(settings, server)) as smtp:
        outcome = smtp.send(make_message("ada@example.com"))
        assert outcome.status is SendStatus.failed and outcome.code == 451
        assert outcome.tried and outcome.retry_after is None  # the runner's retry delay applies
        assert smtp.deferred_for("example.com") == 0         # one 451 holds no domain back
        assert smtp.send(make_message("gone@example.org", 2)).status is SendStatus.bounced
        assert smtp.send(make_message("bob@example.org", 3)).status is SendStatus.sent
    assert [m.rcpt_tos for m in server.messages] == [("bob@example.org",)]


@both_paths
def test_unknown_address_bounces_and_the_connection_stays_usable(transport, server):
    server.script = lambda stage, address: (
        "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"
        if stage == "rcpt" and address == "gone@example.com" else None)
    outcome = transport.send(make_message("gone@example.com"))
    assert (outcome.status, outcome.code, outcome.enhanced) == (SendStatus.bounced, 550, "5.1.1")
    assert "gone" not in outcome.detail and "User unknown" in outcome.detail
    assert transport.send(make_message("ada@example.com", 2)).status is SendStatus.sent
    assert server.connections == 1 and len(server.messages) == 1


def test_policy_refusal_blocks(transport, server):
    server.script = lambda stage, _: ("554 5.7.1 Message rejected as spam" if stage == "data"
                                      else None)
    outcome = transport.send(make_message())
    assert (outcome.status, outcome.enhanced) == (SendStatus.blocked, "5.7.1")


def test_wrong_password_blocks_and_right_one_sends(settings, caplog):
    caplog.set_level(logging.DEBUG)
    with MailServer(credentials=("shop", "right-secret")) as server:
        wrong = smtp_for(settings, server, username="shop", password=SecretStr("wrong-secret"))
        with SmtpTransport(wrong) as smtp:
            outcome = smtp.send(make_message("ada@example.com"))
        assert outcome.status is SendStatus.blocked and outcome.code == 535
        right = smtp_for(settings, server, username="shop", password=SecretStr("right-secret"))
        with SmtpTransport(right) as smtp:
            assert smtp.send(make_message("ada@example.com")).status is SendStatus.sent
        # config.yaml's default username is "" (no AUTH): the server then refuses MAIL.
        with SmtpTransport(smtp_for(settings, server)) as smtp:
            assert smtp.send(make_message("ada@example.com")).status is SendStatus.blocked
    assert len(server.messages) == 1
    for secret_or_address in ("wrong-secret", "right-secret", "ada@example.com"):
        assert secret_or_address not in caplog.text
    assert "example.com" in caplog.text   # domains are logged


@both_paths
def test_connection_dropped_after_data_is_unknown(transport, server):
    server.script = lambda stage, _: DROP if stage == "data" else None
    outcome = transport.send(make_message())
    assert outcome.status is SendStatus.unknown and outcome.code is None
    assert server.messages == []


@both_paths
def test_connection_dropped_before_data_is_a_transient_failure(settings, server):
    clock = FakeClock()
    server.script = lambda stage, _: DROP if stage == "rcpt" else None
    with SmtpTransport(smtp_for(settings, server), clock=clock.monotonic,
                       sleep=clock.sleep) as transport:
        dropped = transport.send(make_message())
        assert dropped.status is SendStatus.failed and not dropped.tried
        server.script = None
        clock.advance(seconds=dropped.retry_after)
        assert transport.send(make_message("bob@other.example", 2)).status is SendStatus.sent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_no_server_listening_is_a_transient_failure(settings):
    smtp = settings.smtp.model_copy(update={"port": free_port(), "timeout_seconds": 2})
    with SmtpTransport(smtp) as transport:
        outcome = transport.send(make_message())
    assert outcome.status is SendStatus.failed and "Connection" in outcome.detail


def test_four_threads_send_200_messages_once_each(settings, server):
    messages = [make_message(f"c{n}@d{n % 7}.example", n) for n in range(200)]
    outcomes: list[Outcome] = []
    with SmtpTransport(smtp_for(settings, server, max_connections=4,
                                rate_per_second=100_000)) as smtp:
        def work(share: list[OutgoingMessage]) -> None:
            outcomes.extend(smtp.send(m) for m in share)

        threads = [threading.Thread(target=work, args=(messages[i::4],)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [o.status for o in outcomes] == [SendStatus.sent] * 200
    ids = [email.message_from_bytes(m.data)["Message-ID"] for m in server.messages]
    assert len(ids) == 200 and len(set(ids)) == 200
    assert 1 <= server.connections <= 4


# -- pacing: rate limit and per-domain back-off, on a fake clock -------------------------------

def test_rate_limiter_spaces_messages_evenly():
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock.monotonic, sleep=clock.sleep)
    start = clock.monotonic()
    times = []
    for _ in range(30):
        limiter.wait()
        times.append(clock.monotonic() - start)
    assert times == pytest.approx([n / 10 for n in range(30)])
    assert max(sum(1 for t in times if w <= t < w + 1) for w in times) == 10


def test_rate_limit_applies_to_smtp_sends(settings, server):
    clock = FakeClock()
    with SmtpTransport(smtp_for(settings, server, rate_per_second=5), clock=clock.monotonic,
                       sleep=clock.sleep) as smtp:
        for n in range(11):
            assert smtp.send(make_message(f"c{n}@example.com", n)).status is SendStatus.sent
    assert sum(clock.slept) == pytest.approx(2.0)   # 11 messages at 5/s: 2 seconds of waiting
    assert len(server.messages) == 11


def test_a_domain_that_keeps_saying_later_is_held_back_while_others_continue(settings,
                                                                             server):
    clock = FakeClock()
    seen: list[str] = []

    def script(stage: str, address: str) -> str | None:
        if stage == "rcpt":
            seen.append(address)
            if address.endswith("@slow.example"):
                return "450 4.2.1 Too many messages, slow down"
        return None

    server.script = script
    unpaced = smtp_for(settings, server, rate_per_second=1e9)
    pacing = config.Delivery(domain_backoff_after=2, domain_backoff_seconds=30,
                             domain_backoff_cap_seconds=100)
    with SmtpTransport(unpaced, delivery=pacing, clock=clock.monotonic, sleep=clock.sleep) as smtp:
        first = smtp.send(make_message("a@slow.example"))
        assert (first.status, first.tried, first.retry_after) == (SendStatus.failed, True, None)
        second = smtp.send(make_message("b@slow.example", 2))   # the second "later" in a row
        assert (second.status, second.retry_after) == (SendStatus.failed, 30)
        assert smtp.send(make_message("c@fast.example", 3)).status is SendStatus.sent
        waiting = smtp.send(make_message("d@slow.example", 4))
        assert waiting.status is SendStatus.held and waiting.retry_after == pytest.approx(30)
        assert waiting.scope is Scope.domain and not waiting.tried
        assert seen == ["a@slow.example", "b@slow.example", "c@fast.example"]  # d not tried
        assert smtp.deferred_for("SLOW.example") == pytest.approx(30)

        clock.advance(seconds=31)
        assert smtp.send(make_message("d@slow.example", 4)).retry_after == 60   # doubled
        clock.advance(seconds=61)
        assert smtp.send(make_message("e@slow.example", 5)).retry_after == 100  # capped
        clock.advance(seconds=101)
        server.script = None
        assert smtp.send(make_message("e@slow.example", 5)).status is SendStatus.sent
        assert smtp.deferred_for("slow.example") == 0


def test_a_refused_connection_holds_back_new_connections_without_trying(settings):
    clock = FakeClock()
    greetings = {"connect": ["421 4.3.2 Too busy, try again later", "421 4.3.2 Still busy"]}
    pacing = config.Delivery(connection_backoff_seconds=2, connection_backoff_cap_seconds=60)
    with MailServer(replies=greetings) as server, SmtpTransport(
            smtp_for(settings, server), delivery=pacing, clock=clock.monotonic,
            sleep=clock.sleep) as smtp:
        refused = smtp.send(make_message("a@one.example"))
        assert (refused.status, refused.code, refused.scope) == (SendStatus.failed, 421,
                                                                 Scope.server)
        assert refused.retry_after == 2 and not refused.tried
        others = [smtp.send(make_message(f"b{n}@two.example", n)) for n in range(5)]
        assert {(o.status, o.scope) for o in others} == {(SendStatus.held, Scope.server)}
        assert server.connections == 1   # held back: no connection per message

        clock.advance(seconds=2)
        assert smtp.send(make_message("a@one.example")).retry_after == 4   # doubled
        clock.advance(seconds=4)
        assert smtp.send(make_message("a@one.example")).status is SendStatus.sent
        assert smtp.held_for() == 0
        assert smtp.send(make_message("c@one.example", 7)).status is SendStatus.sent
    assert server.connections == 3 and len(server.messages) == 2


def test_a_transient_auth_refusal_holds_the_server_back_briefly(settings):
    # Two answers: smtplib tries a second mechanism after the first is refused.
    answers = {"auth": ["454 4.7.0 Temporary authentication failure"] * 2}
    with MailServer(replies=answers, credentials=("shop", "right-secret")) as server:
        right = smtp_for(settings, server, username="shop", password=SecretStr("right-secret"))
        clock = FakeClock()
        with SmtpTransport(right, clock=clock.monotonic, sleep=clock.sleep) as smtp:
            later = smtp.send(make_message())
            assert (later.status, later.code, later.scope) == (SendStatus.failed, 454,
                                                               Scope.server)
            clock.advance(seconds=later.retry_after)
            assert smtp.send(make_message()).status is SendStatus.sent


def test_backoff_opens_a_window_after_signals_in_a_row_and_forgets_on_clear():
    clock = FakeClock()
    backoff_ = Backoff(base=10, cap=1000, after=3, clock=clock.monotonic)
    assert [backoff_.signal("x.example") for _ in range(3)] == [0, 0, 10]
    assert backoff_.signal("x.example") == 10   # during the window: not counted again
    clock.advance(seconds=10)
    assert backoff_.signal("x.example") == 20 and backoff_.remaining("x.example") == 20
    backoff_.clear("x.example")
    assert backoff_.remaining("x.example") == 0 and backoff_.signal("x.example") == 0


def test_backoff_doubles_up_to_a_cap_with_repeatable_jitter():
    assert [backoff(a, base=60, cap=600) for a in range(1, 6)] == [60, 120, 240, 480, 600]
    jittered = [backoff(3, base=60, cap=600, jitter_key=f"<{n}@x>") for n in range(50)]
    assert all(120 <= j <= 240 for j in jittered) and len(set(jittered)) > 40
    assert backoff(3, 60, 600, "<1@x>") == backoff(3, 60, 600, "<1@x>")


# -- reading replies ---------------------------------------------------------------------------

@pytest.mark.parametrize("code, text, stage, status", [
    (250, "2.0.0 Ok: queued as 4F2", Stage.final, SendStatus.sent),
    (421, "4.7.0 Try again later, closing connection", Stage.mail, SendStatus.failed),
    (450, "4.2.1 Mailbox busy", Stage.rcpt, SendStatus.failed),
    (451, "4.7.1 Greylisted, retry in 5 minutes", Stage.rcpt, SendStatus.failed),
    (452, "4.5.3 Too many recipients", Stage.rcpt, SendStatus.failed),
    (550, "5.1.1 The email account that you tried to reach does not exist", Stage.rcpt,
     SendStatus.bounced),
    (551, "User not local", Stage.rcpt, SendStatus.bounced),
    (553, "5.1.3 Bad recipient address syntax", Stage.rcpt, SendStatus.bounced),
    (550, "No such user here", Stage.rcpt, SendStatus.bounced),
    (550, "5.2.1 Mailbox disabled", Stage.rcpt, SendStatus.bounced),
    (552, "5.2.2 Mailbox full", Stage.rcpt, SendStatus.failed),
    (554, "5.7.1 Relay access denied", Stage.rcpt, SendStatus.blocked),
    (550, "5.7.26 Unauthenticated email is not accepted (DMARC)", Stage.final,
     SendStatus.blocked),
    (535, "5.7.8 Authentication credentials invalid", Stage.connect, SendStatus.blocked),
    (530, "Must issue a STARTTLS command first", Stage.mail, SendStatus.blocked),
    (553, "5.1.8 Sender address domain does not exist", Stage.mail, SendStatus.blocked),
    (550, "5.1.7 Bad sender mailbox syntax", Stage.rcpt, SendStatus.blocked),
    (550, "Message refused", Stage.final, SendStatus.blocked),
    (552, "5.3.4 Message size exceeds fixed limit", Stage.final, SendStatus.blocked),
    (554, "Transaction failed", Stage.final, SendStatus.blocked),
])
def test_replies_are_read_into_the_vocabulary(code, text, stage, status):
    assert classify(code, text, stage).status is status


def test_detail_never_keeps_an_address_and_stays_short():
    outcome = classify(550, "5.1.1 <Jo.Smith+promo@Example.com>: unknown " + "x" * 400,
                       Stage.rcpt)
    assert "Smith" not in outcome.detail and "<address>" in outcome.detail
    assert len(outcome.detail) <= 200 and outcome.enhanced == "5.1.1"


def test_an_address_with_a_line_break_is_refused():
    with pytest.raises(ValueError, match="line break"):
        OutgoingMessage(SENDER, "ada@example.com\r\nRCPT TO:<x@y.z>", b"", "<1@x>")


# -- transports that stay on this machine ------------------------------------------------------

def test_file_transport_writes_a_parseable_eml_once_per_message(tmp_path):
    transport = FileTransport(tmp_path / "outbox")
    message = make_message("ada@example.com", 7)
    assert transport.send(message).status is SendStatus.sent
    assert transport.send(message).status is SendStatus.sent   # a retry overwrites
    [path] = (tmp_path / "outbox").iterdir()
    assert path.name == "7.test@maison-verte.example.eml"
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["To"] == "ada@example.com" and "message 7" in parsed.get_content()


def test_memory_transport_keeps_sent_messages_and_can_script_outcomes():
    bounced = Outcome(SendStatus.bounced, 550, "5.1.1", "User unknown")
    memory = MemoryTransport(reply=lambda m: bounced if m.rcpt_to.startswith("gone") else
                             Outcome(SendStatus.sent, 250))
    assert memory.send(make_message("gone@example.com")) == bounced
    assert memory.send(make_message("ada@example.com", 2)).status is SendStatus.sent
    assert [m.rcpt_to for m in memory.sent] == ["ada@example.com"]


def test_mail_server_writes_its_outbox(settings, tmp_path):
    with MailServer(outbox=tmp_path / "outbox") as server, \
            SmtpTransport(smtp_for(settings, server)) as smtp:
        for n in (1, 2):
            smtp.send(make_message(f"c{n}@example.com", n))
    files = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert files == ["000001.eml", "000002.eml"]
    second = email.message_from_bytes((tmp_path / "outbox" / files[1]).read_bytes())
    assert second["To"] == "c2@example.com"


def test_serve_runs_in_a_thread_until_stopped(settings, tmp_path):
    port = free_port()
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=serve, args=("127.0.0.1", port, tmp_path / "out", stop, ready))
    thread.start()
    try:
        assert ready.wait(10)
        with SmtpTransport(settings.smtp.model_copy(update={"port": port})) as smtp:
            assert smtp.send(make_message()).status is SendStatus.sent
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive() and [p.name for p in (tmp_path / "out").iterdir()] == [
        "000001.eml"]


# -- TLS, with a certificate made for the test -------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def server_context(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_sends_encrypted_when_the_certificate_is_trusted(settings, certificate, security):
    tls = {"tls_context" if security == "starttls" else "ssl_context": server_context(certificate)}
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    with MailServer(**tls) as server:
        smtp = smtp_for(settings, server, security=security)
        with SmtpTransport(smtp, ssl_context=trusting) as transport:
            assert transport.send(make_message()).status is SendStatus.sent
        # The system trust store does not know the test certificate: refuse, do not retry.
        with SmtpTransport(smtp) as transport:
            refused = transport.send(make_message("bob@example.com", 2))
        assert refused.status is SendStatus.blocked and "CERTIFICATE" in refused.detail.upper()
    [received] = server.messages
    assert received.tls
