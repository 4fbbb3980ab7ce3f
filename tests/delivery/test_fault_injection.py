"""Fault injection: runs against a hostile loopback server, checked at the server and in the
ledger.

The server (tests/delivery/hostile.py) answers 451 at random to RCPT and to DATA (seeded), drops
connections after DATA, refuses AUTH, and refuses every connection during a 421 storm; the shop
has most of its customers at two or three big providers. What must hold, whatever the server
does: every message it accepts arrives exactly once; every transient failure is sent in a later
run; a delivery is given up only after the server itself refused it ``max_attempts`` times (a
back-off on our side spends no attempt); a storm of refused connections slows the pool instead
of opening a connection per message. Time is a fake clock moved by the runs' own waits.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta

import pytest
from pydantic import SecretStr

from engine.delivery import ledger, runner
from engine.transport.mailserver import MailServer
from engine.transport.smtp import SmtpTransport
from tests.campaignfiles import load_campaign, write_campaign
from tests.clock import FakeClock
from tests.conftest import on_each_backend, settings_on
from tests.crash_sender import pointed_at
from tests.delivery.hostile import Faults, realistic_shop, received, rows
from tests.shopdata import NOW

LOGIN = ("shop", "s3cret-for-tests")


@pytest.fixture
def winback(tmp_path):
    return load_campaign(write_campaign(tmp_path))


def send(engine, settings, campaign, server, *, now=NOW, clock=None, plan=True, auth=False,
         max_connections=4, **delivery) -> runner.RunReport:
    """One `retain run` at ``now`` against ``server``, waiting on a fake clock."""
    clock = clock or FakeClock(now)
    local = pointed_at(settings, server.port, **delivery)
    smtp = local.smtp.model_copy(update={"max_connections": max_connections})
    if auth:
        smtp = smtp.model_copy(update={"username": LOGIN[0], "password": SecretStr(LOGIN[1])})
    local = local.model_copy(update={"smtp": smtp})
    with SmtpTransport(smtp, clock=clock.monotonic, sleep=clock.sleep,
                       delivery=local.delivery) as transport:
        return runner.run(engine, local, [campaign], now, transport, clock=clock,
                          sleep=clock.sleep, plan=plan)


def given_up(row) -> bool:
    return str(row.status) == "failed" and row.next_attempt_at is None


def test_one_recipients_451_does_not_hold_back_its_domain(engine, settings, project, winback):
    """Defect 7: a 451 to a few recipients used to silence their whole domain, and the rest of
    that domain's mail was refused locally and counted as attempts."""
    addresses = realistic_shop(engine, 300)
    faults = Faults(seed=3, rcpt=0.10)
    with MailServer(script=faults) as server:
        report = send(engine, settings, winback, server, retry_within_run_seconds=0)

    refused = set(faults.refusals)
    assert 10 <= len(refused) <= 60
    # Everyone the server did not refuse got the email in this very run, at every domain.
    assert sorted(received(server)) == sorted(a for a in addresses if a not in refused)
    assert report.campaigns["winback"].sent == len(addresses) - len(refused)
    ledger_now = rows(engine)
    for address in refused:  # one refusal each: one attempt spent, a retry ahead
        row = ledger_now[address]
        assert (str(row.status), row.attempts) == ("failed", 1)
        assert row.next_attempt_at > NOW and "451" in row.reason


@pytest.mark.parametrize("storm_at", ["connect", "mail"])
def test_a_421_storm_slows_the_pool_and_spends_no_attempts(engine, settings, project, winback,
                                                           storm_at):
    """Defect 8: during a storm every queued message opened its own connection and spent an
    attempt. Now a refused connection (a 421 greeting, or a 421 to MAIL) holds new connections
    back (1 s, 2 s, 4 s …) and costs no message an attempt."""
    addresses = realistic_shop(engine, 300)
    clock = FakeClock()
    storm_seconds = 20
    faults = Faults(storm=lambda: clock.elapsed < storm_seconds, storm_at=storm_at)
    with MailServer(script=faults) as server:
        report = send(engine, settings, winback, server, clock=clock,
                      connection_backoff_seconds=1)

    refused = faults.injected["421 storm"]
    # At most one connection per thread at the start, then one probe per back-off window
    # (a 421 to MAIL on a connection that carried mail before is retried once on a new one).
    windows = math.ceil(math.log2(storm_seconds + 1)) + 1
    assert 1 <= refused <= 4 + windows
    assert server.connections <= refused + 4
    assert sorted(received(server)) == sorted(addresses)  # all sent once the storm passed
    assert report.interrupted is None and report.campaigns["winback"].sent == len(addresses)
    assert {row.attempts for row in rows(engine).values()} == {1}


