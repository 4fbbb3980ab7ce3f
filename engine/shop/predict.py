"""Per-customer predictions as of a moment: churn risk, P(alive), expected orders and spend.

Owns: reading each buyer's purchase history from the counted orders (one grouped query), the
prediction recipe (below), the ``customer_predictions`` table it rebuilds beside the metrics,
the cache rule that ties the two together, and the read-out for one customer. Must not read
the clock, loop over customers in Python (arrays only), or fail a metrics refresh: when the
predictions cannot be made, the table is left empty, the reason is logged and kept in
``meta['predictions_note']``, and conditions on prediction fields match no one.

The recipe, as of ``now`` with horizon h (``predict.horizon_days``):

1. History in whole days of the store's calendar, counting order *days* (two orders on one
   day are one visit, as the literature counts purchases): x repeat visits, t_x the day of the
   last visit and T today, both counted from the first visit.
2. MBG/NBD and Gamma-Gamma fitted on every buyer (btyd.py). ``p_alive``, ``expected_orders``
   in (today, today + h] and ``predicted_clv`` = expected orders x expected order value.
3. ``churn_risk`` is calibrated on the shop's own recent past: the same model fitted as of
   today - h scores that day's buyers; a logistic regression learns how its P(no order in h
   days), with repeat visits, days since the last visit, age and average order value, maps
   to who really did not order in the h days that followed; it is then applied today. With
   too little past (fewer than 200 customers then, or too few of either outcome) churn_risk
   is the model's P(no order in h days) itself. Everything uses only orders before ``now``,
   so ``retain predict evaluate`` can hold out what came after a split.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Date, bindparam, case, delete, func, select
from sqlalchemy.engine import Connection, Engine

from engine import db, money, tables
from engine.config import Settings
from engine.errors import ConfigError, PredictionError
from engine.shop.counted import counted
from engine.shop.metrics import days_between

log = logging.getLogger(__name__)

orders = tables.Order.__table__
predictions_table = tables.CustomerPrediction.__table__

EXTRA_HINT = "install the predictions extra: pip install '.[predict]' (make installs it)"
_MIN_CALIBRATION = 200      # buyers as of today - h needed to calibrate
_MIN_OUTCOME = 20           # ...with at least this many of each outcome
_BATCH = 20_000             # rows per INSERT when writing predictions


def available() -> bool:
    """Whether the ``predict`` extra (numpy, scipy, scikit-learn) is installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("numpy", "scipy", "sklearn"))


def require() -> None:
    if not available():
        raise ConfigError("predictions need numpy, scipy and scikit-learn: " + EXTRA_HINT)


@dataclass
class History:
    """Every buyer's history as of a day, as parallel numpy arrays (one entry a customer)."""

    customer_id: Any
    x: Any              # repeat visits (distinct order days - 1)
    t_x: Any            # day of the last visit, counted from the first
    T: Any              # today, counted from the first visit
    orders: Any         # counted orders
    spent: Any          # their total, in cents

    @property
    def recency(self):
        return self.T - self.t_x

    def __len__(self) -> int:
        return len(self.customer_id)

    def select(self, mask) -> History:
        return History(*(getattr(self, k)[mask] for k in self.__dataclass_fields__))


@dataclass
class Predictions:
    """The predictions for every buyer, and how they were made."""

    history: History
    churn_risk: Any
    p_alive: Any
    expected_orders: Any
    predicted_clv_cents: Any
    p_no_order: Any     # the model's own P(no order in the horizon), before calibration
    model: dict[str, Any] = field(default_factory=dict)


def histories(conn: Connection, settings: Settings, now: datetime, back_days: int
              ) -> tuple[History, History]:
    """Buyers' histories as of today and as of ``back_days`` earlier, in one grouped query
    over the counted orders created before ``now``. The earlier one aggregates only the days
    up to its cut, so nothing that came after it leaks in; it holds that day's buyers only."""
    import numpy as np

    today = now.astimezone(settings.store.zone).date()
    today_p = bindparam("today", today, type_=Date())
    cut_p = bindparam("cut", today - timedelta(days=back_days), type_=Date())
    day = orders.c.local_date
    early = day <= cut_p

    def before_cut(value):
        return case((early, value))
    # GROUP BY over the metrics' covering index (customer, status, created_at, total, local
    # date): no table lookups. COUNT(DISTINCT day) makes same-day orders one visit.
    query = (
        select(orders.c.customer_id,
               days_between(today_p, func.min(day)), days_between(today_p, func.max(day)),
               func.count(day.distinct()), func.count(), func.sum(orders.c.total_cents),
               days_between(cut_p, func.min(before_cut(day))),
               days_between(cut_p, func.max(before_cut(day))),
               func.count(before_cut(day).distinct()), func.count(before_cut(1)),
               func.coalesce(func.sum(before_cut(orders.c.total_cents)), 0))
        .where(counted(now))
        .group_by(orders.c.customer_id)
        .order_by(orders.c.customer_id)
    )
    # Rows as plain tuples: numpy probing a Row for a mapping costs 30 s a million rows.
    parts = [np.array(list(map(tuple, batch)), dtype=float).reshape(-1, 11) for batch in
             conn.execute(query.execution_options(yield_per=_BATCH)).partitions()]
    a = np.concatenate(parts) if parts else np.zeros((0, 11))
    a = np.nan_to_num(a, nan=-1.0)  # NULL ages: no order yet at the cut

    def history(first, last, visits, n, spent):
        return History(a[:, 0].astype(np.int64), a[:, visits] - 1, a[:, first] - a[:, last],
                       a[:, first], a[:, n], a[:, spent])
    now_h = history(1, 2, 3, 4, 5)
    then = history(6, 7, 8, 9, 10)
    return now_h, then.select(a[:, 8] > 0)


