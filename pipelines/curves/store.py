"""``ldw metrics``: learning-curve metrics for every run in a warehouse, chunk by chunk.

Reads each run's surprisal matrix a block of tokens at a time (memory stays
bounded by ``chunk_tokens``), computes the per-run metrics of
:mod:`ldw.curves.metrics` and the cross-run variability, and writes three
derived tables, one Parquet part per token chunk:

* ``token_metrics`` (run, token): final_surprisal, within_run_var,
  aoa_log10_step, aoa_step, aoa_threshold_bits, acquired, forgettability,
  gam_lambda [, sigmoid_aoa_log10_step, sigmoid_aoa_step];
* ``crossrun_metrics`` (token): crossrun_var, n_runs, n_runs_acquired and the
  run means of the metrics (mean_final_surprisal, mean_within_run_var,
  mean_aoa_log10_step, mean_forgettability [, mean_sigmoid_aoa_log10_step]);
* ``token_curves_smoothed`` (run, token): g_bits, the GAM curve G at that
  run's checkpoints with step > 0 (``params["steps"][run_id]``), for drawing;
* ``token_curves_raw`` (token, run, step): the raw surprisal again, token-major,
  so the app reads one token's curves from one part (``chunk_tokens`` per part).

Every rule and parameter is recorded in ``derived_tables.params`` (see
:func:`metric_params`); a run whose checkpoints fall short of a rule (window
under 5 checkpoints, fewer than 37 with step > 0) gets an
:class:`ldw.LdwWarning`, also kept in ``params["warnings"]``.
"""

from __future__ import annotations

import time
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ldw.curves.aoa import N_GRID, PROPORTION, chance_bits
from ldw.curves.config import MetricsConfig, MetricsResult
from ldw.curves.gam import DEFAULT_LAMS, GCV_GAMMA, N_SPLINES
from ldw.curves.metrics import (
    ALL_LAMBDAS_STEPS,
    MIN_POSITIVE_STEPS,
    MIN_WINDOW_CHECKPOINTS,
    CrossRunAccumulator,
    RunChecks,
    RunMetrics,
    SmootherCache,
    check_run,
    common_steps,
    run_metrics,
)
from ldw.curves.sigmoid import FTOL, MAXFEV
from ldw.errors import LdwError, LdwWarning
from ldw.warehouse import Warehouse
from ldw.warehouse.tables import chunk_part

CURVE_TABLES = ("token_curves_smoothed", "token_curves_raw")
TABLES = ("token_metrics", "crossrun_metrics", *CURVE_TABLES)
MEANED = ("final_surprisal", "within_run_var", "aoa_log10_step", "forgettability")


def _run_columns(metrics: RunMetrics) -> dict[str, np.ndarray]:
    columns = {
        "final_surprisal": metrics.final_surprisal,
        "within_run_var": metrics.within_run_var,
        "aoa_log10_step": metrics.aoa.log10_step,
        "aoa_step": metrics.aoa.step,
        "aoa_threshold_bits": metrics.aoa.threshold,
        "acquired": metrics.aoa.acquired,
        "forgettability": metrics.forgettability,
        "gam_lambda": metrics.lam,
    }
    if metrics.sigmoid_aoa is not None:
        columns["sigmoid_aoa_log10_step"] = metrics.sigmoid_aoa.log10_step
        columns["sigmoid_aoa_step"] = metrics.sigmoid_aoa.step
    return columns


def _token_table(run_id: str, token_idx: np.ndarray, columns: dict[str, np.ndarray]) -> pa.Table:
    data: dict[str, Any] = {
        "run_id": pa.array([run_id] * len(token_idx), pa.string()),
        "token_idx": pa.array(token_idx, pa.int64()),
    }
    data.update({name: pa.array(values, _type(values)) for name, values in columns.items()})
    return pa.table(data)


def _type(values: np.ndarray) -> pa.DataType:
    return pa.bool_() if values.dtype == np.bool_ else pa.float64()


def _curve_table(run_id: str, token_idx: np.ndarray, smoothed: np.ndarray) -> pa.Table:
    n_tokens, n_steps = smoothed.shape
    offsets = pa.array(np.arange(n_tokens + 1, dtype=np.int32) * n_steps, pa.int32())
    values = pa.array(smoothed.astype(np.float32).ravel(), pa.float32())
    return pa.table(
        {
            "run_id": pa.array([run_id] * n_tokens, pa.string()),
            "token_idx": pa.array(token_idx, pa.int64()),
            "g_bits": pa.ListArray.from_arrays(offsets, values),
        }
    )


