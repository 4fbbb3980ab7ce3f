"""`retain worker`: several worker processes on one PostgreSQL database send each planned email
exactly once; a worker killed mid-run loses nothing and duplicates nothing; the fleet keeps to
smtp.rate_per_second as a whole; on SQLite the command is one worker and says so."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from engine import config, db
from engine.campaigns import planner
from engine.delivery import fleet, ledger, worker
from engine.transport.mailserver import MailServer
from engine.transport.smtp import SmtpTransport
from tests.campaignfiles import campaign_yaml, load_campaign
from tests.conftest import ROOT, fresh_postgres
from tests.delivery.test_runner import drowsy_buyers, received_ids, statuses
from tests.shopdata import NOW


def shop_folder(tmp_path: Path, url: str, port: int, *, connections: int = 8,
                rate: float = 100000) -> Path:
    """A folder with config.yaml (sending to ``port``), the test winback campaign only, and the
    repository's templates."""
    base = (ROOT / "config.yaml").read_text()
    text = base.replace("${RETAIN_SMTP_PORT:-8025}", str(port)).replace(
        "max_connections: 4", f"max_connections: {connections}").replace(
        "rate_per_second: 200", f"rate_per_second: {rate}")
    (tmp_path / "config.yaml").write_text(text)
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "winback.yaml").write_text(campaign_yaml())
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return tmp_path


def planned_run(engine, folder: Path, count: int) -> set[int]:
    settings = config.load(folder / "config.yaml", environ={})
    campaign = load_campaign(folder / "campaigns" / "winback.yaml")
    drowsy_buyers(engine, count)
    ledger.record_plan(engine, planner.plan(engine, settings, campaign, NOW), NOW)
    planned = set(statuses(engine))
    assert len(planned) == count
    return planned


def start_worker(folder: Path, url: str, concurrency: int = 2) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--config", str(folder / "config.yaml"),
         "--db", url, "worker", "--until-idle", "--json", "--concurrency", str(concurrency)],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def finished(child: subprocess.Popen, timeout: float = 240) -> dict:
    """The worker's report (--json), once it stopped with nothing left to do; its stderr under
    "stderr"."""
    out, err = child.communicate(timeout=timeout)
    assert child.returncode == 0, err.decode()
    return dict(json.loads(out), stderr=err.decode())


@pytest.fixture
def pg():
    engine = fresh_postgres("worker")
    yield engine, engine.url.render_as_string(hide_password=False)
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 4])
def test_workers_on_postgresql_deliver_each_email_once(pg, tmp_path, workers):
    """A run of 3,000 emails planned once, sent by 2 and by 4 worker processes at once: every
    email reaches the server exactly once, every delivery is `sent`, and every worker sent
    some (bench/workers.py does the same with 20,000)."""
    engine, url = pg
    with MailServer() as server:
        folder = shop_folder(tmp_path, url, server.port)
        planned = planned_run(engine, folder, 3000)
        children = [start_worker(folder, url) for _ in range(workers)]
        reports = [finished(child) for child in children]
    received = received_ids(server)
    assert [i for i, n in Counter(received).items() if n > 1] == []
    assert set(received) == planned
    assert set(statuses(engine).values()) == {"sent"}
    sent = [r["campaigns"][0]["sent"] if r["campaigns"] else 0 for r in reports]
    assert sum(sent) == len(planned) and all(sent)


@pytest.mark.postgres
@pytest.mark.slow
def test_a_killed_worker_loses_nothing_and_duplicates_nothing(pg, tmp_path):
    """SIGKILL one of two workers mid-run: the other hands back the rows it had leased and
    sends them; what the dead one had in flight is `unknown` (the server may have it), never
    resent; nothing is received twice and nothing planned is left behind."""
    engine, url = pg
    with MailServer() as server:
        folder = shop_folder(tmp_path, url, server.port)
        planned = planned_run(engine, folder, 3000)
        doomed, survivor = start_worker(folder, url), start_worker(folder, url)
        deadline = time.monotonic() + 120
        while len(server.messages) < 0.3 * len(planned):
            assert doomed.poll() is None, doomed.stderr.read().decode()
            assert time.monotonic() < deadline, "the workers made no progress"
            time.sleep(0.005)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()  # reaped: the survivor's beat sees the process is gone
        finished(survivor)
    after = statuses(engine)
    received = received_ids(server)
    assert [i for i, n in Counter(received).items() if n > 1] == []
    unknown = {i for i, s in after.items() if s == "unknown"}
    sent = {i for i, s in after.items() if s == "sent"}
    assert sent | unknown == planned
    assert len(unknown) <= 2  # at most what the dead worker's two connections had in flight
    assert sent <= set(received) <= planned


