"""The checkpoint sweep: score every evaluation token under every checkpoint of every run.

One Parquet file per (run, checkpoint), cataloged only once complete, so a
sweep killed at any point resumes without lost or duplicated rows. A
checkpoint that fails to load is recorded as failed and the sweep goes on.

An executor turns checkpoint jobs into outcomes (surprisal values or a
one-line error): ``local`` scores them one after another in this process,
``ray`` (``ldw.sweep.ray_executor``) as one Ray task each. Either way this
process alone writes the warehouse, through :func:`_record`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from ldw.errors import LdwError
from ldw.probe.loading import resolve_device
from ldw.probe.scoring import EvalBatchPlan
from ldw.sweep.config import SweepConfig, SweepSummary
from ldw.sweep.jobs import (
    CheckpointJob,
    Executor,
    Outcome,
    default_batch,
    score_checkpoint,
    scoring_settings,
)
from ldw.warehouse import Warehouse


class LocalExecutor:
    """Scores checkpoints one after another in this process."""

    def __init__(self, device: str, batch_size: int | None) -> None:
        self.device = resolve_device(device)
        self.batch = batch_size or default_batch(self.device)

    def settings(self, config: dict) -> dict:
        """Scoring settings of this machine's device."""
        return scoring_settings(self.device, self.batch, config, "local")

    def score(self, jobs: list[CheckpointJob], plan: EvalBatchPlan) -> Iterator[tuple[CheckpointJob, Outcome]]:
        """Score each job in turn."""
        for job in jobs:
            yield job, score_checkpoint(job.path, plan, self.device, self.batch)


@contextmanager
def _open_executor(executor: str, device: str, batch_size: int | None, ray_address: str | None) -> Iterator[Executor]:
    if executor == "ray":
        from ldw.sweep.ray_executor import ray_executor

        with ray_executor(ray_address, device, batch_size) as scorer:
            yield scorer
    else:
        yield LocalExecutor(device, batch_size)


def run_sweep(
    warehouse: Path, sweep: SweepConfig = SweepConfig(), progress: bool = True, console: Console | None = None
) -> SweepSummary:
    """Score every pending checkpoint of the chosen runs (all runs by default).

    ``shard=(i, n)`` takes only every n-th checkpoint (in run, step order)
    starting at i, so n processes (e.g. a Slurm job array) split one sweep.
    ``executor="ray"`` scores the checkpoints as Ray tasks on the cluster at
    ``ray_address`` (default: ``$RAY_ADDRESS``, else one started on this
    machine); this process still writes every file. With nothing pending no
    executor is started and no sweep is recorded.
    """
    console = console or Console(stderr=True, quiet=not progress)
    wh = Warehouse.open(warehouse)
    config = wh.require_eval_config()
    chosen = _chosen_runs(wh, list(sweep.runs) if sweep.runs else None, config)
    summary = SweepSummary()
    jobs = _pending_jobs(wh, chosen, _shard_members(wh, sweep.shard), summary)
    if not jobs:
        return summary
    started = time.perf_counter()
    ids, seq_ids, positions = wh.eval_arrays()
    plan = EvalBatchPlan(ids, seq_ids, positions, config.get("prefix_token_id"))
    with _open_executor(sweep.executor, sweep.device, sweep.batch_size, sweep.ray_address) as scorer:
        sweep_id = uuid.uuid4().hex[:12]
        wh.record_sweep(sweep_id, scorer.settings(config))
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} ckpt"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=console, disable=not progress) as bar:
            tasks = _progress_tasks(bar, jobs)
            for job, outcome in scorer.score(jobs, plan):
                _record(wh, job, outcome, sweep_id, config["eval_id"], summary, console)
                rate = summary.tokens / max(time.perf_counter() - started, 1e-9)
                bar.update(tasks[job.run_id], advance=1, rate=f"{rate:,.0f} tok/s")
    summary.seconds = time.perf_counter() - started
    return summary


def _chosen_runs(wh: Warehouse, run_ids: list[str] | None, config: dict) -> list[str]:
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
    return chosen


def _shard_members(wh: Warehouse, shard: tuple[int, int] | None) -> set[tuple[str, int]] | None:
    if shard is None:
        return None
    index, count = shard
    every = wh.query("SELECT run_id, step FROM checkpoints ORDER BY run_id, step").rows()
    return {key for k, key in enumerate(every) if k % count == index}


def _pending_jobs(
    wh: Warehouse, chosen: list[str], mine: set[tuple[str, int]] | None, summary: SweepSummary
) -> list[CheckpointJob]:
    """Checkpoints of the chosen runs (and shard) not yet done, in run, step order; counts the skipped."""
    jobs = []
    for run_id in chosen:
        checkpoints = wh.checkpoints(run_id)
        if mine is not None:
            checkpoints = checkpoints.filter([(run_id, s) in mine for s in checkpoints["step"]])
        pending = checkpoints.filter(checkpoints["status"] != "done")
        summary.skipped += checkpoints.height - pending.height
        jobs += [CheckpointJob(run_id, int(r["step"]), r["path"]) for r in pending.iter_rows(named=True)]
    return jobs


def _progress_tasks(bar: Progress, jobs: Iterable[CheckpointJob]) -> dict[str, TaskID]:
    totals: dict[str, int] = {}
    for job in jobs:
        totals[job.run_id] = totals.get(job.run_id, 0) + 1
    return {run_id: bar.add_task(f"sweep {run_id}", total=n, rate="") for run_id, n in totals.items()}


def _record(
    wh: Warehouse,
    job: CheckpointJob,
    outcome: Outcome,
    sweep_id: str,
    eval_id: str,
    summary: SweepSummary,
    console: Console,
) -> None:
    """Write one checkpoint's outcome: its surprisal file, or a failed row with the one-line reason.

    The surprisal is cataloged only while the warehouse still holds evaluation
    set ``eval_id``, the one it was scored on (else a WarehouseError ends the sweep).
    """
    if isinstance(outcome, np.ndarray) and not np.all(np.isfinite(outcome)):
        outcome = f"{job.path}: non-finite surprisal for {int((~np.isfinite(outcome)).sum())} tokens"
    if isinstance(outcome, str):
        wh.mark_checkpoint_failed(job.run_id, job.step, outcome)
        summary.failed.append(f"{job.run_id} step {job.step}: {outcome}")
        console.print(f"[red]failed[/red] {job.run_id} step {job.step}: {outcome}", highlight=False)
        return
    wh.write_surprisal(job.run_id, job.step, outcome, sweep_id, eval_id)
    summary.scored += 1
    summary.tokens += len(outcome)
