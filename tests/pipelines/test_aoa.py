"""AoA: the GAM variant against pyGAM + the released loop; the sigmoid variant against the released formula_utils."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.optimize import curve_fit

from ldw.curves.aoa import chance_bits, first_crossing, gam_aoa
from ldw.curves.gam import build_smoother, fit_curves
from ldw.curves.sigmoid import aoa_from_fit, sigmoid_aoa
from ldw.errors import LdwError
from ldw.testing import CHANCE, chang_steps, pygam_reference, released_schedule, synthetic_curves


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


def released_sigmoid(x, start, end, xmid, scale):
    """formula_utils.sigmoid of the released code."""
    return start + (end - start) / (1.0 + np.exp((xmid - x) / scale))


def released_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """run_sigmoid_regression: curve_fit from [min y, max y, mean x, 1], ftol 1e-8 growing x10 after each failure."""
    ftol = 1e-8
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return curve_fit(
                    released_sigmoid, x, y, p0=[np.min(y), np.max(y), np.mean(x), 1.0], maxfev=1000000, ftol=ftol
                )[0]
        except RuntimeError:
            ftol *= 10.0


def released_sigmoid_aoa(x: np.ndarray, surprisals: np.ndarray, chance: float) -> tuple[float, float]:
    """compute_aoa_vals + get_aoa of the released code, one curve: (AoA, threshold in bits or -1)."""
    y = -surprisals
    start, end, xmid, scale = released_fit(x, y)
    ymin, ymax, xmin, xmax = -chance, np.max(y), np.min(x), np.max(x)
    threshold = ymin * 0.5 + ymax * 0.5
    if (
        (threshold >= start and threshold >= end)
        or ymin >= ymax
        or (end < start and scale > 0)
        or (end > start and scale < 0)
    ):
        return xmax, -1.0
    if threshold <= start and threshold <= end:
        return xmin, -1.0
    crossing = xmid - scale * np.log((end - start) / (threshold - start) - 1.0)
    if crossing < xmin:
        return xmin, -1.0
    if crossing > xmax:
        return xmax, -1.0
    return crossing, -threshold


RELEASED_X = np.log10(released_schedule()[1:].astype(np.float64))
RELEASED_CHANCE = float(np.log2(50004))


def test_sigmoid_aoa_equals_the_released_code_on_sampled_curves():
    """Descents and descents with a forgetting bump; flat curves (never learned) have no well-posed sigmoid.

    On a flat curve the optimum is decided by rounding, and with SciPy's C MINPACK
    even by where its work arrays lie in memory: the released code's own result
    changes between processes there, so only its range is checked.
    """
    sampled = synthetic_curves(released_schedule(), 64, seed=13)[:, 1:].astype(np.float64)
    flat = np.arange(len(sampled)) % 4 == 2  # synthetic_curves: every 4th curve is flat noise
    sampled[5] = RELEASED_CHANCE + 0.5 + 0.2 * np.sin(np.arange(len(RELEASED_X)))  # above chance throughout
    ours = sigmoid_aoa(RELEASED_X, sampled, RELEASED_CHANCE)
    expected = np.array([released_sigmoid_aoa(RELEASED_X, y, RELEASED_CHANCE) for y in sampled[~flat]])
    np.testing.assert_allclose(ours.log10_step[~flat], expected[:, 0], rtol=0, atol=1e-9)
    released_threshold = np.where(expected[:, 1] == -1.0, np.nan, expected[:, 1])
    np.testing.assert_allclose(ours.threshold[~flat], released_threshold, atol=1e-9)
    np.testing.assert_allclose(ours.step, 10.0**ours.log10_step)
    at_ends = np.isin(ours.log10_step[~flat], [RELEASED_X[0], RELEASED_X[-1]])
    assert 0 < at_ends.sum() < len(expected), "the sample must exercise both the analytic crossing and the end rules"
    assert ours.log10_step[5] == RELEASED_X[-1]
    assert np.all((ours.log10_step[flat] >= RELEASED_X[0]) & (ours.log10_step[flat] <= RELEASED_X[-1]))


@pytest.mark.parametrize(
    "curve, aoa, threshold, params",
    [
        ((4.0, 10.0, 3.5, 0.3), 3.4024150781, 9.8061123515, (14.0, 4.0, 3.5, 0.3)),  # a descent
        ((12.0, -4.0, 4.0, 0.3), RELEASED_X[-1], None, None),  # surprisal rises: never acquired
        ((3.0, 0.5, 4.0, 0.3), RELEASED_X[0], None, None),  # already below the threshold
        ((16.0, 0.5, 4.0, 0.3), RELEASED_X[-1], None, None),  # above chance everywhere
    ],
)
def test_sigmoid_aoa_worked_numbers_of_the_released_code(curve, aoa, threshold, params):
    """Chang et al.'s formula_utils run on s = base + height / (1 + exp((x - xmid) / scale)) (spec, section 3c)."""
    base, height, xmid, scale = curve
    s = base + height / (1.0 + np.exp((RELEASED_X - xmid) / scale))
    result = sigmoid_aoa(RELEASED_X, s[None], RELEASED_CHANCE)
    assert result.log10_step[0] == pytest.approx(aoa, abs=1e-9)
    if threshold is None:
        assert np.isnan(result.threshold[0])
    else:
        assert result.threshold[0] == pytest.approx(threshold, abs=1e-9)
        np.testing.assert_allclose(result.params[0], params, atol=1e-6)
        solved = xmid + scale * np.log(height / (threshold - base) - 1.0)
        assert result.log10_step[0] == pytest.approx(solved, abs=1e-6)


def test_sigmoid_aoa_rules_on_given_fits():
    """The precedence of the released rules, on hand-set sigmoids fitted to -surprisal."""
    x = np.linspace(2.0, 6.0, 9)
    curves = np.full((5, 9), 4.0)  # min raw surprisal 4, chance 16 -> threshold -10 in y
    params_y = np.array(
        [
            [-14.0, -4.0, 3.0, 0.5],  # rises in y through -10: analytic crossing
            [-9.0, -4.0, 3.0, 0.5],  # whole sigmoid above -10 in y: first x
            [-14.0, -11.0, 3.0, 0.5],  # never climbs to -10: last x
            [-4.0, -14.0, 3.0, 0.5],  # falls in y (surprisal rises): last x
            [-14.0, -4.0, -9.0, 0.5],  # crossing far left of the data: clipped to the first x
        ]
    )
    result = aoa_from_fit(x, curves, params_y, 16.0)
    crossing = 3.0 - 0.5 * np.log(10.0 / 4.0 - 1.0)
    np.testing.assert_allclose(result.log10_step, [crossing, 2.0, 6.0, 6.0, 2.0])
    np.testing.assert_allclose(result.threshold, [10.0, np.nan, np.nan, np.nan, np.nan])


def test_gam_aoa_flags_curves_that_never_get_below_chance():
    x = np.log10(chang_steps(60)[1:].astype(np.float64))
    curves = np.vstack([CHANCE + 1.0 - 0.1 * x, 14.0 - 2.0 * x, np.full(len(x), CHANCE - 1e-3)])
    smoother = build_smoother(x)
    result = gam_aoa(smoother, fit_curves(smoother, curves).coef, CHANCE)
    np.testing.assert_array_equal(result.acquired, [False, True, True])
    assert result.log10_step[0] == x[-1]


def test_chance_bits():
    assert chance_bits(50_000) == pytest.approx(15.609640474436812)
    with pytest.raises(LdwError, match="vocab_size"):
        chance_bits(1)
