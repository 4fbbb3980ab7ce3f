"""Predictions on synthetic shops whose truth is known, in a real SQLite file (and PostgreSQL
when RETAIN_TEST_POSTGRES_URL points at a throwaway database).

The shop is drawn from an MBG/NBD process with known parameters (btyd.simulate_mbgnbd,
seeded): customers first bought up to three years before TODAY, then bought again at their
own rate until they left. NOW is 2026-06-15 12:00 UTC (14:00 in Europe/Paris).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import delete, insert, select
from typer.testing import CliRunner

from engine import db, money, tables
from engine.cli import app
from engine.errors import SegmentError
from engine.shop import btyd, metrics, predict, segments
from tests.conftest import ROOT, on_each_backend, settings_on
from tests.shopdata import NOW, PARIS, TODAY

TRUTH = btyd.MBGNBD(r=0.6, alpha=40.0, a=0.8, b=1.6)


shop = on_each_backend("prediction")  # for the tests that run on both databases


def draw_shop(engine, customers: int, seed: int = 11, model: btyd.MBGNBD = TRUTH) -> None:
    """``customers`` buyers drawn from ``model``, first orders spread over three years."""
    rng = np.random.default_rng(seed)
    ages = rng.integers(0, 3 * 365, customers)
    who, days = btyd.simulate_mbgnbd(model, ages, seed)
    totals = np.rint(rng.gamma(4.0, 1200.0, len(who))).astype(int) + 100
    with engine.begin() as conn:
        conn.execute(insert(tables.Customer.__table__), [
            {"id": i + 1, "external_id": f"syn-{i + 1}", "email": f"s{i + 1}@example.com",
             "email_key": f"s{i + 1}@example.com", "accepts_marketing": True,
             "created_at": NOW - timedelta(days=1200)} for i in range(customers)])
        conn.execute(insert(tables.Order.__table__), [
            _order(f"so{n}", int(c) + 1, int(ages[c]) - int(d), int(t))
            for n, (c, d, t) in enumerate(zip(who, days, totals, strict=True))])
        db.bump_data_version(conn)


def _order(external_id: str, customer_id: int, days_ago: int, total: int) -> dict:
    created = datetime.combine(TODAY - timedelta(days=days_ago), datetime.min.time(),
                               tzinfo=PARIS).replace(hour=12)
    return {"external_id": external_id, "customer_id": customer_id, "created_at": created,
            "local_date": created.date(), "status": "paid", "total_cents": total}


def probe(engine, first_id: int, visits_days_ago: list[list[int]]) -> list[int]:
    """Extra customers, each with orders on the given days ago; returns their ids."""
    with engine.begin() as conn:
        ids = []
        for k, days in enumerate(visits_days_ago):
            cid = first_id + k
            conn.execute(insert(tables.Customer.__table__).values(
                id=cid, external_id=f"probe-{k}", email=f"p{k}@example.com",
                email_key=f"p{k}@example.com", accepts_marketing=True,
                created_at=NOW - timedelta(days=1200)))
            for j, day in enumerate(days):
                conn.execute(insert(tables.Order.__table__).values(
                    **_order(f"po{k}-{j}", cid, day, 3000)))
            ids.append(cid)
        db.bump_data_version(conn)
    return ids


def members_of(engine, settings, segment) -> set[int]:
    result = segments.evaluate(engine, settings, segment, NOW, limit=None)
    return {row["customer_id"] for row in result["sample"]}


def predicted(engine) -> dict[int, dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(tables.CustomerPrediction.__table__)).mappings()
        return {row["customer_id"]: dict(row) for row in rows}


def fitted(engine) -> dict:
    with engine.connect() as conn:
        return predict.model(conn)


@pytest.mark.slow
def test_the_fit_recovers_the_process_that_made_the_shop(engine, settings):
    draw_shop(engine, 8000)
    metrics.refresh(engine, settings, NOW)
    params = fitted(engine)["mbgnbd"]
    for name, true in TRUTH.params().items():
        assert params[name] == pytest.approx(true, rel=0.25), name
    assert fitted(engine)["calibration"].startswith("on ")
    rows = predicted(engine)
    assert len(rows) == 8000  # every buyer has a prediction
    assert all(0 <= r["churn_risk"] <= 1 and 0 <= r["p_alive"] <= 1 for r in rows.values())


def test_more_recent_means_lower_churn_risk_at_equal_frequency(engine, settings):
    """Five customers with three orders each, the first a year ago, the last 10 to 300 days
    ago: the longer since the last order, the likelier they have left."""
    draw_shop(engine, 3000)
    ids = probe(engine, 100_000, [[365, 200, last] for last in (10, 60, 120, 190, 300)])
    metrics.refresh(engine, settings, NOW)
    rows = predicted(engine)
    churn = [rows[i]["churn_risk"] for i in ids]
    alive = [rows[i]["p_alive"] for i in ids]
    expected = [rows[i]["expected_orders"] for i in ids]
    assert churn == sorted(churn) and len(set(churn)) == 5
    assert alive == sorted(alive, reverse=True)
    assert expected == sorted(expected, reverse=True)
    assert all(rows[i]["predicted_clv_cents"] > 0 for i in ids)


def test_one_time_buyers_are_not_all_alive(engine, settings):
    """BG/NBD's defect: P(alive) = 1 for every one-time buyer. Here an old one-time buyer is
    less likely alive, and likelier to churn, than a recent one."""
    draw_shop(engine, 3000)
    recent, old = probe(engine, 100_000, [[5], [700]])
    metrics.refresh(engine, settings, NOW)
    rows = predicted(engine)
    assert rows[old]["p_alive"] < rows[recent]["p_alive"] < 1
    assert rows[old]["churn_risk"] > rows[recent]["churn_risk"]


def test_prediction_fields_select_like_any_metric(shop, settings):
    draw_shop(shop, 2000, seed=5)

    def members(text: str) -> set[int]:
        return members_of(shop, settings, segments.parse(_yaml(text), "t"))
    high = members("churn_tier: high")
    rows = predicted(shop)
    assert high == {i for i, r in rows.items() if r["churn_risk"] >= 0.7}
    assert members("churn_risk: {gte: 0.7}") == high
    assert members("not: {churn_tier: high}") == set(range(1, 2001)) - high
    likely = members("expected_orders: {gte: 0.5}")
    assert likely == {i for i, r in rows.items() if r["expected_orders"] >= 0.5}
    assert members("p_alive: {lt: 0.5}") == {i for i, r in rows.items() if r["p_alive"] < 0.5}
    assert members("predicted_clv: {gt: 20}") == {
        i for i, r in rows.items() if r["predicted_clv_cents"] > 2000}
    assert 0 < len(high) < 2000 and 0 < len(likely) < 2000


def _yaml(text: str):
    import yaml

    return yaml.safe_load(text)


@pytest.mark.parametrize("orders,why", [
    ([], "no customer has a counted order yet"),
    ([[30]] * 40, "no customer has ordered twice"),
    ([[30]] * 3 + [[30, 30, 30]], "no customer has ordered twice"),  # same day: one visit
], ids=["no orders", "everyone bought once", "repeat orders on one day"])
def test_a_degenerate_shop_refreshes_without_predictions(engine, settings, orders, why):
    ids = probe(engine, 1, orders)
    metrics.refresh(engine, settings, NOW)  # does not raise: the metrics are there
    with engine.connect() as conn:
        assert len(conn.execute(select(tables.CustomerMetrics.__table__)).all()) == len(ids)
        assert predict.note(conn).startswith(f"no predictions as of 2026-06-15: {why}")
    assert predicted(engine) == {}
    segment = segments.parse(_yaml("churn_tier: [high, medium, low]"), "t")
    assert members_of(engine, settings, segment) == set()


def test_the_reason_for_no_predictions_is_shown_with_the_customer(engine, settings,
                                                                   config_path):
    probe(engine, 1, [[30]] * 5)
    out = CliRunner().invoke(app, ["--config", str(config_path), "customers", "show", "1",
                                   "--as-of", "2026-06-15", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["churn_risk"] is None and data["churn_tier"] is None
    assert "no customer has ordered twice" in data["prediction_note"]


def test_customers_show_prints_the_predictions(engine, settings, config_path):
    draw_shop(engine, 1500)
    out = CliRunner().invoke(app, ["--config", str(config_path), "customers", "show",
                                   "syn-1", "--as-of", "2026-06-15", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    row = predicted(engine)[1]
    assert data["churn_risk"] == round(row["churn_risk"], 4)
    assert data["churn_tier"] in ("low", "medium", "high")
    assert data["predicted_clv"] == money.decimal_text(row["predicted_clv_cents"])
    assert data["prediction_note"] is None


def test_changed_tiers_rebuild_the_predictions_without_new_data(engine, settings):
    draw_shop(engine, 1500)
    metrics.refresh(engine, settings, NOW)
    before = predicted(engine)
    assert {r["churn_tier"] for r in before.values()} >= {"low", "high"}
    stricter = settings.model_copy(update={"predict": settings.predict.model_copy(update={
        "churn_tiers": settings.predict.churn_tiers.model_copy(
            update={"medium": 0.98, "high": 0.99})})})
    metrics.refresh(engine, stricter, NOW)
    after = predicted(engine)
    assert {r["churn_tier"] for r in after.values() if r["churn_risk"] < 0.98} == {"low"}
    assert [r["churn_risk"] for r in after.values()] == [r["churn_risk"]
                                                         for r in before.values()]


@pytest.mark.parametrize("text,message", [
    ("churn_risk: {gte: 60}", "churn_risk needs a probability from 0 to 1 like 0.7, not 60"),
    ("churn_risk: {lt: .nan}", "churn_risk needs a probability from 0 to 1 like 0.7, not nan"),
    ("expected_orders: {gt: many}",
     "expected_orders needs a number from 0 to 1,000,000,000 like 1.5, not 'many'"),
    ("churn_tier: hihg", '"hihg" is not a churn tier (did you mean "high"?)'),
])
def test_prediction_values_are_checked_when_the_segment_is_loaded(text, message):
    with pytest.raises(SegmentError) as error:
        segments.parse(_yaml(text), "campaigns/x.yaml")
    assert message in str(error.value)


@pytest.mark.slow
def test_evaluate_scores_the_model_against_what_happened(engine, settings, config_path):
    draw_shop(engine, 4000, seed=3)
    split = (TODAY - timedelta(days=120)).isoformat()
    out = CliRunner().invoke(app, ["--config", str(config_path), "predict", "evaluate",
                                   "--split", split, "--horizon", "90", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    scores = {row["score"]: row for row in report["scores"]}
    model, rule = scores["churn_risk"], scores["recency_rule"]
    assert model["error_rate"] == pytest.approx(1 - model["precision"], abs=1e-4)
    assert model["miss_rate"] == pytest.approx(1 - model["recall"], abs=1e-4)
    assert model["auc"] > rule["auc"] and model["f1"] > rule["f1"]
    assert rule["rule"] == "recency_days >= 60"
    text = CliRunner().invoke(app, ["--config", str(config_path), "predict", "evaluate",
                                    "--split", split])
    assert "miss rate" in text.output and "recency_rule" in text.output


def test_evaluate_refuses_a_split_whose_outcome_is_not_known_yet(engine, config_path):
    tomorrow = (datetime.now(PARIS).date() - timedelta(days=10)).isoformat()
    out = CliRunner().invoke(app, ["--config", str(config_path), "predict", "evaluate",
                                   "--split", tomorrow])
    assert out.exit_code == 1
    assert "are not over yet" in out.output and "Traceback" not in out.output


@pytest.mark.slow
def test_on_the_cdnow_log_the_churn_risk_beats_the_recency_rule():
    """README's claim, on the 1-in-10 sample of the real CDNOW log that lifetimes ships."""
    pytest.importorskip("lifetimes")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "cdnow.py"), "--sample",
                          "--json", "--no-pareto"], capture_output=True, text=True, check=True)
    scores = {row["score"]: row for row in json.loads(out.stdout)["scores"]}
    assert scores["churn_risk"]["auc"] > scores["recency_rule"]["auc"]
    assert scores["churn_risk"]["f1"] > scores["recency_rule"]["f1"]