def compute(conn: Connection, settings: Settings, now: datetime) -> Predictions:
    """Predictions for every buyer as of ``now``; PredictionError when they cannot be made."""
    require()
    import numpy as np

    from engine.shop import btyd

    h = settings.predict.horizon_days
    current, past = histories(conn, settings, now, h)
    if len(current) == 0:
        raise PredictionError("no customer has a counted order yet")
    try:
        model = btyd.fit_mbgnbd(current.x, current.t_x, current.T)
    except btyd.FitFailed as exc:
        raise PredictionError(str(exc)) from None
    c = current
    p_alive = model.p_alive(c.x, c.t_x, c.T)
    expected = model.expected_purchases(c.x, c.t_x, c.T, h)
    p_quiet = model.p_no_purchase(c.x, c.t_x, c.T, h)
    info: dict[str, Any] = {"mbgnbd": model.params(), "penalized": model.penalized}

    mean = np.divide(c.spent, c.orders, out=np.zeros(len(c)), where=c.orders > 0)
    try:
        spend = btyd.fit_gamma_gamma(c.orders, mean)
        order_value = spend.expected_order_value(c.orders, mean)
        info["gamma_gamma"] = spend.params()
    except btyd.FitFailed as exc:  # each customer's own average is the fallback
        order_value = mean
        info["gamma_gamma"] = f"not used: {exc}"

    churn, info["calibration"] = _calibrate(past, current, p_quiet, h, btyd)
    return Predictions(current, churn, p_alive, expected,
                       np.rint(expected * order_value).astype(np.int64), p_quiet, info)


_LOG_ODDS, _DAYS_SINCE = 0, 2   # columns of _features that the monotonicity rule checks


def _features(history: History, p_quiet):
    import numpy as np

    p = np.clip(p_quiet, 1e-6, 1 - 1e-6)
    mean = np.divide(history.spent, history.orders, out=np.zeros(len(history)),
                     where=history.orders > 0)
    return np.column_stack([np.log(p / (1 - p)), np.log1p(history.x),
                            np.log1p(history.recency), np.log1p(history.T),
                            np.log1p(np.maximum(mean, 0) / 100)])


