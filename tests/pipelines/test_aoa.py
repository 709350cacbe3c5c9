"""AoA: the GAM variant against pyGAM + the released code's loop; the sigmoid variant against curve_fit."""

from __future__ import annotations

import numpy as np
import pytest

from ldw.curves.aoa import (
    chance_bits,
    first_crossing,
    fit_sigmoid_scipy,
    fit_sigmoids,
    gam_aoa,
    sigmoid,
    sigmoid_aoa,
)
from ldw.curves.gam import build_smoother, fit_curves
from ldw.errors import LdwError
from ldw.testing import CHANCE, chang_steps, pygam_reference, synthetic_curves


def reference_gam_aoa(x: np.ndarray, y: np.ndarray, chance: float) -> tuple[float, float]:
    """Chang et al.'s get_gam_aoas for one curve: pyGAM gridsearch, 1000-point grid, first crossing."""
    gam, _ = pygam_reference(x, y)
    grid = np.linspace(x[0], x[-1], num=1000, endpoint=True)
    curve = gam.predict(grid[:, None])
    threshold = chance * 0.5 + np.min(curve) * 0.5
    if threshold >= chance:
        return x[-1], threshold
    for step_i, log10_step in enumerate(grid):
        if curve[step_i] <= threshold:
            return log10_step, threshold
    raise AssertionError("threshold above the minimum must be crossed")


def test_gam_aoa_matches_pygam_reference():
    steps = chang_steps()
    x = np.log10(steps[1:].astype(np.float64))
    curves = synthetic_curves(steps, 24, seed=11)[:, 1:].astype(np.float64)
    curves[3] = CHANCE + 1.0 + 0.1 * np.sin(np.arange(len(x)))  # never below chance
    smoother = build_smoother(x)
    result = gam_aoa(smoother, fit_curves(smoother, curves).coef, CHANCE)
    for i, y in enumerate(curves):
        aoa, threshold = reference_gam_aoa(x, y, CHANCE)
        assert result.log10_step[i] == pytest.approx(aoa, abs=1e-12), f"curve {i}"
        assert result.threshold[i] == pytest.approx(threshold, abs=1e-8)
    assert result.log10_step[3] == x[-1]
    np.testing.assert_allclose(result.step, 10.0**result.log10_step)
    assert len(np.unique(result.log10_step)) > 10


def test_first_crossing_rule_on_hand_made_curves():
    grid = np.arange(5.0)
    values = np.array(
        [
            [16.0, 12.0, 8.0, 4.0, 2.0],  # min 2 -> threshold 9 -> first <= 9 at x=2
            [17.0, 16.5, 16.2, 16.1, 16.0],  # never below chance -> last x
            [3.0, 5.0, 7.0, 9.0, 11.0],  # only rises: the minimum is at the start
            [16.0, 9.0, 9.0, 2.0, 2.0],  # equality counts as crossed
        ]
    )
    aoa, threshold = first_crossing(values, grid, chance=16.0)
    np.testing.assert_array_equal(aoa, [2.0, 4.0, 0.0, 1.0])
    np.testing.assert_allclose(threshold, [9.0, 16.0, 9.5, 9.0])


def well_posed_sigmoids(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.log10(chang_steps()[1:].astype(np.float64))
    truth = np.column_stack(
        [rng.uniform(13, 16, n), rng.uniform(1, 9, n), rng.uniform(1.5, 4.5, n), rng.uniform(0.15, 0.8, n)]
    )
    clean = sigmoid(x[None], *(truth[:, i : i + 1] for i in range(4)))
    return x, truth, clean + rng.normal(0.0, 0.6, clean.shape)


def test_batched_sigmoid_fit_matches_curve_fit():
    x, _, curves = well_posed_sigmoids(30, seed=2)
    batched = fit_sigmoids(x, curves, ftol=1e-12)
    reference = np.array([fit_sigmoid_scipy(x, y, ftol=1e-12, xtol=1e-12) for y in curves])
    np.testing.assert_allclose(batched.params, reference, rtol=1e-5, atol=1e-6)
    ours, theirs = sigmoid_aoa(x, batched.params, CHANCE), sigmoid_aoa(x, reference, CHANCE)
    np.testing.assert_allclose(ours.log10_step, theirs.log10_step, atol=1e-12)
    assert not batched.refitted.any()


def test_sigmoid_aoa_of_flat_curves_matches_curve_fit():
    """Flat curves make the sigmoid ill-posed (many optima); the AoA must still agree."""
    rng = np.random.default_rng(4)
    x = np.log10(chang_steps(120)[1:].astype(np.float64))
    curves = rng.uniform(4, 12, (12, 1)) + rng.normal(0, 0.8, (12, len(x)))
    batched = fit_sigmoids(x, curves)
    reference = np.array([fit_sigmoid_scipy(x, y) for y in curves])
    spacing = (x[-1] - x[0]) / 999
    diff = np.abs(sigmoid_aoa(x, batched.params, CHANCE).log10_step - sigmoid_aoa(x, reference, CHANCE).log10_step)
    assert np.all(diff <= spacing * 1.0001)


def test_unconverged_curves_are_refitted_with_curve_fit():
    x, _, curves = well_posed_sigmoids(4, seed=9)
    fit = fit_sigmoids(x, curves, max_iter=1)
    assert fit.refitted.all()
    np.testing.assert_array_equal(fit.params, np.array([fit_sigmoid_scipy(x, y) for y in curves]))


def test_sigmoid_aoa_sits_at_the_analytic_crossing():
    x = np.linspace(0.0, 6.0, 50)
    params = np.array([[16.0, 2.0, 3.0, 0.4], [15.0, 6.0, 1.0, 0.2]])
    result = sigmoid_aoa(x, params, chance=16.0)
    grid = np.linspace(0.0, 6.0, 1000)
    for i, (start, end, xmid, scale) in enumerate(params):
        threshold = 0.5 * 16.0 + 0.5 * sigmoid(grid, start, end, xmid, scale).min()
        crossing = xmid - scale * np.log((end - start) / (threshold - start) - 1.0)
        assert result.threshold[i] == pytest.approx(threshold)
        assert crossing <= result.log10_step[i] <= crossing + (grid[1] - grid[0])


def test_chance_bits():
    assert chance_bits(50_000) == pytest.approx(15.609640474436812)
    with pytest.raises(LdwError, match="vocab_size"):
        chance_bits(1)
