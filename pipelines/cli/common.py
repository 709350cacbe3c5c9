"""What every ``ldw`` command shares: the Typer app class, consoles and common options."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from ldw.warehouse.disk_errors import disk_failure
from ldw.warehouse.errors import WarehouseError


def _untyped_flags(params: list[Any]) -> list[Any]:
    """``params`` with every flag's metavar blanked, so help shows no value type (``<bool>``) for it.

    Typer 0.29 renders each option's type in the help table, flags (``--quiet``,
    ``--help``) included, unless the option has a metavar; a flag takes no value,
    so its metavar is the empty string.
    """
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class LdwCommand(TyperCommand):
    """An ``ldw`` command: its help lists flags without a value type."""

    def get_params(self, ctx: Any) -> list[Any]:
        """The command's parameters, the help option included, flags untyped."""
        return _untyped_flags(super().get_params(ctx))


class LdwGroup(TyperGroup):
    """The ``ldw`` command group (and ``ldw export``): its help lists flags without a value type."""

    def get_params(self, ctx: Any) -> list[Any]:
        """The group's parameters, the help option included, flags untyped."""
        return _untyped_flags(super().get_params(ctx))


class LdwTyper(typer.Typer):
    """The ``ldw`` Typer app: a full or read-only disk, met anywhere, ends the command with a one-line error.

    Its commands and sub-groups are :class:`LdwCommand` / :class:`LdwGroup`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=LdwGroup, **kwargs)

    def command(self, name: str | None = None, **kwargs: Any) -> Any:
        """Register a command (as :class:`LdwCommand` unless ``cls`` says otherwise)."""
        return super().command(name, cls=kwargs.pop("cls", LdwCommand), **kwargs)

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
WarehouseArg = Annotated[
    Optional[Path],
    typer.Argument(
        metavar="WAREHOUSE", help="Warehouse folder (or -w; default: $LDW_WAREHOUSE, else ./ldw-warehouse)."
    ),
]
WarehouseFlag = Annotated[
    Optional[Path],
    typer.Option("--warehouse", "-w", help="Warehouse folder (default: $LDW_WAREHOUSE, else ./ldw-warehouse)."),
]


def one_warehouse(positional: Path | None, option: Path | None) -> Path:
    """The warehouse named positionally or with ``-w`` (both only if they agree), else $LDW_WAREHOUSE or the default."""
    if positional is not None and option is not None and Path(positional).resolve() != Path(option).resolve():
        raise typer.BadParameter(
            f"two warehouses given: {positional} and -w {option}; name one (positionally or with -w)"
        )
    chosen = positional or option
    if chosen is None:
        chosen = Path(os.environ["LDW_WAREHOUSE"]) if os.environ.get("LDW_WAREHOUSE") else DEFAULT_WAREHOUSE
    return chosen
