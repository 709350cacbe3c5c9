"""The checkpoint sweep: score every evaluation token under every checkpoint of every run.

One Parquet file per (run, checkpoint), cataloged only once complete, so a
sweep killed at any point resumes without lost or duplicated rows. A
checkpoint that fails to load is recorded as failed and the sweep goes on.

An executor turns checkpoint jobs into outcomes (surprisal values or a
one-line error): ``local`` scores them one after another in this process,
fetching and loading the next ones meanwhile (``ldw.sweep.streaming``),
``ray`` (``ldw.sweep.ray_executor``) as one Ray task each. Either way one
background thread of this process alone writes the warehouse, through
:func:`_record`. Checkpoints of runs ingested from the Hugging Face Hub are
downloaded as they are needed (``ldw.sweep.sources``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from ldw.errors import LdwError
from ldw.ingest.hub import HUB_SOURCE_KIND, HubCheckpoint
from ldw.probe.scoring import EvalBatchPlan, ScoreOptions
from ldw.sweep.config import SweepConfig, SweepSummary
from ldw.sweep.hub_cache import DownloadLedger
from ldw.sweep.jobs import CheckpointJob, Executor, FetchSettings, Outcome, Scored, Scoring
from ldw.sweep.streaming import BackgroundWriter, LocalExecutor
from ldw.warehouse import Warehouse


@contextmanager
def _open_executor(sweep: SweepConfig, root: Path) -> Iterator[Executor]:
    fetch = FetchSettings(sweep.keep_weights, sweep.fetch_attempts)
    scoring = Scoring(sweep.precision, ScoreOptions(sweep.batch_size, sweep.fused_head, sweep.compile))
    if sweep.executor == "ray":
        from ldw.sweep.ray_executor import ray_executor

        with ray_executor(sweep.ray_address, sweep.device, scoring, fetch) as scorer:
            yield scorer
    else:
        shard = f"-shard-{sweep.shard[0]}-of-{sweep.shard[1]}" if sweep.shard else ""
        ledger = DownloadLedger(root / f"hub-downloads{shard}.txt")
        yield LocalExecutor(sweep.device, scoring, sweep.prefetch, fetch, ledger)


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
    with _open_executor(sweep, wh.root) as scorer:
        sweep_id = uuid.uuid4().hex[:12]
        settings = {**scorer.settings(config), **_source_settings(jobs, sweep)}
        wh.record_sweep(sweep_id, settings)
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} ckpt"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=console, disable=not progress) as bar:
            tasks = _progress_tasks(bar, jobs)

            def write(job: CheckpointJob, outcome: Outcome) -> None:
                if isinstance(outcome, Scored) and _learn(settings, outcome.notes, job == jobs[-1], console):
                    wh.record_sweep(sweep_id, settings)
                _record(wh, job, outcome, sweep_id, config["eval_id"], summary, console)
                rate = summary.tokens / max(time.perf_counter() - started, 1e-9)
                bar.update(tasks[job.run_id], advance=1, rate=f"{rate:,.0f} tok/s")

            # from here on only the writer thread opens the warehouse; an error stops the scorer's threads too
            with BackgroundWriter(write) as writer, closing(scorer.score(jobs, plan)) as outcomes:
                for job, outcome in outcomes:
                    writer.submit(job, outcome)
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
    hub_runs = wh.query("SELECT run_id, metadata FROM runs WHERE source_kind = ?", [HUB_SOURCE_KIND])
    listings = {run_id: json.loads(metadata)["hub"] for run_id, metadata in hub_runs.iter_rows()}
    for run_id in chosen:
        hub = listings.get(run_id)
        checkpoints = wh.checkpoints(run_id)
        if mine is not None:
            checkpoints = checkpoints.filter([(run_id, s) in mine for s in checkpoints["step"]])
        pending = checkpoints.filter(checkpoints["status"] != "done")
        summary.skipped += checkpoints.height - pending.height
        for row in pending.iter_rows(named=True):
            origin = _hub_checkpoint(hub, row) if hub else None
            jobs.append(CheckpointJob(run_id, int(row["step"]), row["path"], origin))
    return jobs


def _hub_checkpoint(hub: dict, row: dict) -> HubCheckpoint:
    """Where a checkpoint of a hub run lives, from what ingest stored in the run's metadata."""
    revision = row["path"].rpartition("@")[2]
    listed = hub["revisions"].get(revision)
    if listed is None:
        raise LdwError(f"{row['path']}: not in the run's hub listing; run `ldw ingest hf:{hub['repo_id']}` again")
    return HubCheckpoint(
        hub["repo_id"], revision, listed["commit"], int(row["step"]), row["tokens_seen"], listed["files"]
    )


def _source_settings(jobs: list[CheckpointJob], sweep: SweepConfig) -> dict:
    """Where this sweep's checkpoints come from: hub repository, revision and commit of each (never a token)."""
    settings: dict = {"prefetch": sweep.prefetch if sweep.executor == "local" else None}
    hub_jobs = [job.hub for job in jobs if job.hub is not None]
    if hub_jobs:
        from huggingface_hub import constants

        settings["hub"] = {
            "endpoint": _without_credentials(constants.ENDPOINT),
            "keep_weights": sweep.keep_weights,
            "revisions": [{"repo_id": h.repo_id, "revision": h.revision, "commit": h.commit} for h in hub_jobs],
        }
    return settings


def _without_credentials(url: str) -> str:
    """A URL with any user:password@ part left out."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _progress_tasks(bar: Progress, jobs: Iterable[CheckpointJob]) -> dict[str, TaskID]:
    totals: dict[str, int] = {}
    for job in jobs:
        totals[job.run_id] = totals.get(job.run_id, 0) + 1
    return {run_id: bar.add_task(f"sweep {run_id}", total=n, rate="") for run_id, n in totals.items()}


def _learn(settings: dict, notes: dict, last: bool, console: Console) -> bool:
    """Put what a checkpoint's scoring learned into the sweep's settings; True when they changed.

    The batch size that worked and the head used (the latest); the precision's error measured at
    the first checkpoint (``precision_error``) and at the last (``precision_error_last``), with a
    warning when the exact default misses its bar.
    """
    learned = {key: notes[key] for key in ("batch_size", "head") if key in notes}
    if "precision_error" in notes:
        key = "precision_error_last" if last and "precision_error" in settings else "precision_error"
        learned[key] = error = notes["precision_error"]
        if error.get("within_bar") is False or "error" in error:
            console.print(f"[yellow]warning[/yellow] precision check: {_error_words(error)}", highlight=False)
    changed = any(settings.get(key) != value for key, value in learned.items())
    settings.update(learned)
    return changed


def _error_words(error: dict) -> str:
    if "error" in error:
        return f"could not be measured ({error['error']})"
    return (
        f"max {error['max_abs_bits']:.3g} bits from {error['reference']} on {error['tokens']} tokens, "
        f"above the {error['bar_bits']} bits bar"
    )


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
    if isinstance(outcome, Scored):
        outcome = outcome.values
        if not np.all(np.isfinite(outcome)):
            outcome = f"{job.path}: non-finite surprisal for {int((~np.isfinite(outcome)).sum())} tokens"
    if isinstance(outcome, str):
        wh.mark_checkpoint_failed(job.run_id, job.step, outcome)
        summary.failed.append(f"{job.run_id} step {job.step}: {outcome}")
        console.print(f"[red]failed[/red] {job.run_id} step {job.step}: {outcome}", highlight=False)
        return
    wh.write_surprisal(job.run_id, job.step, outcome, sweep_id, eval_id)
    summary.scored += 1
    summary.tokens += len(outcome)
