"""Age of acquisition (AoA) from GAM-smoothed learning curves.

Threshold rule (Chang, Tu & Bergen 2023, released code ``get_gam_aoas``):
evaluate the smoothed curve G on ``n_grid`` evenly spaced log10 steps over the
data range; the threshold is ``(1 - p) * chance + p * min(G on the grid)``
with ``p = 0.5`` and ``chance = log2(V)``; AoA is the first grid x where G is
``<=`` the threshold, or the last x when the threshold is not below chance
(G never gets below chance: the token is never acquired). The sigmoid AoA is
in :mod:`ldw.curves.sigmoid`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ldw.curves.gam import SplineSmoother, spline_basis
from ldw.errors import LdwError

N_GRID = 1000
PROPORTION = 0.5
EVAL_BLOCK = 2048  # curves evaluated on the grid at a time (keeps the block in cache)


@dataclass(frozen=True)
class AoaResult:
    """AoA per curve: log10 step, step, the surprisal threshold used, and whether the curve was acquired."""

    log10_step: np.ndarray  # [N]
    step: np.ndarray  # [N], 10 ** log10_step
    threshold: np.ndarray  # [N] bits
    acquired: np.ndarray  # [N] bool: min G below chance (threshold < chance); else AoA is the last step by rule


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


def gam_aoa(smoother: SplineSmoother, coef: np.ndarray, chance: float, n_grid: int = N_GRID) -> AoaResult:
    """AoA of GAM-smoothed curves given their coefficients ``coef`` [N, m], ``EVAL_BLOCK`` curves at a time."""
    grid = aoa_grid(smoother.x, n_grid)
    basis_t = np.ascontiguousarray(spline_basis(grid, smoother.knots, smoother.lo, smoother.hi).T)
    coef = np.asarray(coef, dtype=np.float64)
    aoa, threshold = np.empty(len(coef)), np.empty(len(coef))
    for lo in range(0, len(coef), EVAL_BLOCK):
        hi = min(len(coef), lo + EVAL_BLOCK)
        aoa[lo:hi], threshold[lo:hi] = first_crossing(coef[lo:hi] @ basis_t, grid, chance)
    return AoaResult(log10_step=aoa, step=10.0**aoa, threshold=threshold, acquired=threshold < chance)
