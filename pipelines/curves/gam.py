"""Penalized cubic regression splines for many learning curves that share one x.

This reproduces the model of pyGAM's ``LinearGAM(s(0, n_splines=25))`` with
``gridsearch(lam=np.logspace(-3, 3, 11))`` (the smoother of Chang, Tu & Bergen
2023), vectorized over curves:

* basis: ``n_splines`` cubic B-splines on equally spaced knots spanning the data
  range ([min x, max x] mapped to [0, 1]; ``n_splines - 3`` intervals, three
  extra knots on each side), plus an intercept column (last coefficient);
  outside the data range each basis function continues linearly, as in pyGAM;
* penalty: ``lam * D'D`` with ``D`` the 2nd-order difference matrix of the
  spline coefficients (the intercept is unpenalized), plus pyGAM's diagonal
  loading ``sqrt(machine eps) * I`` on every coefficient;
* coefficients: ``c = (X'X + lam D'D + sqrt(eps) I)^-1 X'y``;
* GCV (pyGAM's form, gamma = 1.4): ``n * RSS / (n - 1.4 * edof)^2`` with
  ``edof = trace(hat matrix)``; the first lambda with the lowest score wins.

Because every curve shares x, everything that depends on lambda is built once:
with ``b = X'y`` and ``A_l^-1`` the penalized inverse, ``c_l = A_l^-1 b`` and
``RSS_l = y'y - 2 c_l'b + c_l'X'X c_l = y'y - b' S_l b`` with
``S_l = 2 A_l^-1 - A_l^-1 X'X A_l^-1``. So all curves are scored under all
lambdas by one ``[N, 26] @ [26, 26 L]`` product, the winners' coefficients
come from one more small product per lambda, and G from ``C @ X'``; float64
throughout.

Where the result can differ from pyGAM: a lambda whose ``n - 1.4 * edof <= 0``
is not admissible and is skipped here (pyGAM would score it: its GCV
denominator changes sign there, so the score is meaningless). Every lambda
is admissible from about 37 checkpoints on; with fewer, only the smoother
ones are (``SplineSmoother.admissible``), and ``ldw metrics`` warns. With
fewer points than coefficients (26) pyGAM truncates its SVD, while this
solves the penalized system exactly: it has a unique solution at any n,
because the penalty and the diagonal loading make it positive definite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import BSpline

from ldw.errors import LdwError

DEFAULT_LAMS = np.logspace(-3, 3, 11)
N_SPLINES = 25
SPLINE_ORDER = 3
GCV_GAMMA = 1.4
RIDGE = float(np.sqrt(np.finfo(np.float64).eps))


@dataclass(frozen=True)
class SplineSmoother:
    """Everything that depends only on x: basis, penalty and per-lambda maps."""

    x: np.ndarray  # [n] float64, the shared x of every curve
    lams: np.ndarray  # [L] candidate smoothing strengths
    n_splines: int
    knots: np.ndarray  # full knot vector in the scaled [0, 1] coordinate
    lo: float  # data range that maps to [0, 1]
    hi: float
    basis: np.ndarray  # [n, n_splines + 1] model matrix (splines, then intercept)
    gram: np.ndarray  # [m, m] X'X
    inverses: np.ndarray  # [L, m, m] (X'X + lam P + ridge I)^-1 on the identifiable coefficients
    rss_forms: np.ndarray  # [m, L * m] the S_l side by side: RSS_l = y'y - b' S_l b
    edof: np.ndarray  # [L] trace of the hat matrix per lambda

    @property
    def n_coef(self) -> int:
        """Number of coefficients per curve (splines + intercept)."""
        return self.n_splines + 1

    @property
    def admissible(self) -> np.ndarray:
        """Which lambdas GCV can score: ``n - 1.4 * edof > 0`` (all of them from about 37 points on)."""
        return len(self.x) - GCV_GAMMA * self.edof > 0

    def hat_matrix(self, lam_index: int) -> np.ndarray:
        """Smoother (hat) matrix ``X (X'X + P)^-1 X'`` for one lambda, [n, n]."""
        return self.basis @ self.inverses[lam_index] @ self.basis.T

    def coef_map(self, lam_index: int) -> np.ndarray:
        """Matrix mapping a curve to its coefficients for one lambda, [m, n]."""
        return self.inverses[lam_index] @ self.basis.T


@dataclass(frozen=True)
class SmoothFit:
    """Per-curve result of :func:`fit_curves`."""

    coef: np.ndarray  # [N, m] float64 coefficients at the chosen lambda
    lam_index: np.ndarray  # [N] int, index into smoother.lams
    lam: np.ndarray  # [N] chosen lambda
    gcv: np.ndarray  # [N, L] GCV score per lambda (inf where not admissible)
    fitted: np.ndarray  # [N, n] smoothed values G at x


def _scaled(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scale = hi - lo if hi > lo else 1.0
    return (np.asarray(x, dtype=np.float64) - lo) / scale


def _knots(n_splines: int) -> np.ndarray:
    n_intervals = n_splines - SPLINE_ORDER
    step = 1.0 / n_intervals
    return np.arange(-SPLINE_ORDER, n_intervals + SPLINE_ORDER + 1) * step


def spline_basis(x: np.ndarray, knots: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Model matrix at ``x``: cubic B-splines (linear beyond [lo, hi]) and an intercept column."""
    u = _scaled(x, lo, hi)
    n_basis = len(knots) - SPLINE_ORDER - 1
    splines = BSpline(knots, np.eye(n_basis), SPLINE_ORDER, extrapolate=False)
    inside = np.clip(u, 0.0, 1.0)
    values = splines(inside)
    below, above = u < 0.0, u > 1.0
    if below.any() or above.any():
        slopes = splines.derivative()(np.array([0.0, 1.0]))
        values[below] += (u[below, None] - 0.0) * slopes[0]
        values[above] += (u[above, None] - 1.0) * slopes[1]
    return np.hstack([values, np.ones((len(u), 1))])


def difference_penalty(n_splines: int, order: int = 2) -> np.ndarray:
    """``D'D`` for the ``order``-th difference matrix of ``n_splines`` coefficients."""
    diff = np.diff(np.eye(n_splines), n=order, axis=0)
    return diff.T @ diff


def _penalized_inverse(system: np.ndarray) -> np.ndarray:
    """Inverse of ``X'X + lam P + ridge I`` restricted to the identifiable coefficients.

    The intercept duplicates the sum of the B-splines (partition of unity), so
    ``v = (1, ..., 1, -1)`` satisfies ``X v = 0`` and ``P v = 0`` and the system
    has eigenvalue ``ridge`` (~1.5e-8) along ``v``: a plain inverse loses about
    10 digits. ``X'y`` is orthogonal to ``v``, so the exact solution has no
    ``v`` component; inverting ``system + v v'`` and removing the ``v v'`` part
    gives the same solution from a well-conditioned matrix.
    """
    m = system.shape[0]
    v = np.ones(m)
    v[-1] = -1.0
    v /= np.linalg.norm(v)
    outer = np.outer(v, v)
    inverse = np.linalg.inv(system + outer)
    inverse -= outer / (1.0 + RIDGE)
    return 0.5 * (inverse + inverse.T)


def build_smoother(x: np.ndarray, lams: np.ndarray = DEFAULT_LAMS, n_splines: int = N_SPLINES) -> SplineSmoother:
    """Precompute basis, penalty and the per-lambda inverse maps for a shared x."""
    x = np.asarray(x, dtype=np.float64)
    lams = np.asarray(lams, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise LdwError(f"x must be 1-D with at least 2 points, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise LdwError("x has non-finite values (log10 of step 0?)")
    if n_splines < SPLINE_ORDER + 1:
        raise LdwError(f"n_splines must be >= {SPLINE_ORDER + 1}, got {n_splines}")
    if lams.ndim != 1 or len(lams) == 0 or np.any(lams <= 0):
        raise LdwError("lams must be a non-empty 1-D array of positive values")
    lo, hi = float(x.min()), float(x.max())
    knots = _knots(n_splines)
    basis = spline_basis(x, knots, lo, hi)
    m = basis.shape[1]
    gram = basis.T @ basis
    penalty = np.zeros((m, m))
    penalty[:n_splines, :n_splines] = difference_penalty(n_splines)
    inverses = np.stack([_penalized_inverse(gram + lam * penalty + RIDGE * np.eye(m)) for lam in lams])
    edof = np.einsum("lij,ji->l", inverses, gram)
    forms = 2.0 * inverses - inverses @ gram @ inverses
    return SplineSmoother(
        x=x,
        lams=lams,
        n_splines=n_splines,
        knots=knots,
        lo=lo,
        hi=hi,
        basis=basis,
        gram=gram,
        inverses=inverses,
        rss_forms=np.hstack(list(forms)),
        edof=edof,
    )


def gcv_scores(smoother: SplineSmoother, curves: np.ndarray) -> np.ndarray:
    """GCV score of every curve under every lambda, [N, L] (inf where ``n <= 1.4 edof``)."""
    y = _as_curves(smoother, curves)
    return _gcv_from_products(smoother, y, y @ smoother.basis)


def _gcv_from_products(smoother: SplineSmoother, y: np.ndarray, xty: np.ndarray) -> np.ndarray:
    n_lams, m = len(smoother.lams), smoother.n_coef
    yy = np.einsum("ij,ij->i", y, y)
    explained = np.einsum("nlj,nj->nl", (xty @ smoother.rss_forms).reshape(len(y), n_lams, m), xty)
    rss = np.maximum(yy[:, None] - explained, 0.0)
    denom = np.where(smoother.admissible, len(smoother.x) - GCV_GAMMA * smoother.edof, 1.0)
    return np.where(smoother.admissible, len(smoother.x) * rss / denom**2, np.inf)


def fit_curves(smoother: SplineSmoother, curves: np.ndarray) -> SmoothFit:
    """Smooth every row of ``curves`` [N, n] with its own GCV-chosen lambda."""
    y = _as_curves(smoother, curves)
    xty = y @ smoother.basis
    scores = _gcv_from_products(smoother, y, xty)
    best = np.argmin(scores, axis=1)
    best[~np.isfinite(scores).any(axis=1)] = len(smoother.lams) - 1
    coef = np.empty_like(xty)
    for index in np.unique(best):
        rows = best == index
        coef[rows] = xty[rows] @ smoother.inverses[index]
    return SmoothFit(
        coef=coef,
        lam_index=best,
        lam=smoother.lams[best],
        gcv=scores,
        fitted=coef @ smoother.basis.T,
    )


def evaluate(smoother: SplineSmoother, coef: np.ndarray, x_new: np.ndarray) -> np.ndarray:
    """Fitted curves at arbitrary ``x_new`` (linear beyond the data range), [N, len(x_new)]."""
    basis = spline_basis(np.asarray(x_new, dtype=np.float64), smoother.knots, smoother.lo, smoother.hi)
    return np.asarray(coef, dtype=np.float64) @ basis.T


def _as_curves(smoother: SplineSmoother, curves: np.ndarray) -> np.ndarray:
    y = np.asarray(curves, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != len(smoother.x):
        raise LdwError(f"curves must be [N, {len(smoother.x)}], got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        bad = int(np.flatnonzero(~np.isfinite(y).all(axis=1))[0])
        raise LdwError(f"curve {bad} has non-finite values")
    return y
