"""``ldw`` analysis commands: metrics, n-grams, exports, spikes, schedule law, weight probes."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from ldw.cli.common import DEFAULT_WAREHOUSE, QuietOpt, WaitOpt, WarehouseOpt, console, err
from ldw.curves.config import MetricsConfig
from ldw.curves.metrics import WINDOW, WINDOW_CHECKPOINTS
from ldw.dynamics.config import ScheduleConfig, SpikesConfig, WeightProbeConfig
from ldw.dynamics.spikes import SpikeParams
from ldw.errors import LdwWarning, SettingsError
from ldw.ngrams.config import NgramConfig
from ldw.workbench import Workbench

SPIKE_RULE = SpikeParams()


def metrics(
    warehouse: WarehouseOpt = DEFAULT_WAREHOUSE,
    window: Annotated[
        float, typer.Option(help="Final-surprisal window: checkpoints in the last fraction of training steps...")
    ] = WINDOW,
    last_k: Annotated[
        int, typer.Option(help="...at most the last K of them (0: no cap; --window 1 --last-k K: the last K).")
    ] = WINDOW_CHECKPOINTS,
    sigmoid: Annotated[bool, typer.Option(help="Also fit the sigmoid AoA as Chang et al.'s code does (slow).")] = False,
    chunk_tokens: Annotated[int, typer.Option(help="Tokens per chunk (bounds memory).")] = 65_536,
    no_curves: Annotated[bool, typer.Option("--no-curves", help="Do not store the smoothed curves G.")] = False,
    quiet: QuietOpt = False,
    wait: WaitOpt = False,
) -> None:
    """Learning-curve metrics per token: final surprisal, variability, GAM-smoothed AoA, forgettability."""
    config = MetricsConfig(
        window=window,
        last_k=last_k if last_k != 0 else None,
        sigmoid=sigmoid,
        chunk_tokens=chunk_tokens,
        store_curves=not no_curves,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LdwWarning)
        summary = Workbench(warehouse, progress=not quiet, wait=wait).metrics(config)
    console.print(
        f"metrics for {summary.tokens:,} tokens x {len(summary.runs)} runs in {summary.seconds:.1f} s: "
        + ", ".join(summary.tables)
    )
    for skipped in summary.skipped_runs:
        err.print(f"[yellow]skipped[/yellow] {skipped}")
    _print_warnings(caught)


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Each LdwWarning as one yellow line on stderr (other warnings go on as usual)."""
    for item in caught:
        if issubclass(item.category, LdwWarning):
            err.print(f"[yellow]warning[/yellow] {item.message}", highlight=False)
        else:
            warnings.showwarning(item.message, item.category, item.filename, item.lineno)


def ngrams(
    warehouse: WarehouseOpt = DEFAULT_WAREHOUSE,
    corpus: Annotated[
        Optional[str],
        typer.Option(
            help="Reference corpus: 'builtin' or a .txt/.jsonl/.parquet file (the training data); "
            "default: the runs' own training corpus, when they record it."
        ),
    ] = None,
    split: Annotated[
        Optional[str],
        typer.Option(help="all | train | heldout; default: train for the runs' own corpus, all for another file."),
    ] = None,
    heldout_fraction: Annotated[
        Optional[float], typer.Option(help="Held-out fraction used by --split (default: the runs' own).")
    ] = None,
    tokenizer: Annotated[Optional[Path], typer.Option(help="Tokenizer folder (default: the evaluation set's).")] = None,
    max_n: Annotated[int, typer.Option(help="Highest n-gram order.")] = 5,
    quiet: QuietOpt = False,
    wait: WaitOpt = False,
) -> None:
    """Count 1..5-grams of the training documents and store each evaluation token's predictors (Chang et al.)."""
    config = NgramConfig(
        corpus=corpus, split=split, heldout_fraction=heldout_fraction, tokenizer=tokenizer, max_n=max_n
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LdwWarning)
        result = Workbench(warehouse, progress=not quiet, wait=wait).ngrams(config)
    source = " (the runs' training documents)" if result.params["reference_source"] == "runs" else ""
    split_text = result.params["split"] + source
    console.print(
        f"counted {result.n_tokens_counted:,} tokens of {result.params['corpus']}, split {split_text}; "
        f"ngram_stats for {result.n_eval_tokens:,} tokens ({result.total_s} s)"
    )
    _print_warnings(caught)


def export_ngram_correlations(
    out: Annotated[Path, typer.Option(help="Folder to write the CSV and Parquet files into.")],
    warehouse: WarehouseOpt = DEFAULT_WAREHOUSE,
    include_unacquired: Annotated[
        bool,
        typer.Option(help="Keep never-acquired tokens (AoA = last step) in AoA statistics, as the released code does."),
    ] = False,
) -> None:
    """Correlations of every metric with every n-gram predictor, and the paper's regressions (OLS, LR tests)."""
    for path in Workbench.open(warehouse).export_correlations(out, include_unacquired=include_unacquired):
        console.print(f"wrote {path}")


