"""Lift over the holdout: how much more the mailed group did, with a 95 % interval.

Owns the report's statistics, each from a maintained library, never a distribution by hand:
- conversion (the share of a group who ordered within the window): the difference mailed minus
  holdout with **Newcombe's hybrid score interval** (statsmodels
  ``confint_proportions_2indep(method="newcomb")``, Newcombe 1998, method 10), which keeps its
  coverage near 95 % for small shares and small groups, where the Wald interval does not;
- revenue per recipient: the difference of the two groups' means with a **normal approximation**
  (Welch's standard error, sqrt(s1²/n1 + s2²/n2), and scipy's normal quantile): revenue is skewed,
  but a mean over hundreds of recipients is near normal, and it needs only sums and sums of
  squares, which SQL gives without reading a row per customer;
- "not significant yet": when the conversion interval includes zero, how many more recipients
  (mailed and held out, in the campaign's current proportion) would give 80 % power to detect
  the lift observed so far at the 5 % level (statsmodels ``NormalIndPower`` on Cohen's h).
Must not query or format: the caller passes counts and sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_effectsize

LEVEL = 0.95
POWER = 0.8
CONVERSION_METHOD = "Newcombe hybrid score interval for a difference of proportions"
REVENUE_METHOD = "normal approximation (Welch standard error)"


@dataclass(frozen=True)
class Group:
    """One group's recipients, how many ordered in their window, and their revenue (cents)."""
    n: int = 0
    converted: int = 0
    revenue: int = 0
    revenue_sq: float = 0.0

    def __add__(self, other: Group) -> Group:
        return Group(self.n + other.n, self.converted + other.converted,
                     self.revenue + other.revenue, self.revenue_sq + other.revenue_sq)

    @property
    def rate(self) -> float | None:
        return self.converted / self.n if self.n else None

    @property
    def mean(self) -> float | None:
        return self.revenue / self.n if self.n else None

    @property
    def variance(self) -> float:
        """The sample variance of revenue per recipient (cents²)."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.revenue_sq - self.revenue ** 2 / self.n) / (self.n - 1))


@dataclass(frozen=True)
class Difference:
    """Mailed, holdout, their difference and its 95 % interval; None where a group is empty."""
    mailed: float | None
    holdout: float | None
    lift: float | None
    low: float | None
    high: float | None

    @property
    def significant(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)


def conversion(mailed: Group, holdout: Group) -> Difference:
    """The difference in the share who ordered, with Newcombe's interval."""
    if not mailed.n or not holdout.n:
        return Difference(mailed.rate, holdout.rate, None, None, None)
    low, high = confint_proportions_2indep(mailed.converted, mailed.n, holdout.converted,
                                           holdout.n, method="newcomb", compare="diff",
                                           alpha=1 - LEVEL)
    return Difference(mailed.rate, holdout.rate, mailed.rate - holdout.rate, float(low),
                      float(high))


def revenue_per_recipient(mailed: Group, holdout: Group) -> Difference:
    """The difference in mean revenue per recipient (cents), normal approximation."""
    if not mailed.n or not holdout.n:
        return Difference(mailed.mean, holdout.mean, None, None, None)
    lift = mailed.mean - holdout.mean
    error = math.sqrt(mailed.variance / mailed.n + holdout.variance / holdout.n)
    z = float(norm.ppf(1 - (1 - LEVEL) / 2))
    return Difference(mailed.mean, holdout.mean, lift, lift - z * error, lift + z * error)


def more_recipients_needed(mailed: Group, holdout: Group) -> int | None:
    """Recipients to add (both groups, same proportion) before the lift seen so far would be
    detected with 80 % power; None when no lift is seen (nothing to detect) or a group is empty.
    """
    if not mailed.n or not holdout.n or mailed.rate <= holdout.rate:
        return None
    effect = proportion_effectsize(mailed.rate, holdout.rate)
    ratio = holdout.n / mailed.n
    needed_mailed = NormalIndPower().solve_power(effect_size=effect, alpha=1 - LEVEL,
                                                 power=POWER, ratio=ratio)
    needed = math.ceil(needed_mailed) + math.ceil(needed_mailed * ratio)
    return max(0, needed - mailed.n - holdout.n)
