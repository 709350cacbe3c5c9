"""The LR-annealing loss law of Tissue et al. 2024 ("Scaling Law with Learning Rate Annealing").

    L(s) = L0 + A * S1(s)^(-alpha) - C * S2(s)

for a per-step LR sequence ``lr[0..T]``:

- warmup steps are counted at the maximum LR: every step before the sequence
  first reaches its maximum gets the maximum (``effective_lrs``);
- ``S1(s) = sum_{i<=s} lr_i`` (the forward area);
- ``m_0 = 0``, ``m_i = 0.999 * m_{i-1} + (lr_{i-1} - lr_i)``;
  ``S2(s) = sum_{i<=s} m_i`` (the annealing area, with momentum).

Fitting: Huber loss (delta 1e-3) on log-loss residuals
``log L_pred - log L_obs``, averaged over each curve's points and summed over
curves (so runs logged at different intervals weigh the same), minimised by
scipy's L-BFGS-B with an analytic gradient, all four parameters bounded below
by 0, from a small grid of starting points; the best end point wins. Each
curve is fitted from the end of its warmup and at least ``fit_from_fraction``
of its length on (the law does not model the first steps).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.signal import lfilter
from threadpoolctl import threadpool_limits

from ldw.errors import LdwError

DECAY = 0.999
HUBER_DELTA = 1e-3
_P_FLOOR = 1e-12


@dataclass(frozen=True)
class LawParams:
    """Parameters of ``L = L0 + A * S1^-alpha - C * S2``."""

    L0: float
    A: float
    alpha: float
    C: float

    def as_array(self) -> np.ndarray:
        """``[L0, A, alpha, C]``."""
        return np.array([self.L0, self.A, self.alpha, self.C], dtype=np.float64)


@dataclass(frozen=True)
class LossCurve:
    """One run for fitting: its per-step LR (steps 0..T) and observed loss at some of those steps."""

    name: str
    lrs: np.ndarray
    steps: np.ndarray
    loss: np.ndarray

    def __post_init__(self) -> None:
        if len(self.steps) != len(self.loss):
            raise LdwError(f"{self.name}: {len(self.steps)} steps but {len(self.loss)} loss values")
        if len(self.steps) and (self.steps.min() < 0 or self.steps.max() >= len(self.lrs)):
            raise LdwError(f"{self.name}: loss logged at steps outside the LR sequence (0..{len(self.lrs) - 1})")
        if np.any(self.loss <= 0) or not np.all(np.isfinite(self.loss)):
            raise LdwError(f"{self.name}: the law is fitted on log loss; every loss must be finite and > 0")


@dataclass(frozen=True)
class LawFit:
    """A fitted law and how well it fits the points it was fitted on."""

    params: LawParams
    rmse: float
    mape_pct: float
    n_points: int
    objective: float
    curves: tuple[str, ...]


def warmup_end(lrs: np.ndarray) -> int:
    """Index of the first step at which the sequence reaches its maximum."""
    return int(np.argmax(lrs >= lrs.max()))


def effective_lrs(lrs: np.ndarray) -> np.ndarray:
    """The LR sequence with warmup steps (those before the maximum is first reached) at the maximum."""
    lrs = np.asarray(lrs, dtype=np.float64)
    if lrs.ndim != 1 or len(lrs) == 0 or not np.all(np.isfinite(lrs)) or np.any(lrs < 0) or lrs.max() <= 0:
        raise LdwError("an LR sequence must be 1-D, finite, non-negative and not all zero")
    out = lrs.copy()
    out[: warmup_end(lrs)] = lrs.max()
    return out


def law_areas(lrs: np.ndarray, decay: float = DECAY) -> tuple[np.ndarray, np.ndarray]:
    """``(S1, S2)`` for every step of the sequence (warmup counted at the maximum)."""
    eta = effective_lrs(lrs)
    drops = np.concatenate([[0.0], eta[:-1] - eta[1:]])
    momentum = lfilter([1.0], [1.0, -decay], drops)  # m_i = decay * m_{i-1} + drop_i
    return np.cumsum(eta), np.cumsum(momentum)


def predict_loss(params: LawParams, lrs: np.ndarray, decay: float = DECAY) -> np.ndarray:
    """Predicted loss at every step of an LR sequence."""
    s1, s2 = law_areas(lrs, decay)
    return params.L0 + params.A * s1 ** (-params.alpha) - params.C * s2


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * a - 0.5 * delta * delta)


@dataclass(frozen=True)
class _Points:
    """The fitted points of all curves: log S1, S2, log loss and each point's weight (1 / points in its curve)."""

    log_s1: np.ndarray
    s2: np.ndarray
    log_y: np.ndarray
    weight: np.ndarray
    first_s1: float
    first_y: float


