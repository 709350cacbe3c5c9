"""Correlation statistics against scipy / numpy references, and the export files."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from ldw.curves.store import MEANED
from ldw.errors import LdwError
from ldw.ngrams.correlations import association, correlation_table, summary_table
from ldw.ngrams.export import export_ngram_correlations, ngram_correlations, ngram_regressions
from ldw.ngrams.features import PREDICTORS
from ldw.ngrams.regression import paper_regressions
from ldw.warehouse import Warehouse
from ldw.warehouse.tables import polars_schema, table_spec


def reference_ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Slope, its standard error, intercept and adjusted R^2 from numpy.linalg.lstsq."""
    design = np.column_stack([np.ones_like(x), x])
    beta, ssr, *_ = np.linalg.lstsq(design, y, rcond=None)
    n = len(y)
    sigma2 = ssr[0] / (n - 2)
    cov = sigma2 * np.linalg.inv(design.T @ design)
    r2 = 1 - ssr[0] / np.sum((y - y.mean()) ** 2)
    return beta[1], np.sqrt(cov[1, 1]), beta[0], 1 - (1 - r2) * (n - 1) / (n - 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_association_matches_scipy_and_lstsq(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=400), 1)  # rounding makes ties for Spearman
    y = 0.3 * x + rng.standard_t(4, size=400)
    x[5], y[9], y[10] = np.nan, np.inf, np.nan
    keep = np.isfinite(x) & np.isfinite(y)
    got = association(x, y)
    pearson = stats.pearsonr(x[keep], y[keep])
    spearman = stats.spearmanr(x[keep], y[keep])
    coef, se, intercept, adj_r2 = reference_ols(x[keep], y[keep])
    assert got["n"] == keep.sum() == 397
    assert got["pearson_r"] == pytest.approx(pearson.statistic, rel=1e-12)
    assert got["pearson_p"] == pytest.approx(pearson.pvalue, rel=1e-8)
    assert got["spearman_rho"] == pytest.approx(spearman.statistic, rel=1e-12)
    assert got["spearman_p"] == pytest.approx(spearman.pvalue, rel=1e-8)
    assert got["ols_coef"] == pytest.approx(coef, rel=1e-10)
    assert got["ols_se"] == pytest.approx(se, rel=1e-10)
    assert got["ols_intercept"] == pytest.approx(intercept, rel=1e-10, abs=1e-12)
    assert got["ols_adj_r2"] == pytest.approx(adj_r2, rel=1e-10)
    assert got["ols_se"] == pytest.approx(stats.linregress(x[keep], y[keep]).stderr, rel=1e-10)


def test_association_is_nan_for_constant_or_tiny_inputs() -> None:
    assert np.isnan(association(np.ones(10), np.arange(10.0))["pearson_r"])
    tiny = association(np.array([1.0, 2.0, np.nan]), np.array([1.0, 3.0, 2.0]))
    assert tiny["n"] == 2 and np.isnan(tiny["spearman_rho"])


def synthetic_tables(n: int = 300, runs: tuple[str, ...] = ("seed0", "seed1")):
    rng = np.random.default_rng(7)
    freq = rng.normal(size=n)
    ngram = pl.DataFrame({"token_idx": np.arange(n), **{p: rng.normal(size=n) for p in PREDICTORS}})
    context = np.where(np.arange(n) % 10 == 0, np.nan, rng.normal(size=n))  # NaN: rows left out
    ngram = ngram.with_columns(pl.Series("log2_unigram_freq", freq), pl.Series("context_logprob", context))
    token_metrics = pl.concat(
        [
            pl.DataFrame(
                {
                    "run_id": run,
                    "token_idx": np.arange(n),
                    "final_surprisal": -freq + rng.normal(size=n),
                    "within_run_var": rng.normal(size=n),
                    "aoa_log10_step": -0.5 * freq + rng.normal(size=n),
                    "acquired": (np.arange(n) + i) % 7 != 0,  # a few never-acquired tokens, not the same in each run
                    "forgettability": rng.normal(size=n),
                    "gam_lambda": np.ones(n),
                }
            )
            for i, run in enumerate(runs)
        ]
    )
    acquired = token_metrics.group_by("token_idx").agg(pl.col("acquired").sum().alias("n_runs_acquired"))
    crossrun = (
        pl.DataFrame(
            {"token_idx": np.arange(n), "crossrun_var": rng.normal(size=n) ** 2, "n_runs": np.full(n, len(runs))}
        )
        .join(acquired, on="token_idx")
        .sort("token_idx")
    )
    return token_metrics, crossrun, ngram