def raw_curve_table(
    run_ids: list[str], steps: list[np.ndarray], token_idx: np.ndarray, matrices: list[np.ndarray]
) -> pa.Table:
    """Token-major copy of the raw surprisal (token, then run, then step) so one token's curves are one read."""
    values = np.concatenate(matrices, axis=1)  # [T, sum of each run's checkpoints]
    codes = np.concatenate([np.full(len(s), i, dtype=np.int32) for i, s in enumerate(steps)])
    n = len(token_idx)
    return pa.table(
        {
            "run_id": pa.DictionaryArray.from_arrays(pa.array(np.tile(codes, n)), pa.array(run_ids)),
            "step": pa.array(np.tile(np.concatenate(steps), n), pa.int64()),
            "token_idx": pa.array(np.repeat(token_idx, values.shape[1]), pa.int64()),
            "surprisal_bits": pa.array(values.ravel(), pa.float32()),
        }
    )


def _crossrun_table(token_idx: np.ndarray, crossrun: np.ndarray, per_run: list[dict[str, np.ndarray]]) -> pa.Table:
    data: dict[str, Any] = {
        "token_idx": pa.array(token_idx, pa.int64()),
        "crossrun_var": pa.array(crossrun, pa.float64()),
        "n_runs": pa.array(np.full(len(token_idx), len(per_run), dtype=np.int32), pa.int32()),
        "n_runs_acquired": pa.array(np.sum([c["acquired"] for c in per_run], axis=0, dtype=np.int32), pa.int32()),
    }
    names = list(MEANED) + (["sigmoid_aoa_log10_step"] if "sigmoid_aoa_log10_step" in per_run[0] else [])
    for name in names:
        stacked = np.stack([columns[name] for columns in per_run])
        data[f"mean_{name}"] = pa.array(stacked.mean(axis=0), pa.float64())
    return pa.table(data)


