"""Predicted purchases and value: the BG/NBD and Gamma-Gamma models, fitted by maximum likelihood.

BG/NBD: Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to the
Pareto/NBD model", Marketing Science 24(2). Gamma-Gamma: Fader, Hardie & Lee (2005), "RFM and CLV:
using iso-value curves for customer base analysis", JMR 42(4), after Colombo & Jiang (1999).

Input convention (the literature's), one entry per customer:

- ``x`` (frequency): number of REPEAT purchases, i.e. distinct purchase days (or periods) minus one;
- ``t_x`` (recency): time from the first purchase to the last one (0 when x == 0);
- ``T``: time from the first purchase to the end of the observation period;
- ``m`` (monetary): mean value of the repeat purchases (only used where x > 0).

The time unit (days, weeks, fractional) is the caller's; every time argument (t_x, T, the forecast
horizon) must use the same one, and the fitted alpha is in that unit. Note that ``t_x`` is NOT "days
since the last purchase" (that is T - t_x, the recency of ``rfm_scores``).

Everything is vectorised with numpy; nothing touches the database.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

__all__ = [
    "BgNbdParams",
    "FitError",
    "GammaGammaParams",
    "bgnbd_log_likelihood",
    "clv",
    "expected_average_value",
    "expected_purchases",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "gamma_gamma_log_likelihood",
    "p_alive",
    "rfm_scores",
    "simulate_bgnbd",
    "simulate_gamma_gamma",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]
Objective = Callable[[FloatArray], tuple[float, FloatArray]]

# The optimiser works on log-parameters in these bounds. Data are rescaled first (time to units of
# mean T, money to units of mean spend), so +-20 leaves every plausible parameter far inside while
# keeping a degenerate fit (e.g. b -> infinity when nobody drops out) from overflowing.
_LOG_BOUND = 20.0
_MAX_ITER = 2000


@dataclass(frozen=True, slots=True)
class BgNbdParams:
    """Fitted BG/NBD parameters: lambda ~ Gamma(r, alpha) (alpha a rate, in 1/time unit), p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float  # total log-likelihood at the fit (without the penalty)
    n: int  # customers fitted
    converged: bool


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma parameters: spend ~ Gamma(p, nu), nu ~ Gamma(q, v) (v in money units)."""

    p: float
    q: float
    v: float
    log_likelihood: float  # total log-likelihood over the customers with x > 0
    n: int  # customers fitted (those with x > 0)
    converged: bool


def interpret(bg: BgNbdParams, gg: GammaGammaParams | None) -> list[str]:
    """What a fit means where its raw parameters mislead: boundary and runaway estimates, in plain words.

    The likelihood is maximised at a boundary when the data hold no evidence of a kind of variation;
    the parameters then say "none" in a way that looks like a bug (a = b = 0, q = 10^7).
    """
    notes: list[str] = []
    if not bg.converged:
        notes.append("BG/NBD did not converge: treat its predictions with care")
    dropout = mean_dropout(bg)
    if bg.a < 0.01 and bg.b < 0.01:
        notes.append(
            f"a and b near 0: customers either drop out after a purchase or never do; {dropout:.0%} of "
            "purchases end a customer's life. P(alive) is close to 1 for most buyers"
        )
    if gg is not None:
        if not gg.converged:
            notes.append("Gamma-Gamma did not converge: treat its spend predictions with care")
        if gg.q <= 1:
            notes.append("Gamma-Gamma q <= 1: the average spend has no finite mean; do not use its CLV")
        elif gg.q > 1e4:
            mean = mean_spend(gg) or 0.0
            notes.append(
                f"q and v very large: buyers' average spends hardly differ, so each buyer's expected spend is "
                f"close to the mean, p·v/(q-1) = {mean / 100:,.2f} CNY"
            )
    return notes


def mean_dropout(bg: BgNbdParams) -> float:
    """The population's mean probability of dropping out after a purchase, a/(a+b)."""
    return bg.a / (bg.a + bg.b) if bg.a + bg.b > 0 else 0.0


def mean_spend(gg: GammaGammaParams) -> float | None:
    """The population's mean spend per purchase, p·v/(q-1) (money units of the fit); None when q <= 1."""
    return gg.p * gg.v / (gg.q - 1) if gg.q > 1 else None


class FitError(ValueError):
    """Bad input to a model: the message names what is wrong and in how many rows."""