def _objective(x: np.ndarray, pts: _Points, delta: float) -> tuple[float, np.ndarray]:
    """Sum over curves of the mean Huber loss of log residuals (scaled by 1/delta^2), and its gradient.

    A prediction at or below 0 is floored at 1e-12: its huge negative residual pushes it back up.
    """
    L0, A, alpha, C = x
    power = np.exp(-alpha * pts.log_s1)
    pred = np.maximum(L0 + A * power - C * pts.s2, _P_FLOOR)
    r = np.log(pred) - pts.log_y
    scale = pts.weight / delta**2
    g = np.clip(r, -delta, delta) * scale / pred
    value = float((_huber(r, delta) * scale).sum())
    grad = np.array([g.sum(), (g * power).sum(), -A * (g * power * pts.log_s1).sum(), -(g * pts.s2).sum()])
    return value, grad


def _fit_points(curves: list[LossCurve], fit_from_fraction: float, decay: float) -> _Points:
    """The points each curve is fitted on: from the end of its warmup and ``fit_from_fraction`` of its steps."""
    parts = []
    for curve in curves:
        s1, s2 = law_areas(curve.lrs, decay)
        start = max(warmup_end(curve.lrs), int(math.ceil(fit_from_fraction * (len(curve.lrs) - 1))))
        steps = curve.steps[curve.steps >= start]
        if len(steps) < 4:
            raise LdwError(f"{curve.name}: fewer than 4 loss points after step {start} to fit the law on")
        loss = curve.loss[curve.steps >= start]
        parts.append((np.log(s1[steps]), s2[steps], np.log(loss), np.full(len(steps), 1.0 / len(steps))))
    first = min(range(len(parts)), key=lambda i: parts[i][0][0])
    return _Points(
        *(np.concatenate(col) for col in zip(*parts, strict=True)),
        first_s1=float(np.exp(parts[first][0][0])),
        first_y=float(np.exp(parts[first][2][0])),
    )


def _starts(pts: _Points) -> list[np.ndarray]:
    """A small grid of starting points scaled to the data."""
    y_min = float(np.exp(pts.log_y.min()))
    s2_max = float(pts.s2.max())
    starts = []
    for l0_frac, alpha, with_c in itertools.product((0.3, 0.7), (0.2, 0.5, 0.8), (False, True)):
        L0 = l0_frac * y_min
        A = max(pts.first_y - L0, 1e-3) * pts.first_s1**alpha
        C = 0.1 * y_min / s2_max if with_c and s2_max > 0 else 0.0
        starts.append(np.array([L0, A, alpha, C]))
    return starts


def fit_law(
    curves: list[LossCurve], fit_from_fraction: float = 0.05, delta: float = HUBER_DELTA, decay: float = DECAY
) -> LawFit:
    """Fit one law (shared parameters) to one or several runs; see the module docstring."""
    if not curves:
        raise LdwError("fit the law on at least one run")
    pts = _fit_points(curves, fit_from_fraction, decay)
    best = None
    # L-BFGS-B's BLAS calls on 4-vectors only lose time to thread hand-offs (15x slower on a busy machine)
    with threadpool_limits(limits=1, user_api="blas"):
        for x0 in _starts(pts):
            result = minimize(
                _objective,
                x0,
                args=(pts, delta),
                jac=True,
                method="L-BFGS-B",
                bounds=[(0.0, None)] * 4,
                options={"maxiter": 20_000, "ftol": 1e-12, "gtol": 1e-9},
            )
            if best is None or result.fun < best.fun:
                best = result
    params = LawParams(*(float(v) for v in best.x))
    pred = params.L0 + params.A * np.exp(-params.alpha * pts.log_s1) - params.C * pts.s2
    obs = np.exp(pts.log_y)
    return LawFit(
        params=params,
        rmse=float(np.sqrt(np.mean((pred - obs) ** 2))),
        mape_pct=float(100.0 * np.mean(np.abs(pred - obs) / obs)),
        n_points=len(obs),
        objective=float(best.fun),
        curves=tuple(c.name for c in curves),
    )


def curve_error(params: LawParams, curve: LossCurve, decay: float = DECAY) -> tuple[float, float]:
    """(RMSE, MAPE %) of the law's prediction against a curve's observed loss at all its points."""
    pred = predict_loss(params, curve.lrs, decay)[curve.steps]
    return float(np.sqrt(np.mean((pred - curve.loss) ** 2))), float(
        100.0 * np.mean(np.abs(pred - curve.loss) / curve.loss)
    )
