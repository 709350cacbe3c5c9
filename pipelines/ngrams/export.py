"""Correlations and the paper's regressions of a warehouse's metrics on its n-gram predictors, and their export."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ldw.errors import LdwError
from ldw.ngrams.correlations import correlation_table, without_unacquired
from ldw.ngrams.features import PREDICTORS
from ldw.ngrams.features import TABLE as NGRAM_TABLE
from ldw.ngrams.regression import paper_regressions
from ldw.warehouse import Warehouse

# run-averaged responses of the regressions (Chang et al.'s surprisal, var_steps, aoa, forgettability, var_runs)
RESPONSES = (
    "mean_final_surprisal",
    "mean_within_run_var",
    "mean_aoa_log10_step",
    "mean_forgettability",
    "crossrun_var",
)


def _read_tables(wh: Warehouse) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame]:
    for table, command in (("token_metrics", "ldw metrics"), (NGRAM_TABLE, "ldw ngrams")):
        if not wh.has_table(table):
            raise LdwError(f"{wh.root}: no {table} table; run `{command}` first")
    crossrun = wh.query("SELECT * FROM crossrun_metrics") if wh.has_table("crossrun_metrics") else None
    return wh.query("SELECT * FROM token_metrics"), crossrun, wh.query(f"SELECT * FROM {NGRAM_TABLE}")


def ngram_correlations(warehouse_path: Path, include_unacquired: bool = False) -> pl.DataFrame:
    """The correlation table (see :func:`correlation_table`) of a warehouse's metrics and n-gram stats."""
    wh = Warehouse.open(Path(warehouse_path), read_only=True)
    return correlation_table(*_read_tables(wh), include_unacquired=include_unacquired)


def ngram_regressions(warehouse_path: Path, include_unacquired: bool = False) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(coefficients, nested-model steps) of :func:`ldw.ngrams.regression.paper_regressions` on a warehouse.

    One row per token: the run means of the metrics and the cross-run
    variability (``crossrun_metrics``) with the token's n-gram predictors. The
    mean AoA of a token not acquired in every run is left out unless
    ``include_unacquired`` (the released code keeps it).
    """
    wh = Warehouse.open(Path(warehouse_path), read_only=True)
    _, crossrun, ngram_stats = _read_tables(wh)
    if crossrun is None:
        raise LdwError(f"{wh.root}: no crossrun_metrics table; run `ldw metrics` first")
    frame = crossrun.join(ngram_stats, on="token_idx", how="inner")
    if not include_unacquired:
        frame, _ = without_unacquired(frame, pl.col("n_runs_acquired") == pl.col("n_runs"))
    return paper_regressions(frame, list(RESPONSES), list(PREDICTORS))


def token_feature_table(wh: Warehouse) -> pl.DataFrame:
    """One row per (run, token): the token in context, its run metrics, cross-run metrics and n-gram features."""
    token_metrics, crossrun, ngram_stats = _read_tables(wh)
    eval_tokens = wh.eval_tokens().select("token_idx", "seq_id", "position", "token_id", "token_text", "context_len")
    table = token_metrics.join(eval_tokens, on="token_idx", how="left").join(ngram_stats, on="token_idx", how="left")
    if crossrun is not None:
        table = table.join(crossrun.drop("n_runs", strict=False), on="token_idx", how="left")
    return table.sort(["run_id", "token_idx"])


def export_ngram_correlations(warehouse_path: Path, out_dir: Path, include_unacquired: bool = False) -> list[Path]:
    """Write ngram_correlations, ngram_regression_coefficients, ngram_regression_steps and token_features.

    Each as CSV and Parquet, into ``out_dir``.
    """
    wh = Warehouse.open(Path(warehouse_path), read_only=True)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LdwError(f"{out_dir}: cannot create output folder ({exc.strerror})") from exc
    coefficients, steps = ngram_regressions(warehouse_path, include_unacquired)
    written = []
    for name, frame in (
        ("ngram_correlations", correlation_table(*_read_tables(wh), include_unacquired=include_unacquired)),
        ("ngram_regression_coefficients", coefficients),
        ("ngram_regression_steps", steps),
        ("token_features", token_feature_table(wh)),
    ):
        for suffix in ("csv", "parquet"):
            path = out_dir / f"{name}.{suffix}"
            try:
                frame.write_csv(path) if suffix == "csv" else frame.write_parquet(path)
            except OSError as exc:
                raise LdwError(f"{path}: cannot write ({exc.strerror or exc})") from exc
            written.append(path)
    return written