# ---------------------------------------------------------------------------------------------------
# Validation


def _rows(bad: BoolArray) -> str:
    idx = np.flatnonzero(bad)
    shown = ", ".join(str(int(i)) for i in idx[:5])
    more = ", ..." if idx.size > 5 else ""
    plural = "" if idx.size == 1 else "s"
    return f"{idx.size} row{plural} (row{plural} {shown}{more})"


def _require(bad: BoolArray, what: str) -> None:
    if bad.any():
        raise FitError(f"{what}: {_rows(bad)}")


def _array(name: str, value: npt.ArrayLike) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FitError(f"{name} must be numbers: {exc}") from exc
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise FitError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _same_length(**arrays: FloatArray) -> int:
    sizes = {name: arr.size for name, arr in arrays.items()}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name} has {size}" for name, size in sizes.items())
        raise FitError(f"inputs must have the same length: {listed} rows")
    return next(iter(sizes.values()))


def _finite(name: str, arr: FloatArray) -> None:
    _require(~np.isfinite(arr), f"{name} must be finite (no NaN or infinity)")


def _counts(name: str, x: FloatArray) -> None:
    _finite(name, x)
    _require(x < 0, f"{name} must not be negative")
    _require(x != np.floor(x), f"{name} must be whole numbers (a count of repeat purchases)")


def _rfm_data(
    x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike, *, fitting: bool
) -> tuple[FloatArray, FloatArray, FloatArray]:
    xs, txs, Ts = _array("frequency", x), _array("recency", t_x), _array("T", T)
    n = _same_length(frequency=xs, recency=txs, T=Ts)
    if fitting and n == 0:
        raise FitError("no customers to fit: the arrays are empty")
    _counts("frequency", xs)
    _finite("recency", txs)
    _finite("T", Ts)
    _require(txs < 0, "recency must not be negative")
    _require(Ts < 0, "T must not be negative")
    _require(txs > Ts, "recency (first to last purchase) must not exceed T (first purchase to end of period)")
    _require((xs > 0) & (txs == 0), "recency must be > 0 where frequency > 0 (repeat purchases take time)")
    # A customer without a repeat purchase has t_x = 0 by definition; a non-zero value there usually
    # means "time since last purchase" was passed instead of "first to last purchase".
    _require((xs == 0) & (txs != 0), "recency must be 0 where frequency is 0")
    return xs, txs, Ts


def _spend_data(x: npt.ArrayLike, m: npt.ArrayLike, *, fitting: bool) -> tuple[FloatArray, FloatArray]:
    xs, ms = _array("frequency", x), _array("monetary", m)
    n = _same_length(frequency=xs, monetary=ms)
    if fitting and n == 0:
        raise FitError("no customers to fit: the arrays are empty")
    _counts("frequency", xs)
    rep = xs > 0
    # Spend is only defined for customers with repeat purchases; elsewhere it may be 0 or NaN.
    _require(rep & ~np.isfinite(ms), "monetary must be finite where frequency > 0")
    _require(rep & (ms <= 0), "monetary must be > 0 where frequency > 0")
    return xs, ms