def test_correlation_table_per_run_average_and_crossrun() -> None:
    token_metrics, crossrun, ngram = synthetic_tables()
    table = correlation_table(token_metrics, crossrun, ngram)
    per_run = table.filter(pl.col("scope") == "run")
    assert per_run.height == 2 * 4 * len(PREDICTORS)
    assert "gam_lambda" not in table["metric"].to_list()
    row = per_run.filter(
        (pl.col("run_id") == "seed1")
        & (pl.col("metric") == "aoa_log10_step")
        & (pl.col("predictor") == "context_logprob")
    ).row(0, named=True)
    run = token_metrics.filter(pl.col("run_id") == "seed1")
    x, y = ngram["context_logprob"].to_numpy(), run["aoa_log10_step"].to_numpy()
    keep = np.isfinite(x) & run["acquired"].to_numpy()  # never-acquired tokens have no AoA
    assert row["n"] == keep.sum() < 270 and row["n_unacquired_excluded"] == (~run["acquired"]).sum()
    assert row["spearman_rho"] == pytest.approx(stats.spearmanr(x[keep], y[keep]).statistic, rel=1e-12)
    kept = table.filter(pl.col("metric") == "final_surprisal", pl.col("scope") == "run")
    assert set(kept["n_unacquired_excluded"].to_list()) == {0} and set(kept["n"].to_list()) <= {270, 300}
    released = correlation_table(token_metrics, crossrun, ngram, include_unacquired=True)
    every = released.filter(
        (pl.col("run_id") == "seed1")
        & (pl.col("metric") == "aoa_log10_step")
        & (pl.col("predictor") == "context_logprob")
    ).row(0, named=True)
    assert every["n"] == 270 and every["n_unacquired_excluded"] == 0
    for metric, predictor in (("final_surprisal", "log2_unigram_freq"), ("aoa_log10_step", "contextual_diversity")):
        mean = table.filter(
            (pl.col("scope") == "mean_over_runs") & (pl.col("metric") == metric) & (pl.col("predictor") == predictor)
        ).row(0, named=True)
        both = per_run.filter((pl.col("metric") == metric) & (pl.col("predictor") == predictor))
        for column in ("spearman_rho", "pearson_r"):  # Fisher z: tanh of the mean of atanh
            assert mean[column] == pytest.approx(np.tanh(np.mean(np.arctanh(both[column].to_numpy()))), rel=1e-12)
        assert mean["ols_coef"] == pytest.approx(both["ols_coef"].mean(), rel=1e-12)
        assert mean["n_runs"] == 2 and mean["spearman_p"] is None
    cross = table.filter(pl.col("scope") == "crossrun")
    assert cross["metric"].unique().to_list() == ["crossrun_var"] and cross.height == len(PREDICTORS)


def test_summary_table_reports_frequency_effects() -> None:
    summary = summary_table(correlation_table(*synthetic_tables()))
    assert summary["metric"].to_list() == [
        "final_surprisal",
        "within_run_var",
        "aoa_log10_step",
        "forgettability",
        "crossrun_var",
    ]
    assert set(summary["expected"].to_list()) == {"-"}
    rho = dict(zip(summary["metric"], summary["spearman_rho"], strict=True))
    assert rho["final_surprisal"] < -0.4 and rho["aoa_log10_step"] < -0.2


def reference_ols_fit(y: np.ndarray, columns: list[np.ndarray]) -> dict:
    """OLS with intercept by numpy lstsq: coefficients, SEs, adjusted R^2 and the Gaussian log-likelihood."""
    design = np.column_stack([np.ones_like(y), *columns])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    n, k = design.shape
    rss = float(np.sum((y - design @ beta) ** 2))
    se = np.sqrt(np.diag(rss / (n - k) * np.linalg.inv(design.T @ design)))
    r2 = 1 - rss / np.sum((y - y.mean()) ** 2)
    llf = -n / 2 * (np.log(2 * np.pi) + np.log(rss / n) + 1)
    return {"beta": beta, "se": se, "adj_r2": 1 - (1 - r2) * (n - 1) / (n - k), "llf": llf, "df": k - 1}


