"""The vectorized GAM smoother against pyGAM's LinearGAM gridsearch, curve by curve.

Tolerance: the same model is solved two ways (pyGAM: QR + SVD per curve;
here: one inverse per lambda, shared by all curves), so fitted values and GCV
scores agree to float64 round-off (asserted: 1e-9 bits, 1e-9 relative); the
chosen lambda is identical unless two GCV scores tie within 1e-9 (relative).
"""

from __future__ import annotations

import numpy as np
import pytest
from pygam import LinearGAM, s

from ldw.curves.gam import DEFAULT_LAMS, RIDGE, build_smoother, difference_penalty, evaluate, fit_curves, gcv_scores
from ldw.errors import LdwError
from ldw.testing import chang_steps, pygam_reference, synthetic_curves


@pytest.fixture(scope="module")
def sample():
    steps = chang_steps()
    x = np.log10(steps[1:].astype(np.float64))
    curves = synthetic_curves(steps, 32, seed=3)[:, 1:]
    smoother = build_smoother(x)
    return x, curves.astype(np.float64), smoother, fit_curves(smoother, curves)


@pytest.fixture(scope="module")
def references(sample):
    x, curves, _, _ = sample
    return [pygam_reference(x, y) for y in curves]


def test_basis_and_penalty_match_pygam(sample):
    x, curves, smoother, _ = sample
    gam = LinearGAM(s(0, n_splines=25)).fit(x[:, None], curves[0])
    np.testing.assert_allclose(smoother.basis, gam._modelmat(x[:, None]).toarray(), atol=1e-12)
    penalty = gam._P().toarray() / gam.lam[0][0]
    np.testing.assert_allclose(penalty[:25, :25], difference_penalty(25), atol=1e-12)
    assert penalty[25, 25] == 0.0 and pytest.approx(np.sqrt(np.finfo(float).eps)) == RIDGE


def test_gcv_scores_and_fitted_values_match_pygam(sample, references):
    x, curves, _, fit = sample
    for i, (gam, scores) in enumerate(references):
        np.testing.assert_allclose(fit.gcv[i], scores, rtol=1e-9)
        np.testing.assert_allclose(fit.fitted[i], gam.predict(x[:, None]), atol=1e-9)


def test_chosen_lambda_matches_pygam_except_ties(sample, references):
    _, _, _, fit = sample
    compared = 0
    for i, (gam, scores) in enumerate(references):
        ordered = np.sort(scores)
        if ordered[1] - ordered[0] > 1e-9 * ordered[0]:
            assert fit.lam[i] == pytest.approx(gam.lam[0][0], rel=1e-12), f"curve {i}"
            compared += 1
    assert compared >= 0.9 * len(references)
    assert len(set(fit.lam_index.tolist())) > 2, "sample should exercise several lambdas"


def test_evaluate_matches_pygam_predict_inside_and_beyond_range(sample, references):
    x, _, smoother, fit = sample
    grid = np.linspace(x.min() - 1.0, x.max() + 1.0, 333)
    ours = evaluate(smoother, fit.coef, grid)
    for i, (gam, _) in enumerate(references[:8]):
        np.testing.assert_allclose(ours[i], gam.predict(grid[:, None]), atol=1e-8)


def test_hat_matrix_and_coef_map_give_the_same_fit(sample):
    _, curves, smoother, fit = sample
    for index in np.unique(fit.lam_index)[:3]:
        rows = fit.lam_index == index
        np.testing.assert_allclose(curves[rows] @ smoother.hat_matrix(index).T, fit.fitted[rows], atol=1e-9)
        coef = curves[rows] @ smoother.coef_map(index).T
        np.testing.assert_allclose(coef @ smoother.basis.T, fit.fitted[rows], atol=1e-9)
        assert np.trace(smoother.hat_matrix(index)) == pytest.approx(smoother.edof[index], rel=1e-10)


def _exact_penalized_fit(smoother, y: np.ndarray, lam: float) -> np.ndarray:
    """G at x from the ridge-augmented least-squares system, solved by SVD (an independent, well-conditioned route)."""
    m = smoother.n_coef
    diff = np.zeros((smoother.n_splines - 2, m))
    diff[:, : smoother.n_splines] = np.diff(np.eye(smoother.n_splines), n=2, axis=0)
    system = np.vstack([smoother.basis, np.sqrt(lam) * diff, np.sqrt(RIDGE) * np.eye(m)])
    coef = np.linalg.lstsq(system, np.r_[y, np.zeros(len(system) - len(y))], rcond=None)[0]
    return smoother.basis @ coef


def test_exact_penalized_solution_with_few_checkpoints():
    """Fewer points than coefficients: the exact ridge-augmented least-squares solution."""
    x = np.log10(np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000, 4000, 8000], dtype=float))
    y = np.random.default_rng(5).normal(8.0, 1.0, (3, len(x)))
    smoother = build_smoother(x)
    fit = fit_curves(smoother, y)
    edof = smoother.edof[fit.lam_index]
    assert np.all(len(x) - 1.4 * edof > 0), "an inadmissible lambda (n <= 1.4 edof) was chosen"
    for i in range(3):
        np.testing.assert_allclose(fit.fitted[i], _exact_penalized_fit(smoother, y[i], fit.lam[i]), atol=1e-9)


def test_linear_curve_is_reproduced_at_every_lambda():
    """A straight line lies in the null space of the 2nd-difference penalty, so only the ridge moves it.

    pyGAM's diagonal loading ``sqrt(eps) I`` also shrinks the spline coefficients of
    the line (weakest where the boundary B-splines have little data), so the exact
    solution misses y by up to ~5e-7 at lam=1e-3, not by 0. For a line every lambda
    scores GCV ~0, so which one wins is decided by round-off (and so by the BLAS);
    each lambda is therefore checked against the exact solution on its own.
    """
    x = np.linspace(0.0, 6.0, 50)
    y = 14.0 - 1.7 * x
    smoother = build_smoother(x)
    assert np.all(gcv_scores(smoother, y[None, :]) < 1e-9)  # zero up to round-off of y'y - b'S b
    for index, lam in enumerate(smoother.lams):
        fitted = (y @ smoother.coef_map(index).T) @ smoother.basis.T
        np.testing.assert_allclose(fitted, _exact_penalized_fit(smoother, y, lam), atol=1e-9)
        np.testing.assert_allclose(fitted, y, atol=1e-6)  # the ridge's shrinkage, nothing more
    np.testing.assert_allclose(fit_curves(smoother, y[None, :]).fitted[0], y, atol=1e-6)


def test_bad_input_raises_clear_errors():
    with pytest.raises(LdwError, match="non-finite"):
        build_smoother(np.array([-np.inf, 0.0, 1.0]))
    smoother = build_smoother(np.linspace(0, 1, 30), lams=DEFAULT_LAMS)
    with pytest.raises(LdwError, match=r"curves must be \[N, 30\]"):
        fit_curves(smoother, np.zeros((2, 29)))
    with pytest.raises(LdwError, match="curve 1 has non-finite"):
        fit_curves(smoother, np.vstack([np.zeros(30), np.full(30, np.nan)]))