def _positive(**values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise FitError(f"parameter {name} must be a positive finite number, got {value}")


def _bgnbd_values(params: BgNbdParams) -> tuple[float, float, float, float]:
    _positive(r=params.r, alpha=params.alpha, a=params.a, b=params.b)
    return params.r, params.alpha, params.a, params.b


def _float(value: object) -> FloatArray:
    return np.asarray(value, dtype=np.float64)


# ---------------------------------------------------------------------------------------------------
# BG/NBD


def bgnbd_log_likelihood(
    r: float, alpha: float, a: float, b: float, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike
) -> FloatArray:
    """Per-customer BG/NBD log-likelihood ln L(r, alpha, a, b | x, t_x, T) (eq. 6 of the paper)."""
    _positive(r=r, alpha=alpha, a=a, b=b)
    xs, txs, Ts = _rfm_data(x, t_x, T, fitting=False)
    head = (
        _float(special.gammaln(r + xs))
        - math.lgamma(r)
        + r * math.log(alpha)
        + _float(special.betaln(a, b + xs))
        - float(special.betaln(a, b))
        - (r + xs) * np.log(alpha + Ts)
    )
    # ln L = head + ln(1 + d), d the ratio of the "dropped out after the last purchase" term to the
    # "still alive" term (0 when x == 0); logaddexp keeps it finite even for t_x << T.
    log_d = _alive_log_odds(r, alpha, a, b, xs, txs, Ts)
    return _float(head + np.logaddexp(0.0, log_d))


class _BgNbdObjective:
    """Mean negative log-likelihood (plus penalty) and its gradient over log(r, alpha, a, b)."""

    def __init__(self, x: FloatArray, t_x: FloatArray, T: FloatArray, penalizer: float) -> None:
        self.n = float(x.size)
        # Terms that depend on x alone are summed over the distinct x values (a few hundred at most).
        self.xu, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
        self.cu = counts.astype(np.float64)
        rep = x > 0
        self.T0 = T[~rep]
        self.x1, self.t1, self.T1 = x[rep], t_x[rep], T[rep]
        self.inv1: IntArray = inverse.reshape(-1)[rep]
        self.penalizer = penalizer

    def total(self, theta: FloatArray) -> tuple[float, FloatArray]:
        """Total log-likelihood and its gradient with respect to (r, alpha, a, b)."""
        r, alpha, a, b = (float(v) for v in np.exp(theta))
        xu, cu, n = self.xu, self.cu, self.n
        # b + x - 1 only matters where x > 0; max() keeps the unused x == 0 entry finite.
        bx1 = b + np.maximum(xu - 1.0, 0.0)
        ll = float(
            cu
            @ (
                special.gammaln(r + xu)
                - math.lgamma(r)
                + math.lgamma(a + b)
                + special.gammaln(b + xu)
                - math.lgamma(b)
                - special.gammaln(a + b + xu)
            )
        ) + n * r * math.log(alpha)
        l0 = np.log(alpha + self.T0)
        ll -= r * float(l0.sum())
        lT, lt = np.log(alpha + self.T1), np.log(alpha + self.t1)
        rx = r + self.x1
        d = math.log(a) - np.log(bx1)[self.inv1] + rx * (lT - lt)
        ll += float(np.logaddexp(0.0, d).sum() - (rx * lT).sum())
        w = _float(special.expit(d))  # posterior weight of "dropped out after the last purchase"

        psi_ab = float(special.digamma(a + b))
        psi_abx = _float(special.digamma(a + b + xu))
        inv_T, inv_t = 1.0 / (alpha + self.T1), 1.0 / (alpha + self.t1)
        g_r = (
            float(cu @ (special.digamma(r + xu) - special.digamma(r)))
            + n * math.log(alpha)
            - float(l0.sum())
            - float((lT - w * (lT - lt)).sum())
        )
        g_alpha = (
            n * r / alpha
            - r * float((1.0 / (alpha + self.T0)).sum())
            - float((rx * (inv_T + w * (inv_t - inv_T))).sum())
        )
        g_a = float(cu @ (psi_ab - psi_abx)) + float(w.sum()) / a
        w_by_x = np.bincount(self.inv1, weights=w, minlength=xu.size)
        g_b = float(cu @ (psi_ab + special.digamma(b + xu) - special.digamma(b) - psi_abx)) - float(
            (w_by_x / bx1).sum()
        )
        return ll, np.array([g_r, g_alpha, g_a, g_b])

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        ll, grad = self.total(theta)
        params = np.exp(theta)
        # Chain rule to log-parameters; the penalty is lifetimes' penalizer * sum(params**2).
        value = -ll / self.n + self.penalizer * float((params**2).sum())
        return value, -grad * params / self.n + 2.0 * self.penalizer * params**2


def _maximise(objective: Objective, theta0: FloatArray) -> tuple[FloatArray, bool, int]:
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * theta0.size
    options = {"maxiter": _MAX_ITER, "ftol": 1e-13, "gtol": 1e-9}
    res = optimize.minimize(objective, theta0, jac=True, method="L-BFGS-B", bounds=bounds, options=options)
    nfev = int(res.nfev)
    if _converged(objective, res.x, bool(res.success)):
        return _float(res.x), True, nfev
    # L-BFGS-B can stall in a line search from a poor start; Nelder-Mead needs no gradient, and
    # L-BFGS-B then polishes its answer.
    nm = optimize.minimize(
        lambda th: objective(th)[0],
        res.x,
        method="Nelder-Mead",
        bounds=bounds,
        options={"maxiter": 400 * theta0.size, "xatol": 1e-7, "fatol": 1e-12},
    )
    res = optimize.minimize(objective, nm.x, jac=True, method="L-BFGS-B", bounds=bounds, options=options)
    nfev += int(nm.nfev) + int(res.nfev)
    return _float(res.x), _converged(objective, res.x, bool(res.success)), nfev


def _converged(objective: Objective, theta: FloatArray, success: bool) -> bool:
    if success:
        return True
    # Tight tolerances can end L-BFGS-B with a failed line search right at the optimum: accept a point
    # where the gradient (of the mean log-likelihood) is negligible, ignoring components held at a bound.
    _, grad = objective(theta)
    at_bound = (np.abs(theta) >= _LOG_BOUND) & (np.sign(grad) == -np.sign(theta))
    return bool(np.all(np.isfinite(grad)) and np.max(np.abs(np.where(at_bound, 0.0, grad))) < 1e-6)


def _fit_bgnbd(
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,
    *,
    penalizer: float = 0.0,
    initial: tuple[float, float, float, float] | None = None,
) -> tuple[BgNbdParams, int]:
    """fit_bgnbd, also returning how many objective evaluations the optimiser made."""
    xs, txs, Ts = _rfm_data(x, t_x, T, fitting=True)
    if not (math.isfinite(penalizer) and penalizer >= 0):
        raise FitError(f"penalizer must be a non-negative finite number, got {penalizer}")
    if not (xs > 0).any():
        raise FitError(f"no customer has a repeat purchase: frequency is 0 in all {xs.size} rows")
    # Time in units of the mean T: the start point, the bounds and the penalty on alpha then do not
    # depend on whether the caller counts days or weeks.
    scale = 1.0 / float(Ts.mean())
    if initial is None:
        start = (1.0, 1.0 / max(float(xs.mean()), 1e-3), 1.0, 1.0)
    else:
        r0, alpha0, a0, b0 = initial
        _positive(r=r0, alpha=alpha0, a=a0, b=b0)
        start = (r0, alpha0 * scale, a0, b0)
    objective = _BgNbdObjective(xs, txs * scale, Ts * scale, penalizer)
    theta, converged, nfev = _maximise(objective, np.log(np.array(start)))
    ll_scaled, _ = objective.total(theta)
    r, alpha_scaled, a, b = (float(v) for v in np.exp(theta))
    # Rescaling time by c changes the density of t_x: ln L(original) = ln L(scaled) + sum(x) ln c.
    ll = ll_scaled + float(xs.sum()) * math.log(scale)
    params = BgNbdParams(
        r=r, alpha=alpha_scaled / scale, a=a, b=b, log_likelihood=ll, n=int(xs.size), converged=converged
    )
    return params, nfev


def fit_bgnbd(
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,
    *,
    penalizer: float = 0.0,
    initial: tuple[float, float, float, float] | None = None,
) -> BgNbdParams:
    """Maximum-likelihood BG/NBD fit; initial is (r, alpha, a, b); raises FitError on bad input."""
    # penalizer adds penalizer * (r^2 + alpha^2 + a^2 + b^2) to the mean negative log-likelihood, as
    # lifetimes does, with alpha measured in units of the mean T so the penalty ignores the time unit.
    return _fit_bgnbd(x, t_x, T, penalizer=penalizer, initial=initial)[0]


def _alive_log_odds(
    r: float, alpha: float, a: float, b: float, xs: FloatArray, txs: FloatArray, Ts: FloatArray
) -> FloatArray:
    """ln[a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x)], the log-odds of dropout; -inf at x == 0."""
    rep = xs > 0
    out = np.full(xs.shape, -np.inf)
    xr = xs[rep]
    out[rep] = (
        math.log(a) - np.log(b + xr - 1.0) + (r + xr) * (np.log(alpha + Ts[rep]) - np.log(alpha + txs[rep]))
    )
    return out


def _expected_purchases(
    r: float,
    alpha: float,
    a: float,
    b: float,
    t: FloatArray,
    xs: FloatArray,
    Ts: FloatArray,
    alive: FloatArray,
) -> FloatArray:
    if abs(a - 1.0) < 1e-7:
        # a == 1 is a removable singularity of eq. 10 (0/0); evaluating just beside it costs ~1e-7 relative.
        a = 1.0 + 1e-7
    log_1mz = np.log(alpha + Ts) - np.log(alpha + Ts + t)
    z = -np.expm1(log_1mz)  # t / (alpha + T + t)
    # Euler's transformation of eq. 10's ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z) into
    # (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z): the same value, but it cannot overflow for large x.
    hyp = _float(special.hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + xs - 1.0, z))
    num = (a + b + xs - 1.0) / (a - 1.0) * (1.0 - np.exp((a - 1.0) * log_1mz) * hyp)
    return num * alive


