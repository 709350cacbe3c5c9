"""``ldw`` analysis commands: metrics, n-grams, exports, spikes, schedule law, weight probes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ldw.cli.common import DEFAULT_WAREHOUSE, QuietOpt, WarehouseOpt, console, err
from ldw.curves.config import MetricsConfig
from ldw.dynamics.config import ScheduleConfig, SpikesConfig, WeightProbeConfig
from ldw.dynamics.spikes import SpikeParams
from ldw.errors import LdwError
from ldw.ngrams.config import NgramConfig
from ldw.workbench import Workbench

SPIKE_RULE = SpikeParams()


def metrics(
    warehouse: WarehouseOpt = DEFAULT_WAREHOUSE,
    window: Annotated[float, typer.Option(help="Final-surprisal window: the last fraction of training steps.")] = 0.25,
    sigmoid: Annotated[bool, typer.Option(help="Also fit the sigmoid AoA of Chang & Bergen (2022).")] = False,
    chunk_tokens: Annotated[int, typer.Option(help="Tokens per chunk (bounds memory).")] = 65_536,
    no_curves: Annotated[bool, typer.Option("--no-curves", help="Do not store the smoothed curves G.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Learning-curve metrics per token: final surprisal, variability, GAM-smoothed AoA, forgettability."""
    config = MetricsConfig(window=window, sigmoid=sigmoid, chunk_tokens=chunk_tokens, store_curves=not no_curves)
    summary = Workbench(warehouse, progress=not quiet).metrics(config)
    console.print(
        f"metrics for {summary.tokens:,} tokens x {len(summary.runs)} runs in {summary.seconds:.1f} s: "
        + ", ".join(summary.tables)
    )
    for skipped in summary.skipped_runs:
        err.print(f"[yellow]skipped[/yellow] {skipped}")


def ngrams(
    warehouse: WarehouseOpt = DEFAULT_WAREHOUSE,
    corpus: Annotated[
        str,
        typer.Option(help="Reference corpus: 'builtin' or a .txt/.jsonl/.parquet file (ideally the training data)."),
    ] = "builtin",
    split: Annotated[
        str, typer.Option(help="all | train | heldout (train = the documents the reference trainer used).")
    ] = "all",
    heldout_fraction: Annotated[float, typer.Option(help="Held-out fraction used by --split.")] = 0.1,
    tokenizer: Annotated[Optional[Path], typer.Option(help="Tokenizer folder (default: the evaluation set's).")] = None,
    max_n: Annotated[int, typer.Option(help="Highest n-gram order.")] = 5,
    quiet: QuietOpt = False,
) -> None:
    """Count 1..5-grams of a reference corpus and store each evaluation token's n-gram predictors."""
    config = NgramConfig(
        corpus=corpus, split=split, heldout_fraction=heldout_fraction, tokenizer=tokenizer, max_n=max_n
    )
    result = Workbench(warehouse, progress=not quiet).ngrams(config)
    console.print(
        f"counted {result.n_tokens_counted:,} tokens in {result.n_documents:,} documents; "
        f"ngram_stats for {result.n_eval_tokens:,} tokens ({result.total_s} s)"
    )


def export_ngram_correlations(
    out: Annotated[Path, typer.Option(help="Folder to write the CSV and Parquet files into.")],
    warehouse: WarehouseOpt = DEFAULT_WAREHOUSE,
) -> None:
    """Pearson/Spearman correlations and OLS fits of every metric against every n-gram predictor."""
    for path in Workbench.open(warehouse).export_correlations(out):
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
) -> None:
    """Detect loss / grad-norm spikes and list the tokens whose surprisal rose most across each."""
    if window < SPIKE_RULE.min_history:
        raise LdwError(
            f"--window must be at least {SPIKE_RULE.min_history} logged points (the history a point is judged "
            f"against before it can be flagged), not {window}"
        )
    rule = SpikeParams(window=window, k=k, min_points=min_points, merge_gap=merge_gap)
    config = SpikesConfig(traces=tuple(trace or ("loss", "grad_norm")), rule=rule, top_n=top_n)
    result = Workbench(warehouse).detect_spikes(config)
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
) -> None:
    """Fit the LR-annealing loss law L0 + A*S1^-alpha - C*S2 and predict other schedules."""
    from rich.table import Table

    config = ScheduleConfig(runs=tuple(run), predict=tuple(predict or ()), decay=decay, fit_from=fit_from)
    result = Workbench(warehouse).fit_schedule(config)
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
) -> None:
    """Per-checkpoint weight probes: sigma1 and SEC of Wq^T Wk per head, attention entropy, norms."""
    config = WeightProbeConfig(runs=tuple(run) if run else None, sequences=sequences, device=device)
    summary = Workbench(warehouse, progress=not quiet).probe_weights(config)
    console.print(f"{summary.rows} rows from {summary.checkpoints} checkpoints (table weight_probes)")
    for run_id, step, error in summary.failures:
        err.print(f"[red]failed[/red] {run_id} step {step}: {error}", highlight=False)
