"""``ldw spikes``: detect spikes in every run's traces and list the tokens that got worse across them.

Reads the ``traces`` and surprisal tables and writes the derived tables
``spikes`` and ``spike_tokens`` (the risers of every bracketed spike of every
scanned trace, keyed by run, trace and spike); the rules themselves are in
:mod:`ldw.dynamics.spikes` and :mod:`ldw.dynamics.spike_tokens`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from ldw.dynamics.spike_tokens import bracketing_checkpoints, top_risers
from ldw.dynamics.spikes import SpikeParams, detect_spikes, short_trace_warning
from ldw.errors import LdwError
from ldw.warehouse import Warehouse
from ldw.warehouse.checkpoint_surprisal import checkpoint_surprisal
from ldw.warehouse.tables import polars_schema

SPIKES_SCHEMA = polars_schema("spikes")
SPIKE_TOKENS_SCHEMA = polars_schema("spike_tokens")


@dataclass
class SpikeScan:
    """What a scan found: the number of spikes, and a warning per trace too short to judge fully."""

    found: int
    warnings: list[str] = field(default_factory=list)


def detect_spikes_in_warehouse(
    warehouse_path: Path, names: tuple[str, ...] = ("loss", "grad_norm"), params: SpikeParams = SpikeParams()
) -> SpikeScan:
    """Detect spikes in the ``names`` traces of every run and write derived table ``spikes``.

    Columns: run_id, trace, spike_id, step_start, step_peak, step_end,
    baseline, peak_value, magnitude, magnitude_mads. The table is replaced
    whole, atomically; its parameters (the rule's and the trace names) are recorded.
    A trace with fewer logged points than the window gets a warning (its
    "no spike" is a weaker statement, or none at all).
    """
    wh = Warehouse.open(Path(warehouse_path))
    traces = wh.query(
        "SELECT run_id, name, step, value FROM traces WHERE list_contains(?, name) ORDER BY run_id, name, step",
        [list(names)],
    )
    if traces.height == 0:
        raise LdwError(f"{wh.root}: no {' / '.join(names)} traces; ingest runs with a training log first")
    parts, warnings = [], []
    for (run_id, name), trace in traces.group_by("run_id", "name", maintain_order=True):
        spikes = detect_spikes(trace["step"].to_numpy(), trace["value"].to_numpy(), params)
        parts.append(spikes.select(pl.lit(run_id).alias("run_id"), pl.lit(name).alias("trace"), pl.all()))
        warning = short_trace_warning(trace.height, params)
        if warning:
            warnings.append(f"run '{run_id}', trace '{name}': {warning}")
    table = pl.concat(parts) if parts else pl.DataFrame(schema=SPIKES_SCHEMA)
    wh.write_derived("spikes", table.cast(SPIKES_SCHEMA), {**asdict(params), "names": list(names)})
    return SpikeScan(table.height, warnings)


def spike_tokens_in_warehouse(warehouse_path: Path, top_n: int = 1000) -> int:
    """Compute the top risers of every bracketed spike, of every trace, and write derived table ``spike_tokens``.

    Needs the ``spikes`` table (``detect_spikes_in_warehouse``) and completed
    surprisal sweeps; rows are keyed by (run_id, trace, spike_id). The table is
    rewritten whole. Returns the number of spikes that had a bracketing pair
    of checkpoints.
    """
    if top_n < 1:
        raise LdwError(f"top_n must be >= 1, got {top_n}")
    wh = Warehouse.open(Path(warehouse_path))
    if not wh.has_table("spikes"):
        raise LdwError(f"{wh.root}: no spikes table; run `ldw spikes` first")
    spikes = wh.query(
        "SELECT run_id, trace, spike_id, step_start, step_end FROM spikes "
        "WHERE step_end IS NOT NULL ORDER BY run_id, trace, spike_id"
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
        parts.append(
            pl.DataFrame(
                {
                    "run_id": spike["run_id"],
                    "trace": spike["trace"],
                    "spike_id": spike["spike_id"],
                    "step_before": pair[0],
                    "step_after": pair[1],
                    "token_idx": idx,
                    "surprisal_before": before[idx],
                    "surprisal_after": after[idx],
                    "delta_bits": delta,
                    "rank": np.arange(1, len(idx) + 1, dtype=np.int64),
                },
                schema=SPIKE_TOKENS_SCHEMA,
            )
        )
    table = pl.concat(parts) if parts else pl.DataFrame(schema=SPIKE_TOKENS_SCHEMA)
    traces = sorted(set(spikes["trace"].to_list()))
    wh.write_derived("spike_tokens", table, {"top_n": top_n, "traces": traces, "spikes": wh.derived_params("spikes")})
    return len(parts)
