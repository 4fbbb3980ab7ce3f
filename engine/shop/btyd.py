"""The buy-till-you-die models behind the predictions: MBG/NBD for orders, Gamma-Gamma for spend.

Owns: the closed-form likelihoods, their maximum-likelihood fits, and the per-customer
quantities the engine predicts from ``(x, t_x, T)``: x repeat purchases, t_x the age of the
last purchase and T the age of the customer, both in days since the first purchase.
Must not touch the database or know what an order is (predict.py does); pure numpy and scipy,
imported only when the ``predict`` extra is installed.

- MBG/NBD (Batislam, Denizel & Filiztekin 2007, "Empirical validation and comparison of models
  for customer base analysis", IJRM 24(3); Hoppe & Wagner 2007): purchases follow a Poisson
  process with rate lambda ~ Gamma(r, alpha); after every purchase, the first one included,
  the customer leaves with probability p ~ Beta(a, b). Unlike BG/NBD, a one-time buyer may
  already be gone, so P(alive) is not 1 for the 60 % of a cohort who bought once.
- P(no purchase in the next h days) = P(gone) + P(alive) * ((alpha+T) / (alpha+T+h))^(r+x):
  alive at T, the next purchase is exponential in lambda, whose posterior is
  Gamma(r+x, alpha+T); no coin is tossed without a purchase.
- Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves", JMR 42(4)):
  a customer's order values are Gamma(p, nu) with nu ~ Gamma(q, gamma); the expected value of
  their next order shrinks their own average towards the shop's.

Fits run on the distinct ``(x, t_x, T)`` rows with counts as weights (a million customers are
a few hundred thousand rows), in log-parameters with L-BFGS-B and analytic gradients. A fit
that does not converge is tried again with a weak prior towards a neutral start (the
penalizer); a fit that still fails raises ``FitFailed`` with a sentence saying why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

PENALIZER = 0.01      # weight of the prior on (log params - log start)^2, per customer
_LOG_BOUND = 12.0     # |log parameter| beyond this (e^12 = 160 000) is a runaway fit


class FitFailed(Exception):
    """The likelihood could not be maximised; the message says why in plain words."""


@dataclass(frozen=True)
class MBGNBD:
    """Fitted MBG/NBD parameters (time in days) and how the fit went."""

    r: float
    alpha: float
    a: float
    b: float
    penalized: bool = False

    def params(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}

    def p_alive(self, x, t_x, T) -> np.ndarray:
        return expit(-_log_odds_gone(self.r, self.alpha, self.a, self.b, x, t_x, T))

    def p_no_purchase(self, x, t_x, T, h: float) -> np.ndarray:
        alive = self.p_alive(x, t_x, T)
        quiet = np.exp((self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + T + h)))
        return 1 - alive + alive * quiet

    def expected_purchases(self, x, t_x, T, h: float) -> np.ndarray:
        """E[purchases in the next h days] (Batislam et al. 2007, eq. 9)."""
        r, alpha, b = self.r, self.alpha, self.b
        a = self.a if abs(self.a - 1) > 1e-6 else 1 + 1e-6  # the closed form is 0/0 at a = 1
        quiet = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + h)))
        with np.errstate(all="ignore"):
            hyp = hyp2f1(r + x, b + x + 1, a + b + x, h / (alpha + T + h))
            value = (a + b + x) / (a - 1) * (1 - quiet * hyp) * self.p_alive(x, t_x, T)
        # hyp2f1 loses precision for very frequent buyers; there the alive customer's expected
        # rate times the horizon is within a fraction of a purchase of the exact value.
        rough = self.p_alive(x, t_x, T) * (r + x) / (alpha + T) * h
        bad = ~np.isfinite(value) | (value < 0)
        return np.where(bad, rough, value)


@dataclass(frozen=True)
class GammaGamma:
    """Fitted Gamma-Gamma spend parameters (money in the unit the fit was given)."""

    p: float
    q: float
    v: float
    penalized: bool = False

    def params(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "v": self.v}

    def expected_order_value(self, n, mean) -> np.ndarray:
        """E[value of the next order] for a customer with ``n`` orders averaging ``mean``."""
        p, q, v = self.p, self.q, self.v
        return (p * v + p * n * mean) / (p * n + q - 1)


def _log_odds_gone(r, alpha, a, b, x, t_x, T):
    """log(P(gone) / P(alive)) given the history: the second term of the likelihood over the
    first (for x = 0 it is the chance of leaving right after the first purchase)."""
    return np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))


def _mbg_loglik(log_params, x, t_x, T):
    """Per-row log-likelihood and its gradient in the log-parameters (Batislam et al. eq. 5)."""
    r, alpha, a, b = np.exp(log_params)
    gone = _log_odds_gone(r, alpha, a, b, x, t_x, T)
    value = (gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x + 1)
             - betaln(a, b) - (r + x) * np.log(alpha + T) + np.logaddexp(0, gone))
    share = expit(gone)  # d log(1 + e^gone) / d gone
    lag = np.log(alpha + T) - np.log(alpha + t_x)
    grad = (
        r * (digamma(r + x) - digamma(r) + np.log(alpha) - np.log(alpha + T) + share * lag),
        alpha * (r / alpha - (r + x) / (alpha + T)
                 + share * (r + x) * (1 / (alpha + T) - 1 / (alpha + t_x))),
        a * (digamma(a + b) - digamma(a + b + x + 1) + share / a),
        b * (digamma(b + x + 1) - digamma(a + b + x + 1) - digamma(b) + digamma(a + b)
             - share / (b + x)),
    )
    return value, grad


def _gg_loglik(log_params, n, mean):
    """Per-row log-likelihood and its gradient (Fader, Hardie & Lee 2005, appendix)."""
    p, q, v = np.exp(log_params)
    total = n * mean + v
    value = (gammaln(p * n + q) - gammaln(p * n) - gammaln(q) + q * np.log(v)
             + (p * n - 1) * np.log(mean) + p * n * np.log(n) - (p * n + q) * np.log(total))
    grad = (
        p * n * (digamma(p * n + q) - digamma(p * n) + np.log(mean) + np.log(n)
                 - np.log(total)),
        q * (digamma(p * n + q) - digamma(q) + np.log(v) - np.log(total)),
        v * (q / v - (p * n + q) / total),
    )
    return value, grad


def _distinct(columns: tuple[np.ndarray, ...]) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The distinct rows and how many times each occurs. Whole days pack into one integer key
    (a one-dimensional sort, ten times faster than sorting rows); other data stay as they are."""
    whole = all(np.all((c == np.floor(c)) & (c >= 0) & (c < 2**20)) for c in columns)
    if not whole or len(columns) != 3:
        return columns, np.ones(len(columns[0]))
    key = (columns[0].astype(np.int64) << 40) | (columns[1].astype(np.int64) << 20) \
        | columns[2].astype(np.int64)
    key, weights = np.unique(key, return_counts=True)
    mask = (1 << 20) - 1
    rows = ((key >> 40).astype(float), ((key >> 20) & mask).astype(float),
            (key & mask).astype(float))
    return rows, weights.astype(float)