@pytest.mark.postgres
@pytest.mark.slow
def test_the_fleet_keeps_to_the_rate_limit_as_a_whole(pg, tmp_path):
    """Two workers with rate_per_second 40 between them: in no two seconds does the server see
    more than 10 % over the limit, nor over the whole run, though each worker alone would be
    allowed 40 a second. (How close to the limit the fleet gets is bench/workers.py's figure.)"""
    engine, url = pg
    arrivals: list[float] = []
    lock = threading.Lock()

    def clocked(stage: str, _address: str) -> None:
        if stage == "data":
            with lock:
                arrivals.append(time.monotonic())

    with MailServer(script=clocked) as server:
        folder = shop_folder(tmp_path, url, server.port, connections=4, rate=40)
        planned = planned_run(engine, folder, 400)
        children = [start_worker(folder, url) for _ in range(2)]
        for child in children:
            finished(child)
    assert set(received_ids(server)) == planned
    arrivals.sort()
    # Within 10 %: a worker may send a tenth of a second's worth of its share at once (to catch
    # up after a late wake-up), so windows of two seconds hold at most 2 * 40 * 1.1 messages.
    for n, start in enumerate(arrivals):
        in_window = sum(1 for t in arrivals[n:n + 120] if t < start + 2.0)
        assert in_window <= 88, f"{in_window} messages within two seconds"
    assert len(arrivals) <= 40 * 1.1 * (arrivals[-1] - arrivals[0]) + 1


def test_on_sqlite_the_worker_is_the_only_one_and_says_so(tmp_path):
    """`retain worker` on SQLite sends everything due, as one worker, and says so; a second
    worker on the same file is refused with a sentence."""
    with MailServer() as server:
        folder = shop_folder(tmp_path, f"sqlite:///{tmp_path / 'shop.db'}", server.port)
        url = f"sqlite:///{tmp_path / 'shop.db'}"
        engine = db.connect(url)
        planned = planned_run(engine, folder, 50)
        report = finished(start_worker(folder, url))
    assert "this is the only worker" in report["stderr"]
    assert report["campaigns"][0]["sent"] == 50
    assert sorted(received_ids(server)) == sorted(planned)
    settings = config.load(folder / "config.yaml", environ={})
    with SmtpTransport(settings.smtp) as transport:
        stop = threading.Event()
        first = threading.Thread(target=worker.work, args=(engine, settings, lambda: [],
                                 transport), kwargs=dict(connections=1, clock=_now,
                                 sleep=time.sleep, stop=stop))
        first.start()
        try:
            time.sleep(0.5)
            with pytest.raises(Exception, match="a worker already sends from this database"):
                worker.refuse_a_second(engine, _now())
        finally:
            stop.set()
            first.join()
    with engine.connect() as conn:
        assert conn.execute(select(ledger.DELIVERIES.c.lease_until).where(
            ledger.DELIVERIES.c.lease_until.is_not(None))).first() is None
    engine.dispose()


def _now() -> datetime:
    return datetime.now(UTC)


def test_a_domain_that_asks_one_worker_to_wait_is_left_alone_by_all(engine, settings):
    """Three 451s in a row from one domain hold it back in the worker that got them; at the
    next beat the other worker holds it back too, for as long, and other domains not at all."""
    members = []
    for _ in range(2):
        transport = SmtpTransport(settings.smtp, delivery=settings.delivery)
        members.append((transport, fleet.Fleet(engine, settings, transport, 1, [], _now)))
    (told, first), (other, second) = members
    for _ in range(settings.delivery.domain_backoff_after):
        told.domains.signal("slow.example")
    assert told.deferred_for("slow.example") > 0 and other.deferred_for("slow.example") == 0
    first.beat()
    second.beat()
    assert 0 < other.deferred_for("slow.example") <= told.deferred_for("slow.example") + 1
    assert other.deferred_for("fast.example") == 0
