"""How good the churn predictions are on the shop's own history: ``retain predict evaluate``.

Owns: holding out what happened after a split date, scoring the customers of the split with
what the engine would have predicted that day (predict.compute sees only the orders before
it), and the retention literature's measures for each score against the outcome. Must not
write: nothing of the shop or its predictions changes.

"Leaving" is the positive class: a buyer of the split who places no counted order in the
``horizon`` days from it. A score *flags* a customer as leaving from its threshold on:
precision is the share of flagged who left, recall the share of leavers flagged; the error
rate is the share of flagged who came back (1 - precision), the miss rate the share of leavers
not flagged (1 - recall). AUC says how well the score ranks leavers above returners, whatever
the threshold (0.5 = chance). The baseline to beat is the recency rule the dormancy tiers
use: flagged from ``metrics.dormancy_days.drowsy`` days since the last order on, ranked by
those days.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from engine import tables
from engine.config import Settings
from engine.errors import PredictionError
from engine.shop import predict
from engine.shop.counted import counted

orders = tables.Order.__table__


def evaluate(engine: Engine, settings: Settings, split: date, now: datetime,
             horizon_days: int | None = None, threshold: float = 0.5) -> dict[str, Any]:
    """Predict as of the end of the day before ``split``, compare with the next
    ``horizon_days`` (default ``predict.horizon_days``), and measure each score."""
    predict.require()
    import numpy as np

    h = horizon_days or settings.predict.horizon_days
    zone = settings.store.zone
    start = datetime.combine(split, time(0), tzinfo=zone)
    end = datetime.combine(split + timedelta(days=h), time(0), tzinfo=zone)
    if end > now:
        raise PredictionError(
            f"the {h} days after {split} are not over yet ({(end - timedelta(days=1)).date()}"
            f" is after today): choose a split at least {h} days ago or a shorter --horizon")
    cfg = settings.model_copy(update={
        "predict": settings.predict.model_copy(update={"horizon_days": h})})
    with engine.connect() as conn:
        # The end of the day before the split: the orders before it are all the model sees.
        result = predict.compute(conn, cfg, start - timedelta(microseconds=1))
        returned = conn.execute(
            select(orders.c.customer_id).distinct()
            .where(counted(end), orders.c.created_at >= start)).scalars().all()
    ids = result.history.customer_id
    left = ~np.isin(ids, np.fromiter(returned, dtype=np.int64, count=len(returned)))
    if left.all() or not left.any():
        raise PredictionError(f"every customer of {split} {'left' if left.all() else 'returned'}"
                              f" within {h} days: there is nothing to tell apart")
    recency = result.history.recency
    drowsy = settings.metrics.dormancy_days.drowsy
    scores = [
        measure("churn_risk", f"churn_risk >= {threshold}", result.churn_risk,
                 result.churn_risk >= threshold, left),
        measure("mbgnbd_p_no_order", f"P(no order) >= {threshold}", result.p_no_order,
                 result.p_no_order >= threshold, left),
        measure("recency_rule", f"recency_days >= {drowsy}", recency, recency >= drowsy, left),
    ]
    return {"split": split.isoformat(), "horizon_days": h, "customers": int(len(ids)),
            "leavers": int(left.sum()), "threshold": threshold, "scores": scores,
            "model": result.model}


def measure(name: str, rule: str, score: Any, flagged: Any, left: Any) -> dict[str, Any]:
    tp = int((flagged & left).sum())
    fp = int((flagged & ~left).sum())
    fn = int((~flagged & left).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"score": name, "rule": rule, "flagged": tp + fp,
            "precision": round(precision, 4), "recall": round(recall, 4),
            "error_rate": round(1 - precision, 4) if tp + fp else None,
            "miss_rate": round(1 - recall, 4), "f1": round(f1, 4),
            "auc": round(auc(score, left), 4)}


def auc(score: Any, left: Any) -> float:
    """The area under the ROC curve: the chance that a random leaver scores above a random
    returner, ties counting half (the Mann-Whitney U over the product of the group sizes)."""
    from scipy.stats import mannwhitneyu

    u = mannwhitneyu(score[left], score[~left], method="asymptotic").statistic
    return float(u) / (int(left.sum()) * int((~left).sum()))