def spikes(
    warehouse: WarehouseOpt = DEFAULT_WAREHOUSE,
    trace: Annotated[
        Optional[list[str]], typer.Option(help="Traces to scan (repeatable; default loss and grad_norm).")
    ] = None,
    k: Annotated[float, typer.Option(help="Threshold in robust MADs above the trailing median.")] = SPIKE_RULE.k,
    window: Annotated[
        int, typer.Option(help=f"Trailing baseline window, in logged points (at least {SPIKE_RULE.min_history}).")
    ] = SPIKE_RULE.window,
    min_points: Annotated[
        int, typer.Option(help="Minimum points above threshold for a spike.")
    ] = SPIKE_RULE.min_points,
    merge_gap: Annotated[int, typer.Option(help="Merge spikes closer than this many points.")] = SPIKE_RULE.merge_gap,
    top_n: Annotated[int, typer.Option(help="Tokens kept per spike in spike_tokens.")] = 1000,
    wait: WaitOpt = False,
) -> None:
    """Detect loss / grad-norm spikes and list the tokens whose surprisal rose most across each."""
    if window < SPIKE_RULE.min_history:
        raise SettingsError(
            f"--window must be at least {SPIKE_RULE.min_history} logged points (the history a point is judged "
            f"against before it can be flagged), not {window}"
        )
    rule = SpikeParams(window=window, k=k, min_points=min_points, merge_gap=merge_gap)
    config = SpikesConfig(traces=tuple(trace or ("loss", "grad_norm")), rule=rule, top_n=top_n)
    result = Workbench(warehouse, wait=wait).detect_spikes(config)
    for warning in result.warnings:
        err.print(f"[yellow]warning[/yellow] {warning.replace('the window', '--window')}", highlight=False)
    console.print(f"{result.spikes} spikes found (table spikes)")
    if result.spikes:
        console.print(f"{result.bracketed} spikes bracketed by checkpoints: their top risers are in table spike_tokens")


def fit_schedule(
    run: Annotated[list[str], typer.Option(help="Run(s) to fit (repeatable); they share one set of parameters.")],
    warehouse: WarehouseOpt = DEFAULT_WAREHOUSE,
    predict: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Schedules to predict: cosine | wsd | constant | multistep (options as name:key=value,...), "
            "run:ID, a training-log file or a .txt with one LR per line."
        ),
    ] = None,
    decay: Annotated[float, typer.Option(help="Momentum decay of the annealing area S2.")] = 0.999,
    fit_from: Annotated[float, typer.Option(help="Fit from this fraction of steps (after warmup).")] = 0.05,
    wait: WaitOpt = False,
) -> None:
    """Fit the LR-annealing loss law L0 + A*S1^-alpha - C*S2 and predict other schedules."""
    from rich.table import Table

    config = ScheduleConfig(runs=tuple(run), predict=tuple(predict or ()), decay=decay, fit_from=fit_from)
    result = Workbench(warehouse, wait=wait).fit_schedule(config)
    p = result.fit.params
    console.print(
        f"L0={p.L0:.4g} A={p.A:.4g} alpha={p.alpha:.4g} C={p.C:.4g}; fit RMSE {result.fit.rmse:.4g}, "
        f"MAPE {result.fit.mape_pct:.2f}% on {result.fit.n_points} points"
    )
    if result.errors.height:
        table = Table(title="prediction error against observed loss")
        for column in result.errors.columns:
            table.add_column(column)
        for row in result.errors.iter_rows():
            table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
        console.print(table)


def probe_weights(
    warehouse: WarehouseOpt = DEFAULT_WAREHOUSE,
    run: Annotated[Optional[list[str]], typer.Option(help="Only these runs (repeatable).")] = None,
    sequences: Annotated[int, typer.Option(help="Evaluation sequences in the probe batch.")] = 8,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    quiet: QuietOpt = False,
    wait: WaitOpt = False,
) -> None:
    """Per-checkpoint weight probes: sigma1 and SEC of Wq^T Wk per head, attention entropy, norms."""
    config = WeightProbeConfig(runs=tuple(run) if run else None, sequences=sequences, device=device)
    summary = Workbench(warehouse, progress=not quiet, wait=wait).probe_weights(config)
    console.print(f"{summary.rows} rows from {summary.checkpoints} checkpoints (table weight_probes)")
    for run_id, step, error in summary.failures:
        err.print(f"[red]failed[/red] {run_id} step {step}: {error}", highlight=False)
