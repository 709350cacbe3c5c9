"""Age of acquisition (AoA) from smoothed or sigmoid-fitted learning curves.

Threshold rule (Chang, Tu & Bergen 2023, released code): evaluate the fitted
curve on ``n_grid`` evenly spaced log10 steps over the data range; the
threshold is ``(1 - p) * chance + p * min(curve)`` with ``p = 0.5`` and
``chance = log2(V)``; AoA is the first grid x where the curve is ``<=`` the
threshold, or the last x when the threshold is not below chance (the curve
never gets below chance).

The sigmoid variant (Chang & Bergen 2022) fits
``start + (end - start) / (1 + exp((xmid - x) / scale))`` to the raw curve and
applies the same grid rule to the fitted sigmoid. Their released code instead
takes the minimum of the raw curve and solves for the crossing analytically;
here the grid rule is shared with the GAM AoA so the two are comparable.
The fit is a batched Levenberg-Marquardt in numpy started from their initial
guess (``start = max y, end = min y, xmid = mean x, scale = 1``, no bounds);
curves that do not converge are refitted one by one with
``scipy.optimize.curve_fit`` (the reference), as their code does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from ldw.curves.gam import SplineSmoother, spline_basis
from ldw.errors import LdwError

N_GRID = 1000
PROPORTION = 0.5
EVAL_BLOCK = 2048  # curves evaluated on the grid at a time (keeps the block in cache)


@dataclass(frozen=True)
class AoaResult:
    """AoA per curve: log10 step, step, and the surprisal threshold used."""

    log10_step: np.ndarray  # [N]
    step: np.ndarray  # [N], 10 ** log10_step
    threshold: np.ndarray  # [N] bits


def chance_bits(vocab_size: int) -> float:
    """Surprisal of a uniform guess over the vocabulary, ``log2(V)`` bits."""
    if vocab_size < 2:
        raise LdwError(f"vocab_size must be >= 2, got {vocab_size}")
    return float(np.log2(vocab_size))


def aoa_grid(x: np.ndarray, n_grid: int = N_GRID) -> np.ndarray:
    """``n_grid`` evenly spaced points over [min x, max x] (endpoints included)."""
    return np.linspace(float(np.min(x)), float(np.max(x)), n_grid)


def first_crossing(
    values: np.ndarray, grid: np.ndarray, chance: float, proportion: float = PROPORTION
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the threshold rule to curves evaluated on ``grid``: (AoA x [N], threshold [N])."""
    ymin = values.min(axis=1)
    threshold = chance * (1.0 - proportion) + ymin * proportion
    below = values <= threshold[:, None]
    aoa = grid[np.argmax(below, axis=1)]
    aoa[threshold >= chance] = grid[-1]  # below chance, threshold > min: the min point crosses
    return aoa, threshold


def _blocked_aoa(
    curves_on_grid: Callable[[int, int], np.ndarray], n: int, grid: np.ndarray, chance: float
) -> AoaResult:
    aoa = np.empty(n)
    threshold = np.empty(n)
    for lo in range(0, n, EVAL_BLOCK):
        hi = min(n, lo + EVAL_BLOCK)
        aoa[lo:hi], threshold[lo:hi] = first_crossing(curves_on_grid(lo, hi), grid, chance)
    return AoaResult(log10_step=aoa, step=10.0**aoa, threshold=threshold)


def gam_aoa(smoother: SplineSmoother, coef: np.ndarray, chance: float, n_grid: int = N_GRID) -> AoaResult:
    """AoA of GAM-smoothed curves given their coefficients ``coef`` [N, m]."""
    grid = aoa_grid(smoother.x, n_grid)
    basis_t = np.ascontiguousarray(spline_basis(grid, smoother.knots, smoother.lo, smoother.hi).T)
    coef = np.asarray(coef, dtype=np.float64)
    return _blocked_aoa(lambda lo, hi: coef[lo:hi] @ basis_t, len(coef), grid, chance)


def sigmoid(x: np.ndarray, start, end, xmid, scale) -> np.ndarray:
    """``start + (end - start) / (1 + exp((xmid - x) / scale))`` (broadcasting)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return start + (end - start) / (1.0 + np.exp((xmid - x) / scale))


@dataclass(frozen=True)
class SigmoidFit:
    """Per-curve sigmoid parameters (start, end, xmid, scale) and how they were found."""

    params: np.ndarray  # [N, 4]
    rss: np.ndarray  # [N] residual sum of squares
    refitted: np.ndarray  # [N] bool: batched fit did not converge, scipy curve_fit used


def initial_guess(x: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Starting point of the released code: start=max y, end=min y, xmid=mean x, scale=1."""
    n = len(curves)
    return np.column_stack([curves.max(axis=1), curves.min(axis=1), np.full(n, np.mean(x)), np.ones(n)])


