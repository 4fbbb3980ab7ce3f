"""SMTP command pipelining (RFC 2920): MAIL, RCPT and DATA in one write when the server offers
PIPELINING, against the loopback aiosmtpd server and a scripted socket server for what aiosmtpd
will not do."""

from __future__ import annotations

import email
import socket
import threading

import pytest

from engine.transport import SendStatus
from engine.transport.mailserver import DROP, KEEP_AND_DROP, MailServer
from engine.transport.smtp import SmtpTransport
from tests.transport.test_transport import SENDER, make_message, smtp_for


@pytest.fixture
def pipelining() -> bool:
    return True   # the server and transport fixtures (conftest.py): a server offering it


def test_a_pipelined_message_arrives_intact(transport, server):
    sent = make_message("ada@example.com", body="Prix : 12,50 €\n.point en tête\nfin\n")
    assert transport.send(sent).status is SendStatus.sent
    assert transport.send(make_message("bob@example.com", 2)).status is SendStatus.sent
    assert server.messages[0].data == sent.data
    assert [m.rcpt_tos for m in server.messages] == [("ada@example.com",), ("bob@example.com",)]
    assert server.pipelined == 2 and server.connections == 1


def test_a_server_without_pipelining_gets_one_command_at_a_time(settings):
    with MailServer() as plain, SmtpTransport(smtp_for(settings, plain)) as smtp:
        assert smtp.send(make_message()).status is SendStatus.sent
    assert len(plain.messages) == 1 and plain.pipelined == 0


def test_451_after_the_payload_is_a_try_and_the_connection_goes_on(transport, server):
    server.script = lambda stage, address: (
        "451 4.3.0 Try later" if stage == "data" and address == "ada@example.com" else None)
    outcome = transport.send(make_message("ada@example.com"))
    assert (outcome.status, outcome.code) == (SendStatus.failed, 451) and outcome.tried
    assert transport.send(make_message("bob@example.com", 2)).status is SendStatus.sent
    assert [m.rcpt_tos for m in server.messages] == [("bob@example.com",)]
    assert server.connections == 1


def test_a_refused_recipient_leaves_a_data_to_answer_and_the_connection_goes_on(
        transport, server):
    server.script = lambda stage, address: (
        "550 5.1.1 User unknown" if stage == "rcpt" and address == "gone@example.com" else None)
    assert transport.send(make_message("gone@example.com")).status is SendStatus.bounced
    # aiosmtpd answered the pipelined DATA with 503; the transport read it and reset.
    assert transport.send(make_message("ada@example.com", 2)).status is SendStatus.sent
    assert server.connections == 1 and server.pipelined == 2


def test_a_reused_connection_lost_at_mail_is_retried_fresh(settings, server):
    # As a server that closed an idle connection: the read of MAIL's reply fails.
    with SmtpTransport(smtp_for(settings, server)) as smtp:
        assert smtp.send(make_message("a@example.com", 1)).status is SendStatus.sent
        server.script = lambda stage, _: (DROP if stage == "mail" and server.connections == 1
                                          else None)
        assert smtp.send(make_message("b@example.com", 2)).status is SendStatus.sent
    assert [m.connection for m in server.messages] == [1, 2]


def test_a_connection_dropped_after_the_payload_is_unknown(transport, server):
    server.script = lambda stage, _: KEEP_AND_DROP if stage == "data" else None
    outcome = transport.send(make_message())
    assert outcome.status is SendStatus.unknown and outcome.tried
    assert len(server.messages) == 1   # the server has it; its reply was lost


# -- a scripted server, for what aiosmtpd does not do ------------------------------------------

EHLO = b"250-scripted\r\n250-PIPELINING\r\n250-SMTPUTF8\r\n250 8BITMIME\r\n"


class ScriptedServer:
    """One connection on 127.0.0.1 answered from a fixed script: each step waits for that many
    command lines (None: the lines of a message up to its lone dot), then writes its reply.
    A step that waits for several commands proves the client sent them without waiting."""

    def __init__(self, steps: list[tuple[int | None, bytes]]):
        self.steps = steps
        self.received: list[list[bytes]] = []   # the lines each step waited for
        self.error: BaseException | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(10)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._thread.join(15)
        self._listener.close()

    def _serve(self) -> None:
        try:
            connection, _ = self._listener.accept()
            with connection, connection.makefile("rb") as lines:
                connection.settimeout(10)
                connection.sendall(b"220 scripted ESMTP\r\n")
                for count, reply in self.steps:
                    got: list[bytes] = []
                    while (len(got) < count) if count is not None else got[-1:] != [b".\r\n"]:
                        got.append(lines.readline())
                    self.received.append(got)
                    connection.sendall(reply)
        except BaseException as error:  # the test reports it
            self.error = error


def test_a_server_that_accepts_data_after_refusing_every_recipient_gets_an_empty_message(
        settings):
    steps = [
        (1, EHLO),
        (3, b"250 2.1.0 Ok\r\n550 5.1.1 No such user\r\n354 Go ahead\r\n"),   # RFC 2920 3.1
        (1, b"554 5.5.1 No valid recipients\r\n"),   # the lone dot
        (1, b"250 2.0.0 Ok\r\n"),                    # RSET
        (3, b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 Go ahead\r\n"),
        (None, b"250 2.0.0 Ok: queued\r\n"),
        (1, b"221 2.0.0 Bye\r\n"),                   # QUIT
    ]
    with ScriptedServer(steps) as server:
        settings_ = settings.smtp.model_copy(update={"port": server.port, "timeout_seconds": 5})
        with SmtpTransport(settings_) as smtp:
            refused = smtp.send(make_message("gone@example.com"))
            sent = smtp.send(make_message("ada@example.com", 2))
    assert server.error is None
    assert (refused.status, refused.code, refused.enhanced) == (SendStatus.bounced, 550, "5.1.1")
    assert sent.status is SendStatus.sent
    ehlo, first, dot, rset, second, message, quit_ = server.received
    assert first == [f"MAIL FROM:<{SENDER}>\r\n".encode(), b"RCPT TO:<gone@example.com>\r\n",
                     b"DATA\r\n"]
    assert [line.upper() for line in dot + rset + quit_] == [b".\r\n", b"RSET\r\n", b"QUIT\r\n"]
    assert second[1] == b"RCPT TO:<ada@example.com>\r\n"
    parsed = email.message_from_bytes(b"".join(message[:-1]))
    assert parsed["Message-ID"] == "<2.test@maison-verte.example>"


def test_smtputf8_addresses_go_one_command_at_a_time(settings):
    # A refused MAIL shows it: a pipelining client would have sent RCPT and DATA behind it.
    steps = [(1, EHLO), (1, b"451 4.3.0 Try later\r\n"), (1, b"250 Ok\r\n"),
             (1, b"221 Bye\r\n")]
    with ScriptedServer(steps) as server:
        settings_ = settings.smtp.model_copy(update={"port": server.port, "timeout_seconds": 5})
        with SmtpTransport(settings_) as smtp:
            outcome = smtp.send(make_message("zoë@exemple.fr"))
    assert server.error is None and (outcome.status, outcome.code) == (SendStatus.failed, 451)
    ehlo, [mail], rset, quit_ = server.received
    assert mail.upper().startswith(b"MAIL FROM:") and b"SMTPUTF8" in mail
    assert [line.upper() for line in rset + quit_] == [b"RSET\r\n", b"QUIT\r\n"]
