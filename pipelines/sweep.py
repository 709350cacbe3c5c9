"""The checkpoint sweep: score every evaluation token under every checkpoint of every run.

One Parquet file per (run, checkpoint), cataloged only once complete, so a
sweep killed at any point resumes without lost or duplicated rows. A
checkpoint that fails to load is recorded as failed and the sweep goes on.
"""

from __future__ import annotations

import platform
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from pipelines.errors import LdwError
from probe.errors import ProbeError
from probe.loading import default_dtype, load_causal_lm, resolve_device
from probe.scoring import EvalBatchPlan, score_surprisal
from warehouse import Warehouse

CPU_BATCH = 16
CUDA_BATCH = 64


@dataclass
class SweepSummary:
    """Counts of what a sweep did."""

    scored: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0


def scoring_settings(device: torch.device, batch_size: int, config: dict) -> dict:
    """Everything that decides the numbers, stored beside the sweep."""
    return {
        "units": "bits",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "weights_dtype": str(default_dtype(device)).replace("torch.", ""),
        "log_softmax_dtype": "float32",
        "batch_size": batch_size,
        "prefix_token_id": config.get("prefix_token_id"),
        "first_token_scored": config.get("prefix_token_id") is not None,
        "eos_masking": "none: end-of-text tokens inside windows are scored like any token",
        "seq_len": config.get("seq_len"),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
    }


def run_sweep(
    warehouse: Path,
    run_ids: list[str] | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    progress: bool = True,
    console: Console | None = None,
    shard: tuple[int, int] | None = None,
) -> SweepSummary:
    """Score every pending checkpoint of the chosen runs (all runs by default).

    ``shard=(i, n)`` takes only every n-th checkpoint (in run, step order)
    starting at i, so n processes (e.g. a Slurm job array) split one sweep.
    """
    if shard is not None and not 0 <= shard[0] < shard[1]:
        raise LdwError(f"--shard {shard[0]}/{shard[1]}: need 0 <= i < n")
    console = console or Console(stderr=True, quiet=not progress)
    wh = Warehouse.open(warehouse)
    config = wh.require_eval_config()
    runs = wh.runs()
    if runs.height == 0:
        raise LdwError(f"{wh.root}: no runs; run `ldw ingest RUN_DIR` first")
    chosen = run_ids or runs["run_id"].to_list()
    unknown = sorted(set(chosen) - set(runs["run_id"].to_list()))
    if unknown:
        raise LdwError(f"{wh.root}: unknown run(s) {', '.join(unknown)}; known: {', '.join(runs['run_id'])}")
    for row in runs.filter(runs["run_id"].is_in(chosen)).iter_rows(named=True):
        if row["tokenizer_fingerprint"] != config["tokenizer_fingerprint"]:
            raise LdwError(
                f"run '{row['run_id']}': tokenizer {row['tokenizer_path']} differs from the evaluation "
                f"set's {config.get('tokenizer_path')}"
            )
    dev = resolve_device(device)
    batch = batch_size or (CUDA_BATCH if dev.type == "cuda" else CPU_BATCH)
    ids, seq_ids, positions = wh.eval_arrays()
    plan = EvalBatchPlan(ids, seq_ids, positions, config.get("prefix_token_id"))
    sweep_id = uuid.uuid4().hex[:12]
    wh.record_sweep(sweep_id, scoring_settings(dev, batch, config))
    summary = SweepSummary()
    started = time.perf_counter()
    mine = _shard_members(wh, shard)
    for run_id in chosen:
        _sweep_run(wh, run_id, plan, dev, batch, sweep_id, summary, progress, console, mine)
    summary.seconds = time.perf_counter() - started
    return summary


def _shard_members(wh: Warehouse, shard: tuple[int, int] | None) -> set[tuple[str, int]] | None:
    if shard is None:
        return None
    index, count = shard
    every = wh.query("SELECT run_id, step FROM checkpoints ORDER BY run_id, step").rows()
    return {key for k, key in enumerate(every) if k % count == index}


def _sweep_run(
    wh: Warehouse, run_id: str, plan: EvalBatchPlan, device: torch.device, batch: int,
    sweep_id: str, summary: SweepSummary, progress: bool, console: Console,
    mine: set[tuple[str, int]] | None,
) -> None:
    checkpoints = wh.checkpoints(run_id)
    if mine is not None:
        checkpoints = checkpoints.filter([(run_id, s) in mine for s in checkpoints["step"]])
    pending = checkpoints.filter(checkpoints["status"] != "done")
    summary.skipped += checkpoints.height - pending.height
    if pending.height == 0:
        return
    n_tokens = len(plan.seq_ids)
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} ckpt"),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=not progress) as bar:
        task = bar.add_task(f"sweep {run_id}", total=pending.height, rate="")
        for row in pending.iter_rows(named=True):
            step = int(row["step"])
            t0 = time.perf_counter()
            try:
                model = load_causal_lm(Path(row["path"]), device)
                values = score_surprisal(model, plan, batch)
                del model
            except ProbeError as exc:
                message = str(exc)
                wh.mark_checkpoint_failed(run_id, step, message)
                summary.failed.append(f"{run_id} step {step}: {message}")
                console.print(f"[red]failed[/red] {run_id} step {step}: {message}")
                bar.advance(task)
                continue
            if not np.all(np.isfinite(values)):
                message = f"{row['path']}: non-finite surprisal for {int((~np.isfinite(values)).sum())} tokens"
                wh.mark_checkpoint_failed(run_id, step, message)
                summary.failed.append(f"{run_id} step {step}: {message}")
                bar.advance(task)
                continue
            wh.write_surprisal(run_id, step, values, sweep_id)
            summary.scored += 1
            summary.tokens += n_tokens
            rate = n_tokens / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, advance=1, rate=f"{rate:,.0f} tok/s")
