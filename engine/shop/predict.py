"""Per-customer predictions as of a moment: churn risk, P(alive), expected orders and spend.

Owns: reading buyers' purchase histories from the counted orders (grouped queries), the
prediction recipe (below), the ``customer_predictions`` table it rebuilds beside the metrics,
the cache rule that ties the two together, and the read-out for one customer. Must not read
the clock, loop over customers in Python (arrays only), hold the whole population at once
(the models are fitted on a sample, every buyer is scored a batch at a time), or fail a
metrics refresh: when the predictions cannot be made, the table is left empty, the reason is
logged and kept in ``meta['predictions_note']``, and conditions on prediction fields match no
one. The predictions are day-level quantities (a horizon in days): they are refitted when the
metrics are rebuilt whole (a new store-local day, changed thresholds, a full rebuild) or the
``predict:`` settings change, never by an incremental refresh after new orders, which keeps
the day's predictions (a first-time buyer of the day gets theirs the next day).

The recipe, as of ``now`` with horizon h (``predict.horizon_days``):

1. History in whole days of the store's calendar, counting order *days* (two orders on one
   day are one visit, as the literature counts purchases): x repeat visits, t_x the day of the
   last visit and T today, both counted from the first visit.
2. MBG/NBD and Gamma-Gamma (btyd.py) fitted on every buyer of a shop of up to ``SAMPLE``
   customers; in a larger one, on the buyers whose customer id is a multiple of
   ceil(customers / ``SAMPLE``): about ``SAMPLE`` customers, the same ones run after run, which
   estimate four and three parameters as well as a million do. ``p_alive``,
   ``expected_orders`` in (today, today + h] and ``predicted_clv`` = expected orders x
   expected order value, for every buyer.
3. ``churn_risk`` is calibrated on the shop's own recent past (calibration.py, on the same
   sample): the same model fitted as of today - h scores that day's buyers; a logistic
   regression learns how its P(no order in h days), with repeat visits, days since the last
   visit, age and average order value, maps to who really did not order in the h days that
   followed; it is then applied today. With too little past (fewer than 200 customers then,
   or too few of either outcome) churn_risk is the model's P(no order in h days) itself.
   Everything uses only orders before ``now``, so ``retain predict evaluate`` can hold out
   what came after a split.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator
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
SAMPLE = 50_000             # customers the models are fitted on, at most (about)
_BATCH = 5_000              # buyers read, scored and written at a time


def available() -> bool:
    """Whether the ``predict`` extra (numpy, scipy) is installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("numpy", "scipy"))


def require() -> None:
    if not available():
        raise ConfigError("predictions need numpy and scipy: " + EXTRA_HINT)


@dataclass
class History:
    """Buyers' histories as of a day, as parallel numpy arrays (one entry a customer)."""

    customer_id: Any
    x: Any              # repeat visits (distinct order days - 1)
    t_x: Any            # day of the last visit, counted from the first
    T: Any              # today, counted from the first visit
    orders: Any         # counted orders
    spent: Any          # their total, in cents

    @property
    def recency(self):
        return self.T - self.t_x

    @property
    def mean_order(self):
        """Average counted order, in cents (0 for no orders)."""
        import numpy as np

        return np.divide(self.spent, self.orders, out=np.zeros(len(self)),
                         where=self.orders > 0)

    def __len__(self) -> int:
        return len(self.customer_id)

    def select(self, mask) -> History:
        return History(*(getattr(self, k)[mask] for k in self.__dataclass_fields__))


@dataclass
class Predictions:
    """The predictions for some buyers, and how they were made."""

    history: History
    churn_risk: Any
    p_alive: Any
    expected_orders: Any
    predicted_clv_cents: Any
    p_no_order: Any     # the model's own P(no order in the horizon), before calibration
    model: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fitted:
    """The models fitted on the sample, ready to score any buyer's history."""

    horizon: int
    mbgnbd: Any
    spend: Any          # btyd.GammaGamma, or None: each customer's own average order
    calibration: Any    # calibration.Calibration, or None: churn_risk is P(no order)
    info: dict[str, Any]

    def score(self, c: History) -> Predictions:
        import numpy as np

        h, model = self.horizon, self.mbgnbd
        p_quiet = model.p_no_purchase(c.x, c.t_x, c.T, h)
        expected = model.expected_purchases(c.x, c.t_x, c.T, h)
        mean = c.mean_order
        value = mean if self.spend is None else self.spend.expected_order_value(c.orders, mean)
        churn = p_quiet if self.calibration is None else self.calibration.apply(c, p_quiet)
        return Predictions(c, churn, model.p_alive(c.x, c.t_x, c.T), expected,
                           np.rint(expected * value).astype(np.int64), p_quiet, self.info)


