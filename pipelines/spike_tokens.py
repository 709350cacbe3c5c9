"""Which evaluation tokens got worse across a loss spike.

For each detected loss spike whose start and end are bracketed by completed
checkpoints — ``step_before`` = the last checkpoint at or before
``step_start``, ``step_after`` = the first checkpoint at or after ``step_end``
— the surprisal rise of every evaluation token between the two checkpoints is
``delta_bits = surprisal_after - surprisal_before``; the ``top_n`` largest
risers (ties broken by token_idx) are kept with their rank (1 = largest rise).
Spikes without such a pair (no checkpoint before, none after, or the trace
ended above the threshold) are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from pipelines.errors import LdwError
from warehouse import Warehouse
from warehouse.checkpoint_surprisal import checkpoint_surprisal

SPIKE_TOKENS_SCHEMA = pl.Schema(
    {
        "run_id": pl.String,
        "spike_id": pl.Int64,
        "step_before": pl.Int64,
        "step_after": pl.Int64,
        "token_idx": pl.Int64,
        "surprisal_before": pl.Float32,
        "surprisal_after": pl.Float32,
        "delta_bits": pl.Float32,
        "rank": pl.Int64,
    }
)


def bracketing_checkpoints(steps: np.ndarray, step_start: int, step_end: int) -> tuple[int, int] | None:
    """(last checkpoint <= step_start, first checkpoint >= step_end), or None when either is missing."""
    steps = np.sort(np.asarray(steps, dtype=np.int64))
    before = steps[steps <= step_start]
    after = steps[steps >= step_end]
    if len(before) == 0 or len(after) == 0:
        return None
    return int(before[-1]), int(after[0])


def top_risers(before: np.ndarray, after: np.ndarray, top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Token indices of the ``top_n`` largest rises ``after - before`` (descending, ties by index) and the rises."""
    delta = after.astype(np.float32) - before.astype(np.float32)
    order = np.lexsort((np.arange(len(delta)), -delta))[:top_n]
    return order.astype(np.int64), delta[order]


def spike_tokens_in_warehouse(warehouse_path: Path, top_n: int = 1000, trace: str = "loss") -> int:
    """Compute the top risers of every bracketed ``trace`` spike and write derived table ``spike_tokens``.

    Needs the ``spikes`` table (``detect_spikes_in_warehouse``) and completed
    surprisal sweeps. The table is rewritten whole. Returns the number of
    spikes that had a bracketing pair of checkpoints.
    """
    if top_n < 1:
        raise LdwError(f"top_n must be >= 1, got {top_n}")
    wh = Warehouse.open(Path(warehouse_path))
    if not wh.has_table("spikes"):
        raise LdwError(f"{wh.root}: no spikes table; run `ldw spikes` first")
    spikes = wh.query(
        "SELECT run_id, spike_id, step_start, step_end FROM spikes "
        "WHERE trace = ? AND step_end IS NOT NULL ORDER BY run_id, spike_id",
        [trace],
    )
    done = wh.query("SELECT run_id, step FROM checkpoints WHERE status = 'done' ORDER BY run_id, step")
    cache: dict[tuple[str, int], np.ndarray] = {}

    def surprisal(run_id: str, step: int) -> np.ndarray:
        if (run_id, step) not in cache:
            cache[(run_id, step)] = checkpoint_surprisal(wh, run_id, step)
        return cache[(run_id, step)]

    parts = []
    for spike in spikes.iter_rows(named=True):
        steps = done.filter(pl.col("run_id") == spike["run_id"])["step"].to_numpy()
        pair = bracketing_checkpoints(steps, spike["step_start"], spike["step_end"])
        if pair is None:
            continue
        before, after = surprisal(spike["run_id"], pair[0]), surprisal(spike["run_id"], pair[1])
        idx, delta = top_risers(before, after, top_n)
        parts.append(pl.DataFrame({
            "run_id": spike["run_id"],
            "spike_id": spike["spike_id"],
            "step_before": pair[0],
            "step_after": pair[1],
            "token_idx": idx,
            "surprisal_before": before[idx],
            "surprisal_after": after[idx],
            "delta_bits": delta,
            "rank": np.arange(1, len(idx) + 1, dtype=np.int64),
        }, schema=SPIKE_TOKENS_SCHEMA))
    table = pl.concat(parts) if parts else pl.DataFrame(schema=SPIKE_TOKENS_SCHEMA)
    wh.clear_derived("spike_tokens")
    wh.write_derived("spike_tokens", table, {"top_n": top_n, "trace": trace, "spikes": wh.derived_params("spikes")})
    return len(parts)
