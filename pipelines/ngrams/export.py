"""Correlations of a warehouse's metrics with its n-gram predictors, and their export for papers."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ldw.errors import LdwError
from ldw.ngrams.correlations import correlation_table
from ldw.ngrams.features import TABLE as NGRAM_TABLE
from ldw.warehouse import Warehouse


def _read_tables(wh: Warehouse) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame]:
    for table, command in (("token_metrics", "ldw metrics"), (NGRAM_TABLE, "ldw ngrams")):
        if not wh.has_table(table):
            raise LdwError(f"{wh.root}: no {table} table; run `{command}` first")
    crossrun = wh.query("SELECT * FROM crossrun_metrics") if wh.has_table("crossrun_metrics") else None
    return wh.query("SELECT * FROM token_metrics"), crossrun, wh.query(f"SELECT * FROM {NGRAM_TABLE}")


def ngram_correlations(warehouse_path: Path) -> pl.DataFrame:
    """The correlation table (see :func:`correlation_table`) of a warehouse's metrics and n-gram stats."""
    wh = Warehouse.open(Path(warehouse_path), read_only=True)
    return correlation_table(*_read_tables(wh))


def token_feature_table(wh: Warehouse) -> pl.DataFrame:
    """One row per (run, token): the token in context, its run metrics, cross-run metrics and n-gram features."""
    token_metrics, crossrun, ngram_stats = _read_tables(wh)
    eval_tokens = wh.eval_tokens().select("token_idx", "seq_id", "position", "token_id", "token_text", "context_len")
    table = token_metrics.join(eval_tokens, on="token_idx", how="left").join(ngram_stats, on="token_idx", how="left")
    if crossrun is not None:
        table = table.join(crossrun.drop("n_runs", strict=False), on="token_idx", how="left")
    return table.sort(["run_id", "token_idx"])


def export_ngram_correlations(warehouse_path: Path, out_dir: Path) -> list[Path]:
    """Write ngram_correlations.{csv,parquet} and token_features.{csv,parquet} to ``out_dir``."""
    wh = Warehouse.open(Path(warehouse_path), read_only=True)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LdwError(f"{out_dir}: cannot create output folder ({exc.strerror})") from exc
    written = []
    for name, frame in (
        ("ngram_correlations", correlation_table(*_read_tables(wh))),
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