def expected_purchases(
    params: BgNbdParams, t: npt.ArrayLike, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike
) -> FloatArray:
    """E[purchases in (T, T + t] | x, t_x, T] (eq. 10); t is a scalar or one value per customer."""
    r, alpha, a, b = _bgnbd_values(params)
    xs, txs, Ts = _rfm_data(x, t_x, T, fitting=False)
    ts = _horizon("t", t, xs.size)
    alive = _float(special.expit(-_alive_log_odds(r, alpha, a, b, xs, txs, Ts)))
    return _expected_purchases(r, alpha, a, b, ts, xs, Ts, alive)


def _horizon(name: str, t: npt.ArrayLike, n: int) -> FloatArray:
    ts = np.asarray(t, dtype=np.float64)
    if ts.ndim == 0:
        ts = np.full(n, float(ts))
    elif ts.ndim != 1 or ts.size != n:
        raise FitError(f"{name} must be a scalar or one value per customer ({n}), got shape {ts.shape}")
    _finite(name, ts)
    _require(ts < 0, f"{name} must not be negative")
    return ts


def p_alive(params: BgNbdParams, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike) -> FloatArray:
    """P(alive at T | x, t_x, T) (eq. 12); exactly 1 where x == 0 (nobody drops out before a repeat)."""
    r, alpha, a, b = _bgnbd_values(params)
    xs, txs, Ts = _rfm_data(x, t_x, T, fitting=False)
    return _float(special.expit(-_alive_log_odds(r, alpha, a, b, xs, txs, Ts)))