def _usable_runs(wh: Warehouse) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Steps of each run with enough swept checkpoints, and why the others are skipped."""
    steps, skipped = {}, {}
    for run_id in wh.run_ids():
        run_steps, _, _ = wh.surprisal_matrix(run_id, 0, 0)
        n_positive = int(np.sum(run_steps > 0))
        if n_positive >= MIN_POSITIVE_STEPS:
            steps[run_id] = run_steps
        else:
            skipped[run_id] = f"{n_positive} swept checkpoints with step > 0 (need {MIN_POSITIVE_STEPS})"
    if not steps:
        raise LdwError(
            f"{wh.root}: no run has {MIN_POSITIVE_STEPS}+ swept checkpoints with step > 0; run `ldw sweep` first"
        )
    return steps, skipped


def metric_params(
    config: MetricsConfig, wh: Warehouse, run_steps: dict[str, np.ndarray], checks: dict[str, RunChecks]
) -> dict[str, Any]:
    """Every rule and parameter the metric tables are computed with, as stored in ``derived_tables.params``."""
    chance = chance_bits(wh.vocab_size())
    params: dict[str, Any] = {
        "window": config.window,
        "last_k": config.last_k,
        "window_rule": "checkpoints with step >= (1 - window) * last step, at most the last last_k of them "
        "(last_k null: no cap); mean and population std (ddof 0) of raw surprisal over them",
        "window_steps": {r: c.window_steps for r, c in checks.items()},
        "window_checkpoints": {r: len(c.window_steps) for r, c in checks.items()},
        "window_warning_below": MIN_WINDOW_CHECKPOINTS,
        "x": "log10(step) over the checkpoints with step > 0",
        "smoother": "pyGAM LinearGAM(s(0, n_splines)) model solved exactly: cubic B-splines on equally spaced knots "
        "over the data range plus an intercept, 2nd-difference penalty lam * D'D, diagonal loading sqrt(eps) I",
        "lams": DEFAULT_LAMS.tolist(),
        "n_splines": N_SPLINES,
        "gcv_gamma": GCV_GAMMA,
        "lambda_rule": "per curve, the first lambda minimising GCV = n * RSS / (n - gamma * edof)^2 among the "
        "admissible ones (n - gamma * edof > 0)",
        "positive_checkpoints": {r: c.n_positive for r, c in checks.items()},
        "admissible_lams": {r: c.admissible_lams for r, c in checks.items()},
        "few_checkpoints_rule": f"runs with fewer than {MIN_POSITIVE_STEPS} checkpoints with step > 0 are skipped; "
        f"fewer than {ALL_LAMBDAS_STEPS} get a warning (not every lambda admissible), fewer than {N_SPLINES + 1} "
        "also say G is under-determined (held in shape by the penalty)",
        "aoa_rule": "G on aoa_grid_points evenly spaced x over [first, last]; threshold = (1 - p) * chance + p * "
        "min(G on the grid); AoA = first grid x with G <= threshold, or the last x when threshold >= chance",
        "aoa_grid_points": N_GRID,
        "aoa_proportion": PROPORTION,
        "vocab_size": wh.vocab_size(),
        "chance_bits": chance,
        "acquired_rule": "acquired = threshold < chance (G gets below chance); an unacquired token keeps AoA = the "
        "last step, as in the released code",
        "forgettability_rule": "sum over consecutive checkpoints (step > 0) of max(0, G(t+1) - G(t)), bits",
        "crossrun_rule": "mean over run pairs of the mean over the shared steps (> 0) of (G_a - G_b)^2, bits^2",
        "sigmoid": config.sigmoid,
        "runs": list(run_steps),
        "steps": {r: s[s > 0].tolist() for r, s in run_steps.items()},
        "crossrun_steps": common_steps(list(run_steps.values())).tolist(),
        "n_tokens": wh.token_count(),
        "warnings": [w for c in checks.values() for w in c.warnings],
    }
    if config.sigmoid:
        params["sigmoid_rule"] = (
            f"curve_fit of start + (end - start) / (1 + exp((xmid - x) / scale)) to -surprisal from "
            f"[min y, max y, mean x, 1], maxfev {MAXFEV}, ftol {FTOL} (x10 on failure); threshold halfway between "
            "-chance and max y (the lowest raw surprisal); AoA = last x when the threshold is not below both "
            "asymptotes, the curve never gets below chance or the sigmoid falls in y; first x when the threshold "
            "is at or below both; else the analytic crossing clipped to [first x, last x]"
        )
    return params


def compute_metrics(
    warehouse_path: Path, config: MetricsConfig = MetricsConfig(), progress: bool = True
) -> MetricsResult:
    """Compute and store the learning-curve metrics of every swept run.

    ``chunk_tokens`` defaults to the warehouse's Parquet row-group size so each
    chunk decodes each surprisal file's row group once.
    """
    chunk_tokens, store_curves = config.chunk_tokens, config.store_curves
    started = time.perf_counter()
    wh = Warehouse.open(Path(warehouse_path))
    n_tokens = wh.token_count()
    chance = chance_bits(wh.vocab_size())
    run_steps, skipped = _usable_runs(wh)
    run_ids = list(run_steps)
    shared = common_steps(list(run_steps.values()))
    smoothers = SmootherCache()
    checks = {
        r: check_run(f"run {r}", s, smoothers.get(s[s > 0]), config.window, config.last_k) for r, s in run_steps.items()
    }
    params = metric_params(config, wh, run_steps, checks)
    params["skipped_runs"] = skipped
    for message in params["warnings"]:
        warnings.warn(message, LdwWarning, stacklevel=2)
    tables = [t for t in TABLES if store_curves or t not in CURVE_TABLES]
    raw_params = {
        "steps": {r: s.tolist() for r, s in run_steps.items()},
        "chunk_tokens": chunk_tokens,
        "order": "token_idx, run_id, step",
    }
    chunks = list(range(0, n_tokens, chunk_tokens))
    console = Console(stderr=True, quiet=not progress)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
    )
    with ExitStack() as stack:
        bar = stack.enter_context(Progress(*columns, console=console, disable=not progress))
        # the tables are swapped in together once every chunk is written: readers never see a partial table;
        # with --no-curves the stored curves are dropped in the same switch (they would not match the new metrics)
        write = stack.enter_context(
            wh.replace_derived_tables(
                {t: raw_params if t == "token_curves_raw" else params for t in tables},
                drop=() if store_curves else CURVE_TABLES,
            )
        )
        task = bar.add_task("metrics", total=len(chunks) * len(run_ids))
        for index, lo in enumerate(chunks):
            hi = min(n_tokens, lo + chunk_tokens)
            per_run, token_parts, curve_parts, raw_parts = [], [], [], []
            accumulator = CrossRunAccumulator(shared)
            tokens = None
            for run_id in run_ids:
                steps, token_idx, values = wh.surprisal_matrix(run_id, lo, hi)
                source = f"{wh.root} run {run_id} tokens {lo}:{hi}"
                if not np.array_equal(steps, run_steps[run_id]):
                    raise LdwError(f"{source}: checkpoints changed while metrics ran (a sweep writing?); rerun")
                if tokens is not None and not np.array_equal(token_idx, tokens):
                    raise LdwError(f"{source}: token_idx differs from run {run_ids[0]}")
                tokens = token_idx
                metrics = run_metrics(
                    steps, values, chance, config.window, config.last_k, config.sigmoid, smoothers, source
                )
                accumulator.add(metrics.steps, metrics.smoothed)
                per_run.append(_run_columns(metrics))
                token_parts.append(_token_table(run_id, token_idx, per_run[-1]))
                if store_curves:
                    curve_parts.append(_curve_table(run_id, token_idx, metrics.smoothed))
                    raw_parts.append(values)
                bar.advance(task)
            part = chunk_part(index)
            write["token_metrics"](part, pa.concat_tables(token_parts))
            write["crossrun_metrics"](part, _crossrun_table(tokens, accumulator.result(), per_run))
            if store_curves:
                write["token_curves_smoothed"](part, pa.concat_tables(curve_parts))
                write["token_curves_raw"](
                    part, raw_curve_table(run_ids, [run_steps[r] for r in run_ids], tokens, raw_parts)
                )
    seconds = time.perf_counter() - started
    return MetricsResult(run_ids, skipped, n_tokens, len(chunks), list(tables), seconds, params, params["warnings"])
