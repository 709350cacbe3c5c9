"""Learning curves of chosen tokens, raw and smoothed, as one long frame (the Python API's ``curves``)."""

from __future__ import annotations

import polars as pl

from ldw.warehouse.catalog import Warehouse

CURVES_SCHEMA = {
    "run_id": pl.String,
    "token_idx": pl.Int64,
    "step": pl.Int64,
    "surprisal_bits": pl.Float64,
    "g_bits": pl.Float64,
}


def _in_list(values: list) -> str:
    """``(?, ?, ...)``: bound values DuckDB can check against row-group statistics."""
    return "(" + ", ".join("?" * len(values)) + ")"


def token_curves(wh: Warehouse, tokens: list[int], runs: list[str] | None = None) -> pl.DataFrame:
    """Raw surprisal of ``tokens`` at every swept checkpoint of ``runs`` (default all), with the GAM curve G.

    Columns: run_id, token_idx, step, surprisal_bits, g_bits. ``g_bits`` is G
    from ``token_curves_smoothed`` at that checkpoint, null at step 0 (the
    curves are fitted on log10 step) and when ``ldw metrics`` has not stored
    the smoothed curves.
    """
    if not tokens:
        return pl.DataFrame(schema=CURVES_SCHEMA)
    runs = list(runs) if runs is not None else wh.run_ids()
    if not runs:
        return pl.DataFrame(schema=CURVES_SCHEMA)
    raw = wh.query(
        "SELECT run_id, token_idx, step, surprisal_bits::DOUBLE AS surprisal_bits FROM surprisal "
        f"WHERE token_idx IN {_in_list(tokens)} AND run_id IN {_in_list(runs)}",
        [*tokens, *runs],
    )
    smoothed = _smoothed(wh, tokens, runs)
    joined = raw.join(smoothed, on=["run_id", "token_idx", "step"], how="left")
    return joined.select(list(CURVES_SCHEMA)).cast(CURVES_SCHEMA).sort("run_id", "token_idx", "step")


def _smoothed(wh: Warehouse, tokens: list[int], runs: list[str]) -> pl.DataFrame:
    schema = {"run_id": pl.String, "token_idx": pl.Int64, "step": pl.Int64, "g_bits": pl.Float64}
    params = wh.derived_params("token_curves_smoothed")
    if params is None:
        return pl.DataFrame(schema=schema)
    rows = wh.query(
        "SELECT run_id, token_idx, g_bits FROM token_curves_smoothed "
        f"WHERE token_idx IN {_in_list(tokens)} AND run_id IN {_in_list(runs)}",
        [*tokens, *runs],
    )
    steps = params.get("steps", {})
    frames = [
        pl.DataFrame({"run_id": run_id, "token_idx": token_idx, "step": steps[run_id], "g_bits": g}, schema=schema)
        for run_id, token_idx, g in rows.iter_rows()
        if g is not None and len(steps.get(run_id, [])) == len(g)
    ]
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)
