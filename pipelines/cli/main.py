"""The ``ldw`` command line: every command registered here, in the order ``ldw --help`` lists them.

Exit codes (README, Troubleshooting):

- 0: done.
- 1: the command started and failed while working: a file missing or damaged,
  a warehouse without what the command needs, a checkpoint that failed to
  score. The message names the file or run.
- 2: the command line or a setting is wrong (an unknown option, a value that
  is malformed, out of range or unusable on this machine). Refused before
  anything is written, so the warehouse is untouched.

Every error is one line on stderr; ``LDW_DEBUG=1`` adds the Python traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

import duckdb
import typer
from rich.markup import escape

from ldw.cli import analysis, core
from ldw.cli import sql as sql_cli
from ldw.cli import train as train_cli
from ldw.cli.common import LdwTyper, err
from ldw.errors import LdwError, SettingsError, first_line
from ldw.probe.errors import ProbeError
from ldw.warehouse import WarehouseError

HELP = "Learning-dynamics workbench: per-token surprisal curves over checkpoints, in a DuckDB/Parquet warehouse."
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEBUG_ENV = "LDW_DEBUG"
DOCTOR_HINT = "`ldw doctor WAREHOUSE` checks it; `ldw doctor WAREHOUSE --rebuild` rebuilds it from the Parquet files"


def build_app() -> typer.Typer:
    """The ``ldw`` Typer app with every command registered explicitly."""
    app = LdwTyper(help=HELP, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
    app.command("train")(train_cli.train)
    for command in (core.init, core.ingest, core.evalset, core.sweep, core.status, core.doctor, core.demo):
        app.command()(command)
    app.command("app")(core.app_command)
    app.command("sql")(sql_cli.sql)
    for command in (analysis.metrics, analysis.ngrams):
        app.command()(command)
    export_app = LdwTyper(help="Export analysis tables for papers (CSV + Parquet).", no_args_is_help=True)
    export_app.command("ngram-correlations")(analysis.export_ngram_correlations)
    app.add_typer(export_app, name="export")
    app.command()(analysis.spikes)
    app.command("fit-schedule")(analysis.fit_schedule)
    app.command("probe-weights")(analysis.probe_weights)
    return app


app = build_app()


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Print a warning as one line, ``warning message``, without Python's file:line prefix."""
    err.print(f"[yellow]warning[/yellow] {escape(' '.join(str(message).split()))}", highlight=False)


def _is_usage_error(exc: Exception) -> bool:
    """Whether ``exc`` is the command-line parser's usage error (Typer's own or click's, by their common shape)."""
    return getattr(exc, "exit_code", None) == EXIT_USAGE and callable(getattr(exc, "format_message", None))


def _usage_error(exc: Any) -> int:
    """Print a usage error on one line, with the command whose help explains it; exit code 2.

    A command group called without a command prints its help instead, as usual.
    """
    if type(exc).__name__ == "NoArgsIsHelpError":
        exc.show()
        return EXIT_USAGE
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "ldw"
    message = " ".join(exc.format_message().split())
    err.print(f"[red]error:[/red] {escape(message)} (see `{command} --help`)", highlight=False)
    return EXIT_USAGE


def _failure(exc: BaseException, code: int) -> int:
    """Print ``error: ...`` on one line (plus the traceback when LDW_DEBUG is set); return ``code``."""
    text = " ".join(str(exc).split()) if isinstance(exc, (LdwError, WarehouseError, ProbeError)) else None
    if text is None:
        text = f"unexpected {first_line(exc)} (a bug: please report it; {DEBUG_ENV}=1 shows where)"
    err.print(f"[red]error:[/red] {escape(text)}", highlight=False)
    if os.environ.get(DEBUG_ENV):
        traceback.print_exception(exc, file=sys.stderr)
    return code


def run(argv: Sequence[str] | None = None) -> int:
    """Run ``ldw`` with ``argv`` (default: the process arguments) and return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            code = app(args=args, prog_name="ldw", standalone_mode=False)
        except typer.Abort:  # end of input at a prompt, or Ctrl-C where the parser turns it into Abort
            err.print("[red]error:[/red] interrupted")
            return EXIT_INTERRUPTED
        except SettingsError as exc:
            return _failure(exc, EXIT_USAGE)
        except (LdwError, WarehouseError, ProbeError) as exc:
            return _failure(exc, EXIT_FAILED)
        except duckdb.Error as exc:  # a catalog damaged beyond what opening it checks
            return _failure(
                WarehouseError(f"the catalog could not be read ({first_line(exc)}); {DOCTOR_HINT}"), EXIT_FAILED
            )
        except Exception as exc:
            return _usage_error(exc) if _is_usage_error(exc) else _failure(exc, EXIT_FAILED)
    return code if isinstance(code, int) else 0


def main() -> None:
    """Entry point: run the CLI, printing every error as one line (exit codes: see the module docstring)."""
    sys.exit(run())


if __name__ == "__main__":
    main()