def _calibrate(past: History, current: History, p_quiet, h: int, btyd) -> tuple[Any, str]:
    """churn_risk: the model's P(no order in h days), recalibrated on what happened in the
    last h days to the buyers of h days ago (see the module docstring)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    if len(past) < _MIN_CALIBRATION:
        return p_quiet, f"not used: {len(past)} buyers {h} days ago, need {_MIN_CALIBRATION}"
    # Who among them did not order in the h days since: their last visit is still that old.
    # Both are sorted by customer id and every buyer then is a buyer now.
    now_row = np.searchsorted(current.customer_id, past.customer_id)
    gone = (current.recency[now_row] >= h).astype(int)
    if min(gone.sum(), len(gone) - gone.sum()) < _MIN_OUTCOME:
        return p_quiet, f"not used: fewer than {_MIN_OUTCOME} buyers {h} days ago " \
                        "either came back or stayed away"
    try:
        then = btyd.fit_mbgnbd(past.x, past.t_x, past.T)
    except btyd.FitFailed as exc:
        return p_quiet, f"not used: {exc} as of {h} days ago"
    train = _features(past, then.p_no_purchase(past.x, past.t_x, past.T, h))
    if len(gone) > btyd.SAMPLE:  # five weights: a seeded sample learns them as well
        rows = np.random.default_rng(0).choice(len(gone), btyd.SAMPLE, replace=False)
        train, gone = train[rows], gone[rows]
    apply = _features(current, p_quiet)
    # churn_risk must rise with the days since the last visit at equal visits and age, as the
    # model's does: so the model's log-odds must weigh positively, and the days feature must
    # not push the other way (it is dropped when its weight comes out negative).
    columns = list(range(train.shape[1]))
    for _ in range(2):
        learner = LogisticRegression(max_iter=1000).fit(train[:, columns], gone)
        weight = dict(zip(columns, learner.coef_[0], strict=True))
        if weight[_LOG_ODDS] <= 0:
            return p_quiet, "not used: the recalibration ranked against the model"
        if weight.get(_DAYS_SINCE, 0) >= 0:
            break
        columns.remove(_DAYS_SINCE)
    return (learner.predict_proba(apply[:, columns])[:, 1],
            f"on {len(past)} buyers of {h} days ago")


def tier(settings: Settings, churn_risk) -> Any:
    """low / medium / high from ``predict.churn_tiers`` (a value on a threshold goes up)."""
    import numpy as np

    t = settings.predict.churn_tiers
    return np.where(churn_risk >= t.high, "high",
                    np.where(churn_risk >= t.medium, "medium", "low"))


def refresh(conn: Connection, settings: Settings, now: datetime) -> None:
    """Rebuild ``customer_predictions`` when the metrics were rebuilt since (their
    ``metrics_built_at``) or the ``predict:`` settings changed; otherwise read one meta row.

    Called by ``metrics.refresh`` once the metrics are current. Computes first (reads only),
    then replaces the rows. Never raises for a fit that fails or a missing extra: the table is
    emptied and the reason logged and kept, so a scheduler tick goes on without predictions
    rather than stopping.
    """
    key = _cache_key(conn, settings)
    if db.get_meta(conn, "predictions_key") == key:
        return
    result = None
    # On PostgreSQL a failed statement spoils the transaction: the reads get a savepoint.
    reads = conn.begin_nested() if conn.dialect.name == "postgresql" else nullcontext()
    try:
        with reads:
            result = compute(conn, settings, now)
        note = json.dumps({"as_of": now.astimezone(UTC).isoformat(), **result.model},
                          default=float)
    except ConfigError as exc:  # the extra is not installed: the shop chose a light install
        note = f"no predictions: {exc}"
        log.info("%s", note)
    except PredictionError as exc:
        note = f"no predictions as of {now:%Y-%m-%d}: {exc}"
        log.warning("%s", note)
    except Exception as exc:  # numerical trouble must not stop the metrics or a tick
        note = f"no predictions as of {now:%Y-%m-%d}: {type(exc).__name__}: {exc}"
        log.warning("%s", note)
    if conn.dialect.name == "postgresql":  # two refreshes at once: the second waits, then skips
        conn.exec_driver_sql("LOCK TABLE customer_predictions IN SHARE ROW EXCLUSIVE MODE")
        if db.get_meta(conn, "predictions_key") == key:
            return
    conn.execute(delete(predictions_table))
    if result is not None:
        _write(conn, settings, result)
    db.set_meta(conn, "predictions_note", note)
    db.set_meta(conn, "predictions_key", key)


def _cache_key(conn: Connection, settings: Settings) -> str:
    return json.dumps({"metrics": db.get_meta(conn, "metrics_built_at"),
                       "predict": settings.predict.model_dump(), "extra": available()},
                      sort_keys=True)


def _write(conn: Connection, settings: Settings, result: Predictions) -> None:
    columns = {"customer_id": result.history.customer_id, "churn_risk": result.churn_risk,
               "p_alive": result.p_alive, "expected_orders": result.expected_orders,
               "predicted_clv_cents": result.predicted_clv_cents,
               "churn_tier": tier(settings, result.churn_risk)}
    for start in range(0, len(result.churn_risk), _BATCH):  # one batch of Python values at once
        batch = {k: v[start:start + _BATCH].tolist() for k, v in columns.items()}
        rows = zip(*batch.values(), strict=True)
        conn.execute(predictions_table.insert(),
                     [dict(zip(batch, row, strict=True)) for row in rows])


def for_customer(engine: Engine, customer_id: int) -> dict[str, Any]:
    """One customer's predictions, JSON-ready, for ``retain customers show`` (all None for a
    prospect, or when there are no predictions: ``prediction_note`` says why)."""
    p = predictions_table.c
    with engine.connect() as conn:
        row = conn.execute(select(predictions_table).where(p.customer_id == customer_id)
                           ).mappings().first()
        why = note(conn)
    keys = ("churn_risk", "churn_tier", "p_alive", "expected_orders", "predicted_clv")
    if row is None:
        return {**dict.fromkeys(keys), "prediction_note": why}
    return {"churn_risk": round(row["churn_risk"], 4),
            "churn_tier": getattr(row["churn_tier"], "value", row["churn_tier"]),
            "p_alive": round(row["p_alive"], 4),
            "expected_orders": round(row["expected_orders"], 4),
            "predicted_clv": money.decimal_text(row["predicted_clv_cents"]),
            "prediction_note": None}


def note(conn: Connection) -> str | None:
    """Why there are no predictions (a sentence), or None when there are."""
    value = db.get_meta(conn, "predictions_note")
    return None if value is None or value.startswith("{") else value


def model(conn: Connection) -> dict[str, Any] | None:
    """How the current predictions were made: parameters, calibration; None without them."""
    value = db.get_meta(conn, "predictions_note")
    return json.loads(value) if value and value.startswith("{") else None
