"""``ldw demo``: the whole workflow offline on a CPU in a few minutes.

Trains three seeds of a tiny GPT-NeoX on Python's bundled documentation
(``pydoc_data.topics``, held-out documents kept for evaluation), ingests
them, builds the evaluation set, sweeps every checkpoint, computes the
learning-curve metrics and the n-gram statistics of the training documents,
and prints a first result and what to run next. A second run reuses what is there.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ldw.corpus import corpus_documents
from ldw.errors import LdwWarning
from ldw.ngrams.correlations import summary_table
from ldw.ngrams.export import ngram_correlations
from ldw.probe.tokenizing import has_tokenizer
from ldw.sweep.config import EvalSetConfig
from ldw.train.bpe import train_bpe_tokenizer
from ldw.train.config import TrainConfig
from ldw.train.trainer import train_run
from ldw.workbench import Workbench

SEEDS = (0, 1, 2)
DEMO_TRAIN = TrainConfig()
DEMO_EVAL = EvalSetConfig(corpus="builtin", split="heldout", heldout_fraction=DEMO_TRAIN.eval_fraction, seq_len=64)


def run_demo(warehouse: Path, console: Console, progress: bool = True) -> None:
    """Run (or finish) the demo in ``warehouse``; every stage skips what is already done."""
    warehouse = Path(warehouse).resolve()
    runs_dir = warehouse / "runs"
    tokenizer_dir = runs_dir / "tokenizer"
    console.rule("[bold]1/6 tokenizer and training")
    if not has_tokenizer(tokenizer_dir):
        train_docs = corpus_documents("builtin", "train", DEMO_TRAIN.eval_fraction)
        train_bpe_tokenizer(train_docs, DEMO_TRAIN.vocab_size, tokenizer_dir)
    run_dirs = []
    for seed in SEEDS:
        config = TrainConfig(**{**DEMO_TRAIN.to_dict(), "seed": seed, "tokenizer": str(tokenizer_dir)})
        run_dirs.append(train_run(config, runs_dir / f"seed{seed}", progress=progress))
    wb = Workbench.open(warehouse, create=True, progress=progress)
    console.rule("[bold]2/6 ingest")
    for result in wb.ingest(run_dirs):
        console.print(f"{result.run_id}: {result.n_checkpoints} checkpoints, {result.n_trace_rows} trace rows")
    console.rule("[bold]3/6 evaluation set")
    evalset = wb.evalset(dataclasses.replace(DEMO_EVAL, tokenizer_path=str(tokenizer_dir)))
    console.print(f"{evalset.sequences} held-out sequences, {evalset.tokens:,} tokens in context")
    console.rule("[bold]4/6 sweep")
    sweep = wb.sweep()
    console.print(f"scored {sweep.scored} checkpoints, {sweep.skipped} already done, {len(sweep.failed)} failed")
    console.rule("[bold]5/6 learning-curve metrics")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LdwWarning)  # printed below, one line each
        metrics = wb.metrics()
    console.print(f"metrics for {metrics.tokens:,} tokens x {len(metrics.runs)} runs")
    for note in metrics.warnings:
        console.print(f"[yellow]note[/yellow] {note}", highlight=False)
    console.rule("[bold]6/6 n-gram statistics of the training documents")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LdwWarning)
        ngrams = wb.ngrams()  # by default the runs' own training documents
    for note in ngrams.warnings:
        console.print(f"[yellow]note[/yellow] {note}", highlight=False)
    _print_summary(warehouse, console)
    _print_next_steps(warehouse, console)


def _print_summary(warehouse: Path, console: Console) -> None:
    summary = summary_table(ngram_correlations(warehouse))
    table = Table(title="log2 unigram frequency vs each metric (mean over runs)")
    for column in ("metric", "spearman_rho", "pearson_r", "expected", "n"):
        table.add_column(column)
    for row in summary.iter_rows(named=True):
        table.add_row(
            row["metric"],
            f"{row['spearman_rho']:+.3f}",
            f"{row['pearson_r']:+.3f}",
            row["expected"] or "",
            str(row["n"]),
        )
    console.print(table)


def _print_next_steps(warehouse: Path, console: Console) -> None:
    console.rule("[bold]done")
    console.print(f"warehouse: [bold]{warehouse}[/bold]  (catalog.duckdb + parquet/)")
    console.print("next:")
    console.print(f"  ldw status -w {warehouse}")
    console.print(f"  ldw app {warehouse}")
    console.print(
        f'  cd {warehouse} && duckdb catalog.duckdb "SELECT run_id, step, avg(surprisal_bits) '
        'FROM surprisal GROUP BY ALL ORDER BY ALL"',
        highlight=False,
    )
