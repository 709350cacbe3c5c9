"""What every ``ldw`` command shares: the Typer app, consoles and common options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    help="Learning-dynamics workbench: per-token surprisal curves over checkpoints, in a DuckDB/Parquet warehouse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)

WarehouseOpt = Annotated[
    Path, typer.Option("--warehouse", "-w", envvar="LDW_WAREHOUSE", help="Warehouse folder.")
]
DEFAULT_WAREHOUSE = Path("ldw-warehouse")
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
