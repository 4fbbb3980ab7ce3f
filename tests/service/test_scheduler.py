"""The unattended scheduler, driven by a fake clock: no test sleeps waiting for a cron tick."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from engine import config, db, tables
from engine.campaigns import models as campaigns
from engine.delivery import ledger
from engine.service import schedule
from engine.service.scheduler import Scheduler
from engine.transport import MemoryTransport
from engine.transport.mailserver import MailServer
from tests.campaignfiles import campaign_yaml, write_campaign
from tests.clock import FakeClock
from tests.shopdata import Shop

PARIS = ZoneInfo("Europe/Paris")
ROOT = Path(__file__).resolve().parents[2]

@pytest.fixture
def project(tmp_path, config_path):
    shutil_copy_templates(tmp_path)
    (tmp_path / "campaigns").mkdir()
    return tmp_path


def shutil_copy_templates(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(ROOT / "templates", tmp_path / "templates")


def dormant_customers(engine, n: int, now: datetime) -> None:
    """n consenting customers whose only order was 70 days before ``now``: drowsy."""
    shop = Shop(engine)
    days = (datetime(2026, 6, 15).date() - now.astimezone(PARIS).date()).days + 70
    shop.buyers(n, days_ago=days)


def service(engine, settings, clock, **options) -> Scheduler:
    return Scheduler(engine, settings, MemoryTransport, clock=clock, **options)


def sent(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(tables.Delivery.__table__).where(
            tables.Delivery.__table__.c.status == "sent")).scalar()


def test_each_campaign_gets_a_job_at_its_cron_in_the_store_zone(engine, settings, project):
    write_campaign(project / "campaigns", schedule="0 10 * * *", id="daily")
    write_campaign(project / "campaigns", schedule="30 9 * * 1", id="mondays")
    clock = FakeClock(datetime(2026, 6, 17, 12, 0, tzinfo=UTC))  # a Wednesday
    scheduler = service(engine, settings, clock)
    scheduler.start(paused=True)
    try:
        runs = scheduler.next_runs()
    finally:
        scheduler.stop()
    # APScheduler computes from the real time; compare the cron's shape in Paris time.
    assert runs["daily"].astimezone(PARIS).strftime("%H:%M") == "10:00"
    assert runs["mondays"].astimezone(PARIS).strftime("%a %H:%M") == "Mon 09:30"


def test_cron_follows_daylight_saving_in_the_store_zone(settings):
    daily = campaigns.parse_text(campaign_yaml(schedule="0 9 * * *"))
    zone = settings.store.zone
    before = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)   # two days before clocks go forward
    first = schedule.next_fire(daily, zone, before)
    second = schedule.next_fire(daily, zone, first)
    assert first.astimezone(UTC).hour == 8 and second.astimezone(UTC).hour == 7
    assert first.astimezone(PARIS).hour == second.astimezone(PARIS).hour == 9
    # 02:30 happens twice when clocks go back (2026-10-25): the campaign still runs once.
    night = campaigns.parse_text(campaign_yaml(schedule="30 2 * * *"))
    ticks = []
    moment = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
    while moment < datetime(2026, 10, 26, 12, 0, tzinfo=UTC):
        moment = schedule.next_fire(night, zone, moment)
        ticks.append(moment)
    assert [t.astimezone(PARIS).date().day for t in ticks[:-1]] == [25, 26]
    # And it is skipped on no day when 02:30 does not exist (2026-03-29).
    spring = []
    moment = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    while moment < datetime(2026, 3, 30, 12, 0, tzinfo=UTC):
        moment = schedule.next_fire(night, zone, moment)
        spring.append(moment.astimezone(PARIS).date().day)
    assert spring[:2] == [29, 30]


def test_a_tick_fires_its_campaign_through_the_runner(engine, settings, project):
    write_campaign(project / "campaigns", schedule="0 10 * * *")
    clock = FakeClock(datetime(2026, 6, 17, 8, 0, tzinfo=UTC))
    dormant_customers(engine, 5, clock.now)
    scheduler = service(engine, settings, clock)
    scheduler.start(paused=True)
    try:
        report = scheduler.fire("winback")
    finally:
        scheduler.stop()
    assert report.campaigns["winback"].sent == 5
    assert schedule.states(engine)["winback"]["last_fire_at"] == clock.now


def test_missed_ticks_are_caught_up_once_within_the_grace_period(engine, settings, project):
    write_campaign(project / "campaigns", schedule="0 10 * * *")
    clock = FakeClock(datetime(2026, 6, 15, 7, 0, tzinfo=UTC))
    dormant_customers(engine, 3, clock.now)
    schedule.start_tracking(engine, [campaigns.load_file(project / "campaigns" /
                                                         "winback.yaml")], clock.now)
    # Down for three days: the 15th, 16th and 17th 10:00 ticks were missed.
    clock.now = datetime(2026, 6, 17, 9, 30, tzinfo=UTC)   # 11:30 in Paris
    scheduler = service(engine, settings, clock, grace=timedelta(hours=6))
    scheduler.start(paused=True)
    try:
        assert scheduler.catch_up() == ["winback"]
        assert scheduler.catch_up() == []                  # once, not once per missed tick
    finally:
        scheduler.stop()
    assert len(scheduler.runs) == 1 and sent(engine) == 3

    # Beyond the grace period a missed tick is let go.
    clock.now = datetime(2026, 6, 20, 20, 0, tzinfo=UTC)    # 10 hours after the 20th's tick
    late = service(engine, settings, clock, grace=timedelta(hours=6))
    late.start(paused=True)
    try:
        assert late.catch_up() == []
    finally:
        late.stop()


def test_reload_keeps_the_last_valid_campaigns(engine, settings, project, caplog):
    path = write_campaign(project / "campaigns", schedule="0 10 * * *")
    scheduler = service(engine, settings, FakeClock(datetime(2026, 6, 15, tzinfo=UTC)))
    scheduler.start(paused=True)
    try:
        path.write_text(path.read_text().replace("tier: drowsy", "tier: sleepy"))
        assert scheduler.reload() is False
        assert scheduler.campaigns["winback"].steps[0].tier == "drowsy"
        assert "winback" in scheduler.next_runs()
        assert "sleepy" in caplog.text and str(path) in caplog.text
        path.write_text(campaign_yaml(schedule="15 7 * * *"))
        assert scheduler.reload() is True
        assert scheduler.next_runs()["winback"].astimezone(PARIS).strftime("%H:%M") == "07:15"
    finally:
        scheduler.stop()


def test_a_second_scheduler_stands_by_and_takes_over_when_the_lease_lapses(engine, settings,
                                                                           project):
    write_campaign(project / "campaigns", schedule="0 10 * * *")
    clock = FakeClock(datetime(2026, 6, 15, 8, 0, tzinfo=UTC))
    first = service(engine, settings, clock, lease_ttl=timedelta(seconds=60))
    second = service(engine, settings, clock, lease_ttl=timedelta(seconds=60))
    first.start(paused=True)
    second.start(paused=True)
    try:
        assert first.leading and not second.leading
        assert second.fire("winback") is None               # a stand-by never sends
        clock.advance(seconds=40)
        assert first.try_lead() and not second.try_lead()   # renewed, still held
        # The first one dies without releasing (no renewals); its lease runs out.
        clock.advance(seconds=61)
        assert second.try_lead()
        assert not first.try_lead()                          # the old leader notices
    finally:
        second.stop()
        first._aps.shutdown(wait=False)


def test_the_ledger_prevents_duplicates_even_if_the_lease_is_bypassed(engine, settings,
                                                                      project):
    write_campaign(project / "campaigns", schedule="0 10 * * *")
    clock = FakeClock(datetime(2026, 6, 17, 8, 0, tzinfo=UTC))
    dormant_customers(engine, 4, clock.now)
    one, two = service(engine, settings, clock), service(engine, settings, clock)
    for s in (one, two):
        s.start(paused=True)
        s.leading = True  # as if both believed they lead
    try:
        one.fire("winback")
        two.fire("winback")
    finally:
        one.stop()
        two.stop()
    assert sent(engine) == 4


def test_paused_campaigns_do_not_run_until_resumed(engine, settings, project):
    write_campaign(project / "campaigns", schedule="0 10 * * *")
    clock = FakeClock(datetime(2026, 6, 17, 8, 0, tzinfo=UTC))
    dormant_customers(engine, 2, clock.now)
    schedule.pause(engine, "winback", "checking the offer", clock.now)
    scheduler = service(engine, settings, clock)
    scheduler.start(paused=True)
    try:
        assert scheduler.fire("winback") is None
        assert schedule.resume(engine, "winback")
        assert scheduler.fire("winback").campaigns["winback"].sent == 2
    finally:
        scheduler.stop()


TOTAL = 2000  # enough that the SIGTERM lands while several sender threads are busy


@pytest.mark.slow
def test_sigterm_mid_run_loses_nothing(tmp_path, project):
    """A real `retain scheduler` process is stopped while sending; nothing is lost or doubled."""
    write_campaign(project / "campaigns", schedule="* * * * *")
    config_file = project / "config.yaml"
    url = f"sqlite:///{tmp_path}/test.db"
    with MailServer() as server:
        env = {**os.environ, "RETAIN_SMTP_PORT": str(server.port), "RETAIN_DATABASE_URL": url}
        settings = config.load(config_file, environ=env)
        engine = db.connect(url)
        now = datetime.now(UTC)
        dormant_customers(engine, TOTAL, now)
        # It last fired three minutes ago: the catch-up at start sends right away.
        schedule.mark_fired(engine, "winback", now - timedelta(minutes=3), None)
        process = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "--config", str(config_file), "scheduler"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(server.messages) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err.decode()
        received = len(server.messages)
        assert 50 <= received < TOTAL, err.decode()
        counts = ledger.counts(engine)["winback"]
        assert counts.get("sent") == received
        assert "sending" not in counts and "unknown" not in counts
        assert counts.get("planned", 0) + received == TOTAL
        # The next run sends the rest, and nobody twice.
        from engine.campaigns import validate
        from engine.delivery import runner
        from engine.transport.smtp import SmtpTransport
        transport = SmtpTransport(settings.smtp)
        runner.run(engine, settings, validate.load(settings), datetime.now(UTC), transport)
        transport.close()
        ids = [m.data.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0]
               for m in server.messages]
        assert len(ids) == TOTAL and len(set(ids)) == TOTAL
    engine.dispose()


def test_a_paused_campaign_is_left_out_by_every_run_until_resumed(engine, settings, project):
    """One rule (schedule.runnable) for the scheduler's ticks and catch-up and `retain run`."""
    from typer.testing import CliRunner

    from engine.cli import app

    write_campaign(project / "campaigns", schedule="0 10 * * *", id="winback")
    write_campaign(project / "campaigns", schedule="0 10 * * *", id="second")
    chosen = [campaigns.load_file(project / "campaigns" / f"{n}.yaml")
              for n in ("winback", "second")]
    clock = FakeClock(datetime(2026, 6, 15, 7, 0, tzinfo=UTC))
    dormant_customers(engine, 2, clock.now)
    schedule.start_tracking(engine, chosen, clock.now)
    schedule.pause(engine, "winback", "checking the offer", clock.now)
    assert schedule.runnable(engine, chosen) == ([chosen[1]], {"winback": "checking the offer"})

    clock.now = datetime(2026, 6, 15, 9, 30, tzinfo=UTC)   # the 10:00 Paris tick has passed
    scheduler = service(engine, settings, clock)
    scheduler.start(paused=True)
    try:
        assert scheduler.catch_up() == ["second"]
        assert scheduler.fire("winback") is None
    finally:
        scheduler.stop()

    cli = ["--config", str(project / "config.yaml"), "run", "--as-of", "2026-06-15"]
    named = CliRunner().invoke(app, [*cli, "winback"])
    assert named.exit_code == 1
    assert 'campaign "winback" is paused (checking the offer); run `retain resume winback` ' \
           "first" in named.output
    everything = CliRunner().invoke(app, [*cli, "--dry-run"])
    assert everything.exit_code == 0, everything.output
    assert "skipping winback: paused (checking the offer)" in everything.output
    assert "second" in everything.output and "│ winback" not in everything.output

    assert schedule.resume(engine, "winback")
    assert schedule.runnable(engine, chosen) == (chosen, {})