def test_paper_regressions_match_lstsq_and_likelihood_ratio_tests() -> None:
    rng = np.random.default_rng(11)
    n = 500
    x = {name: rng.normal(size=n) for name in PREDICTORS}
    y = 2.0 - 0.8 * x["log2_unigram_freq"] + 0.3 * x["context_logprob"]
    y = y + 0.3 * x["log2_unigram_freq"] * x["contextual_diversity"]
    y = y + rng.normal(size=n)
    frame = pl.DataFrame({"metric_a": y, **x}).with_columns(pl.lit(np.nan).alias("single_run"))
    coefficients, steps = paper_regressions(frame, ["metric_a", "single_run"], list(PREDICTORS))
    assert set(steps["metric"].to_list()) == {"metric_a"}  # an all-NaN response (one run) is left out
    full = reference_ols_fit(y, [x[p] for p in PREDICTORS])
    got = coefficients.filter(pl.col("metric") == "metric_a")
    np.testing.assert_allclose(got["coef"].to_numpy(), full["beta"], rtol=1e-9)
    np.testing.assert_allclose(got["se"].to_numpy(), full["se"], rtol=1e-9)
    np.testing.assert_allclose(got["t"].to_numpy(), full["beta"] / full["se"], rtol=1e-9)
    np.testing.assert_allclose(got["p"].to_numpy(), 2 * stats.t.sf(np.abs(full["beta"] / full["se"]), n - 6), rtol=1e-6)
    assert got["sign_full"].to_list() == [int(v) for v in np.sign(full["beta"])]
    alone = [int(np.sign(reference_ols_fit(y, [x[p]])["beta"][1])) for p in PREDICTORS]
    assert got["sign_alone"].to_list()[1:] == alone
    residual = (
        y
        - np.column_stack([np.ones(n), x["log2_unigram_freq"]]) @ reference_ols_fit(y, [x["log2_unigram_freq"]])["beta"]
    )
    given = [int(np.sign(reference_ols_fit(residual, [x[p]])["beta"][1])) for p in PREDICTORS[1:]]
    assert got["sign_given_frequency"].to_list()[2:] == given and got["sign_given_frequency"][1] is None
    models = [reference_ols_fit(y, [x[p] for p in PREDICTORS[: i + 1]]) for i in range(len(PREDICTORS))]
    products = [x[a] * x[b] for a, b in itertools.combinations(PREDICTORS, 2)]
    models.append(reference_ols_fit(y, [x[p] for p in PREDICTORS] + products))
    assert steps["added"].to_list() == [*PREDICTORS, "pairwise interactions"]
    np.testing.assert_allclose(steps["adj_r2"].to_numpy(), [m["adj_r2"] for m in models], rtol=1e-9)
    for row, before, after in zip(list(steps.iter_rows(named=True))[1:], models[:-1], models[1:], strict=True):
        lr = 2 * (after["llf"] - before["llf"])
        assert row["lr_stat"] == pytest.approx(lr, rel=1e-7)
        assert row["lr_df"] == after["df"] - before["df"]
        assert row["lr_p"] == pytest.approx(stats.chi2.sf(lr, after["df"] - before["df"]), rel=1e-6, abs=1e-300)
        assert row["adj_r2_increment"] == pytest.approx(after["adj_r2"] - before["adj_r2"], rel=1e-7, abs=1e-12)
    assert steps["lr_p"][-1] < 1e-3  # the interaction is found by the last step


def _registered(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` in the registered layout of table ``name``: its columns cast, the other required ones zero."""
    spec = table_spec(name)
    columns = [c for c in spec.schema.names if c in frame.columns or c not in spec.optional]
    schema = polars_schema(name)
    return frame.select(
        pl.col(c).cast(schema[c]) if c in frame.columns else pl.lit(0, schema[c]).alias(c) for c in columns
    )


def test_export_writes_correlations_and_token_features(ingested_warehouse: Path, tmp_path: Path) -> None:
    wh = Warehouse.open(ingested_warehouse)
    n = wh.token_count()
    token_metrics, crossrun, ngram = synthetic_tables(n)
    with pytest.raises(LdwError, match="no token_metrics table"):
        export_ngram_correlations(ingested_warehouse, tmp_path / "out")
    means = token_metrics.group_by("token_idx").agg(pl.col(MEANED).mean().name.prefix("mean_"))
    crossrun = crossrun.join(means, on="token_idx", how="left")
    for name, frame in (("token_metrics", token_metrics), ("crossrun_metrics", crossrun), ("ngram_stats", ngram)):
        wh.write_derived(name, _registered(name, frame), {})
    paths = export_ngram_correlations(ingested_warehouse, tmp_path / "out")
    assert [p.name for p in paths] == [
        f"{name}.{suffix}"
        for name in ("ngram_correlations", "ngram_regression_coefficients", "ngram_regression_steps", "token_features")
        for suffix in ("csv", "parquet")
    ]
    exported = pl.read_parquet(paths[1])
    assert exported.equals(ngram_correlations(ingested_warehouse))
    assert pl.read_csv(paths[0]).height == exported.height
    coefficients, steps = ngram_regressions(ingested_warehouse)
    assert pl.read_parquet(paths[3]).equals(coefficients) and pl.read_parquet(paths[5]).equals(steps)
    assert set(steps["metric"].to_list()) == {
        "mean_final_surprisal",
        "mean_within_run_var",
        "mean_aoa_log10_step",
        "mean_forgettability",
        "crossrun_var",
    }
    aoa_n = steps.filter(pl.col("metric") == "mean_aoa_log10_step")["n"][0]
    finite = ngram["context_logprob"].is_not_nan().to_numpy()
    assert aoa_n == np.sum(finite & (crossrun["n_runs_acquired"].to_numpy() == 2))  # acquired in both runs only
    everything = ngram_regressions(ingested_warehouse, include_unacquired=True)[1]
    assert everything.filter(pl.col("metric") == "mean_aoa_log10_step")["n"][0] == finite.sum()
    features = pl.read_parquet(paths[7])
    assert features.height == 2 * n
    assert {"run_id", "token_text", "final_surprisal", "crossrun_var", *PREDICTORS} <= set(features.columns)
    first = features.filter(pl.col("run_id") == "seed0").sort("token_idx")
    assert first["token_id"].to_list() == wh.eval_tokens()["token_id"].to_list()
    assert np.allclose(first["log2_unigram_freq"].to_numpy(), ngram["log2_unigram_freq"].to_numpy())
