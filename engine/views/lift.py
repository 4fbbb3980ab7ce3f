"""Lift over the holdout: how much more the mailed group did, with a 95 % interval.

Owns the report's statistics: closed forms over the standard normal distribution, its quantile
and CDF taken from the standard library (``statistics.NormalDist``), so the report imports no
statistics package (statsmodels with pandas, or scipy.stats, held over 100 MB). Each formula is
held to statsmodels' in tests/views/test_lift.py (to 1e-9, edge cases included):
- the share of one group who ordered: the **Wilson score interval** (statsmodels
  ``proportion_confint(method="wilson")``), also the bars of the report's conversion chart;
- conversion (the share of a group who ordered within the window): the difference mailed minus
  holdout with **Newcombe's hybrid score interval** (Newcombe 1998, method 10: the two groups'
  Wilson intervals combined; statsmodels ``confint_proportions_2indep(method="newcomb")``),
  which keeps its coverage near 95 % for small shares and small groups, where the Wald
  interval does not;
- revenue per recipient: the difference of the two groups' means with a **normal approximation**
  (Welch's standard error, sqrt(s1²/n1 + s2²/n2), and the normal quantile): revenue is skewed,
  but a mean over hundreds of recipients is near normal, and it needs only sums and sums of
  squares, which SQL gives without reading a row per customer;
- "not significant yet": when the conversion interval includes zero, how many more recipients
  (mailed and held out, in the campaign's current proportion) would give 80 % power to detect
  the lift observed so far at the 5 % level: Cohen's h (statsmodels ``proportion_effectsize``)
  and the two-sided z-test's power, far tail included, solved for the sample size by Newton's
  method (statsmodels ``NormalIndPower().solve_power``).
Must not query or format: the caller passes counts and sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

LEVEL = 0.95
POWER = 0.8
CONVERSION_METHOD = "Newcombe hybrid score interval for a difference of proportions"
REVENUE_METHOD = "normal approximation (Welch standard error)"

NORMAL = NormalDist()
Z = NORMAL.inv_cdf(1 - (1 - LEVEL) / 2)  # 1.96: the two-sided 95 % quantile


def _power_shift() -> float:
    """The shift s (effect times the square root of the effective group size) at which the
    two-sided z-test at the 5 % level has 80 % power: Φ(s − Z) + Φ(−Z − s) = POWER.

    Without the far tail Φ(−Z − s) the answer is Z + Φ⁻¹(POWER); there the power exceeds POWER
    by that tail (1e-6), so Newton's method from it settles in two or three steps."""
    shift = Z + NORMAL.inv_cdf(POWER)
    for _ in range(20):
        excess = NORMAL.cdf(shift - Z) + NORMAL.cdf(-Z - shift) - POWER
        step = excess / (NORMAL.pdf(shift - Z) - NORMAL.pdf(Z + shift))
        shift -= step
        if abs(step) < 1e-15:
            break
    return shift


POWER_SHIFT = _power_shift()


def wilson(converted: int, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of the share ``converted / n`` (``n`` > 0)."""
    share = converted / n
    z2 = Z * Z
    denominator = 1 + z2 / n
    centre = (share + z2 / (2 * n)) / denominator
    half = Z * math.sqrt(share * (1 - share) / n + z2 / (4 * n * n)) / denominator
    # It holds the share and lies in [0, 1]; at 0 or n conversions rounding can step a hair
    # outside (1e-17), which a chart's error bar refuses as a negative length.
    return max(min(centre - half, share), 0.0), min(max(centre + half, share), 1.0)


def cohen_h(rate: float, baseline: float) -> float:
    """Cohen's h, the effect size of two proportions: 2 asin √rate − 2 asin √baseline."""
    return 2 * (math.asin(math.sqrt(rate)) - math.asin(math.sqrt(baseline)))


def mailed_for_power(effect: float, ratio: float) -> float:
    """How many mailed recipients (with ``ratio`` times as many held out) give the two-sided
    z-test at the 5 % level 80 % power to detect ``effect`` (Cohen's h, not 0): with n mailed
    and ratio·n held out, the effective size n·ratio/(1 + ratio) is (POWER_SHIFT / effect)²."""
    return (POWER_SHIFT / effect) ** 2 * (1 + ratio) / ratio


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
    lift = mailed.rate - holdout.rate
    mailed_low, mailed_high = wilson(mailed.converted, mailed.n)
    holdout_low, holdout_high = wilson(holdout.converted, holdout.n)
    return Difference(mailed.rate, holdout.rate, lift,
                      lift - math.hypot(mailed.rate - mailed_low, holdout_high - holdout.rate),
                      lift + math.hypot(holdout.rate - holdout_low, mailed_high - mailed.rate))


def revenue_per_recipient(mailed: Group, holdout: Group) -> Difference:
    """The difference in mean revenue per recipient (cents), normal approximation."""
    if not mailed.n or not holdout.n:
        return Difference(mailed.mean, holdout.mean, None, None, None)
    lift = mailed.mean - holdout.mean
    error = math.sqrt(mailed.variance / mailed.n + holdout.variance / holdout.n)
    return Difference(mailed.mean, holdout.mean, lift, lift - Z * error, lift + Z * error)


def more_recipients_needed(mailed: Group, holdout: Group) -> int | None:
    """Recipients to add (both groups, same proportion) before the lift seen so far would be
    detected with 80 % power; None when no lift is seen (nothing to detect) or a group is empty.
    """
    if not mailed.n or not holdout.n or mailed.rate <= holdout.rate:
        return None
    ratio = holdout.n / mailed.n
    needed_mailed = mailed_for_power(cohen_h(mailed.rate, holdout.rate), ratio)
    needed = math.ceil(needed_mailed) + math.ceil(needed_mailed * ratio)
    return max(0, needed - mailed.n - holdout.n)
