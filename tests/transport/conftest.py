"""Fixtures of the transport tests: the loopback server and a transport pointed at it."""

from __future__ import annotations

import pytest

from engine.transport.mailserver import MailServer
from engine.transport.smtp import SmtpTransport


@pytest.fixture
def pipelining() -> bool:
    """Whether ``server`` offers PIPELINING; test_pipelining.py says yes."""
    return False


@pytest.fixture
def server(pipelining):
    with MailServer(pipelining=pipelining) as running:
        yield running


@pytest.fixture
def transport(settings, server):
    smtp = settings.smtp.model_copy(update={"port": server.port})
    with SmtpTransport(smtp, local_hostname="test.local") as sending:
        yield sending
