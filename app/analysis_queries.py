"""Analysis tables: tokens that moved across a spike, the LR-law fit and curves, n-gram correlations."""

from __future__ import annotations

import polars as pl

from ldw.warehouse import Warehouse


def spike_tokens(wh: Warehouse, run_id: str, trace: str | None, spike_id: int, limit: int = 50) -> pl.DataFrame:
    """Top risers across one spike (``spike_tokens``) with their text and position in context.

    ``trace`` None reads a table written before spike_tokens was keyed by
    trace (it held the loss spikes only).
    """
    where = "s.run_id = $run AND s.spike_id = $spike" + (" AND s.trace = $trace" if trace is not None else "")
    return wh.query(
        f"""
        SELECT s.rank, s.token_idx, e.token_text, e.seq_id, e.position, s.step_before, s.step_after,
               s.surprisal_before::DOUBLE AS surprisal_before, s.surprisal_after::DOUBLE AS surprisal_after,
               s.delta_bits::DOUBLE AS delta_bits
        FROM spike_tokens s LEFT JOIN eval_tokens e USING (token_idx)
        WHERE {where} ORDER BY s.rank LIMIT $limit
        """,
        {"run": run_id, "spike": spike_id, "limit": limit, **({"trace": trace} if trace is not None else {})},
    )


def trace_window(wh: Warehouse, run_id: str, names: list[str], lo: int, hi: int) -> pl.DataFrame:
    """Every logged point of one run's ``names`` traces with ``lo <= step <= hi``: name, step, value."""
    return wh.query(
        "SELECT name, step, value FROM traces WHERE run_id = ? AND list_contains(?, name) AND step BETWEEN ? AND ? "
        "AND isfinite(value) ORDER BY name, step",
        [run_id, names, lo, hi],
    )


def lr_law_fit(wh: Warehouse) -> pl.DataFrame:
    """The fitted LR-annealing law parameters and fit error (``lr_law_fit``)."""
    return wh.query("SELECT * FROM lr_law_fit")


def lr_law_curves(wh: Warehouse) -> pl.DataFrame:
    """Observed and predicted loss per schedule and step (``lr_law_curves``)."""
    return wh.query("SELECT * FROM lr_law_curves ORDER BY schedule, step")


def table_rows(wh: Warehouse, table: str) -> pl.DataFrame:
    """All rows of a small derived table named in the app's export list (e.g. ``spikes``)."""
    return wh.query(f'SELECT * FROM "{table}"')