def test_the_shipped_winback_waits_for_a_high_churn_risk_while_drowsy(engine, settings):
    draw_shop(engine, 3000, seed=8)
    segment = segments.load_file(ROOT / "campaigns" / "winback.yaml")
    members = members_of(engine, settings, segment)
    with engine.connect() as conn:
        m, p = tables.CustomerMetrics.__table__.c, tables.CustomerPrediction.__table__.c
        drowsy = dict(conn.execute(select(m.customer_id, p.churn_tier).join_from(
            tables.CustomerMetrics.__table__, tables.CustomerPrediction.__table__,
            p.customer_id == m.customer_id).where(m.dormancy == "drowsy")).all())
    high = {i for i, t in drowsy.items() if t == "high"}
    assert high and len(high) < len(drowsy)
    assert members & set(drowsy) == high


def _note(engine) -> dict:
    with engine.connect() as conn:
        return predict.model(conn)


def test_new_orders_the_same_day_keep_the_days_predictions_and_the_next_day_refits(shop,
                                                                                 settings):
    """A scheduler tick after a few new orders takes the incremental metrics refresh: the
    metrics move, the predictions (day-level quantities) are not refitted until the next
    store-local day."""
    draw_shop(shop, 1500, seed=4)
    metrics.refresh(shop, settings, NOW)
    before, as_of = predicted(shop), _note(shop)["as_of"]
    newcomer = 5000
    probe(shop, newcomer, [[]])  # a prospect, who then places a first order
    with shop.begin() as conn:
        conn.execute(insert(tables.Order.__table__), [
            {"external_id": f"late-{cid}", "customer_id": cid, "status": "paid",
             "created_at": NOW + timedelta(minutes=30), "local_date": TODAY,
             "total_cents": 9900} for cid in (1, 2, 3, newcomer)])
        db.bump_data_version(conn)
    later = NOW + timedelta(hours=2)  # 16:00 in Paris: the same day
    with shop.connect() as conn:
        assert metrics._cache_state(conn, settings, later) == "changed"
    metrics.refresh(shop, settings, later)

    with shop.connect() as conn:
        m = tables.CustomerMetrics.__table__.c
        assert conn.execute(select(m.orders).where(m.customer_id == newcomer)).scalar() == 1
    assert _note(shop)["as_of"] == as_of
    assert predicted(shop) == before  # not rebuilt: the newcomer has none until tomorrow

    tomorrow = NOW + timedelta(days=1)
    metrics.refresh(shop, settings, tomorrow)
    after = predicted(shop)
    assert _note(shop)["as_of"] == tomorrow.isoformat()
    assert set(after) == set(before) | {newcomer}
    assert after[1]["expected_orders"] != before[1]["expected_orders"]