# ---------------------------------------------------------------------------------------------------
# Gamma-Gamma


def gamma_gamma_log_likelihood(
    p: float, q: float, v: float, x: npt.ArrayLike, m: npt.ArrayLike
) -> FloatArray:
    """Per-customer Gamma-Gamma log-density of mean spend m over x purchases; 0 where x == 0 (no data)."""
    _positive(p=p, q=q, v=v)
    xs, ms = _spend_data(x, m, fitting=False)
    out = np.zeros(xs.shape)
    rep = xs > 0
    xr, mr = xs[rep], ms[rep]
    px = p * xr
    out[rep] = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - math.lgamma(q)
        + q * math.log(v)
        + (px - 1.0) * np.log(mr)
        + px * np.log(xr)
        - (px + q) * np.log(v + mr * xr)
    )
    return out


class _GammaGammaObjective:
    """Mean negative Gamma-Gamma log-likelihood and its gradient over log(p, q, v); x > 0 rows only."""

    def __init__(self, x: FloatArray, m: FloatArray) -> None:
        self.n = float(x.size)
        self.x = x
        self.mx = m * x
        self.xu, counts = np.unique(x, return_counts=True)
        self.cu = counts.astype(np.float64)
        log_m = np.log(m)
        self.sum_x_log_m = float(x @ log_m)
        self.sum_log_m = float(log_m.sum())
        self.sum_x_log_x = float(x @ np.log(x))

    def total(self, theta: FloatArray) -> tuple[float, FloatArray]:
        """Total log-likelihood and its gradient with respect to (p, q, v)."""
        p, q, v = (float(val) for val in np.exp(theta))
        xu, cu, n = self.xu, self.cu, self.n
        pxu = p * xu
        l_vm = np.log(v + self.mx)
        sum_l_vm = float(l_vm.sum())
        sum_x_l_vm = float(self.x @ l_vm)
        ll = (
            float(cu @ (special.gammaln(pxu + q) - special.gammaln(pxu)))
            - n * math.lgamma(q)
            + n * q * math.log(v)
            + p * self.sum_x_log_m
            - self.sum_log_m
            + p * self.sum_x_log_x
            - p * sum_x_l_vm
            - q * sum_l_vm
        )
        psi_pxq = _float(special.digamma(pxu + q))
        inv = 1.0 / (v + self.mx)
        g_p = (
            float(cu @ (xu * (psi_pxq - special.digamma(pxu))))
            + self.sum_x_log_m
            + self.sum_x_log_x
            - sum_x_l_vm
        )
        g_q = float(cu @ psi_pxq) - n * float(special.digamma(q)) + n * math.log(v) - sum_l_vm
        g_v = n * q / v - p * float(self.x @ inv) - q * float(inv.sum())
        return ll, np.array([g_p, g_q, g_v])

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        ll, grad = self.total(theta)
        return -ll / self.n, -grad * np.exp(theta) / self.n


