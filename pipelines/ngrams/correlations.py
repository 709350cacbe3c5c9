"""Correlations of learning-curve metrics with n-gram predictors, and their export.

For every metric of ``token_metrics`` (per run) and ``crossrun_metrics`` (once)
against every predictor of ``ngram_stats``, joined on token_idx, over the tokens
where both are finite: Pearson r and Spearman rho (average ranks for ties) with
two-sided p-values from the t distribution with n-2 degrees of freedom (what
scipy.stats.pearsonr / spearmanr report), and the OLS fit metric ~ 1 + predictor
(coefficient, its standard error, intercept, adjusted R^2, n). Rows with
``scope = "mean_over_runs"`` average the per-run statistics: correlations
through Fisher's z (``tanh`` of the mean ``atanh``), the rest plainly (no p-values).

Never-acquired tokens (``acquired`` false: G never gets below chance) have no
age of acquisition, only the released code's placeholder (the last step): by
default they are left out of every AoA statistic (per run: the tokens not
acquired in that run; run means: the tokens not acquired in every run) and
counted in ``n_unacquired_excluded``. ``include_unacquired=True`` keeps them,
as the released code does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from ldw.errors import LdwError
from ldw.ngrams.features import PREDICTORS

RUN_METRICS = ("final_surprisal", "within_run_var", "aoa_log10_step", "forgettability", "sigmoid_aoa_log10_step")
CROSSRUN_METRICS = (
    "crossrun_var",
    "mean_final_surprisal",
    "mean_within_run_var",
    "mean_aoa_log10_step",
    "mean_forgettability",
    "mean_sigmoid_aoa_log10_step",
)
AOA_METRICS = ("aoa_log10_step", "sigmoid_aoa_log10_step", "mean_aoa_log10_step", "mean_sigmoid_aoa_log10_step")
FISHER_Z = ("pearson_r", "spearman_rho")
STAT_COLUMNS = (
    "n",
    "pearson_r",
    "pearson_p",
    "spearman_rho",
    "spearman_p",
    "ols_coef",
    "ols_se",
    "ols_intercept",
    "ols_adj_r2",
)
# Expected sign of the association with log2 unigram frequency (docs/methods.md): more
# frequent -> lower final surprisal, lower variability, earlier AoA, lower forgettability.
EXPECTED_FREQUENCY_SIGN = {
    "final_surprisal": -1,
    "within_run_var": -1,
    "aoa_log10_step": -1,
    "forgettability": -1,
    "crossrun_var": -1,
}


def _t_test_p(r: float, n: int) -> float:
    """Two-sided p-value of a correlation r over n pairs (t test, n-2 df)."""
    if abs(r) >= 1.0:
        return 0.0
    t = r * np.sqrt((n - 2) / (1.0 - r * r))
    return float(2.0 * stats.t.sf(abs(t), n - 2))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    dx, dy = x - x.mean(), y - y.mean()
    return float(np.clip(dx @ dy / np.sqrt((dx @ dx) * (dy @ dy)), -1.0, 1.0))


def association(x: np.ndarray, y: np.ndarray, ranks: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, float]:
    """Pearson, Spearman and OLS y ~ 1 + x over the pairs where both are finite.

    ``ranks`` (average ranks of x and y over those pairs) may be passed to skip
    ranking. Statistics are NaN when fewer than 3 pairs remain or either side is
    constant.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    mask = np.isfinite(x) & np.isfinite(y)
    x, y = x[mask], y[mask]
    n = int(x.size)
    out = {name: float("nan") for name in STAT_COLUMNS}
    out["n"] = n
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    rank_x, rank_y = ranks if ranks is not None else (stats.rankdata(x), stats.rankdata(y))
    r, rho = _pearson(x, y), _pearson(rank_x, rank_y)
    dx, dy = x - x.mean(), y - y.mean()
    sxx, sxy, syy = dx @ dx, dx @ dy, dy @ dy
    slope = sxy / sxx
    ssr = max(syy - slope * sxy, 0.0)
    r2 = 1.0 - ssr / syy
    out.update(
        pearson_r=r,
        pearson_p=_t_test_p(r, n),
        spearman_rho=rho,
        spearman_p=_t_test_p(rho, n),
        ols_coef=float(slope),
        ols_se=float(np.sqrt(ssr / (n - 2) / sxx)),
        ols_intercept=float(y.mean() - slope * x.mean()),
        ols_adj_r2=float(1.0 - (1.0 - r2) * (n - 1) / (n - 2)),
    )
    return out


