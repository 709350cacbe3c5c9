"""``ldw sql``: one read-only query over a warehouse, printed as a table or written to CSV / Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from ldw.cli.common import DEFAULT_WAREHOUSE, WarehouseOpt, console
from ldw.errors import LdwError
from ldw.workbench import Workbench

WRITERS = {".csv": pl.DataFrame.write_csv, ".parquet": pl.DataFrame.write_parquet}


def print_frame(frame: pl.DataFrame, out: Console, limit: int) -> None:
    """``frame`` as a table of at most ``limit`` rows, with its row count."""
    table = Table(show_edge=False, header_style="bold")
    for name, dtype in frame.schema.items():
        table.add_column(name, justify="right" if dtype.is_numeric() else "left")
    for row in frame.head(limit).iter_rows():
        table.add_row(*("" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v) for v in row))
    out.print(table)
    shown = f", the first {limit} shown (--limit, or --out FILE for all)" if frame.height > limit else ""
    out.print(f"{frame.height:,} row(s){shown}", style="dim", highlight=False)


def sql(
    query: Annotated[
        str,
        typer.Argument(
            help='One read-only query, e.g. "SELECT run_id, step, avg(surprisal_bits) FROM surprisal GROUP BY ALL".'
        ),
    ],
    warehouse: WarehouseOpt = DEFAULT_WAREHOUSE,
    out: Annotated[
        Optional[Path], typer.Option(help="Write every row to FILE.csv or FILE.parquet instead of printing them.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows printed when there is no --out.")] = 40,
) -> None:
    """Run one read-only SQL query (DuckDB) over the warehouse's tables and views; nothing is changed."""
    if out is not None and out.suffix.lower() not in WRITERS:
        raise LdwError(f"--out {out}: give a .csv or .parquet file name")
    frame = Workbench.open(warehouse).sql(query)
    if out is None:
        print_frame(frame, console, limit)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    WRITERS[out.suffix.lower()](frame, out)
    console.print(f"wrote {frame.height:,} row(s) to {out}", highlight=False)
