"""`retain simulate` replays the schedule day by day with the real planner, writing nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import func, select
from typer.testing import CliRunner

from engine import tables
from engine.cli import app
from tests.shopdata import Shop

WINBACK = """\
id: winback
kind: winback
schedule: "0 10 * * *"
template: winback.html
subject: "We miss you"
steps:
  - {tier: drowsy, coupon: {percent_off: 10}}
  - {tier: half_asleep, coupon: {percent_off: 20}}
"""


def test_simulate_replays_each_tick_and_writes_nothing(engine, settings, project, config_path):
    (project / "campaigns").mkdir(exist_ok=True)
    for old in (project / "campaigns").glob("*.yaml"):
        old.unlink()
    (project / "campaigns" / "winback.yaml").write_text(WINBACK)
    shop = Shop(engine)
    # As of 2026-06-20 (days_ago counts from 2026-06-15): one customer turns drowsy on each
    # of the 20th, 21st and 22nd; one is drowsy already; one is still active throughout.
    for days in (55, 54, 53, 80):
        shop.order(shop.customer(), days_ago=days)
    shop.order(shop.customer(), days_ago=1)

    result = CliRunner().invoke(app, ["--config", str(config_path), "simulate", "--from",
                                      "2026-06-20", "--to", "2026-06-22", "--json"])
    assert result.exit_code == 0, result.output
    replay = json.loads(result.output)
    assert set(replay) == {"from", "to", "ticks", "days"}
    assert set(replay["days"][0]) == {"date", "campaigns"}
    assert set(replay["days"][0]["campaigns"][0]) == {
        "id", "tick", "recipients", "held_out", "suppressed", "deferred", "capped", "skipped",
        "sample"}
    per_day = {d["date"]: d["campaigns"][0]["recipients"] for d in replay["days"]}
    # The already-drowsy customer gets it on the first day only: later ticks see it as sent.
    assert per_day == {"2026-06-20": 2, "2026-06-21": 1, "2026-06-22": 1}
    assert replay["ticks"] == 3
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(
            tables.Delivery.__table__)).scalar() == 0


def test_simulate_refuses_an_empty_period(config_path, engine, project):
    result = CliRunner().invoke(app, ["--config", str(config_path), "simulate", "--from",
                                      "2026-06-20", "--to", "2026-06-19"])
    assert result.exit_code == 1 and "--to after --from" in result.output


def test_now_is_not_read_by_the_replay(engine, settings):
    from engine.campaigns import models as campaigns
    from engine.views import simulate
    daily = campaigns.parse_text(WINBACK)
    found = simulate.ticks([daily], settings.store.zone, datetime(2026, 3, 28, tzinfo=UTC),
                           datetime(2026, 3, 31, tzinfo=UTC))
    # 10:00 Paris each day, across the switch to summer time on the 29th.
    assert [t.astimezone(settings.store.zone).hour for t, _ in found] == [10, 10, 10]