def _fit_gamma_gamma(
    x: npt.ArrayLike, m: npt.ArrayLike, *, initial: tuple[float, float, float] | None = None
) -> tuple[GammaGammaParams, int]:
    """fit_gamma_gamma, also returning how many objective evaluations the optimiser made."""
    xs, ms = _spend_data(x, m, fitting=True)
    rep = xs > 0
    if not rep.any():
        raise FitError(f"no customer has a repeat purchase: frequency is 0 in all {xs.size} rows")
    xr, mr = xs[rep], ms[rep]
    # Money in units of the mean spend, so the start point and bounds do not depend on the currency.
    scale = 1.0 / float(mr.mean())
    if initial is None:
        start = (1.0, 2.0, 1.0)  # population mean p v / (q - 1) = 1, the mean spend
    else:
        p0, q0, v0 = initial
        _positive(p=p0, q=q0, v=v0)
        start = (p0, q0, v0 * scale)
    objective = _GammaGammaObjective(xr, mr * scale)
    theta, converged, nfev = _maximise(objective, np.log(np.array(start)))
    ll_scaled, _ = objective.total(theta)
    p, q, v_scaled = (float(val) for val in np.exp(theta))
    # Rescaling money by c changes the density of m: ln L(original) = ln L(scaled) + n ln c.
    ll = ll_scaled + xr.size * math.log(scale)
    params = GammaGammaParams(
        p=p, q=q, v=v_scaled / scale, log_likelihood=ll, n=int(xr.size), converged=converged
    )
    return params, nfev


def fit_gamma_gamma(
    x: npt.ArrayLike, m: npt.ArrayLike, *, initial: tuple[float, float, float] | None = None
) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma fit on the rows with x > 0 (others dropped); initial is (p, q, v)."""
    return _fit_gamma_gamma(x, m, initial=initial)[0]


def expected_average_value(params: GammaGammaParams, x: npt.ArrayLike, m: npt.ArrayLike) -> FloatArray:
    """E(M | x, m) = p (v + x m) / (p x + q - 1); population mean p v / (q - 1) where x == 0; needs q > 1."""
    _positive(p=params.p, q=params.q, v=params.v)
    if params.q <= 1:
        raise FitError(f"parameter q must be > 1 for the mean spend to exist, got {params.q}")
    xs, ms = _spend_data(x, m, fitting=False)
    p, q, v = params.p, params.q, params.v
    m_used = np.where(xs > 0, ms, 0.0)  # m is meaningless (maybe NaN) where x == 0
    return p * (v + xs * m_used) / (p * xs + q - 1.0)


def clv(
    bgnbd: BgNbdParams,
    gg: GammaGammaParams,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,
    m: npt.ArrayLike,
    *,
    horizon: float,
    discount_rate: float = 0.0,
    steps: int = 12,
) -> FloatArray:
    """Sum over k = 1..steps of E[purchases in slice k of horizon] * E(M | x, m) * (1 + discount_rate)^-k."""
    # horizon is in the time unit of t_x and T; discount_rate is per slice (horizon / steps), so a
    # 12-month horizon in 12 steps takes a monthly rate.
    r, alpha, a, b = _bgnbd_values(bgnbd)
    xs, txs, Ts = _rfm_data(x, t_x, T, fitting=False)
    xg, ms = _spend_data(x, m, fitting=False)
    _same_length(frequency=xs, monetary=ms)
    if not (math.isfinite(horizon) and horizon >= 0):
        raise FitError(f"horizon must be a non-negative finite number, got {horizon}")
    if not (math.isfinite(discount_rate) and discount_rate >= 0):
        raise FitError(f"discount_rate must be a non-negative finite number, got {discount_rate}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise FitError(f"steps must be a positive integer, got {steps!r}")
    value = expected_average_value(gg, xg, ms)
    total = np.zeros(xs.shape)
    if horizon == 0:
        return total
    alive = _float(special.expit(-_alive_log_odds(r, alpha, a, b, xs, txs, Ts)))
    before = np.zeros(xs.shape)
    for k in range(1, steps + 1):
        upto = _expected_purchases(r, alpha, a, b, np.full(xs.shape, horizon * k / steps), xs, Ts, alive)
        total += (upto - before) * (1.0 + discount_rate) ** (-k)
        before = upto
    return total * value


# ---------------------------------------------------------------------------------------------------
# RFM


def rfm_scores(
    recency: npt.ArrayLike, frequency: npt.ArrayLike, monetary: npt.ArrayLike, *, bins: int = 5
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Scores 1 + floor(bins * rank / n), rank 0-based, ties taking the lowest; low recency scores high."""
    # recency here is the time since the last purchase (not the BG/NBD t_x); larger frequency and
    # monetary score higher. Ties all take the score of the first of them, so a tie is never split.
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise FitError(f"bins must be a positive integer, got {bins!r}")
    rec, freq, mon = _array("recency", recency), _array("frequency", frequency), _array("monetary", monetary)
    n = _same_length(recency=rec, frequency=freq, monetary=mon)
    for name, arr in (("recency", rec), ("frequency", freq), ("monetary", mon)):
        _finite(name, arr)

    def score(values: FloatArray) -> FloatArray:
        return 1.0 + np.floor(bins * _min_rank(values) / max(n, 1))

    return score(-rec), score(freq), score(mon)


