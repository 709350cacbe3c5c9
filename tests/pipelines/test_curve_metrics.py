"""Per-run metrics, forgettability, the window rule and cross-run variability."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ldw.curves.metrics import (
    CrossRunAccumulator,
    SmootherCache,
    common_steps,
    forgettability,
    run_metrics,
    window_mask,
)
from ldw.errors import LdwError
from ldw.testing import CHANCE, chang_steps, pygam_reference, synthetic_curves


def test_window_on_log_spaced_steps_counts_training_steps_not_checkpoints():
    powers = np.r_[0, 2 ** np.arange(11)]  # 0, 1, 2, ..., 1024
    np.testing.assert_array_equal(powers[window_mask(powers, 0.25)], [1024])
    np.testing.assert_array_equal(powers[window_mask(powers, 0.5)], [512, 1024])
    pythia = np.r_[0, 2 ** np.arange(10), np.arange(1000, 10_001, 1000)]
    np.testing.assert_array_equal(pythia[window_mask(pythia, 0.25)], [8000, 9000, 10_000])
    assert window_mask(pythia, 1.0).all()
    steps = chang_steps()
    assert steps[window_mask(steps)].min() >= 750_000 and window_mask(steps).sum() == 5
    with pytest.raises(LdwError, match="window"):
        window_mask(pythia, 0.0)


def test_final_surprisal_and_within_run_variability_over_the_window():
    steps = np.array([0, 1, 2, 4, 8, 600, 700, 800])
    values = np.array([[15, 14, 12, 9, 7, 3.0, 5.0, 4.0]], dtype=np.float32)
    m = run_metrics(steps, values, CHANCE, window=0.25)  # steps >= 600
    assert m.final_surprisal[0] == pytest.approx(4.0)
    assert m.within_run_var[0] == pytest.approx(np.sqrt(2.0 / 3.0))
    np.testing.assert_array_equal(m.steps, steps[1:])


def test_forgettability_on_given_curves():
    decreasing = np.array([9.0, 7.0, 7.0, 4.0, 1.0])
    bumpy = np.array([5.0, 4.0, 6.0, 3.0, 3.5, 3.5])
    np.testing.assert_allclose(forgettability(np.vstack([decreasing, decreasing[::-1]])), [0.0, 8.0])
    assert forgettability(bumpy[None])[0] == pytest.approx(2.0 + 0.5)


def test_forgettability_of_smoothed_linear_curves_is_exact():
    """A curve linear in log10(step) is in the penalty's null space: G equals it at any lambda.

    Up to pyGAM's diagonal loading sqrt(eps) * I, which shrinks the slope by ~1e-7.
    """
    steps = chang_steps(60)
    x = np.log10(steps[1:].astype(np.float64))
    values = np.vstack([np.r_[15.0, 14.0 - 1.5 * x], np.r_[4.0, 4.0 + 0.5 * x]]).astype(np.float64)
    m = run_metrics(steps, values, CHANCE)
    assert m.forgettability[0] == pytest.approx(0.0, abs=1e-9)
    assert m.forgettability[1] == pytest.approx(0.5 * (x[-1] - x[0]), rel=1e-6)


def test_run_metrics_smoothing_and_forgettability_match_pygam():
    steps = chang_steps(160)
    values = synthetic_curves(steps, 8, seed=21)
    m = run_metrics(steps, values, CHANCE)
    x = np.log10(steps[1:].astype(np.float64))
    for i in (0, 1, 5):  # a descent, a bump, another bump
        gam, _ = pygam_reference(x, values[i, 1:].astype(np.float64))
        reference = gam.predict(x[:, None])
        np.testing.assert_allclose(m.smoothed[i], reference, atol=1e-9)
        assert m.forgettability[i] == pytest.approx(np.clip(np.diff(reference), 0, None).sum(), abs=1e-8)
        assert m.lam[i] == pytest.approx(gam.lam[0][0])
    assert m.forgettability[1] > 0.5 and m.forgettability[5] > 0.5
    assert m.sigmoid_aoa is None


def test_run_metrics_with_sigmoid_reports_both_aoas():
    steps = chang_steps(100)
    m = run_metrics(steps, synthetic_curves(steps, 4, seed=2), CHANCE, sigmoid=True)
    assert m.sigmoid_aoa is not None
    assert np.all((m.sigmoid_aoa.log10_step >= 0) & (m.sigmoid_aoa.log10_step <= 6))
    np.testing.assert_allclose(m.sigmoid_aoa.step, 10.0**m.sigmoid_aoa.log10_step)


def brute_force_crossrun(curves: list[np.ndarray]) -> np.ndarray:
    pairs = list(itertools.combinations(range(len(curves)), 2))
    return np.mean([np.mean((curves[a] - curves[b]) ** 2, axis=1) for a, b in pairs], axis=0)


def test_crossrun_variability_hand_case_and_identical_runs():
    steps = np.array([1, 10, 100])
    runs = [np.array([[1.0, 2.0, 3.0]]), np.array([[1.0, 2.0, 5.0]]), np.array([[4.0, 2.0, 3.0]])]
    # pairs: (a,b) -> mean([0,0,4]) = 4/3; (a,c) -> mean([9,0,0]) = 3; (b,c) -> mean([9,0,4]) = 13/3
    acc = CrossRunAccumulator(steps)
    for g in runs:
        acc.add(steps, g)
    assert acc.result()[0] == pytest.approx((4 / 3 + 3 + 13 / 3) / 3)
    same = CrossRunAccumulator(steps)
    g = np.random.default_rng(0).normal(8, 3, (5, 3))
    for _ in range(4):
        same.add(steps, g)
    np.testing.assert_array_equal(same.result(), np.zeros(5))


def test_crossrun_uses_the_shared_steps_only():
    rng = np.random.default_rng(1)
    steps_a, steps_b = np.array([1, 2, 4, 8, 16]), np.array([1, 4, 16, 32])
    shared = common_steps([np.r_[0, steps_a], steps_b])
    np.testing.assert_array_equal(shared, [1, 4, 16])
    g_a, g_b, g_c = rng.normal(size=(3, 6, 5))
    acc = CrossRunAccumulator(shared)
    acc.add(steps_a, g_a)
    acc.add(steps_b, g_b[:, :4])
    acc.add(steps_a, g_c)
    expected = brute_force_crossrun([g_a[:, [0, 2, 4]], g_b[:, [0, 1, 2]], g_c[:, [0, 2, 4]]])
    np.testing.assert_allclose(acc.result(), expected, rtol=1e-12)
    single = CrossRunAccumulator(shared)
    single.add(steps_a, g_a)
    assert np.isnan(single.result()).all()
    with pytest.raises(LdwError, match="share no checkpoint"):
        common_steps([np.array([0, 1, 2]), np.array([0, 3])])


def test_bad_inputs_name_the_source():
    cache = SmootherCache()
    with pytest.raises(LdwError, match="run x: 3 checkpoints with step > 0"):
        run_metrics(np.array([0, 1, 2, 3]), np.zeros((2, 4)), CHANCE, smoothers=cache, source="run x")
    with pytest.raises(LdwError, match="strictly ascending"):
        run_metrics(np.array([1, 3, 2, 4, 5]), np.zeros((2, 5)), CHANCE, smoothers=cache)
    values = np.zeros((3, 6))
    values[2, 4] = np.nan
    with pytest.raises(LdwError, match="token row 2 has non-finite"):
        run_metrics(np.arange(6), values, CHANCE, smoothers=cache)
