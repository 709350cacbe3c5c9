"""Warehouse-wide queries: what is there, runs and checkpoints, traces and spikes.

Every function takes a read-only ``Warehouse`` first and returns a Polars
frame (or plain values); user-supplied values are always bound parameters.
Table and column names that appear in SQL text come from fixed lists in this
package, never from user input. Derived tables may be missing: the pages
check :func:`table_columns` before calling a query that reads one.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from ldw.warehouse import Warehouse
from ldw.warehouse.tables import data_tables

TRACE_ORDER = ("loss", "grad_norm", "lr")


def table_columns(wh: Warehouse) -> dict[str, tuple[str, ...]]:
    """Every table and view the catalog can read now, with its columns in order."""
    rows = wh.query(
        "SELECT table_name, list(column_name ORDER BY ordinal_position) AS columns "
        "FROM information_schema.columns GROUP BY table_name"
    )
    readable = data_tables() | set(wh.query("SELECT table_name FROM derived_tables")["table_name"].to_list())
    return {name: tuple(columns) for name, columns in rows.iter_rows() if name in readable}


def eval_summary(wh: Warehouse) -> dict[str, Any]:
    """Evaluation set facts: n_sequences, n_tokens, vocab_size (empty dict before `ldw evalset`)."""
    rows = wh.query("SELECT n_sequences, n_tokens, vocab_size, config FROM eval_sets")
    if rows.height == 0:
        return {}
    row = rows.row(0, named=True)
    return {**row, "config": json.loads(row["config"])}


def checkpoint_table(wh: Warehouse, runs: list[str]) -> pl.DataFrame:
    """Checkpoints of the given runs: step, tokens seen, status, duplicate_of, error."""
    return wh.query(
        "SELECT run_id, step, tokens_seen, status, duplicate_of, error FROM checkpoints "
        "WHERE list_contains(?, run_id) ORDER BY run_id, step",
        [runs],
    )


def failed_checkpoints(wh: Warehouse) -> pl.DataFrame:
    """Checkpoints whose sweep failed, with their one-line errors."""
    return wh.query("SELECT run_id, step, error FROM checkpoints WHERE status = 'failed' ORDER BY run_id, step")


def trace_names(wh: Warehouse) -> list[str]:
    """Logged trace names, loss / grad_norm / lr first."""
    names = wh.query("SELECT DISTINCT name FROM traces")["name"].to_list()
    return sorted(names, key=lambda n: (TRACE_ORDER.index(n) if n in TRACE_ORDER else len(TRACE_ORDER), n))


def traces_downsampled(
    wh: Warehouse, runs: list[str], names: list[str], log_x: bool, max_points: int = 1500
) -> pl.DataFrame:
    """Traces of ``runs`` x ``names`` with at most ``max_points`` points per (run, name).

    Longer traces are averaged in DuckDB over equal-width step buckets (in
    log10(step + 1) when ``log_x``): columns run_id, name, step, value,
    value_max, points (raw points per bucket).
    """
    return wh.query(
        """
        WITH t AS (
            SELECT run_id, name, step, value FROM traces
            WHERE list_contains($runs, run_id) AND list_contains($names, name) AND isfinite(value)
        ), span AS (
            SELECT run_id, name, count(*) AS n, min(step) AS lo, max(step) AS hi FROM t GROUP BY ALL
        ), b AS (
            SELECT t.run_id, t.name, t.step, t.value,
                   CASE WHEN span.n <= $max_points OR span.hi = span.lo THEN t.step::DOUBLE
                        WHEN $log_x THEN floor((log10(t.step - span.lo + 1)) / log10(span.hi - span.lo + 1)
                                               * ($max_points - 1))
                        ELSE floor((t.step - span.lo) / (span.hi - span.lo) * ($max_points - 1)) END AS bucket
            FROM t JOIN span USING (run_id, name)
        )
        SELECT run_id, name, CAST(round(avg(step)) AS BIGINT) AS step, avg(value) AS value,
               max(value) AS value_max, count(*) AS points
        FROM b GROUP BY run_id, name, bucket ORDER BY run_id, name, step
        """,
        {"runs": runs, "names": names, "log_x": log_x, "max_points": max_points},
    )


def spikes(wh: Warehouse, runs: list[str]) -> pl.DataFrame:
    """Detected spikes of ``runs`` (table ``spikes``, written by `ldw spikes`)."""
    return wh.query("SELECT * FROM spikes WHERE list_contains(?, run_id) ORDER BY run_id, trace, spike_id", [runs])


PROBE_AGGREGATES = {"qk_sigma1": "max", "attn_max_logit": "max"}  # others: the mean over layers and heads


def weight_probe_names(wh: Warehouse) -> list[str]:
    """The weight-probe series stored (table ``weight_probes``), in name order."""
    return wh.query("SELECT DISTINCT name FROM weight_probes ORDER BY name")["name"].to_list()


def weight_probe_series(wh: Warehouse, runs: list[str], names: list[str]) -> pl.DataFrame:
    """One value per (run, name, step) of the weight probes: the max over layers and heads for σ1 and the max
    attention logit, the mean otherwise (model-level series have one row). Columns: run_id, name, step, value."""
    return wh.query(
        """
        SELECT run_id, name, step,
               CASE WHEN list_contains($maxed, name) THEN max(value) ELSE avg(value) END AS value
        FROM weight_probes WHERE list_contains($runs, run_id) AND list_contains($names, name) AND isfinite(value)
        GROUP BY run_id, name, step ORDER BY run_id, name, step
        """,
        {"runs": runs, "names": names, "maxed": [n for n, how in PROBE_AGGREGATES.items() if how == "max"]},
    )