def sample_every(conn: Connection) -> int:
    """The models are fitted on the customers whose id is a multiple of this: everyone up to
    ``SAMPLE`` customers, then about ``SAMPLE`` of them (the same ones, run after run)."""
    customers = conn.execute(select(func.count()).select_from(tables.Customer)).scalar_one()
    return max(1, -(-customers // SAMPLE))


def _history_query(settings: Settings, now: datetime, back_days: int | None, every: int = 1):
    """One row a buyer, in customer id order: id, then as of today the age of the first and
    last visit, visits, orders, spent; then (``back_days``) the same as of that many days
    earlier, aggregating only the days up to that cut (NULL ages: no order yet by then)."""
    today = now.astimezone(settings.store.zone).date()
    today_p = bindparam("today", today, type_=Date())
    day = orders.c.local_date
    columns = [orders.c.customer_id, days_between(today_p, func.min(day)),
               days_between(today_p, func.max(day)), func.count(day.distinct()), func.count(),
               func.sum(orders.c.total_cents)]
    if back_days is not None:
        cut_p = bindparam("cut", today - timedelta(days=back_days), type_=Date())

        def before_cut(value):
            return case((day <= cut_p, value))
        columns += [days_between(cut_p, func.min(before_cut(day))),
                    days_between(cut_p, func.max(before_cut(day))),
                    func.count(before_cut(day).distinct()), func.count(before_cut(1)),
                    func.coalesce(func.sum(before_cut(orders.c.total_cents)), 0)]
    query = select(*columns).where(counted(now))
    if every > 1:
        query = query.where(orders.c.customer_id % every == 0)
    # GROUP BY over the metrics' covering index (customer, status, created_at, total, local
    # date): no table lookups. COUNT(DISTINCT day) makes same-day orders one visit.
    return query.group_by(orders.c.customer_id).order_by(orders.c.customer_id)


def _batches(conn: Connection, query, width: int):
    """The query's rows as float arrays of at most ``_BATCH`` rows (NULL as -1)."""
    import numpy as np

    for batch in conn.execute(query.execution_options(yield_per=_BATCH)).partitions():
        # Rows as plain tuples: numpy probing a Row for a mapping costs 30 s a million rows.
        a = np.array(list(map(tuple, batch)), dtype=float).reshape(-1, width)
        yield np.nan_to_num(a, nan=-1.0, copy=False)


def _history(a, first: int) -> History:
    """The History in columns ``first`` to ``first + 4`` of an array from _history_query."""
    import numpy as np

    f, last, visits, n, spent = (a[:, first + k] for k in range(5))
    return History(a[:, 0].astype(np.int64), visits - 1, f - last, f, n, spent)


def histories(conn: Connection, settings: Settings, now: datetime, back_days: int,
              every: int = 1) -> tuple[History, History]:
    """The histories of the buyers whose id is a multiple of ``every`` (1: all of them) as of
    today and as of ``back_days`` earlier, in one grouped query over the counted orders created
    before ``now``. The earlier one holds that day's buyers only, and nothing that came after
    its cut leaks in."""
    import numpy as np

    parts = list(_batches(conn, _history_query(settings, now, back_days, every), 11))
    a = np.concatenate(parts) if parts else np.zeros((0, 11))
    return _history(a, 1), _history(a, 6).select(a[:, 8] > 0)


def fit(conn: Connection, settings: Settings, now: datetime) -> Fitted:
    """The models fitted on the sample's histories as of ``now``; PredictionError when they
    cannot be."""
    require()

    from engine.shop import btyd, calibration

    h = settings.predict.horizon_days
    every = sample_every(conn)
    c, past = histories(conn, settings, now, h, every)
    if len(c) == 0:
        raise PredictionError("no customer has a counted order yet")
    try:
        model = btyd.fit_mbgnbd(c.x, c.t_x, c.T)
    except btyd.FitFailed as exc:
        raise PredictionError(str(exc)) from None
    info: dict[str, Any] = {
        "mbgnbd": model.params(), "penalized": model.penalized,
        "fitted_on": "every buyer" if every == 1 else f"{len(c)} buyers (customer id a "
                                                      f"multiple of {every})"}
    spend = None
    try:
        spend = btyd.fit_gamma_gamma(c.orders, c.mean_order)
        info["gamma_gamma"] = spend.params()
    except btyd.FitFailed as exc:  # each customer's own average is the fallback
        info["gamma_gamma"] = f"not used: {exc}"
    calibrated, info["calibration"] = calibration.fit(past, c, h)
    return Fitted(h, model, spend, calibrated, info)


def scored(conn: Connection, settings: Settings, now: datetime, fitted: Fitted
           ) -> Iterator[Predictions]:
    """Every buyer's predictions as of ``now``, a batch of ``_BATCH`` buyers at a time,
    streamed from the grouped query: the population is never held at once."""
    query = _history_query(settings, now, None)
    for a in _batches(conn, query, 6):
        yield fitted.score(_history(a, 1))


def compute(conn: Connection, settings: Settings, now: datetime) -> Predictions:
    """Predictions for every buyer as of ``now``, in arrays (for ``retain predict evaluate``,
    which compares them all with what happened); PredictionError when they cannot be made."""
    import numpy as np

    fitted = fit(conn, settings, now)
    parts = list(scored(conn, settings, now, fitted))
    if not parts:
        raise PredictionError("no customer has a counted order yet")

    def joined(values):
        return np.concatenate(values)
    history = History(*(joined([getattr(p.history, k) for p in parts])
                        for k in History.__dataclass_fields__))
    return Predictions(history, *(joined([getattr(p, k) for p in parts]) for k in (
        "churn_risk", "p_alive", "expected_orders", "predicted_clv_cents", "p_no_order")),
        model=fitted.info)


def tier(settings: Settings, churn_risk) -> Any:
    """low / medium / high from ``predict.churn_tiers`` (a value on a threshold goes up)."""
    import numpy as np

    t = settings.predict.churn_tiers
    return np.where(churn_risk >= t.high, "high",
                    np.where(churn_risk >= t.medium, "medium", "low"))


def refresh(conn: Connection, settings: Settings, now: datetime) -> None:
    """Rebuild ``customer_predictions`` when the metrics were rebuilt whole since (their
    ``metrics_rebuilt_at``: a new store-local day, changed thresholds, a full rebuild) or the
    ``predict:`` settings changed; otherwise read one meta row. An incremental refresh of the
    metrics keeps the day's predictions.

    Called by ``metrics.refresh`` once the metrics are current. Fits first (reads only), then
    replaces the rows, scoring and writing a batch at a time. Never raises for a fit that fails
    or a missing extra: the table is emptied and the reason logged and kept, so a scheduler
    tick goes on without predictions rather than stopping.
    """
    if current(conn, settings):
        return
    key = _cache_key(conn, settings)
    fitted = None
    try:
        with _savepoint(conn):
            fitted = fit(conn, settings, now)
        note = json.dumps({"as_of": now.astimezone(UTC).isoformat(), **fitted.info},
                          default=float)
    except Exception as exc:
        note = _why_not(exc, now)
    if conn.dialect.name == "postgresql":  # two refreshes at once: the second waits, then skips
        conn.exec_driver_sql("LOCK TABLE customer_predictions IN SHARE ROW EXCLUSIVE MODE")
        if db.get_meta(conn, "predictions_key") == key:
            return
    conn.execute(delete(predictions_table))
    if fitted is not None:
        try:
            with _savepoint(conn):
                for batch in scored(conn, settings, now, fitted):
                    _write(conn, settings, batch)
        except Exception as exc:
            conn.execute(delete(predictions_table))
            note = _why_not(exc, now)
    db.set_meta(conn, "predictions_note", note)
    db.set_meta(conn, "predictions_key", key)


def current(conn: Connection, settings: Settings) -> bool:
    """Whether ``customer_predictions`` is as the metrics and ``predict:`` settings ask."""
    return db.get_meta(conn, "predictions_key") == _cache_key(conn, settings)


def _savepoint(conn: Connection):
    # On PostgreSQL a failed statement spoils the transaction: the work gets a savepoint.
    return conn.begin_nested() if conn.dialect.name == "postgresql" else nullcontext()


def _why_not(exc: Exception, now: datetime) -> str:
    """The note kept, and logged, when there are no predictions."""
    if isinstance(exc, ConfigError):  # the extra is not installed: the shop chose a light install
        note = f"no predictions: {exc}"
        log.info("%s", note)
        return note
    if isinstance(exc, PredictionError):
        note = f"no predictions as of {now:%Y-%m-%d}: {exc}"
    else:  # numerical trouble must not stop the metrics or a tick
        note = f"no predictions as of {now:%Y-%m-%d}: {type(exc).__name__}: {exc}"
    log.warning("%s", note)
    return note


def _cache_key(conn: Connection, settings: Settings) -> str:
    return json.dumps({"metrics": db.get_meta(conn, "metrics_rebuilt_at"),
                       "predict": settings.predict.model_dump(), "extra": available()},
                      sort_keys=True)


def _write(conn: Connection, settings: Settings, result: Predictions) -> None:
    columns = {"customer_id": result.history.customer_id, "churn_risk": result.churn_risk,
               "p_alive": result.p_alive, "expected_orders": result.expected_orders,
               "predicted_clv_cents": result.predicted_clv_cents,
               "churn_tier": tier(settings, result.churn_risk)}
    batch = {k: v.tolist() for k, v in columns.items()}
    rows = zip(*batch.values(), strict=True)
    conn.execute(predictions_table.insert(), [dict(zip(batch, row, strict=True)) for row in rows])


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