def test_an_auth_refusal_pauses_and_gives_up_nothing(engine, settings, project, winback):
    addresses = realistic_shop(engine, 40)
    with MailServer(credentials=("shop", "another-password")) as server:
        report = send(engine, settings, winback, server, auth=True)
    assert report.paused and "535" in report.paused and server.messages == []
    ledger_now = rows(engine).values()
    assert {(str(r.status), r.attempts) for r in ledger_now} == {("planned", 0)}

    with MailServer(credentials=LOGIN) as server:  # the password is fixed
        send(engine, settings, winback, server, now=NOW + timedelta(hours=1), plan=False,
             auth=True)
    assert sorted(received(server)) == sorted(addresses)
    assert {(str(r.status), r.attempts) for r in rows(engine).values()} == {("sent", 1)}


engine = on_each_backend("fault injection")


@pytest.fixture
def database(engine, settings):
    """(engine, settings) on SQLite, and on the PostgreSQL test server."""
    return engine, settings_on(engine, settings)


@pytest.mark.slow
@pytest.mark.parametrize("pipelining", [False, True], ids=["one-at-a-time", "pipelining"])
def test_a_hostile_server_loses_nothing_duplicates_nothing_gives_up_only_what_it_refused(
        database, project, winback, pipelining):
    """451 to 20 % of RCPTs and 20 % of DATAs, 1 % of connections dropped after DATA with the
    message lost and 1 % with it kept, 20 % of logins refused; runs an hour apart until nothing
    is left to send. Once with the server offering PIPELINING: MAIL, RCPT and DATA then come
    in one write, and a refused RCPT leaves a DATA to answer."""
    engine, settings = database
    addresses = realistic_shop(engine, 600)
    faults = Faults(seed=11, rcpt=0.20, data=0.20, drop=0.01, keep_and_drop=0.01, auth=0.20)
    max_attempts = 5
    runs = 0
    with MailServer(script=faults, credentials=LOGIN, pipelining=pipelining) as server:
        while runs < 12:
            send(engine, settings, winback, server, now=NOW + timedelta(hours=runs),
                 plan=runs == 0, auth=True, max_attempts=max_attempts)
            runs += 1
            if not ledger.due_count(engine, ["winback"], NOW + timedelta(days=1)):
                break

    ledger_now = rows(engine)
    arrived = Counter(received(server))
    by_status = Counter(str(r.status) for r in ledger_now.values())
    duplicates = sum(n - 1 for n in arrived.values())
    kept_and_dropped = {a for a, r in ledger_now.items()
                        if str(r.status) == "unknown" and a in arrived}
    lost = [a for a, r in ledger_now.items() if str(r.status) not in ("sent", "unknown")
            and not given_up(r)]
    print(f"\nfault injection: {len(addresses)} messages, {runs} runs, "
          f"{sum(faults.injected.values())} faults injected {dict(faults.injected)}, "
          f"{server.connections} connections, {duplicates} duplicates, {len(lost)} lost, "
          f"ledger {dict(by_status)}")

    assert duplicates == 0 and lost == []
    assert (server.pipelined > 0) is pipelining
    assert len(ledger_now) == len(addresses)
    # Every message the server accepted is in the ledger as sent, or unknown (the reply lost).
    assert set(arrived) == {a for a, r in ledger_now.items() if str(r.status) == "sent"} | \
        kept_and_dropped
    assert faults.injected["451 to RCPT"] > 100 and faults.injected["451 to DATA"] > 50
    for address, row in ledger_now.items():
        # The ledger counts exactly the tries the server judged, no more.
        assert row.attempts == faults.tries[address], address
        if given_up(row):  # only what the server itself refused max_attempts times
            assert faults.refusals[address] == row.attempts == max_attempts, address
        elif str(row.status) == "sent":
            assert faults.refusals[address] == row.attempts - 1, address
    assert by_status["unknown"] == faults.injected["dropped after DATA, message lost"] + \
        faults.injected["dropped after DATA, message kept"]
