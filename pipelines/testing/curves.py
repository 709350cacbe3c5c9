"""Synthetic learning curves on Chang et al.'s checkpoint schedule, and pyGAM's fit of one as a reference.

``synthetic_curves`` draws curves of the shapes real per-token surprisal
curves take (sigmoid descents from near chance, descents with a forgetting
bump, flat ones) plus noise, for tests and benchmarks of the curve metrics.
``pygam_reference`` needs pyGAM, a test-only dependency, and imports it only
when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pygam import LinearGAM

CHANCE = float(np.log2(50_000))  # chance level in bits of a 50,000-token vocabulary, where the curves start
REFERENCE_LAMS = np.logspace(-3, 3, 11)


def chang_steps(n_checkpoints: int = 222, max_step: int = 1_000_000) -> np.ndarray:
    """Step 0 plus ``n - 1`` log-spaced integer steps up to ``max_step`` (strictly increasing)."""
    raw = np.round(np.geomspace(1, max_step, n_checkpoints - 1)).astype(np.int64)
    for i in range(1, len(raw)):
        raw[i] = max(raw[i], raw[i - 1] + 1)
    return np.r_[0, raw]


def released_schedule(max_steps: int = 1_000_000, first: int = 100, at_quarter: int = 25_000) -> np.ndarray:
    """The checkpoint steps of Chang, Tu & Bergen (2023): 222 exponentially spaced steps from 0 to 981,536.

    Checkpoint ``n`` is at ``round(a * (exp(n * b) - 1))`` with ``b = (at_quarter - first) / max_steps`` and
    ``a = first / b``, for ``n = 0, 1, ...`` while the step is at most ``max_steps`` (so step 1M itself is not one).
    """
    rate = (at_quarter - first) / max_steps
    steps = [0]
    while (step := int(np.round(first / rate * np.expm1(len(steps) * rate)))) <= max_steps:
        steps.append(step)
    return np.array(steps, dtype=np.int64)


def synthetic_curves(steps: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Realistic surprisal curves [n, C] in bits: sigmoid descents, forgetting bumps, flat ones."""
    rng = np.random.default_rng(seed)
    x = np.log10(np.maximum(steps, 1)).astype(np.float64)
    kind = np.arange(n) % 4
    start = rng.uniform(CHANCE - 1.5, CHANCE + 0.5, n)
    end = rng.uniform(0.5, 9.0, n)
    xmid = rng.uniform(0.8, 5.0, n)
    scale = rng.uniform(0.1, 0.8, n)
    curves = end[:, None] + (start - end)[:, None] / (1.0 + np.exp((x[None] - xmid[:, None]) / scale[:, None]))
    bump = rng.uniform(1.0, 4.0, n)[:, None] * np.exp(-0.5 * ((x[None] - rng.uniform(3, 5.5, n)[:, None]) / 0.3) ** 2)
    curves[kind == 1] += bump[kind == 1]
    curves[kind == 2] = rng.uniform(3.0, 14.0, (kind == 2).sum())[:, None]
    noise = rng.uniform(0.1, 1.5, n)[:, None] * rng.standard_normal((n, len(steps)))
    return np.clip(curves + noise, 0.0, None).astype(np.float32)


def pygam_reference(x: np.ndarray, y: np.ndarray) -> tuple[LinearGAM, np.ndarray]:
    """pyGAM's gridsearch as in Chang et al.'s code, and its GCV score per lambda (needs pyGAM installed)."""
    try:
        from pygam import LinearGAM, s
    except ImportError as error:
        raise ImportError(
            "ldw.testing.pygam_reference needs pyGAM, a test-only dependency: "
            "pip install 'learning-dynamics-workbench[test]' (or pip install pygam)"
        ) from error
    gam = LinearGAM(s(0, n_splines=25))
    scores = gam.gridsearch(x[:, None], y, lam=REFERENCE_LAMS, progress=False, return_scores=True)
    return gam, np.array(list(scores.values()))