def fit_sigmoid_scipy(x: np.ndarray, y: np.ndarray, ftol: float = 1e-8, xtol: float = 1e-8) -> np.ndarray:
    """Reference per-curve fit with ``scipy.optimize.curve_fit`` (retrying with looser ftol)."""
    p0 = initial_guess(x, y[None, :])[0]
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", (OptimizeWarning, RuntimeWarning))
                params, _ = curve_fit(sigmoid, x, y, p0=p0, maxfev=100_000, ftol=ftol, xtol=xtol)
            return params
        except RuntimeError:
            if ftol >= 1e-2:
                return p0
            ftol *= 10.0


def _residuals_and_jacobian(x: np.ndarray, y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    start, end, xmid, scale = (p[:, i : i + 1] for i in range(4))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        z = (xmid - x) / scale
        s = 1.0 / (1.0 + np.exp(z))
        height = end - start
        resid = start + height * s - y
        ds = s * (1.0 - s)
        jac = np.stack([1.0 - s, s, -height * ds / scale, height * ds * z / scale], axis=-1)
    return resid, np.nan_to_num(jac, nan=0.0, posinf=0.0, neginf=0.0)


def fit_sigmoids(x: np.ndarray, curves: np.ndarray, max_iter: int = 200, ftol: float = 1e-8) -> SigmoidFit:
    """Fit the 4-parameter sigmoid to every row of ``curves`` [N, n] by batched Levenberg-Marquardt.

    A curve is done when the undamped Gauss-Newton step predicts a cost
    reduction of at most ``ftol`` (relative), i.e. it sits at a local minimum;
    when an accepted step both achieved and predicted at most ``ftol``
    (MINPACK's test, which ends the slow drift of ill-posed flat curves); or
    when no damped step can lower its cost. Curves still running after
    ``max_iter`` iterations are refitted with :func:`fit_sigmoid_scipy`.
    Damping follows Nielsen's gain-ratio rule with Marquardt's diagonal scaling.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(curves, dtype=np.float64)
    params = initial_guess(x, y)
    resid, jac = _residuals_and_jacobian(x, y, params)
    cost = np.einsum("ij,ij->i", resid, resid)
    damping = np.full(len(y), 1e-3)
    growth = np.full(len(y), 2.0)
    active = np.arange(len(y))
    eye = np.eye(4)
    for _ in range(max_iter):
        c, r, j = cost[active], resid[active], jac[active]
        jt = j.transpose(0, 2, 1)
        jtj = jt @ j
        grad = (jt @ r[:, :, None])[:, :, 0]
        diag = np.maximum(np.einsum("nii->ni", jtj), 1e-12)
        newton = np.linalg.solve(jtj + 1e-12 * diag[:, :, None] * eye, grad[:, :, None])[:, :, 0]
        done = np.einsum("ni,ni->n", grad, newton) <= ftol * c
        done |= damping[active] > 1e16
        keep = ~done
        active, c, jtj, grad, diag = active[keep], c[keep], jtj[keep], grad[keep], diag[keep]
        if active.size == 0:
            break
        mu = damping[active]
        step = -np.linalg.solve(jtj + (mu[:, None] * diag)[:, :, None] * eye, grad[:, :, None])[:, :, 0]
        predicted = -2.0 * np.einsum("ni,ni->n", grad, step) - np.einsum("ni,nij,nj->n", step, jtj, step)
        new_p = params[active] + step
        new_r, new_j = _residuals_and_jacobian(x, y[active], new_p)
        new_c = np.einsum("ij,ij->i", new_r, new_r)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = (c - new_c) / predicted
        accept = np.isfinite(new_c) & (new_c < c) & (gain > 0)
        idx = active[accept]
        params[idx], cost[idx], resid[idx], jac[idx] = new_p[accept], new_c[accept], new_r[accept], new_j[accept]
        shrink = np.maximum(1.0 / 3.0, 1.0 - (2.0 * np.where(accept, gain, 0.0) - 1.0) ** 3)
        damping[active] = np.where(accept, mu * shrink, mu * growth[active])
        growth[active] = np.where(accept, 2.0, growth[active] * 2.0)
        stalled = accept & (c - new_c <= ftol * c) & (predicted <= ftol * c)  # MINPACK's ftol test
        active = active[~stalled]
    refitted = np.zeros(len(y), dtype=bool)
    refitted[active] = True
    for i in active:
        params[i] = fit_sigmoid_scipy(x, y[i])
        r = sigmoid(x, *params[i]) - y[i]
        cost[i] = float(r @ r)
    return SigmoidFit(params=params, rss=cost, refitted=refitted)


def sigmoid_aoa(x: np.ndarray, params: np.ndarray, chance: float, n_grid: int = N_GRID) -> AoaResult:
    """AoA of fitted sigmoids ``params`` [N, 4] by the grid threshold rule over [min x, max x]."""
    grid = aoa_grid(x, n_grid)

    def on_grid(lo: int, hi: int) -> np.ndarray:
        p = params[lo:hi]
        values = sigmoid(grid[None, :], p[:, 0:1], p[:, 1:2], p[:, 2:3], p[:, 3:4])
        return np.nan_to_num(values, nan=np.inf)

    return _blocked_aoa(on_grid, len(params), grid, chance)
