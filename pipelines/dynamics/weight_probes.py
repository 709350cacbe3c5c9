"""Run the weight probes over every checkpoint of a run and store them as derived table ``weight_probes``.

Columns: run_id, step, layer, head, name, value (see ``ldw.probe.weights`` for
the names). One Parquet part per run, so probing one run leaves the others'
rows in place; each run's part is swapped in atomically once the run is
probed. The probe batch is the first ``n_sequences`` evaluation sequences (cut
to the model's ``max_position_embeddings``); models are loaded in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ldw.errors import LdwError
from ldw.probe.errors import ProbeError
from ldw.probe.loading import SINGLE_THREAD_MAX_HIDDEN, cpu_threads, load_causal_lm, resolve_device
from ldw.probe.weights import probe_checkpoint
from ldw.warehouse import Warehouse
from ldw.warehouse.tables import polars_schema

WEIGHT_PROBES_SCHEMA = polars_schema("weight_probes")


@dataclass
class ProbeSummary:
    """What a probing pass did: rows written, checkpoints probed and the ones that failed (run, step, error)."""

    rows: int = 0
    checkpoints: int = 0
    failures: list[tuple[str, int, str]] = field(default_factory=list)


def _probe_batch(ids: torch.Tensor, model: torch.nn.Module, path: str) -> torch.Tensor:
    """The probe batch cut to the model's context, checked against its vocabulary."""
    config = model.config
    if int(ids.max()) >= config.vocab_size:
        raise ProbeError(
            f"{path}: evaluation token id {int(ids.max())} is outside the model's vocabulary ({config.vocab_size})"
        )
    limit = getattr(config, "max_position_embeddings", None) or ids.shape[1]
    return ids[:, :limit]


def probe_weights_in_warehouse(
    warehouse_path: Path,
    run_ids: Sequence[str] | None = None,
    n_sequences: int = 8,
    progress: bool = True,
    device: str = "auto",
    batch_size: int = 1,
) -> ProbeSummary:
    """Probe every checkpoint of ``run_ids`` (default: all runs) and write their ``weight_probes`` parts.

    A checkpoint that cannot be loaded or probed is skipped and listed in the
    returned summary; the other checkpoints are still written.
    """
    if n_sequences < 1:
        raise LdwError(f"n_sequences must be >= 1, got {n_sequences}")
    dev = resolve_device(device)  # an unusable device is refused before the warehouse is opened
    wh = Warehouse.open(Path(warehouse_path))
    wh.require_eval_config()
    ids = torch.from_numpy(wh.eval_arrays()[0][:n_sequences])
    runs = list(run_ids) if run_ids else wh.run_ids()
    unknown = sorted(set(runs) - set(wh.run_ids()))
    if unknown:
        raise LdwError(f"{wh.root}: unknown run(s) {', '.join(unknown)}")
    targets = {run: wh.checkpoints(run) for run in runs}
    summary = ProbeSummary()
    params = {"n_sequences": n_sequences, "batch_size": batch_size, "dtype": "float32", "device": dev.type}
    columns = [
        TextColumn("[bold]probe weights {task.fields[run]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("probe", total=sum(c.height for c in targets.values()), run="")
        for run, checkpoints in targets.items():
            bar.update(task, run=run)
            rows = []
            for step, path in checkpoints.select("step", "path").iter_rows():
                try:
                    model = load_causal_lm(Path(path), dev, torch.float32)
                    with cpu_threads(dev, getattr(model.config, "hidden_size", SINGLE_THREAD_MAX_HIDDEN + 1)):
                        probed = probe_checkpoint(model, _probe_batch(ids, model, path), batch_size)
                except ProbeError as exc:
                    summary.failures.append((run, step, str(exc)))
                else:
                    rows.extend((run, step, *row) for row in probed)
                    summary.checkpoints += 1
                bar.advance(task)
            frame = pl.DataFrame(rows, schema=WEIGHT_PROBES_SCHEMA, orient="row")
            wh.write_derived_part("weight_probes", run, frame, params)
            summary.rows += frame.height
    return summary
