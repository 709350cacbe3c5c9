"""The regressions of Chang, Tu & Bergen (2023), as their ``analysis/run_regressions.py`` runs them.

For each run-averaged metric (one row per evaluation token: the mean over runs
of final surprisal, within-run variability, AoA and forgettability, and the
cross-run variability), ordinary least squares with an intercept
(statsmodels), in raw units (nothing is standardized):

* **Nested models**: the predictors are added one at a time in the released
  order (:data:`ldw.ngrams.features.PREDICTORS`: log unigram frequency, n-gram
  log-probability residual, log context length, context log-probability,
  contextual diversity), then all ten pairwise products at once. Each step
  reports adjusted R², its increment over the previous model and the
  likelihood-ratio test against it: ``LR = -2 (llf_prev - llf)`` on
  ``df_model - df_model_prev`` degrees of freedom, ``p = chi2.sf(LR, df)``.
* **Coefficients** of the full additive model (estimate, standard error, t, p)
  and three directions of effect per predictor: its sign in the full model,
  alone (``metric ~ 1 + predictor``), and on the frequency residuals
  (``residual of metric ~ 1 + unigram`` regressed on the predictor; none for
  the unigram predictor itself).

The released analysis also enters part-of-speech tags (spaCy's
``en_core_web_sm``); ``ldw`` does not (docs/methods.md says why).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import polars as pl
import statsmodels.api as sm
from scipy import stats

from ldw.errors import LdwError

INTERACTIONS = "pairwise interactions"
COEFFICIENT_COLUMNS = {
    "metric": pl.String,
    "predictor": pl.String,
    "n": pl.Int64,
    "coef": pl.Float64,
    "se": pl.Float64,
    "t": pl.Float64,
    "p": pl.Float64,
    "sign_full": pl.Int8,
    "sign_alone": pl.Int8,
    "sign_given_frequency": pl.Int8,
}
STEP_COLUMNS = {
    "metric": pl.String,
    "step": pl.Int64,
    "added": pl.String,
    "n": pl.Int64,
    "df_model": pl.Int64,
    "adj_r2": pl.Float64,
    "adj_r2_increment": pl.Float64,
    "lr_stat": pl.Float64,
    "lr_df": pl.Int64,
    "lr_p": pl.Float64,
}


def _ols(y: np.ndarray, columns: list[np.ndarray]) -> sm.regression.linear_model.RegressionResultsWrapper:
    design = sm.add_constant(np.column_stack(columns), has_constant="add")
    return sm.OLS(y, design).fit()


def _sign(value: float) -> int:
    return int(np.sign(value))


def nested_models(metric: str, y: np.ndarray, x: dict[str, np.ndarray]) -> list[dict]:
    """Adjusted R², increments and likelihood-ratio tests of the cumulative models (module docstring)."""
    names = list(x)
    products = [x[a] * x[b] for a, b in combinations(names, 2)]
    steps = [(name, [x[n] for n in names[: i + 1]]) for i, name in enumerate(names)]
    steps.append((INTERACTIONS, [x[n] for n in names] + products))
    rows, previous = [], None
    for number, (added, columns) in enumerate(steps, start=1):
        fit = _ols(y, columns)
        row = {"metric": metric, "step": number, "added": added, "n": int(fit.nobs), "df_model": int(fit.df_model)}
        row.update(adj_r2=float(fit.rsquared_adj), adj_r2_increment=None, lr_stat=None, lr_df=None, lr_p=None)
        if previous is not None:
            lr, df = -2.0 * (previous.llf - fit.llf), int(fit.df_model - previous.df_model)
            row.update(
                adj_r2_increment=float(fit.rsquared_adj - previous.rsquared_adj),
                lr_stat=float(lr),
                lr_df=df,
                lr_p=float(stats.chi2.sf(lr, df)),
            )
        rows.append(row)
        previous = fit
    return rows


def coefficients(metric: str, y: np.ndarray, x: dict[str, np.ndarray]) -> list[dict]:
    """Coefficients of the full additive model and each predictor's three directions of effect."""
    names = list(x)
    full = _ols(y, [x[n] for n in names])
    frequency = names[0]
    residual = y - _ols(y, [x[frequency]]).fittedvalues
    rows = [
        {
            "metric": metric,
            "predictor": "intercept",
            "n": int(full.nobs),
            "coef": float(full.params[0]),
            "se": float(full.bse[0]),
            "t": float(full.tvalues[0]),
            "p": float(full.pvalues[0]),
            "sign_full": _sign(full.params[0]),
            "sign_alone": None,
            "sign_given_frequency": None,
        }
    ]
    for i, name in enumerate(names, start=1):
        rows.append(
            {
                "metric": metric,
                "predictor": name,
                "n": int(full.nobs),
                "coef": float(full.params[i]),
                "se": float(full.bse[i]),
                "t": float(full.tvalues[i]),
                "p": float(full.pvalues[i]),
                "sign_full": _sign(full.params[i]),
                "sign_alone": _sign(_ols(y, [x[name]]).params[1]),
                "sign_given_frequency": None if name == frequency else _sign(_ols(residual, [x[name]]).params[1]),
            }
        )
    return rows


def paper_regressions(
    frame: pl.DataFrame, responses: list[str], predictors: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(coefficients, nested-model steps) of every response on ``predictors``, over the rows where all are finite.

    A response with fewer finite rows than the largest model has parameters
    (e.g. cross-run variability of a single run) is left out.
    """
    missing = [c for c in [*responses, *predictors] if c not in frame.columns]
    if missing:
        raise LdwError(f"no column {', '.join(missing)} to regress; run `ldw metrics` and `ldw ngrams`")
    n_parameters = 1 + len(predictors) + len(predictors) * (len(predictors) - 1) // 2
    coefficient_rows, step_rows = [], []
    for response in responses:
        data = frame.select([response, *predictors]).cast(pl.Float64).fill_null(np.nan).to_numpy()
        data = data[np.isfinite(data).all(axis=1)]
        if len(data) <= n_parameters:
            continue
        y, x = data[:, 0], {name: data[:, i] for i, name in enumerate(predictors, start=1)}
        coefficient_rows += coefficients(response, y, x)
        step_rows += nested_models(response, y, x)
    return pl.DataFrame(coefficient_rows, schema=COEFFICIENT_COLUMNS), pl.DataFrame(step_rows, schema=STEP_COLUMNS)
