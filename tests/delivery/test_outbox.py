"""The sender threads' claims and outcomes, committed together: each thread still gets the answer
for its own delivery, and one step the database refuses does not undo the others."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from engine.campaigns import planner
from engine.consent import suppressions
from engine.delivery import ledger, outbox
from engine.tables import DeliveryStatus as S
from tests.conftest import on_each_backend
from tests.delivery.hostile import realistic_shop, rows
from tests.shopdata import NOW

engine = on_each_backend("outbox")
THREADS = 40


def planned(engine, settings, winback, count: int) -> dict[str, int]:
    """``count`` customers' winback deliveries planned at NOW: delivery id by address."""
    realistic_shop(engine, count)
    ledger.record_plan(engine, planner.plan(engine, settings, winback, NOW), NOW)
    return {address: row.id for address, row in rows(engine).items()}


def at_once(calls: list) -> list:
    """Run ``calls`` on as many threads, released together; their results (or errors)."""
    results: list = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def one(n: int) -> None:
        start.wait()
        try:
            results[n] = calls[n]()
        except Exception as error:  # noqa: BLE001 - the test looks at it
            results[n] = error

    threads = [threading.Thread(target=one, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_each_thread_gets_its_own_deliverys_claim_and_outcome(engine, settings, winback):
    ids = planned(engine, settings, winback, THREADS)
    addresses = sorted(ids)
    unsubscribed, taken, bounced = addresses[0], addresses[1], addresses[2]
    with engine.begin() as conn:
        suppressions.add(conn, unsubscribed, "unsubscribed", "test", NOW)
    other_run = outbox.Outbox(engine, "another-run")
    assert other_run.step(None, ids[taken], NOW, "<taken@shop>").attempts == 1
    other_run.close()

    box = outbox.Outbox(engine, "this-run")
    claims = dict(zip(addresses, at_once([
        lambda a=a: box.step(None, ids[a], NOW, f"<{ids[a]}@shop>") for a in addresses]),
        strict=True))

    assert claims[unsubscribed] == outbox.Claim(0, suppressed=True)
    assert claims[taken] is None  # the other run has it
    sending = [a for a in addresses if a not in (unsubscribed, taken)]
    assert all(claims[a] == outbox.Claim(1, suppressed=False) for a in sending)
    ledger_rows = rows(engine)
    assert str(ledger_rows[unsubscribed].status) == S.suppressed.value
    assert ledger_rows[taken].claimed_by == "another-run"
    assert {ledger_rows[a].message_id for a in sending} == {f"<{ids[a]}@shop>" for a in sending}
    assert {str(ledger_rows[a].status) for a in sending} == {S.sending.value}

    later = NOW + timedelta(seconds=5)
    outcomes = {a: outbox.Result(ids[a], S.sent, f"<{ids[a]}@shop>") for a in sending}
    outcomes[bounced] = outbox.Result(ids[bounced], S.bounced, f"<{ids[bounced]}@shop>",
                                      "550 5.1.1 no such user", suppress=bounced)
    answers = at_once([lambda r=r: box.step(r, None, later) for r in outcomes.values()])
    box.close()

    assert answers == [None] * len(outcomes)
    ledger_rows = rows(engine)
    assert str(ledger_rows[bounced].status) == S.bounced.value
    with engine.connect() as conn:
        assert suppressions.is_suppressed(conn, bounced)
    delivered = [a for a in sending if a != bounced]
    assert {str(ledger_rows[a].status) for a in delivered} == {S.sent.value}
    assert {ledger_rows[a].sent_at for a in delivered} == {later}


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_a_step_the_database_refuses_fails_alone(engine, settings, winback):
    """PostgreSQL refuses a NUL character in text: the one outcome carrying one fails, and the
    claims and outcomes committed in the same group as it stand."""
    ids = planned(engine, settings, winback, THREADS)
    addresses = sorted(ids)
    box = outbox.Outbox(engine, "this-run")
    at_once([lambda a=a: box.step(None, ids[a], NOW, f"<{ids[a]}@shop>") for a in addresses])

    refused = addresses[0]
    outcomes = [outbox.Result(ids[a], S.sent, f"<{ids[a]}@shop>") for a in addresses[1:]]
    outcomes.append(outbox.Result(ids[refused], S.failed, None, "451 \x00 later",
                                  retry_at=NOW + timedelta(hours=1)))
    answers = at_once([lambda r=r: box.step(r, None, NOW) for r in outcomes])
    box.close()

    assert [type(a).__name__ for a in answers].count("DataError") == 1
    assert answers[:-1] == [None] * (len(addresses) - 1)  # the last one is the refused one
    ledger_rows = rows(engine)
    assert str(ledger_rows[refused].status) == S.sending.value  # the next run says unknown
    assert {str(ledger_rows[a].status) for a in addresses[1:]} == {S.sent.value}
    with engine.connect() as conn:
        assert conn.execute(select(ledger.DELIVERIES.c.id).where(
            ledger.DELIVERIES.c.status == S.sending.value)).scalars().all() == [ids[refused]]