def test_a_large_shop_is_fitted_on_a_fixed_sample_and_scored_in_batches(shop, settings,
                                                                      monkeypatch):
    """The models see a sample chosen by customer id (the same one every time); every buyer
    is still scored, a batch at a time, and written."""
    draw_shop(shop, 3000, seed=6)
    monkeypatch.setattr(predict, "SAMPLE", 600)   # 3,000 customers: every 5th id is fitted
    monkeypatch.setattr(predict, "_BATCH", 700)
    with shop.connect() as conn:
        fitted = predict.fit(conn, settings, NOW)
        batches = list(predict.scored(conn, settings, NOW, fitted))
        sampled, _ = predict.histories(conn, settings, NOW, 90, predict.sample_every(conn))
    assert fitted.info["fitted_on"] == f"{len(sampled)} buyers (customer id a multiple of 5)"
    assert set(sampled.customer_id.tolist()) == set(range(5, 3001, 5))
    assert fitted.info["calibration"].startswith("on ")
    assert [len(b.churn_risk) for b in batches] == [700, 700, 700, 700, 200]

    metrics.refresh(shop, settings, NOW)
    rows = predicted(shop)
    assert len(rows) == 3000  # every buyer, not only the sample
    scored = {int(i): float(r) for b in batches
              for i, r in zip(b.history.customer_id, b.churn_risk, strict=True)}
    assert {i: r["churn_risk"] for i, r in rows.items()} == pytest.approx(scored)
    assert _note(shop)["mbgnbd"] == pytest.approx(fitted.info["mbgnbd"])
    assert _note(shop)["mbgnbd"]["r"] == pytest.approx(TRUTH.r, rel=0.4)


