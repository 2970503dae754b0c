"""BG/NBD and Gamma-Gamma: parameter recovery, likelihoods by hand, predictions, CLV, RFM, bad input."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import integrate, stats

from siyu.lifecycle.predictive import (
    BgNbdParams,
    FitError,
    GammaGammaParams,
    bgnbd_log_likelihood,
    clv,
    expected_average_value,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
    interpret,
    mean_dropout,
    mean_spend,
    p_alive,
    rfm_scores,
    simulate_bgnbd,
    simulate_gamma_gamma,
)

# The CDNOW estimates of Fader, Hardie & Lee (2005), time in weeks.
CDNOW = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426, log_likelihood=-9582.4, n=2357, converged=True)
CDNOW_SPEND = GammaGammaParams(p=6.25, q=3.74, v=15.44, log_likelihood=math.nan, n=946, converged=True)
N_SIMULATED = 50_000


@dataclass(frozen=True)
class Simulated:
    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    m: np.ndarray
    bgnbd: BgNbdParams
    gg: GammaGammaParams


@pytest.fixture(scope="module")
def simulated() -> Simulated:
    rng = np.random.default_rng(20050101)
    T = rng.uniform(27.0, 39.0, N_SIMULATED)
    x, t_x, T = simulate_bgnbd(CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b, N_SIMULATED, T, seed=rng)
    m = simulate_gamma_gamma(CDNOW_SPEND.p, CDNOW_SPEND.q, CDNOW_SPEND.v, x, seed=rng)
    return Simulated(x, t_x, T, m, fit_bgnbd(x, t_x, T), fit_gamma_gamma(x, m))


def _rel(value: float, truth: float) -> float:
    return abs(value / truth - 1.0)


# ------------------------------------------------------------------------------------------------
# Parameter recovery. Tolerances are about 3.5 standard deviations of each estimate at this sample size,
# measured over 40 seeds (50,000 customers, T ~ U(27, 39) weeks): r 0.9%, alpha 1.6%, a 4.4%, b 5.8%;
# Gamma-Gamma on the ~20,000 with a repeat purchase: p 3.0%, q 1.5%, v 4.1%. The dropout Beta(a, b) is
# weakly identified by 27-39 weeks of data, hence the wider bounds on a and b.


def test_bgnbd_recovers_the_simulated_parameters(simulated: Simulated) -> None:
    fit = simulated.bgnbd
    assert fit.converged
    assert fit.n == N_SIMULATED
    assert _rel(fit.r, CDNOW.r) < 0.04
    assert _rel(fit.alpha, CDNOW.alpha) < 0.06
    assert _rel(fit.a, CDNOW.a) < 0.15
    assert _rel(fit.b, CDNOW.b) < 0.20


def test_gamma_gamma_recovers_the_simulated_parameters(simulated: Simulated) -> None:
    fit = simulated.gg
    assert fit.converged
    assert fit.n == int((simulated.x > 0).sum())
    assert 15_000 < fit.n < 25_000
    assert _rel(fit.p, CDNOW_SPEND.p) < 0.10
    assert _rel(fit.q, CDNOW_SPEND.q) < 0.05
    assert _rel(fit.v, CDNOW_SPEND.v) < 0.15


def test_bgnbd_fit_does_not_depend_on_the_time_unit(simulated: Simulated) -> None:
    days = fit_bgnbd(simulated.x, simulated.t_x * 7.0, simulated.T * 7.0)
    weeks = simulated.bgnbd
    assert days.r == pytest.approx(weeks.r, rel=1e-5)
    assert days.alpha == pytest.approx(weeks.alpha * 7.0, rel=1e-5)
    assert days.a == pytest.approx(weeks.a, rel=1e-5)
    assert days.b == pytest.approx(weeks.b, rel=1e-5)
    # The density of t_x changes with its unit by sum(x) ln 7.
    shift = float(simulated.x.sum()) * math.log(7.0)
    assert days.log_likelihood == pytest.approx(weeks.log_likelihood - shift, rel=1e-9)


def test_bgnbd_fit_from_the_true_values_finds_the_same_optimum(simulated: Simulated) -> None:
    fit = fit_bgnbd(simulated.x, simulated.t_x, simulated.T, initial=(CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b))
    for name in ("r", "alpha", "a", "b"):
        assert getattr(fit, name) == pytest.approx(getattr(simulated.bgnbd, name), rel=1e-4)


def test_fit_reports_the_log_likelihood_at_the_returned_parameters(simulated: Simulated) -> None:
    bg, gg = simulated.bgnbd, simulated.gg
    total = bgnbd_log_likelihood(bg.r, bg.alpha, bg.a, bg.b, simulated.x, simulated.t_x, simulated.T).sum()
    assert bg.log_likelihood == pytest.approx(float(total), rel=1e-9)
    total_gg = gamma_gamma_log_likelihood(gg.p, gg.q, gg.v, simulated.x, simulated.m).sum()
    assert gg.log_likelihood == pytest.approx(float(total_gg), rel=1e-9)


@pytest.mark.parametrize("factor", [0.99, 1.01])
def test_fits_are_maxima_of_the_likelihood(simulated: Simulated, factor: float) -> None:
    s, bg, gg = simulated, simulated.bgnbd, simulated.gg
    for name in ("r", "alpha", "a", "b"):
        moved = {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b} | {name: getattr(bg, name) * factor}
        ll = bgnbd_log_likelihood(moved["r"], moved["alpha"], moved["a"], moved["b"], s.x, s.t_x, s.T).sum()
        assert ll < bg.log_likelihood, name
    for name in ("p", "q", "v"):
        moved = {"p": gg.p, "q": gg.q, "v": gg.v} | {name: getattr(gg, name) * factor}
        ll = gamma_gamma_log_likelihood(moved["p"], moved["q"], moved["v"], s.x, s.m).sum()
        assert ll < gg.log_likelihood, name


def test_penalizer_shrinks_the_parameters(simulated: Simulated) -> None:
    s = simulated
    free, shrunk = s.bgnbd, fit_bgnbd(s.x, s.t_x, s.T, penalizer=0.05)
    mean_t = float(s.T.mean())

    def squares(f: BgNbdParams) -> float:
        return f.r**2 + (f.alpha / mean_t) ** 2 + f.a**2 + f.b**2  # alpha in units of mean T, as penalised

    assert squares(shrunk) < squares(free) * 0.9
    assert shrunk.log_likelihood < free.log_likelihood


# ------------------------------------------------------------------------------------------------
# Likelihoods computed independently, term by term


def _eq6_by_hand(r: float, alpha: float, a: float, b: float, x: float, t_x: float, T: float) -> float:
    def log_beta(u: float, w: float) -> float:
        return math.lgamma(u) + math.lgamma(w) - math.lgamma(u + w)

    gamma_part = math.lgamma(r + x) - math.lgamma(r) + r * math.log(alpha)
    alive = math.exp(log_beta(a, b + x) - log_beta(a, b) + gamma_part - (r + x) * math.log(alpha + T))
    dropped = 0.0
    if x > 0:
        dropped = math.exp(
            log_beta(a + 1, b + x - 1) - log_beta(a, b) + gamma_part - (r + x) * math.log(alpha + t_x)
        )
    return math.log(alive + dropped)


CUSTOMERS = [  # (x, t_x, T)
    (0.0, 0.0, 38.86),
    (2.0, 30.43, 38.86),
    (1.0, 5.0, 30.0),
    (7.0, 35.5, 36.0),
    (15.0, 1.5, 39.0),
    (0.0, 0.0, 0.0),
    (3.0, 12.25, 12.25),
]


@pytest.mark.parametrize(
    "params", [(0.243, 4.414, 0.793, 2.426), (2.0, 0.5, 3.0, 0.7), (0.05, 40.0, 1.0, 1.0)]
)
def test_bgnbd_log_likelihood_matches_equation_6_by_hand(params: tuple[float, float, float, float]) -> None:
    x, t_x, T = (np.array(col) for col in zip(*CUSTOMERS, strict=True))
    got = bgnbd_log_likelihood(*params, x, t_x, T)
    assert got.dtype == np.float64
    expected = [_eq6_by_hand(*params, *row) for row in CUSTOMERS]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_gamma_gamma_log_likelihood_matches_the_density_by_hand() -> None:
    p, q, v = 6.25, 3.74, 15.44
    rows = [(1.0, 20.0), (2.0, 35.5), (5.0, 12.0), (30.0, 80.0), (0.0, 0.0)]
    got = gamma_gamma_log_likelihood(p, q, v, [x for x, _ in rows], [m for _, m in rows])
    for value, (x, m) in zip(got, rows, strict=True):
        if x == 0:
            assert value == 0.0  # no spend information
            continue
        expected = (
            math.lgamma(p * x + q)
            - math.lgamma(p * x)
            - math.lgamma(q)
            + q * math.log(v)
            + (p * x - 1) * math.log(m)
            + p * x * math.log(x)
            - (p * x + q) * math.log(v + m * x)
        )
        assert value == pytest.approx(expected, abs=1e-9)


def test_gamma_gamma_density_is_the_gamma_mixture() -> None:
    # The mean of x Gamma(p, nu) spends is Gamma(p x, rate nu x); integrating over nu ~ Gamma(q, rate v)
    # numerically must give the closed form.
    p, q, v = 6.25, 3.74, 15.44
    for x, m in [(1.0, 20.0), (3.0, 45.0), (8.0, 9.0)]:

        def integrand(nu: float, x: float = x, m: float = m) -> float:
            spend = stats.gamma.pdf(m, p * x, scale=1.0 / (nu * x))
            return float(spend * stats.gamma.pdf(nu, q, scale=1.0 / v))

        density, _ = integrate.quad(integrand, 0.0, np.inf, epsabs=0, epsrel=1e-12, limit=200)
        got = gamma_gamma_log_likelihood(p, q, v, [x], [m])[0]
        assert got == pytest.approx(math.log(density), abs=1e-7)


# ------------------------------------------------------------------------------------------------
# Predictions


def _hyp2f1_series(a: float, b: float, c: float, z: float) -> float:
    total, term, k = 1.0, 1.0, 0
    while abs(term) > 1e-17 * abs(total):
        term *= (a + k) * (b + k) / ((c + k) * (k + 1)) * z
        total += term
        k += 1
    return total


def _eq10_by_hand(prm: BgNbdParams, t: float, x: float, t_x: float, T: float) -> float:
    r, alpha, a, b = prm.r, prm.alpha, prm.a, prm.b
    hyp = _hyp2f1_series(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    num = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    den = 1 + (a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x) if x > 0 else 0.0)
    return float(num / den)


def test_expected_purchases_reproduces_the_papers_example() -> None:
    # Fader, Hardie & Lee (2005), section 5: x = 2, t_x = 30.43, T = 38.86 -> 1.226 purchases in 39 weeks.
    got = expected_purchases(CDNOW, 39.0, [2.0], [30.43], [38.86])
    assert got.shape == (1,)
    assert abs(got[0] - 1.226) < 5e-4


@pytest.mark.parametrize("params", [CDNOW, BgNbdParams(1.5, 10.0, 2.5, 4.0, math.nan, 0, True)])
def test_expected_purchases_matches_equation_10_by_hand(params: BgNbdParams) -> None:
    rows = [(0.0, 0.0, 38.86), (2.0, 30.43, 38.86), (6.0, 20.0, 39.0), (1.0, 0.5, 27.0)]
    x, t_x, T = (np.array(col) for col in zip(*rows, strict=True))
    for t in (1.0, 13.0, 52.0):
        got = expected_purchases(params, t, x, t_x, T)
        expected = [_eq10_by_hand(params, t, *row) for row in rows]
        np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_expected_purchases_of_a_new_customer_matches_simulation() -> None:
    # With T = 0 eq. 10 is the unconditional E[X(t)] (eq. 9); the mean of simulated counts over t must agree.
    t, n = 52.0, 200_000
    x, _, _ = simulate_bgnbd(CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b, n, t, seed=11)
    formula = expected_purchases(CDNOW, t, [0.0], [0.0], [0.0])[0]
    standard_error = float(x.std()) / math.sqrt(n)
    assert abs(float(x.mean()) - formula) < 4 * standard_error
    assert formula == pytest.approx(_eq10_by_hand(CDNOW, t, 0.0, 0.0, 0.0), rel=1e-9)


def test_expected_purchases_grow_with_the_horizon() -> None:
    ts = np.array([0.0, 1.0, 4.0, 13.0, 26.0, 52.0, 104.0])
    got = np.array([expected_purchases(CDNOW, t, [3.0], [20.0], [35.0])[0] for t in ts])
    assert got[0] == 0.0
    assert np.all(np.diff(got) > 0)


def test_expected_purchases_takes_one_horizon_per_customer() -> None:
    x, t_x, T = [1.0, 4.0], [10.0, 30.0], [30.0, 32.0]
    both = expected_purchases(CDNOW, [10.0, 40.0], x, t_x, T)
    assert both[0] == expected_purchases(CDNOW, 10.0, x, t_x, T)[0]
    assert both[1] == expected_purchases(CDNOW, 40.0, x, t_x, T)[1]


def test_p_alive_is_one_without_repeat_purchases() -> None:
    got = p_alive(CDNOW, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 10.0, 400.0])
    assert got.tolist() == [1.0, 1.0, 1.0]


def test_p_alive_falls_as_the_last_purchase_gets_older() -> None:
    t_x = np.array([38.0, 30.0, 20.0, 10.0, 2.0])
    got = p_alive(CDNOW, np.full(5, 4.0), t_x, np.full(5, 39.0))
    assert np.all(np.diff(got) < 0)
    r, alpha, a, b = CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b
    by_hand = 1 / (1 + a / (b + 4 - 1) * ((alpha + 39.0) / (alpha + 10.0)) ** (r + 4))
    assert got[3] == pytest.approx(by_hand, rel=1e-12)


# ------------------------------------------------------------------------------------------------
# Gamma-Gamma expected value and CLV


def test_expected_average_value_is_the_weighted_average() -> None:
    p, q, v = CDNOW_SPEND.p, CDNOW_SPEND.q, CDNOW_SPEND.v
    x = np.array([0.0, 1.0, 2.0, 5.0, 40.0])
    m = np.array([np.nan, 20.0, 40.0, 12.5, 100.0])  # m is unused where x == 0
    got = expected_average_value(CDNOW_SPEND, x, m)
    population = p * v / (q - 1)
    assert population == pytest.approx(35.2190, abs=1e-4)
    assert got[0] == pytest.approx(population, rel=1e-12)
    weight = p * x[1:] / (p * x[1:] + q - 1)
    np.testing.assert_allclose(got[1:], (1 - weight) * population + weight * m[1:], rtol=1e-12)
    # x = 2, m = 40: 6.25 (15.44 + 80) / (12.5 + 2.74)
    assert got[2] == pytest.approx(6.25 * 95.44 / 15.24, rel=1e-12)


def _clv_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.array([0.0, 2.0, 5.0, 1.0]),
        np.array([0.0, 30.43, 36.0, 3.0]),
        np.array([38.86, 38.86, 38.0, 30.0]),
        np.array([0.0, 40.0, 25.0, 90.0]),
    )


def test_clv_over_a_zero_horizon_is_zero() -> None:
    x, t_x, T, m = _clv_inputs()
    got = clv(CDNOW, CDNOW_SPEND, x, t_x, T, m, horizon=0.0, discount_rate=0.01)
    assert got.tolist() == [0.0, 0.0, 0.0, 0.0]


def test_clv_without_discount_is_purchases_times_value() -> None:
    x, t_x, T, m = _clv_inputs()
    got = clv(CDNOW, CDNOW_SPEND, x, t_x, T, m, horizon=52.0)
    expected = expected_purchases(CDNOW, 52.0, x, t_x, T) * expected_average_value(CDNOW_SPEND, x, m)
    assert np.all(expected > 0)
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_clv_discounts_each_slice() -> None:
    x, t_x, T, m = _clv_inputs()
    value = expected_average_value(CDNOW_SPEND, x, m)
    one = clv(CDNOW, CDNOW_SPEND, x, t_x, T, m, horizon=52.0, discount_rate=0.1, steps=1)
    np.testing.assert_allclose(one, expected_purchases(CDNOW, 52.0, x, t_x, T) * value / 1.1, rtol=1e-9)
    four = clv(CDNOW, CDNOW_SPEND, x, t_x, T, m, horizon=52.0, discount_rate=0.02, steps=4)
    ends = [expected_purchases(CDNOW, 13.0 * k, x, t_x, T) for k in range(5)]
    by_hand = sum((ends[k] - ends[k - 1]) * 1.02 ** (-k) for k in range(1, 5)) * value
    np.testing.assert_allclose(four, by_hand, rtol=1e-9)
    assert np.all(four < clv(CDNOW, CDNOW_SPEND, x, t_x, T, m, horizon=52.0, steps=4))


# ------------------------------------------------------------------------------------------------
# RFM


def test_rfm_scores_by_rank() -> None:
    recency = [5, 1, 30, 10, 1, 60, 2, 15, 7, 3]  # days since the last purchase: smaller is better
    frequency = [0, 0, 0, 1, 1, 2, 3, 5, 8, 13]
    monetary = [70.0, 10.0, 100.0, 40.0, 20.0, 90.0, 60.0, 30.0, 80.0, 50.0]
    r, f, m = rfm_scores(recency, frequency, monetary)
    assert r.tolist() == [3, 5, 1, 2, 5, 1, 4, 2, 3, 4]
    # The three zeros tie at ranks 0-2 and all take the lowest score; likewise the two ones at ranks 3-4.
    assert f.tolist() == [1, 1, 1, 2, 2, 3, 4, 4, 5, 5]
    assert m.tolist() == [4, 1, 5, 2, 1, 5, 3, 2, 4, 3]
    assert r.dtype == np.float64


def test_rfm_scores_with_other_bins() -> None:
    r, f, m = rfm_scores([3, 2, 1], [1, 2, 3], [9, 9, 9], bins=3)
    assert r.tolist() == [1, 2, 3]
    assert f.tolist() == [1, 2, 3]
    assert m.tolist() == [1, 1, 1]


# ------------------------------------------------------------------------------------------------
# Simulation


def test_simulation_is_reproducible_and_consistent() -> None:
    first = simulate_bgnbd(CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b, 5000, 39.0, seed=3)
    second = simulate_bgnbd(CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b, 5000, 39.0, seed=3)
    for one, two in zip(first, second, strict=True):
        np.testing.assert_array_equal(one, two)
    x, t_x, T = first
    assert np.all(T == 39.0)
    assert np.all(x == np.floor(x))
    assert np.all((x == 0) == (t_x == 0))
    assert np.all(t_x <= T)
    assert 0.3 < (x > 0).mean() < 0.6
    m = simulate_gamma_gamma(6.25, 3.74, 15.44, x, seed=4)
    assert np.all(m[x == 0] == 0.0)
    assert np.all(m[x > 0] > 0.0)


@pytest.mark.parametrize("purchases", [1.0, 6.0])
def test_simulated_mean_spend_has_the_population_mean(purchases: float) -> None:
    # E[mean of x spends] = E[p / nu] = p v / (q - 1) whatever x is.
    p, q, v, n = CDNOW_SPEND.p, CDNOW_SPEND.q, CDNOW_SPEND.v, 200_000
    m = simulate_gamma_gamma(p, q, v, np.full(n, purchases), seed=int(purchases))
    standard_error = float(m.std()) / math.sqrt(n)
    assert abs(float(m.mean()) - p * v / (q - 1)) < 4 * standard_error
    assert standard_error < 0.003 * p * v / (q - 1)


# ------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("x", "t_x", "T", "message"),
    [
        ([1.0, -1.0], [5.0, 0.0], [10.0, 10.0], r"frequency must not be negative: 1 row \(row 1\)"),
        (
            [1.0, 1.0, 2.0],
            [5.0, 12.0, 11.0],
            [10.0, 10.0, 10.0],
            r"must not exceed T .*: 2 rows \(rows 1, 2\)",
        ),
        ([1.0, 2.0], [5.0, 6.0], [10.0], r"same length: frequency has 2, recency has 2, T has 1 rows"),
        ([], [], [], "no customers to fit"),
        (
            [1.0, 2.0],
            [0.0, 3.0],
            [10.0, 10.0],
            r"recency must be > 0 where frequency > 0 .*: 1 row \(row 0\)",
        ),
        ([0.0, 2.0], [4.0, 3.0], [10.0, 10.0], r"recency must be 0 where frequency is 0: 1 row \(row 0\)"),
        ([1.5, 2.0], [4.0, 3.0], [10.0, 10.0], r"whole numbers .*: 1 row \(row 0\)"),
        ([1.0, 2.0], [4.0, np.nan], [10.0, 10.0], r"recency must be finite .*: 1 row \(row 1\)"),
        ([0.0, 0.0], [0.0, 0.0], [10.0, 10.0], "no customer has a repeat purchase"),
    ],
)
def test_fit_bgnbd_rejects_bad_input(x: list[float], t_x: list[float], T: list[float], message: str) -> None:
    with pytest.raises(FitError, match=message):
        fit_bgnbd(x, t_x, T)


@pytest.mark.parametrize(
    ("x", "m", "message"),
    [
        (
            [0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0],
            r"no customer has a repeat purchase: frequency is 0 in all 3 rows",
        ),
        ([1.0, -2.0], [5.0, 5.0], r"frequency must not be negative: 1 row \(row 1\)"),
        ([1.0, 2.0, 0.0], [0.0, 5.0, 0.0], r"monetary must be > 0 where frequency > 0: 1 row \(row 0\)"),
        ([1.0, 2.0], [5.0], "same length"),
        ([], [], "no customers to fit"),
    ],
)
def test_fit_gamma_gamma_rejects_bad_input(x: list[float], m: list[float], message: str) -> None:
    with pytest.raises(FitError, match=message):
        fit_gamma_gamma(x, m)


def test_predictions_reject_bad_input() -> None:
    with pytest.raises(FitError, match="must not exceed T"):
        p_alive(CDNOW, [1.0], [12.0], [10.0])
    with pytest.raises(FitError, match="t must not be negative"):
        expected_purchases(CDNOW, -1.0, [1.0], [5.0], [10.0])
    with pytest.raises(FitError, match="parameter alpha must be a positive"):
        p_alive(BgNbdParams(0.2, 0.0, 0.8, 2.4, 0.0, 0, True), [1.0], [5.0], [10.0])
    with pytest.raises(FitError, match="q must be > 1"):
        expected_average_value(GammaGammaParams(6.0, 0.9, 15.0, 0.0, 0, True), [1.0], [5.0])
    with pytest.raises(FitError, match="same length"):
        rfm_scores([1, 2], [1, 2], [1])
    with pytest.raises(FitError, match="one-dimensional"):
        bgnbd_log_likelihood(0.2, 4.0, 0.8, 2.4, [[1.0]], [[5.0]], [[10.0]])


def test_boundary_estimates_are_explained() -> None:
    # The CDNOW fit is interior: nothing to explain. Its mean dropout is a/(a+b).
    assert interpret(CDNOW, None) == []
    assert mean_dropout(CDNOW) == pytest.approx(0.793 / (0.793 + 2.426))
    # What the demo brand gives: no evidence of dropout heterogeneity, none of spend heterogeneity.
    bg = BgNbdParams(r=0.457, alpha=44.96, a=1e-7, b=2e-6, log_likelihood=-720.0, n=566, converged=True)
    gg = GammaGammaParams(p=1.94, q=1.58e7, v=1.51e12, log_likelihood=-1272.1, n=98, converged=True)
    notes = interpret(bg, gg)
    assert len(notes) == 2
    assert "a and b near 0" in notes[0] and "5% of purchases" in notes[0]
    assert "hardly differ" in notes[1] and f"{1.94 * 1.51e12 / (1.58e7 - 1) / 100:,.2f} CNY" in notes[1]
    heavy = GammaGammaParams(p=2.0, q=0.8, v=100.0, log_likelihood=-1.0, n=5, converged=False)
    assert mean_spend(heavy) is None
    assert interpret(CDNOW, heavy) == [
        "Gamma-Gamma did not converge: treat its spend predictions with care",
        "Gamma-Gamma q <= 1: the average spend has no finite mean; do not use its CLV",
    ]
