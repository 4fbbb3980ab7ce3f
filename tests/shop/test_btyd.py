"""The closed-form models against a reference implementation and against simulated truth.

lifetimes (in the dev extra for its CDNOW log) implements the same MBG/NBD and Gamma-Gamma
likelihoods; on the real log both must land on the same parameters and predictions.
"""

from __future__ import annotations

import warnings
from importlib.resources import files

import numpy as np
import pytest

from engine.shop import btyd

lifetimes = pytest.importorskip("lifetimes")


@pytest.fixture(scope="module")
def cdnow():
    """CDNOW's first 39 weeks in days: (x, t_x, T, purchases, average value) per customer."""
    per_day: dict[tuple[str, int], float] = {}
    first = None
    for line in (files("lifetimes.datasets") / "CDNOW_master.txt").read_text().splitlines()[1:]:
        customer, day, _, amount = line.split()
        n = np.datetime64(f"{day[:4]}-{day[4:6]}-{day[6:]}").astype(int)
        first = n if first is None else min(first, n)
        if day < "19971001":
            per_day[customer, int(n)] = per_day.get((customer, int(n)), 0) + float(amount)
    by_customer: dict[str, list[tuple[int, float]]] = {}
    for (customer, day), amount in per_day.items():
        by_customer.setdefault(customer, []).append((day, amount))
    end = int(np.datetime64("1997-09-30").astype(int))
    rows = [(len(v) - 1, max(d for d, _ in v) - min(d for d, _ in v), end - min(d for d, _ in v),
             len(v), sum(a for _, a in v) / len(v)) for v in by_customer.values()]
    return tuple(np.array(col, dtype=float) for col in zip(*rows, strict=True))


def test_mbgnbd_matches_lifetimes_on_cdnow(cdnow):
    x, t_x, T, _, _ = cdnow
    ours = btyd.fit_mbgnbd(x, t_x, T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lifetimes.ModifiedBetaGeoFitter().fit(x, t_x, T)
    for name, value in ours.params().items():
        assert value == pytest.approx(ref.params_[name], rel=0.01), name
    assert np.allclose(ours.p_alive(x, t_x, T), ref.conditional_probability_alive(x, t_x, T),
                       atol=1e-3)
    assert np.allclose(ours.expected_purchases(x, t_x, T, 90),
                       ref.conditional_expected_number_of_purchases_up_to_time(90, x, t_x, T),
                       atol=2e-3)


def test_gamma_gamma_matches_lifetimes_on_cdnow(cdnow):
    _, _, _, n, mean = cdnow
    keep = mean > 0
    ours = btyd.fit_gamma_gamma(n, mean)
    ref = lifetimes.GammaGammaFitter().fit(n[keep], mean[keep])
    for name, value in ours.params().items():
        assert value == pytest.approx(ref.params_[name], rel=0.01), name


def test_the_fit_recovers_simulated_parameters():
    truth = btyd.MBGNBD(r=0.8, alpha=30.0, a=1.5, b=4.0)
    ages = np.random.default_rng(2).integers(30, 1000, 60_000)
    who, days = btyd.simulate_mbgnbd(truth, ages, seed=2)
    last = np.zeros(len(ages))
    np.maximum.at(last, who, days)
    x = np.bincount(who, minlength=len(ages)) - 1.0
    fitted = btyd.fit_mbgnbd(x, last, ages)
    for name, value in truth.params().items():
        assert fitted.params()[name] == pytest.approx(value, rel=0.12), name


def test_one_time_buyers_only_cannot_be_fitted_and_say_why():
    with pytest.raises(btyd.FitFailed, match="no customer has ordered twice"):
        btyd.fit_mbgnbd(np.zeros(50), np.zeros(50), np.arange(50.0))
    with pytest.raises(btyd.FitFailed, match="too few different order values"):
        btyd.fit_gamma_gamma(np.ones(10), np.full(10, 30.0))