def _maximise(loglik, columns: tuple[np.ndarray, ...], start: np.ndarray, what: str
              ) -> tuple[np.ndarray, bool]:
    """Maximise the weighted mean log-likelihood; retry with the penalizer when it fails."""
    data, weights = _distinct(columns)
    total = weights.sum()
    reasons = []
    for penalty in (0.0, PENALIZER):
        def objective(theta, penalty=penalty):
            with np.errstate(all="ignore"):
                value, grad = loglik(theta, *data)
                value = -(weights * value).sum() / total + penalty * ((theta - start) ** 2).sum()
                grad = -np.array([(weights * g).sum() for g in grad]) / total \
                    + 2 * penalty * (theta - start)
            if not (np.isfinite(value) and np.isfinite(grad).all()):
                return 1e100, np.zeros_like(theta)
            return value, grad
        with np.errstate(all="ignore"):
            result = minimize(objective, start, jac=True, method="L-BFGS-B",
                              bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(start))
        at_bound = np.abs(result.x) >= _LOG_BOUND - 1e-3
        if result.success and np.isfinite(result.fun) and result.fun < 1e99 and not at_bound.any():
            return result.x, penalty > 0
        reasons.append("a parameter ran off to its bound" if at_bound.any()
                       else str(result.message).rstrip(".").lower())
    raise FitFailed(f"the {what} fit did not converge "
                    f"({'; then, with the penalizer, '.join(reasons)})")


