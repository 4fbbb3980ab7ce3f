"""A run delivers every planned email exactly once, through a real SMTP server on loopback, as a
well-formed message; a killed run resends nothing and loses nothing; two runs at once send each
email once."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import insert, select, text
from sqlmodel import SQLModel

from engine import db, tables
from engine.campaigns import planner
from engine.consent import suppressions, unsubscribe
from engine.delivery import ledger, renderworkers, runner, runs
from engine.errors import TemplateError
from engine.transport.mailserver import MailServer
from tests.campaignfiles import load_campaign, write_campaign
from tests.crash_sender import send
from tests.shopdata import NOW, Shop

HERE = Path(__file__).resolve().parents[1]
MESSAGE_ID = re.compile(rb"^Message-ID: <d(\d+)\.winback@[^>]+>", re.M | re.I)


def drowsy_buyers(engine, count: int) -> list[int]:
    """``count`` consenting customers whose one order was 70 days ago (drowsy), fast."""
    with engine.begin() as conn:
        first = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM customers")).scalar() + 1
        ids = list(range(first, first + count))
        conn.execute(insert(tables.Customer.__table__), [dict(
            id=i, external_id=f"bulk-{i}", email=f"buyer{i}@example.com",
            email_key=f"buyer{i}@example.com", first_name="Ann", last_name="Lee",
            accepts_marketing=True, created_at=NOW.replace(year=2025), tags="") for i in ids])
        conn.execute(insert(tables.Order.__table__), [dict(
            external_id=f"bulk-o{i}", customer_id=i, created_at=NOW.replace(month=4, day=6),
            local_date=NOW.replace(month=4, day=6).date(), status="paid", total_cents=4000)
            for i in ids])
        db.bump_data_version(conn)
    return ids


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def statuses(engine) -> dict[int, str]:
    with engine.connect() as conn:
        return {r.id: str(r.status) for r in conn.execute(
            select(ledger.DELIVERIES.c.id, ledger.DELIVERIES.c.status))}


def received_ids(server: MailServer) -> list[int]:
    return [int(MESSAGE_ID.search(m.data).group(1)) for m in server.messages]


def test_every_planned_email_arrives_once_and_a_second_run_sends_nothing(
        engine, settings, project, winback, server):
    shop = Shop(engine)
    zoe = shop.customer(email="Zoe.Martin@example.com", first_name="Zoë")
    shop.order(zoe, days_ago=70, total=4000)
    others = drowsy_buyers(engine, 24)

    report = send(engine, settings, winback, server)

    assert report.campaigns["winback"].sent == 25 and report.paused is None
    assert sorted(received_ids(server)) == sorted(statuses(engine))
    assert set(statuses(engine).values()) == {"sent"}
    assert sorted(m.rcpt_tos[0] for m in server.messages) == sorted(
        ["Zoe.Martin@example.com"] + [f"buyer{i}@example.com" for i in others])

    again = send(engine, settings, winback, server)
    assert again.campaigns["winback"].sent == 0
    assert len(server.messages) == 25


def test_a_message_is_well_formed_with_one_click_unsubscribe(engine, settings, project,
                                                             winback, server):
    shop = Shop(engine)
    zoe = shop.customer(email="Zoe.Martin@example.com", first_name="Zoë")
    shop.order(zoe, days_ago=70, total=4000)
    send(engine, settings, winback, server)

    [received] = server.messages
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    with engine.connect() as conn:
        row = conn.execute(select(ledger.DELIVERIES)).one()
        code = conn.execute(select(tables.Coupon.__table__.c.code)).scalar_one()
    assert message["Message-ID"] == row.message_id == f"<d{row.id}.winback@maison-verte.example>"
    assert message["From"] == "Maison Verte <hello@maison-verte.example>"
    assert message["Reply-To"] == "care@maison-verte.example"
    assert message["To"] == "Zoe.Martin@example.com"
    assert message["Subject"] == "Zoë, we miss you: 10% off"
    assert message["X-Campaign-Id"] == "winback"
    assert message["List-Id"].endswith("<marketing.maison-verte.example>")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = re.fullmatch(r"<(https://[^>]+)>, <(mailto:[^>]+)>",
                                 message["List-Unsubscribe"]).groups()
    token = parse_qs(urlparse(https).query)["token"][0]
    assert https.startswith("https://maison-verte.example/unsubscribe?token=")
    assert mailto == f"mailto:unsubscribe@maison-verte.example?subject=unsubscribe%20{token}"
    assert unsubscribe.verify(settings, token) == (zoe, "marketing")

    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.get_payload()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert plain.get_content_charset() == html.get_content_charset() == "utf-8"
    markup, words = html.get_content(), plain.get_content()
    for body in (unescape(markup), words):
        assert "Zoë" in body and code in body
    footer = markup[markup.rindex("Unsubscribe") - len(https) - 200:]
    assert f'href="{https}"' in footer
    assert "12 rue des Lilas, 75011 Paris" in footer
    assert https in words and "12 rue des Lilas, 75011 Paris" in words


@pytest.mark.slow
def test_a_killed_run_loses_nothing_and_resends_nothing(engine, settings, project, winback,
                                                         server, config_path, tmp_path):
    """SIGKILL a sending process part-way, then run again: every planned email is received
    or reported unknown (the ones in flight at the kill), none is received twice."""
    drowsy_buyers(engine, 2000)
    ledger.record_plan(engine, planner.plan(engine, settings, winback, NOW), NOW)
    planned = set(statuses(engine))
    assert len(planned) == 2000
    campaign_file = tmp_path / "winback.yaml"

    child = subprocess.Popen([sys.executable, str(HERE / "crash_sender.py"), str(config_path),
                              str(campaign_file), str(server.port), "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(server.messages) < 0.3 * len(planned):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the sender made no progress"
            time.sleep(0.005)
        workers = children_of(child.pid)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()  # reaped: recover() sees the process is gone
    assert len(workers) == 2
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers):  # the render workers die with their run
        assert time.monotonic() < deadline, "render workers outlived their run"
        time.sleep(0.02)
    before = statuses(engine)
    at_kill = len(server.messages)
    in_flight = {i for i, s in before.items() if s == "sending"}
    assert 0.3 * len(planned) <= at_kill < len(planned)
    assert len(in_flight) <= settings.smtp.max_connections
    with engine.connect() as conn:  # claimed with its Message-ID: it may be at the server
        assert {r.id: r.message_id for r in conn.execute(select(
            ledger.DELIVERIES.c.id, ledger.DELIVERIES.c.message_id).where(
            ledger.DELIVERIES.c.id.in_(in_flight)))} == {
            i: f"<d{i}.winback@maison-verte.example>" for i in in_flight}

    report = send(engine, settings, winback, server)

    after = statuses(engine)
    received = received_ids(server)
    assert [i for i, n in Counter(received).items() if n > 1] == []  # never twice
    unknown = {i for i, s in after.items() if s == "unknown"}
    sent = {i for i, s in after.items() if s == "sent"}
    assert unknown == in_flight and report.recovered_unknown == len(in_flight)
    assert sent | unknown == planned and not sent & unknown
    assert sent <= set(received) <= sent | unknown
    assert len(sent) == len(set(received) - unknown)
    assert report.campaigns["winback"].sent == len(planned) - len(
        [i for i, s in before.items() if s == "sent"]) - len(in_flight)


@pytest.mark.slow
def test_two_runs_at_once_send_each_email_once(engine, settings, project, winback, server,
                                                config_path, tmp_path):
    drowsy_buyers(engine, 400)
    campaign_file = tmp_path / "winback.yaml"
    command = [sys.executable, str(HERE / "crash_sender.py"), str(config_path),
               str(campaign_file), str(server.port), "0"]
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(2)]
    reports = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
        reports.append(json.loads(out.decode().splitlines()[-1]))

    received = received_ids(server)
    assert len(received) == len(set(received)) == 400
    assert set(statuses(engine).values()) == {"sent"}
    assert sorted(received) == sorted(statuses(engine))
    sent_by = [sum(c["sent"] for c in r["campaigns"]) for r in reports]
    assert sum(sent_by) == 400
    # Each run reports what it planned itself: together, each delivery once.
    planned_by = [sum(c["planned"] for c in r["campaigns"]) for r in reports]
    assert sum(planned_by) == 400
    # Both planned at once: the unique key kept one row per customer.
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM deliveries")).scalar() == 400
        assert conn.execute(text("SELECT COUNT(*) FROM coupons")).scalar() == 400


def test_a_plan_another_run_wrote_first_is_not_counted_again(engine, settings, project, winback):
    """A run that read the audience before another run wrote the same plan reports nothing
    planned: every delivery is planned once, and counted once."""
    drowsy_buyers(engine, 30)
    late = planner.plan(engine, settings, winback, NOW)
    first = next(late)  # this run has read its audience; another run plans and writes first
    report = runner.run(engine, settings, [winback], NOW, None)
    assert report.campaigns["winback"].planned == 30
    assert ledger.record_plan(engine, [first, *late], NOW) == {"already_planned": 30}


@pytest.mark.slow
def test_render_workers_compose_the_same_bytes_as_composing_here(engine, project, winback,
                                                                composed_both_ways):
    drowsy_buyers(engine, 30)
    here, there = composed_both_ways(winback)
    assert there == here and len(here) == 30


@pytest.mark.slow
def test_a_template_that_fails_in_a_worker_is_reported_with_its_file_and_line(
        engine, settings, project, tmp_path):
    (project / "templates" / "broken.html").write_text(
        '{% extends "base.html" %}{% block content %}\n<p>{{ offer.code }}</p>\n'
        "<p>{{ customer.first_name.nickname }}</p>{% endblock %}")
    broken = load_campaign(write_campaign(tmp_path, template="broken.html"))
    drowsy_buyers(engine, 3)
    ledger.record_plan(engine, planner.plan(engine, settings, broken, NOW), NOW)
    pool = renderworkers.ComposerPool(settings, {"winback": broken}, 1, engine)
    try:
        assert pool._workers[0].ready.wait(30)
        with pytest.raises(TemplateError, match=r"broken\.html:3: .*nickname"):
            pool.submit(ledger.due(engine, ["winback"], NOW), NOW).result()
    finally:
        pool.close()


def test_a_template_error_stops_the_run_before_anything_is_claimed(engine, settings, project,
                                                                   tmp_path, server):
    (project / "templates" / "broken.html").write_text(
        '{% extends "base.html" %}{% block content %}{{ customer.first_name.nickname }}'
        "{% endblock %}")
    broken = load_campaign(write_campaign(tmp_path, template="broken.html"))
    drowsy_buyers(engine, 5)
    with pytest.raises(TemplateError, match=r"broken\.html:1: "):
        send(engine, settings, broken, server)
    assert server.messages == []
    assert set(statuses(engine).values()) == {"planned"}  # the next run, fixed, sends them
    with engine.connect() as conn:
        assert conn.execute(text("SELECT finished_at FROM runs")).scalar() is not None


def test_a_graceful_stop_finishes_what_is_in_flight_and_leaves_the_rest_planned(
        engine, settings, project, winback):
    drowsy_buyers(engine, 300)
    stop = threading.Event()
    seen = []

    def stop_at_the_tenth(stage: str, address: str) -> None:
        if stage == "rcpt":
            seen.append(address)
            if len(seen) == 10:
                stop.set()  # what the scheduler does on SIGTERM

    with MailServer(script=stop_at_the_tenth) as server:
        report = send(engine, settings, winback, server, stop=stop)

    got = set(received_ids(server))
    ledger_rows = statuses(engine)
    assert 10 <= len(got) <= 10 + settings.smtp.max_connections
    assert {i for i, s in ledger_rows.items() if s == "sent"} == got
    assert set(ledger_rows.values()) == {"sent", "planned"}  # no sending, no unknown
    assert report.paused is None and report.campaigns["winback"].sent == len(got)


def test_more_sender_threads_than_pooled_database_connections(engine, settings, project,
                                                               winback, server):
    drowsy_buyers(engine, 120)
    many = settings.model_copy(update={"smtp": settings.smtp.model_copy(
        update={"max_connections": 24})})  # the pool holds 5 + 10 connections
    report = send(engine, many, winback, server)
    assert report.campaigns["winback"].sent == 120
    assert sorted(received_ids(server)) == sorted(statuses(engine))
    assert server.connections > 4  # the threads did send side by side


@pytest.mark.postgres
def test_the_same_guarantees_hold_on_postgresql(settings, project, winback, tmp_path):
    """Exactly once, a bounce suppressed with its record, a suppression seen at send time,
    render workers reading their pages: the per-message SQL is written once for both
    databases."""
    url = os.environ.get("RETAIN_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("set RETAIN_TEST_POSTGRES_URL to run the delivery tests on PostgreSQL")
    engine = db.connect(url)
    SQLModel.metadata.drop_all(engine)
    db.create_schema(engine)
    on_pg = settings.model_copy(update={"database": settings.database.model_copy(
        update={"url": url})})
    ids = drowsy_buyers(engine, 40)
    ledger.record_plan(engine, planner.plan(engine, on_pg, winback, NOW), NOW)
    with engine.begin() as conn:
        suppressions.add(conn, f"buyer{ids[1]}@example.com", "unsubscribed", "test", NOW)
    gone = f"buyer{ids[2]}@example.com"
    with MailServer(replies={"rcpt": {gone: "550 5.1.1 User unknown"}}) as server:
        report = send(engine, on_pg, winback, server, render_processes=1)
        again = send(engine, on_pg, winback, server)
    by_status = Counter(statuses(engine).values())
    assert by_status == {"sent": 38, "suppressed": 1, "bounced": 1}
    assert report.campaigns["winback"].sent == 38 and again.campaigns["winback"].sent == 0
    received = received_ids(server)
    assert len(received) == len(set(received)) == 38
    with engine.connect() as conn:
        assert conn.execute(text("SELECT reason FROM suppressions WHERE email_key = :k"),
                            {"k": gone}).scalar() == "bounced"
    SQLModel.metadata.drop_all(engine)
    engine.dispose()


def test_recover_reports_in_flight_mail_of_dead_runs_only(engine, settings, project, winback):
    """A run is dead when its process is gone, or when it stopped beating (after a restart,
    another process may carry its pid: a container's scheduler often gets the same one)."""
    drowsy_buyers(engine, 3)
    ledger.record_plan(engine, planner.plan(engine, settings, winback, NOW), NOW)
    run_rows = tables.Run.__table__
    alive = runs.start_run(engine, ["winback"], NOW)
    reused_pid = runs.start_run(engine, ["winback"], NOW - timedelta(hours=1))
    gone = runs.start_run(engine, ["winback"], NOW)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    with engine.begin() as conn:  # all three on this host; the last one's process has exited
        conn.execute(run_rows.update().where(run_rows.c.id == gone).values(pid=int(child.stdout)))
        for delivery_id, run_id in zip(sorted(statuses(engine)), (alive, reused_pid, gone),
                                       strict=True):
            conn.execute(ledger.DELIVERIES.update().where(ledger.DELIVERIES.c.id == delivery_id)
                         .values(status="sending", claimed_by=run_id))

    assert ledger.recover(engine, NOW + timedelta(minutes=5)) == 2

    by_run = {}
    with engine.connect() as conn:
        for row in conn.execute(select(ledger.DELIVERIES)):
            by_run[row.claimed_by] = str(row.status)
    assert by_run == {alive: "sending", reused_pid: "unknown", gone: "unknown"}


def test_the_file_transport_writes_each_email_as_an_eml_file(engine, project, config_path):
    """delivery.transport: file, for looking at a run's mail without a mail server."""
    from typer.testing import CliRunner

    from engine.cli import app

    config_path.write_text(config_path.read_text().replace(
        "\nsmtp:", "\ndelivery:\n  transport: file\n\nsmtp:", 1))
    drowsy_buyers(engine, 3)
    result = CliRunner().invoke(app, ["--config", str(config_path), "run", "winback",
                                      "--as-of", "2026-06-15", "--json"])
    assert result.exit_code == 0, result.output
    files = sorted((project / "outbox").glob("*.eml"))
    counts = ledger.counts(engine)["winback"]
    assert counts.get("sent", 0) + counts.get("held_out", 0) == 3  # the shipped 10 % holdout
    assert len(files) == counts["sent"] >= 1
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert message["X-Campaign-Id"] == "winback" and message.get_body(("html",)) is not None