def test_the_refresh_process_loads_no_machine_learning_library(engine, config_path):
    """scikit-learn's import alone held 75 MB of every process that refreshed the metrics;
    the predictions need numpy and scipy only."""
    draw_shop(engine, 1500)
    code = ("import sys\nfrom engine.cli import app\n"
            f"app(['--config', {str(config_path)!r}, 'customers', 'show', 'syn-1', '--as-of',"
            " '2026-06-15', '--json'], standalone_mode=False)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'statsmodels'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    shown, loaded = out.stdout.rsplit("\n", 2)[-3:-1]
    assert json.loads(shown)["churn_risk"] is not None
    assert loaded == "[]"


def test_a_process_without_numpy_refits_in_a_child_with_the_same_predictions(shop, settings,
                                                                             config_path):
    """A scheduler or `retain run` that has not loaded numpy fits in a child process (refit.py)
    and stays without the fitting libraries; the predictions are those fitted in-process."""
    draw_shop(shop, 1500)
    url = shop.url.render_as_string(hide_password=False)
    code = ("import sys\nfrom datetime import datetime\nfrom engine import config, db\n"
            "from engine.shop import metrics\n"
            f"settings = config.load({str(config_path)!r}, database_url={url!r})\n"
            f"engine = db.connect({url!r})\n"
            f"metrics.refresh(engine, settings, datetime.fromisoformat({NOW.isoformat()!r}))\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'scipy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "[]"

    def predictions() -> list[tuple]:
        with shop.connect() as conn:
            return [tuple(r) for r in conn.execute(select(predict.predictions_table).order_by(
                predict.predictions_table.c.customer_id))]

    in_child = predictions()
    assert len(in_child) > 1000
    with shop.begin() as conn:  # forget them: this process (numpy loaded) fits them again
        conn.execute(delete(tables.Meta.__table__).where(
            tables.Meta.__table__.c.key == "predictions_key"))
    metrics.refresh(shop, settings_on(shop, settings), NOW)
    assert predictions() == in_child
