"""Per-run metrics, forgettability, the window rule and cross-run variability."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ldw.curves.metrics import (
    WINDOW,
    CrossRunAccumulator,
    SmootherCache,
    check_run,
    common_steps,
    forgettability,
    run_metrics,
    window_mask,
)
from ldw.curves.sigmoid import sigmoid_aoa
from ldw.errors import LdwError
from ldw.testing import CHANCE, chang_steps, pygam_reference, released_schedule, synthetic_curves


def test_default_window_is_the_released_last_11_checkpoints_on_the_authors_schedule():
    steps = released_schedule()
    assert len(steps) == 222 and steps[-1] == 981_536
    np.testing.assert_array_equal(steps[window_mask(steps)], steps[-11:])  # annotator.py: [:, -last_n:], last_n=11
    assert steps[-11] == 764_301 and steps[-12] >= 0.75 * steps[-1]  # the step rule alone would hold 12


def test_window_rule_on_other_schedules():
    powers = np.r_[0, 2 ** np.arange(11)]  # 0, 1, 2, ..., 1024: the step rule bounds the window
    np.testing.assert_array_equal(powers[window_mask(powers)], [1024])
    np.testing.assert_array_equal(powers[window_mask(powers, 0.5)], [512, 1024])
    dense = np.arange(0, 100_001, 1000)  # 101 evenly spaced: the cap keeps the released count
    np.testing.assert_array_equal(dense[window_mask(dense)], np.arange(90_000, 100_001, 1000))
    np.testing.assert_array_equal(dense[window_mask(dense, last_k=None)], np.arange(75_000, 100_001, 1000))
    pythia = np.r_[0, 2 ** np.arange(10), np.arange(1000, 10_001, 1000)]
    np.testing.assert_array_equal(pythia[window_mask(pythia, 1.0, last_k=4)], [7000, 8000, 9000, 10_000])
    assert window_mask(pythia, 1.0, None).all()
    with pytest.raises(LdwError, match="window"):
        window_mask(pythia, 0.0)
    with pytest.raises(LdwError, match="last_k"):
        window_mask(pythia, 0.5, 0)


def test_final_surprisal_and_within_run_variability_over_the_window():
    steps = np.array([0, 1, 2, 4, 8, 600, 700, 800])
    values = np.array([[15, 14, 12, 9, 7, 3.0, 5.0, 4.0]], dtype=np.float32)
    m = run_metrics(steps, values, CHANCE, window=0.25)  # steps >= 600
    assert m.final_surprisal[0] == pytest.approx(4.0)
    assert m.within_run_var[0] == pytest.approx(np.sqrt(2.0 / 3.0))
    m = run_metrics(steps, values, CHANCE, window=1.0, last_k=2)  # the last 2 checkpoints
    assert m.final_surprisal[0] == pytest.approx(4.5) and m.within_run_var[0] == pytest.approx(0.5)
    np.testing.assert_array_equal(m.steps, steps[1:])


def test_run_checks_warn_about_short_windows_and_few_checkpoints():
    cache = SmootherCache()
    released = released_schedule()
    full = check_run("run a", released, cache.get(released[1:]), WINDOW, 11)
    assert full.warnings == [] and full.n_positive == 221 and len(full.window_steps) == 11
    assert full.admissible_lams == pytest.approx(list(np.logspace(-3, 3, 11)))
    sparse = chang_steps(21, max_step=5_000)  # 20 positive log-spaced checkpoints: few in the last quarter
    few = check_run("run b", sparse, cache.get(sparse[1:]), WINDOW, 11)
    assert few.n_positive == 20 and len(few.window_steps) < 5
    window_note, lambda_note = few.warnings
    assert window_note.startswith(f"run b: the final-surprisal window holds {len(few.window_steps)} checkpoint(s)")
    assert "20 checkpoints with step > 0, fewer than 37" in lambda_note and "under-determined" in lambda_note
    smoother = cache.get(sparse[1:])
    edof = smoother.edof[np.searchsorted(smoother.lams, few.admissible_lams)]
    assert np.all(20 - 1.4 * edof > 0) and min(few.admissible_lams) > 1e-3
    assert f"[{min(few.admissible_lams):g}, 1000]" in lambda_note
    middle = chang_steps(31, max_step=10**6)  # 30 positive: not under-determined, but not every lambda either
    (note,) = check_run("c", middle, cache.get(middle[1:]), 1.0, 11).warnings
    assert "fewer than 37" in note and "under-determined" not in note


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
    values = synthetic_curves(steps, 4, seed=2)
    m = run_metrics(steps, values, CHANCE, sigmoid=True)
    x = np.log10(steps[1:].astype(np.float64))
    expected = sigmoid_aoa(x, values[:, 1:], CHANCE)
    np.testing.assert_array_equal(m.sigmoid_aoa.log10_step, expected.log10_step)
    assert np.all((m.sigmoid_aoa.log10_step >= x[0]) & (m.sigmoid_aoa.log10_step <= x[-1]))


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
