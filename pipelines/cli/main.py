"""The ``ldw`` command line: every command registered here, in the order ``ldw --help`` lists them."""

from __future__ import annotations

import sys

import typer

from ldw.cli import analysis, core
from ldw.cli import sql as sql_cli
from ldw.cli import train as train_cli
from ldw.cli.common import LdwTyper, err
from ldw.errors import LdwError
from ldw.probe.errors import ProbeError
from ldw.warehouse import WarehouseError

HELP = "Learning-dynamics workbench: per-token surprisal curves over checkpoints, in a DuckDB/Parquet warehouse."


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


def main() -> None:
    """Entry point: run the CLI, printing user errors as one line."""
    try:
        app()
    except (LdwError, WarehouseError, ProbeError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
