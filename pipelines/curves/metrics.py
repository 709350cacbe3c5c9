"""Per-token learning-curve metrics of one run, and cross-run variability.

Definitions (Chang, Tu & Bergen 2023; for users in docs/methods.md):

* window: the checkpoints in the last ``window`` fraction of training steps,
  training counted from step 0: ``step >= (1 - window) * max_step``. With
  log-spaced checkpoints this is a few checkpoints, not a quarter of them; the
  last checkpoint is always inside.
* final surprisal: mean raw surprisal over the window;
  within-run variability: population std (ddof=0) over the window.
* G: the GAM-smoothed curve (:mod:`ldw.curves.gam`) fit on ``log10(step)`` over
  the checkpoints with ``step > 0`` (step 0 has no log).
* AoA: :func:`ldw.curves.aoa.gam_aoa` (optionally the sigmoid variant).
* forgettability: ``sum_t max(0, G(t+1) - G(t))`` over consecutive checkpoints.
* cross-run variability: mean over run pairs of the mean over checkpoints of
  ``(G_a(t) - G_b(t))^2``, on the checkpoint steps (> 0) that all runs share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ldw.curves.aoa import N_GRID, AoaResult, fit_sigmoids, gam_aoa, sigmoid_aoa
from ldw.curves.gam import DEFAULT_LAMS, N_SPLINES, SplineSmoother, build_smoother, fit_curves
from ldw.errors import LdwError

WINDOW = 0.25
MIN_POSITIVE_STEPS = 4
BLOCK_TOKENS = 4096


def window_mask(steps: np.ndarray, window: float = WINDOW) -> np.ndarray:
    """Checkpoints in the last ``window`` fraction of training: ``step >= (1 - window) * max_step``."""
    if not 0.0 < window <= 1.0:
        raise LdwError(f"window must be in (0, 1], got {window}")
    steps = np.asarray(steps)
    return steps >= (1.0 - window) * steps.max()


def forgettability(smoothed: np.ndarray) -> np.ndarray:
    """Total rise of each smoothed curve: ``sum_t max(0, G[t+1] - G[t])`` over rows of [N, n]."""
    rises = np.diff(smoothed, axis=1)
    np.maximum(rises, 0.0, out=rises)
    return rises.sum(axis=1)


def validate_curves(steps: np.ndarray, values: np.ndarray, source: str) -> None:
    """Raise :class:`LdwError` (naming ``source``) unless steps/values are usable."""
    steps = np.asarray(steps)
    if steps.ndim != 1 or values.ndim != 2 or values.shape[1] != len(steps):
        raise LdwError(f"{source}: values shape {values.shape} does not match {len(steps)} steps")
    if len(steps) and (np.any(steps < 0) or np.any(np.diff(steps) <= 0)):
        raise LdwError(f"{source}: steps must be non-negative and strictly ascending")
    if int(np.sum(steps > 0)) < MIN_POSITIVE_STEPS:
        raise LdwError(
            f"{source}: {int(np.sum(steps > 0))} checkpoints with step > 0; the GAM needs at least {MIN_POSITIVE_STEPS}"
        )
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        raise LdwError(f"{source}: token row {int(np.flatnonzero(~finite)[0])} has non-finite surprisal")


@dataclass(frozen=True)
class RunMetrics:
    """Metrics of one run for a block of tokens."""

    steps: np.ndarray  # [n] the positive steps G is given at
    final_surprisal: np.ndarray  # [T]
    within_run_var: np.ndarray  # [T]
    aoa: AoaResult
    forgettability: np.ndarray  # [T]
    lam: np.ndarray  # [T] chosen smoothing strength
    smoothed: np.ndarray  # [T, n] G at the positive steps
    sigmoid_aoa: AoaResult | None = None


@dataclass
class SmootherCache:
    """Smoothers keyed by their step grid, so a pipeline builds each once."""

    lams: np.ndarray = field(default_factory=lambda: DEFAULT_LAMS.copy())
    n_splines: int = N_SPLINES
    _cache: dict[tuple[int, ...], SplineSmoother] = field(default_factory=dict)

    def get(self, positive_steps: np.ndarray) -> SplineSmoother:
        """Smoother on ``log10(positive_steps)`` (built on first use)."""
        key = tuple(int(s) for s in positive_steps)
        if key not in self._cache:
            self._cache[key] = build_smoother(
                np.log10(np.asarray(positive_steps, dtype=np.float64)), self.lams, self.n_splines
            )
        return self._cache[key]


def run_metrics(
    steps: np.ndarray,
    values: np.ndarray,
    chance: float,
    window: float = WINDOW,
    sigmoid: bool = False,
    n_grid: int = N_GRID,
    smoothers: SmootherCache | None = None,
    source: str = "surprisal matrix",
) -> RunMetrics:
    """All per-token metrics of one run from ``values`` [T, C] (bits) at ascending ``steps`` [C].

    Tokens are processed ``BLOCK_TOKENS`` at a time so the float64 temporaries
    stay small and are reused (large fresh arrays cost page faults).
    """
    steps = np.asarray(steps, dtype=np.int64)
    validate_curves(steps, values, source)
    smoothers = smoothers or SmootherCache()
    in_window = values[:, window_mask(steps, window)].astype(np.float64)
    first = int(np.sum(steps == 0))  # steps ascend, so the positive ones are a suffix
    smoother = smoothers.get(steps[first:])
    n_tokens = values.shape[0]
    smoothed = np.empty((n_tokens, len(steps) - first))
    lam, forget = np.empty(n_tokens), np.empty(n_tokens)
    aoa_parts, sigmoid_parts = [], []
    for lo in range(0, n_tokens, BLOCK_TOKENS):
        hi = min(n_tokens, lo + BLOCK_TOKENS)
        block = values[lo:hi, first:]
        fit = fit_curves(smoother, block)
        smoothed[lo:hi], lam[lo:hi] = fit.fitted, fit.lam
        forget[lo:hi] = forgettability(fit.fitted)
        aoa_parts.append(gam_aoa(smoother, fit.coef, chance, n_grid))
        if sigmoid:
            params = fit_sigmoids(smoother.x, block).params
            sigmoid_parts.append(sigmoid_aoa(smoother.x, params, chance, n_grid))
    return RunMetrics(
        steps=steps[first:],
        final_surprisal=in_window.mean(axis=1),
        within_run_var=in_window.std(axis=1, ddof=0),
        aoa=_concat(aoa_parts),
        forgettability=forget,
        lam=lam,
        smoothed=smoothed,
        sigmoid_aoa=_concat(sigmoid_parts) if sigmoid else None,
    )


def _concat(parts: list[AoaResult]) -> AoaResult:
    if not parts:
        return AoaResult(log10_step=np.empty(0), step=np.empty(0), threshold=np.empty(0))
    names = ("log10_step", "step", "threshold")
    return AoaResult(*(np.concatenate([getattr(p, name) for p in parts]) for name in names))


def common_steps(step_sets: list[np.ndarray]) -> np.ndarray:
    """Positive steps present in every run (sorted); error if there are none."""
    if not step_sets:
        raise LdwError("no runs to compare")
    shared = np.asarray(step_sets[0])
    for steps in step_sets[1:]:
        shared = np.intersect1d(shared, steps)
    shared = shared[shared > 0]
    if shared.size == 0:
        raise LdwError("the runs share no checkpoint step > 0; cross-run variability needs common steps")
    return shared


class CrossRunAccumulator:
    """Cross-run variability, one run at a time, keeping two curves per token in memory.

    With ``d_a = G_a - G_first`` (differences to the first run, so identical
    runs give exactly zero and nothing cancels at the scale of G itself),
    ``sum_t sum_{a<b} (d_a - d_b)^2 = R * sum_a sum_t d_a^2 - sum_t (sum_a d_a)^2``:
    the first term is reduced over t as each run arrives, only ``sum_a d_a``
    is kept per (token, step).
    """

    def __init__(self, steps: np.ndarray) -> None:
        self.steps = np.asarray(steps)
        self.n_runs = 0
        self._first: np.ndarray | None = None
        self._sum: np.ndarray | None = None
        self._sum_sq: np.ndarray | None = None

    def add(self, run_steps: np.ndarray, smoothed: np.ndarray) -> None:
        """Add one run's G [T, len(run_steps)]; only the shared steps are used."""
        run_steps = np.asarray(run_steps)
        columns = np.minimum(np.searchsorted(run_steps, self.steps), len(run_steps) - 1)
        if np.any(run_steps[columns] != self.steps):
            raise LdwError("a run lacks some of the shared checkpoint steps")
        g = np.asarray(smoothed, dtype=np.float64)
        if len(columns) != g.shape[1]:
            g = g[:, columns]
        if self._first is None:
            self._first = g
            self._sum_sq = np.zeros(g.shape[0])
        else:
            if g.shape != self._first.shape:
                raise LdwError(f"run has {g.shape[0]} tokens, the first run {self._first.shape[0]}")
            d = np.subtract(g, self._first)
            self._sum_sq += np.einsum("ij,ij->i", d, d)
            if self._sum is None:
                self._sum = d
            else:
                self._sum += d
        self.n_runs += 1

    def result(self) -> np.ndarray:
        """Mean over run pairs of the mean squared difference of G; NaN with fewer than 2 runs."""
        if self._first is None:
            raise LdwError("no runs added")
        if self._sum is None:
            return np.full(self._first.shape[0], np.nan)
        pair_sum = self.n_runs * self._sum_sq - np.einsum("ij,ij->i", self._sum, self._sum)
        n_pairs = self.n_runs * (self.n_runs - 1) / 2
        return np.maximum(pair_sum, 0.0) / (self._first.shape[1] * n_pairs)
