"""``ldw status``: what a warehouse holds and what is left to do."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from ldw.warehouse import Warehouse
from ldw.warehouse.lock import holders_of
from ldw.warehouse.runs import describe_sweep


def print_status(warehouse: Path, console: Console) -> None:
    """Print runs with checkpoint counts by status, failures, the eval set, derived tables and who is writing."""
    wh = Warehouse.open(warehouse, read_only=True)
    summary = wh.run_summary()
    first, last = (pl.col(c).cast(pl.String).fill_null("") for c in ("first_step", "last_step"))
    steps = pl.concat_str(first, pl.lit("-"), last)
    counts = summary.select(
        pl.col("run_id").alias("run"),
        pl.col("source_kind").alias("kind"),
        pl.col("checkpoints").alias("ckpts"),
        "done",
        "pending",
        "failed",
        pl.col("duplicates").alias("dup"),
        steps.alias("steps"),
    )
    table = Table(title=f"warehouse {wh.root}")
    for column in counts.columns:
        table.add_column(column, no_wrap=True)
    for row in counts.iter_rows():
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)
    if wh.store.remote:
        console.print(f"Parquet tables: {wh.store.url}", highlight=False)
    failed = wh.query("SELECT run_id, step, error FROM checkpoints WHERE status = 'failed' ORDER BY run_id, step")
    for run_id, step, error in failed.iter_rows():
        console.print(f"[red]failed[/red] {run_id} step {step}: {error}", highlight=False)
    config = wh.eval_config()
    if config is None:
        console.print("evaluation set: none (run `ldw evalset`)")
    else:
        console.print(
            f"evaluation set: {wh.token_count():,} tokens from {config['corpus']} ({config['split']}), "
            f"seq_len {config['seq_len']}, vocab {config['vocab_size']}"
        )
    for row in wh.sweeps().iter_rows(named=True):
        console.print(
            f"sweep {row['sweep_id']} ({row['started_at']:%Y-%m-%d %H:%M}): {describe_sweep(row)}", highlight=False
        )
    derived = wh.query("SELECT table_name, computed_at FROM derived_tables ORDER BY table_name")
    if derived.height:
        console.print("derived tables: " + ", ".join(derived["table_name"].to_list()))
    for holder in holders_of(wh.root):
        console.print(f"being written by {holder.describe()}", highlight=False)
