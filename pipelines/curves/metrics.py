"""Per-token learning-curve metrics of one run, and cross-run variability.

Definitions (Chang, Tu & Bergen 2023; for users in docs/methods.md):

* window: the checkpoints of the last ``window`` fraction of training steps
  (``step >= (1 - window) * max_step``), at most the last ``last_k`` of them.
  The defaults (25%, 11) select exactly the released code's last 11
  checkpoints on the authors' 222-checkpoint schedule (its last 11 lie in
  steps >= 764K, its last 25% from 736K holds 12); on sparse schedules the
  step rule keeps the window out of the steep part of the curves, on dense
  ones the cap keeps the released count.
* final surprisal: mean raw surprisal over the window;
  within-run variability: population std (ddof=0) over the window.
* G: the GAM-smoothed curve (:mod:`ldw.curves.gam`) fit on ``log10(step)`` over
  the checkpoints with ``step > 0`` (step 0 has no log).
* AoA: :func:`ldw.curves.aoa.gam_aoa` (optionally :mod:`ldw.curves.sigmoid`);
  ``acquired`` is False where G never gets below chance (AoA = last step).
* forgettability: ``sum_t max(0, G(t+1) - G(t))`` over consecutive checkpoints.
* cross-run variability: mean over run pairs of the mean over checkpoints of
  ``(G_a(t) - G_b(t))^2``, on the checkpoint steps (> 0) that all runs share.

Few checkpoints: G is the exact penalized fit at any number of points, but
GCV can score a lambda only while ``n > 1.4 * edof``; a line is never
penalized (edof >= 2), so at 3 points only lambda = 1000 is admissible and at
4 two are. Runs need :data:`MIN_POSITIVE_STEPS` = 4 (a choice of lambda) and
are flagged below :data:`ALL_LAMBDAS_STEPS` = 37 (not every lambda admissible)
and below 26 (fewer points than spline coefficients: G is held in shape by
the penalty and is close to a line in log step).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ldw.curves.aoa import N_GRID, AoaResult, gam_aoa
from ldw.curves.gam import DEFAULT_LAMS, N_SPLINES, SplineSmoother, build_smoother, fit_curves
from ldw.curves.sigmoid import SigmoidAoa, sigmoid_aoa
from ldw.errors import LdwError

WINDOW = 0.25
WINDOW_CHECKPOINTS = 11
MIN_WINDOW_CHECKPOINTS = 5
MIN_POSITIVE_STEPS = 4
ALL_LAMBDAS_STEPS = 37
BLOCK_TOKENS = 4096


def window_mask(steps: np.ndarray, window: float = WINDOW, last_k: int | None = WINDOW_CHECKPOINTS) -> np.ndarray:
    """Checkpoints with ``step >= (1 - window) * max_step`` that are among the last ``last_k`` (None: no cap)."""
    if not 0.0 < window <= 1.0:
        raise LdwError(f"window must be in (0, 1], got {window}")
    if last_k is not None and last_k < 1:
        raise LdwError(f"last_k must be at least 1 (or None), got {last_k}")
    steps = np.asarray(steps)
    mask = steps >= (1.0 - window) * steps.max()
    if last_k is not None:
        mask[: max(len(steps) - last_k, 0)] = False
    return mask


@dataclass(frozen=True)
class RunChecks:
    """What a run's checkpoints allow: window, positive steps, admissible lambdas, and warnings."""

    n_positive: int
    window_steps: list[int]
    admissible_lams: list[float]
    warnings: list[str]


def check_run(name: str, steps: np.ndarray, smoother: SplineSmoother, window: float, last_k: int | None) -> RunChecks:
    """Window and lambda facts of a run, with a warning for each rule its checkpoints fall short of."""
    steps = np.asarray(steps)
    in_window = [int(s) for s in steps[window_mask(steps, window, last_k)]]
    n_positive = len(smoother.x)
    lams = smoother.lams[smoother.admissible]
    notes = []
    if len(in_window) < MIN_WINDOW_CHECKPOINTS:
        notes.append(
            f"{name}: the final-surprisal window holds {len(in_window)} checkpoint(s), fewer than "
            f"{MIN_WINDOW_CHECKPOINTS}: final surprisal and within-run variability are noisy (the std is biased low)"
        )
    if n_positive < ALL_LAMBDAS_STEPS:
        shape = (
            f"; with fewer than {N_SPLINES + 1} the {N_SPLINES}-spline G is under-determined and close to a line"
            if n_positive <= N_SPLINES
            else ""
        )
        notes.append(
            f"{name}: {n_positive} checkpoints with step > 0, fewer than {ALL_LAMBDAS_STEPS}: GCV can choose lambda "
            f"only in [{lams.min():g}, {lams.max():g}] of [{smoother.lams.min():g}, {smoother.lams.max():g}]{shape}"
        )
    return RunChecks(n_positive, in_window, [float(v) for v in lams], notes)


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
    sigmoid_aoa: SigmoidAoa | None = None


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
    last_k: int | None = WINDOW_CHECKPOINTS,
    sigmoid: bool = False,
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
    in_window = values[:, window_mask(steps, window, last_k)].astype(np.float64)
    first = int(np.sum(steps == 0))  # steps ascend, so the positive ones are a suffix
    smoother = smoothers.get(steps[first:])
    n_tokens = values.shape[0]
    smoothed = np.empty((n_tokens, len(steps) - first))
    lam, forget = np.empty(n_tokens), np.empty(n_tokens)
    aoa_parts = []
    for lo in range(0, max(n_tokens, 1), BLOCK_TOKENS):  # one (empty) block when there are no tokens
        hi = min(n_tokens, lo + BLOCK_TOKENS)
        fit = fit_curves(smoother, values[lo:hi, first:])
        smoothed[lo:hi], lam[lo:hi] = fit.fitted, fit.lam
        forget[lo:hi] = forgettability(fit.fitted)
        aoa_parts.append(gam_aoa(smoother, fit.coef, chance, N_GRID))
    return RunMetrics(
        steps=steps[first:],
        final_surprisal=in_window.mean(axis=1),
        within_run_var=in_window.std(axis=1, ddof=0),
        aoa=AoaResult(*(np.concatenate([getattr(p, f) for p in aoa_parts]) for f in AoaResult.__dataclass_fields__)),
        forgettability=forget,
        lam=lam,
        smoothed=smoothed,
        sigmoid_aoa=sigmoid_aoa(smoother.x, values[:, first:], chance) if sigmoid else None,
    )


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
