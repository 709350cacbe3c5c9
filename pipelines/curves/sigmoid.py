"""Sigmoid age of acquisition, as the released code of Chang, Tu & Bergen (2023) computes it.

Their ``formula_utils.py`` fits, to the *negated* surprisal ``y = -s`` of
each curve over ``x = log10(step)`` (checkpoints with step > 0), the sigmoid
``start + (end - start) / (1 + exp((xmid - x) / scale))`` with
``scipy.optimize.curve_fit`` (Levenberg-Marquardt, no bounds, numerical
Jacobian) from ``p0 = [min y, max y, mean x, 1]`` with ``maxfev = 1e6`` and
``ftol = 1e-8``; a fit that raises ``RuntimeError`` is retried with ``ftol``
ten times larger, until one succeeds (it must: at ``ftol >= 1`` the first
step passes MINPACK's test). The threshold is halfway between chance and the
*lowest raw surprisal* of the curve, in y: ``thr = 0.5 * (-chance) + 0.5 *
max y``. The AoA, in this order of precedence:

1. the last x when ``thr`` is at or above both asymptotes (the sigmoid never
   climbs to it), when ``-chance >= max y`` (the curve never gets below
   chance), or when the fitted sigmoid falls in y (rises in surprisal);
2. the first x when ``thr`` is at or below both asymptotes;
3. otherwise the analytic crossing ``xmid - scale * ln((end - start) / (thr -
   start) - 1)``, clipped to [first x, last x].

The fit is one ``curve_fit`` per curve, exactly as released (a
batched optimizer lands on other optima for the flat, ill-posed curves of
tokens that are never learned or learned before the first checkpoint, and the
AoA rules turn such differences into jumps between the first and the last
step). On those curves the optimum is decided by rounding: with SciPy >= 1.15
(MINPACK in C) it can even change from one process to the next, as the
released code's own result does; well-posed curves give the same AoA every
time.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

PROPORTION = 0.5
MAXFEV = 1_000_000
FTOL = 1e-8


def sigmoid(x: np.ndarray, start, end, xmid, scale) -> np.ndarray:
    """``start + (end - start) / (1 + exp((xmid - x) / scale))`` (broadcasting)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return start + (end - start) / (1.0 + np.exp((xmid - x) / scale))


def fit_sigmoid(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(start, end, xmid, scale) fitted to one curve ``y`` by ``curve_fit``, with the released settings and retries."""
    p0 = [float(np.min(y)), float(np.max(y)), float(np.mean(x)), 1.0]
    ftol = FTOL
    while True:  # ends: from ftol >= 1 on, MINPACK accepts its first step
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)  # covariance not estimable: not used
                params, _ = curve_fit(sigmoid, x, y, p0=p0, maxfev=MAXFEV, ftol=ftol)
            return params
        except RuntimeError:
            ftol *= 10.0


@dataclass(frozen=True)
class SigmoidAoa:
    """Sigmoid AoA per curve, and the fitted sigmoid in surprisal units."""

    log10_step: np.ndarray  # [N]
    step: np.ndarray  # [N], 10 ** log10_step
    threshold: np.ndarray  # [N] bits; NaN where the AoA is set or clipped to the first or last x (released: -1)
    params: np.ndarray  # [N, 4] surprisal asymptote at -inf x, at +inf x (for scale > 0), xmid, scale


def aoa_from_fit(x: np.ndarray, surprisal: np.ndarray, params_y: np.ndarray, chance: float) -> SigmoidAoa:
    """The released AoA rules for curves ``surprisal`` [N, n] and their sigmoids ``params_y`` [N, 4] fitted to -s."""
    start, end, xmid, scale = (params_y[:, i] for i in range(4))
    xmin, xmax = float(np.min(x)), float(np.max(x))
    ymin, ymax = -chance, (-surprisal).max(axis=1)
    threshold = ymin * (1.0 - PROPORTION) + ymax * PROPORTION
    never = (threshold >= start) & (threshold >= end)
    never |= ymin >= ymax
    never |= ((end < start) & (scale > 0)) | ((end > start) & (scale < 0))
    always = ~never & (threshold <= start) & (threshold <= end)
    crossing = ~never & ~always
    with np.errstate(divide="ignore", invalid="ignore"):
        solved = xmid - scale * np.log((end - start) / (threshold - start) - 1.0)
    inside = crossing & (solved >= xmin) & (solved <= xmax)
    aoa = np.where(never, xmax, xmin)
    aoa = np.where(crossing, np.clip(solved, xmin, xmax), aoa)
    surprisal_params = np.column_stack([-start, -end, xmid, scale])
    return SigmoidAoa(aoa, 10.0**aoa, np.where(inside, -threshold, np.nan), surprisal_params)


def sigmoid_aoa(x: np.ndarray, surprisal: np.ndarray, chance: float) -> SigmoidAoa:
    """Fit every curve of ``surprisal`` [N, n] (bits, at ``x`` = log10 steps > 0) and apply the released AoA rules."""
    x = np.asarray(x, dtype=np.float64)
    curves = np.asarray(surprisal, dtype=np.float64)
    params = np.array([fit_sigmoid(x, -curve) for curve in curves]).reshape(len(curves), 4)
    return aoa_from_fit(x, curves, params, chance)
