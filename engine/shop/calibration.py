"""The churn calibration: the model's P(no order in h days) made into ``churn_risk``.

Owns: when there is enough of the shop's own past to calibrate on, the five features, the
logistic regression that maps them to who really did not order, and the rule that keeps the
result monotone in the days since the last visit. Must not touch the database or know what an
order is (predict.py reads the histories and fits the model of today); pure numpy and scipy,
imported only when the ``predict`` extra is installed.

The buyers of h days ago are scored by the same MBG/NBD fitted as of that day, and the
regression learns how its P(no order), with repeat visits, days since the last visit, age and
average order value, maps to who placed no order in the h days that followed. The regression
is scikit-learn's default objective (log-loss plus half the squared weights, the intercept
free), maximised with scipy's L-BFGS and its analytic gradient: five weights do not need a
library whose import alone holds 75 MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from engine.shop import btyd

MIN_BUYERS = 200      # buyers as of today - h needed to calibrate
MIN_OUTCOME = 20      # ...with at least this many of each outcome
_LOG_ODDS, _DAYS_SINCE = 0, 2   # columns of features() that the monotonicity rule checks


def features(history, p_quiet) -> np.ndarray:
    """One row a customer: the model's log-odds of no order, then log(1 + ·) of repeat visits,
    days since the last visit, age and average order value (in units of 100 cents)."""
    p = np.clip(p_quiet, 1e-6, 1 - 1e-6)
    mean = history.mean_order
    return np.column_stack([np.log(p / (1 - p)), np.log1p(history.x),
                            np.log1p(history.recency), np.log1p(history.T),
                            np.log1p(np.maximum(mean, 0) / 100)])


@dataclass(frozen=True)
class Calibration:
    """Logistic weights over some columns of ``features``."""

    columns: tuple[int, ...]
    weights: np.ndarray
    intercept: float

    def apply(self, history, p_quiet) -> np.ndarray:
        return expit(features(history, p_quiet)[:, list(self.columns)] @ self.weights
                     + self.intercept)


def fit(past, current, h: int) -> tuple[Calibration | None, str]:
    """The calibration learnt from ``past`` (the buyers as of h days ago) and ``current``
    (the same customers' histories today; both sorted by customer id), or None and why not."""
    if len(past) < MIN_BUYERS:
        return None, f"not used: {len(past)} buyers {h} days ago, need {MIN_BUYERS}"
    # Who among them did not order in the h days since: their last visit is still that old.
    # Every buyer then is a buyer now.
    now_row = np.searchsorted(current.customer_id, past.customer_id)
    gone = (current.recency[now_row] >= h).astype(float)
    if min(gone.sum(), len(gone) - gone.sum()) < MIN_OUTCOME:
        return None, f"not used: fewer than {MIN_OUTCOME} buyers {h} days ago " \
                     "either came back or stayed away"
    try:
        then = btyd.fit_mbgnbd(past.x, past.t_x, past.T)
    except btyd.FitFailed as exc:
        return None, f"not used: {exc} as of {h} days ago"
    train = features(past, then.p_no_purchase(past.x, past.t_x, past.T, h))
    # churn_risk must rise with the days since the last visit at equal visits and age, as the
    # model's does: so the model's log-odds must weigh positively, and the days feature must
    # not push the other way (it is dropped when its weight comes out negative).
    columns = list(range(train.shape[1]))
    for _ in range(2):
        weights, intercept = _logistic(train[:, columns], gone)
        weight = dict(zip(columns, weights, strict=True))
        if weight[_LOG_ODDS] <= 0:
            return None, "not used: the recalibration ranked against the model"
        if weight.get(_DAYS_SINCE, 0) >= 0:
            break
        columns.remove(_DAYS_SINCE)
    return Calibration(tuple(columns), weights, intercept), f"on {len(past)} buyers of {h} days ago"


def _logistic(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """L2-penalised logistic regression, C = 1 (scikit-learn's ``LogisticRegression()``):
    minimises sum(log-loss) + |w|^2 / 2 over the weights w and a free intercept."""
    design = np.column_stack([X, np.ones(len(X))])
    n = len(X)

    def objective(theta):  # divided by n: the same optimum, a gradient of a sane size
        z = design @ theta
        penalty = np.append(theta[:-1], 0.0)
        value = (np.logaddexp(0, z) - y * z).sum() + 0.5 * penalty @ penalty
        grad = design.T @ (expit(z) - y) + penalty
        return value / n, grad / n

    # scikit-learn's start and stopping rule (LogisticRegression(max_iter=1000), tol 1e-4), so
    # the calibration stops where it did: README's CDNOW figures are unchanged.
    result = minimize(objective, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B",
                      options={"maxiter": 1000, "maxls": 50, "gtol": 1e-4,
                               "ftol": 64 * np.finfo(float).eps})
    return result.x[:-1], float(result.x[-1])