def fit_mbgnbd(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> MBGNBD:
    """Maximum-likelihood MBG/NBD on one row per customer (days); needs some repeat buyers."""
    x, t_x, T = (np.asarray(c, dtype=float) for c in (x, t_x, T))
    if len(x) == 0:
        raise FitFailed("there are no customers with an order")
    if (x > 0).sum() == 0:
        raise FitFailed("no customer has ordered twice, so nothing tells how often they return")
    # Start at r = a = b = 1 and alpha = the typical age: an average customer buying about once
    # in their lifetime so far. The penalizer pulls towards this neutral point.
    start = np.log([1.0, max(float(np.median(T)), 1.0), 1.0, 1.0])
    theta, penalized = _maximise(_mbg_loglik, (x, t_x, T), start, "MBG/NBD")
    r, alpha, a, b = np.exp(theta)
    return MBGNBD(r, alpha, a, b, penalized)


def fit_gamma_gamma(n: np.ndarray, mean: np.ndarray) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma on customers' order counts and average order values."""
    n, mean = np.asarray(n, dtype=float), np.asarray(mean, dtype=float)
    keep = (n > 0) & (mean > 0)
    if keep.sum() < 2 or np.ptp(mean[keep]) == 0:
        raise FitFailed("too few different order values to fit the spend model")
    n, mean = n[keep], mean[keep]
    scale = float(np.median(mean))
    theta, penalized = _maximise(_gg_loglik, (n, mean / scale), np.log([1.0, 2.0, 1.0]),
                                 "Gamma-Gamma")
    p, q, v = np.exp(theta)
    if q <= 1:
        raise FitFailed("the spend model's q is at most 1, so its expected order value is "
                        "infinite")
    return GammaGamma(p, q, v * scale, penalized)


def simulate_mbgnbd(model: MBGNBD, ages: np.ndarray, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Purchase histories drawn from ``model``: customer i first buys on day 0 and is observed
    for ``ages[i]`` days. Returns (customer index, day) of every purchase, first ones included,
    sorted by customer and day. For tests and benchmarks that need a shop with known truth."""
    rng = np.random.default_rng(seed)
    ages = np.asarray(ages, dtype=float)
    n = len(ages)
    rate = rng.gamma(model.r, 1 / model.alpha, n)
    leave = rng.beta(model.a, model.b, n)
    # Repeat purchases the customer would make before leaving (a coin after each purchase,
    # the first one included), and the Poisson events that fall within their observed age.
    allowed = rng.geometric(leave) - 1
    events = rng.poisson(rate * ages)
    who = np.repeat(np.arange(n), events)
    when = rng.random(len(who)) * ages[who]
    order = np.lexsort((when, who))
    who, when = who[order], when[order]
    rank = np.arange(len(who)) - np.repeat(np.cumsum(events) - events, events)
    keep = rank < allowed[who]
    who = np.concatenate([np.arange(n), who[keep]])
    days = np.concatenate([np.zeros(n), np.floor(when[keep])])
    order = np.lexsort((days, who))
    return who[order], days[order]