class _RankCache:
    """Average ranks of a column over a subset of rows, reused while the subset repeats."""

    def __init__(self) -> None:
        self._ranks: dict[tuple[str, int, bytes], np.ndarray] = {}

    def get(self, name: str, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        key = (name, int(mask.sum()), np.packbits(mask).tobytes())
        if key not in self._ranks:
            self._ranks[key] = stats.rankdata(values[mask])
        return self._ranks[key]


def _block(frame: pl.DataFrame, metrics: list[str], predictors: list[str], label: dict[str, Any]) -> list[dict]:
    """Statistics of every (metric, predictor) pair of one frame (AoA already null where it is left out)."""
    cache = _RankCache()
    rows = []
    for metric in metrics:
        y = frame[metric].cast(pl.Float64).fill_null(np.nan).to_numpy()
        for predictor in predictors:
            x = frame[predictor].cast(pl.Float64).fill_null(np.nan).to_numpy()
            mask = np.isfinite(x) & np.isfinite(y)
            ranks = (cache.get(predictor, x, mask), cache.get(metric, y, mask)) if mask.sum() >= 3 else None
            rows.append({**label, "metric": metric, "predictor": predictor, **association(x, y, ranks)})
    return rows


def without_unacquired(frame: pl.DataFrame, acquired: pl.Expr) -> tuple[pl.DataFrame, int]:
    """``frame`` with its AoA columns null where ``acquired`` is false, and how many tokens that is."""
    if "acquired" not in frame.columns and "n_runs_acquired" not in frame.columns:
        raise LdwError("token_metrics has no acquired column (written by an older ldw); rerun `ldw metrics`")
    excluded = int(frame.select((~acquired).sum()).item())
    columns = [c for c in AOA_METRICS if c in frame.columns]
    return frame.with_columns(pl.when(acquired).then(pl.col(c)).otherwise(None).alias(c) for c in columns), excluded


def _labelled(rows: list[dict], excluded: int) -> list[dict]:
    for row in rows:
        row["n_unacquired_excluded"] = excluded if row["metric"] in AOA_METRICS else 0
    return rows


def correlation_table(
    token_metrics: pl.DataFrame,
    crossrun_metrics: pl.DataFrame | None,
    ngram_stats: pl.DataFrame,
    include_unacquired: bool = False,
) -> pl.DataFrame:
    """Per-run, run-averaged and cross-run statistics of each metric against each n-gram predictor."""
    predictors = [p for p in PREDICTORS if p in ngram_stats.columns]
    metrics = [m for m in RUN_METRICS if m in token_metrics.columns]
    if not predictors or not metrics:
        raise LdwError("no metric or n-gram predictor columns to correlate; run `ldw metrics` and `ldw ngrams`")
    features = ngram_stats.select(["token_idx", *predictors])
    rows: list[dict] = []
    run_ids = token_metrics["run_id"].unique(maintain_order=True).sort().to_list()
    for run_id in run_ids:
        run = token_metrics.filter(pl.col("run_id") == run_id).join(features, on="token_idx", how="inner")
        excluded = 0
        if not include_unacquired:
            run, excluded = without_unacquired(run, pl.col("acquired"))
        rows += _labelled(_block(run, metrics, predictors, {"scope": "run", "run_id": run_id, "n_runs": 1}), excluded)
    if crossrun_metrics is not None and crossrun_metrics.height:
        cross = [m for m in CROSSRUN_METRICS if m in crossrun_metrics.columns]
        joined = crossrun_metrics.join(features, on="token_idx", how="inner")
        n_runs = int(crossrun_metrics["n_runs"][0]) if "n_runs" in crossrun_metrics.columns else len(run_ids)
        excluded = 0
        if not include_unacquired:
            joined, excluded = without_unacquired(joined, pl.col("n_runs_acquired") == pl.col("n_runs"))
        label = {"scope": "crossrun", "run_id": None, "n_runs": n_runs}
        rows += _labelled(_block(joined, cross, predictors, label), excluded)
    schema = {
        "scope": pl.String,
        "run_id": pl.String,
        "metric": pl.String,
        "predictor": pl.String,
        "n_runs": pl.Int64,
        **{c: (pl.Int64 if c == "n" else pl.Float64) for c in STAT_COLUMNS},
        "n_unacquired_excluded": pl.Int64,
    }
    table = pl.DataFrame(rows, schema=schema)
    per_run = table.filter(pl.col("scope") == "run")
    plain = [c for c in STAT_COLUMNS if c not in ("n", "pearson_p", "spearman_p", *FISHER_Z)]
    averaged = per_run.group_by(["metric", "predictor"], maintain_order=True).agg(
        pl.lit("mean_over_runs").alias("scope"),
        pl.lit(None, pl.String).alias("run_id"),
        pl.col("n").mean().round().cast(pl.Int64),
        pl.lit(None, pl.Float64).alias("pearson_p"),
        pl.lit(None, pl.Float64).alias("spearman_p"),
        *[pl.col(c).arctanh().mean().tanh() for c in FISHER_Z],
        *[pl.col(c).mean() for c in plain],
        pl.col("n_unacquired_excluded").mean().round().cast(pl.Int64),
        pl.len().alias("n_runs"),
    )
    table = pl.concat([table, averaged.select(table.columns)], how="vertical_relaxed")
    order = {"run": 0, "mean_over_runs": 1, "crossrun": 2}
    return table.sort(pl.col("scope").replace_strict(order, return_dtype=pl.Int8), maintain_order=True)


def summary_table(correlations: pl.DataFrame, predictor: str = "log2_unigram_freq") -> pl.DataFrame:
    """Run-averaged Spearman rho (and Pearson r, adjusted R^2) of one predictor vs each metric.

    ``expected`` is the sign docs/methods.md gives for log2 unigram frequency
    (None for other predictors or metrics without a prediction).
    """
    averaged = pl.col("scope") == "mean_over_runs"
    crossrun = (pl.col("scope") == "crossrun") & (pl.col("metric") == "crossrun_var")
    wanted = correlations.filter((averaged | crossrun) & (pl.col("predictor") == predictor))
    signs = EXPECTED_FREQUENCY_SIGN if predictor == "log2_unigram_freq" else {}
    return wanted.select(
        "metric",
        "predictor",
        "spearman_rho",
        "pearson_r",
        "ols_adj_r2",
        "n",
        "n_runs",
        pl.col("metric")
        .replace_strict({m: ("-" if s < 0 else "+") for m, s in signs.items()}, default=None, return_dtype=pl.String)
        .alias("expected"),
    )
