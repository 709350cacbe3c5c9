"""Command-line details a new user meets: `ldw sql`, `-w` everywhere, flags in --help, spike-rule messages,
and a failed first command that leaves nothing behind."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ldw.cli.main import app
from ldw.errors import LdwError
from ldw.testing import SyntheticInfo, SyntheticSpec, build_synthetic_warehouse
from ldw.warehouse import Warehouse

runner = CliRunner()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticInfo:
    spec = SyntheticSpec(n_sequences=8, seq_len=9, n_runs=2, n_checkpoints=5, vocab_size=120, max_step=600)
    return build_synthetic_warehouse(tmp_path_factory.mktemp("cli") / "wh", spec)


def _ldw(*args: str) -> subprocess.CompletedProcess:
    """``ldw ARGS`` in a fresh process (exit code and stderr as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "ldw", *args], capture_output=True, text=True, timeout=120)


def _fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".wal")):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_sql_prints_a_query_and_writes_every_row(synthetic: SyntheticInfo, tmp_path: Path) -> None:
    query = "SELECT run_id, step, avg(surprisal_bits) AS bits FROM surprisal GROUP BY ALL ORDER BY ALL"
    shown = runner.invoke(app, ["sql", query, "-w", str(synthetic.root), "--limit", "3"], env={"COLUMNS": "150"})
    assert shown.exit_code == 0, shown.output
    assert "run_id" in shown.output and "10 row(s), the first 3 shown" in shown.output
    for suffix, read in ((".csv", pl.read_csv), (".parquet", pl.read_parquet)):
        out = tmp_path / f"means{suffix}"
        written = runner.invoke(app, ["sql", query, "-w", str(synthetic.root), "--out", str(out)])
        assert written.exit_code == 0 and f"wrote 10 row(s) to {out}" in written.output.replace("\n", "")
        frame = read(out)
        wh = Warehouse.open(synthetic.root, read_only=True)
        for run_id, step, bits in frame.iter_rows():  # against the surprisal files read by pyarrow
            values = pq.read_table(wh.surprisal_path(run_id, step))
            assert bits == pytest.approx(float(np.mean(values["surprisal_bits"].to_numpy())), rel=1e-6)


@pytest.mark.parametrize(
    "query, message",
    [
        ("COPY (SELECT 1) TO 'x.csv'", "read-only query"),
        ("CREATE TABLE t AS SELECT 1", "read-only query"),
        ("DELETE FROM runs", "read-only query"),
        ("SELECT 1; DROP TABLE runs", "read-only query"),
        ("SELEC 1", "SQL: ParserException"),
        ("SELECT * FROM no_such_table", "SQL: CatalogException"),
    ],
)
def test_sql_refuses_writes_and_reports_errors_in_one_line(synthetic: SyntheticInfo, query: str, message: str) -> None:
    before = _fingerprint(synthetic.root)
    result = runner.invoke(app, ["sql", query, "-w", str(synthetic.root)])
    assert isinstance(result.exception, LdwError) and message in str(result.exception)
    assert "\n" not in str(result.exception)
    assert _fingerprint(synthetic.root) == before


def test_sql_errors_exit_1_with_one_line(synthetic: SyntheticInfo, tmp_path: Path) -> None:
    proc = _ldw("sql", "SELECT 1", "-w", str(synthetic.root), "--out", str(tmp_path / "x.txt"))
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0
    assert "give a .csv or .parquet file name" in proc.stderr


def test_doctor_and_app_take_the_warehouse_either_way(synthetic: SyntheticInfo, tmp_path: Path) -> None:
    for args in (["doctor", str(synthetic.root)], ["doctor", "-w", str(synthetic.root)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "sound" in result.output
    both = runner.invoke(app, ["doctor", str(synthetic.root), "-w", str(tmp_path)])
    assert both.exit_code == 2 and "two warehouses given" in both.output
    same = runner.invoke(app, ["doctor", str(synthetic.root), "-w", str(synthetic.root)])
    assert same.exit_code == 0
    missing = runner.invoke(app, ["app", "-w", str(tmp_path / "nowhere")])
    assert "not a warehouse" in str(missing.exception)


def _commands(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    import typer.main

    click_group = typer.main.get_command(group)
    return [prefix + (name,) for name in click_group.commands]


@pytest.mark.parametrize("command", [(), *_commands(app), ("export", "ngram-correlations")])
def test_help_shows_no_value_type_on_flags(command: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    assert "--help" in result.output


def test_help_still_shows_value_types_on_options() -> None:
    result = runner.invoke(app, ["spikes", "--help"], env={"COLUMNS": "160"})
    assert "<int>" in result.output and "<float>" in result.output


def test_a_window_below_the_rules_minimum_names_only_options_the_user_has(synthetic: SyntheticInfo) -> None:
    proc = _ldw("spikes", "-w", str(synthetic.root), "--window", "5")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0  # a setting: exit 2, as every setting
    assert "--window must be at least 10" in proc.stderr and "min_history" not in proc.stderr


def test_a_failed_first_command_leaves_no_warehouse(tmp_path: Path) -> None:
    target = tmp_path / "new" / "wh"
    result = runner.invoke(app, ["evalset", "-w", str(target), "--corpus", str(tmp_path / "missing.txt")])
    assert result.exit_code != 0 and not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["evalset", "-w", str(kept), "--corpus", str(tmp_path / "missing.txt")])
    assert result.exit_code != 0 and sorted(p.name for p in kept.iterdir()) == ["notes.txt"]
