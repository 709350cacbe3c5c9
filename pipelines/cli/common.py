"""What every ``ldw`` command shares: the Typer app class, consoles and common options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ldw.warehouse.disk_errors import disk_failure
from ldw.warehouse.errors import WarehouseError


class LdwTyper(typer.Typer):
    """The ``ldw`` Typer app: a full or read-only disk, met anywhere, ends the command with a one-line error."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the CLI; a write that failed on a full or read-only disk becomes a WarehouseError naming the file."""
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            failure = disk_failure(exc)
            if failure is None or (isinstance(exc, WarehouseError) and failure[1] in str(exc)):
                raise
            path, reason = failure
            raise WarehouseError(f"{path}: {reason}" if path else reason) from exc


console = Console()
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long

WarehouseOpt = Annotated[Path, typer.Option("--warehouse", "-w", envvar="LDW_WAREHOUSE", help="Warehouse folder.")]
DEFAULT_WAREHOUSE = Path("ldw-warehouse")
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait", help="If another command is writing the warehouse, wait for it (saying whom) instead of failing."
    ),
]