def _min_rank(values: FloatArray) -> FloatArray:
    """0-based rank of each value, ties all taking the smallest rank of their group."""
    if values.size == 0:
        return np.zeros(0)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    first = np.flatnonzero(starts)
    group_rank = first[np.cumsum(starts) - 1]
    rank = np.empty(values.size, dtype=np.float64)
    rank[order] = group_rank
    return rank


# ---------------------------------------------------------------------------------------------------
# Simulation


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def simulate_bgnbd(
    r: float,
    alpha: float,
    a: float,
    b: float,
    n: int,
    T: npt.ArrayLike,
    *,
    seed: int | np.random.Generator,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Draw (x, t_x, T) for n customers from the BG/NBD process, observed for T (scalar or n values)."""
    _positive(r=r, alpha=alpha, a=a, b=b)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise FitError(f"n must be a non-negative integer, got {n!r}")
    Ts = _horizon("T", T, n)
    rng = _rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    # p ~ Beta(a, b) can underflow to 0 for small a; geometric() needs p > 0.
    drop = np.clip(rng.beta(a, b, n), 1e-12, 1.0)
    # The customer dies right after repeat purchase J ~ Geometric(p) on 1, 2, ... and buys at the
    # Poisson(lambda) arrival times until then: x = min(J, N(T)).
    lifetime_purchases = rng.geometric(drop)
    arrivals = rng.poisson(lam * Ts)
    x = np.minimum(arrivals, lifetime_purchases).astype(np.float64)
    # Given N arrivals in [0, T] their times are N sorted uniforms; the x-th is T * Beta(x, N - x + 1).
    t_x = np.zeros(n)
    rep = x > 0
    t_x[rep] = Ts[rep] * rng.beta(x[rep], arrivals[rep] - x[rep] + 1.0)
    return x, t_x, Ts.copy()


def simulate_gamma_gamma(
    p: float, q: float, v: float, x: npt.ArrayLike, *, seed: int | np.random.Generator
) -> FloatArray:
    """Draw each mean spend over x purchases (spend ~ Gamma(p, nu), nu ~ Gamma(q, v)); 0 where x == 0."""
    _positive(p=p, q=q, v=v)
    xs = _array("frequency", x)
    _counts("frequency", xs)
    rng = _rng(seed)
    nu = rng.gamma(q, 1.0 / v, xs.size)
    out = np.zeros(xs.shape)
    rep = xs > 0
    # The sum of x Gamma(p, nu) spends is Gamma(p x, nu); divide by x for the mean.
    out[rep] = rng.gamma(p * xs[rep], 1.0 / (nu[rep] * xs[rep]))
    return out
