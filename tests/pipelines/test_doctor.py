"""``ldw doctor`` finds every kind of damage and names its fix; ``--repair`` mends it; ``--rebuild`` the catalog.

Damage is done by hand to a real swept and measured warehouse (files deleted,
truncated, replaced; views and catalog tables dropped; leftovers planted; the
catalog overwritten). After the repair, rerunning the commands it names gives
the warehouse of an undamaged run again.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from ldw.cli.main import app
from ldw.curves.config import MetricsConfig
from ldw.curves.store import compute_metrics
from ldw.sweep.config import SweepConfig
from ldw.sweep.run import run_sweep
from ldw.warehouse import Warehouse, WarehouseError
from tests.pipelines.warehouse_compare import assert_same_warehouse, copy_warehouse

CHUNK_TOKENS = 400


def _sweep_and_measure(path: Path) -> None:
    run_sweep(path, SweepConfig(device="cpu", batch_size=4), progress=False)
    compute_metrics(path, MetricsConfig(chunk_tokens=CHUNK_TOKENS), progress=False)


@pytest.fixture(scope="module")
def measured(_ingested: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny warehouse, swept and with its metrics."""
    path = copy_warehouse(_ingested, tmp_path_factory.mktemp("measured") / "warehouse")
    _sweep_and_measure(path)
    return path


def _doctor(*args: str):
    return CliRunner().invoke(app, ["doctor", *args])


def _set_aside_catalogs(path: Path) -> list[Path]:
    """Remove the old catalogs a rebuild kept (so the folder compares with the reference); which they were."""
    kept = sorted(path.glob("catalog.duckdb.damaged-*"))
    for old in kept:
        old.unlink()
    return kept


def test_doctor_finds_every_damage_names_its_fix_and_repair_mends_it(measured: Path, tmp_path: Path) -> None:
    path = copy_warehouse(measured, tmp_path / "warehouse")
    wh = Warehouse.open(path)
    missing, truncated = Path(wh.surprisal_path("seed0", 8)), Path(wh.surprisal_path("seed1", 16))
    missing.unlink()
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    traces = path / "parquet" / "traces" / "seed0.parquet"
    traces.unlink()
    raw_part = next(Path(wh.derived_location("token_curves_raw")).glob("*.parquet"))
    raw_part.write_bytes(b"PAR1 not really")
    leftover = path / "parquet" / "derived" / "token_metrics" / "v-00000000"
    leftover.mkdir()
    (leftover / "chunk-000000.parquet").write_bytes(b"half")
    temporary = missing.parent / f".{missing.name}.x1y2.tmp"
    temporary.write_bytes(b"half")
    stray = missing.parent / "step-000000099999.parquet"
    shutil.copyfile(wh.surprisal_path("seed0", 16), stray)
    record = path / "parquet" / "runs" / "seed1.json"
    record.parent.mkdir(exist_ok=True)
    record.write_text("{}")
    con = duckdb.connect(str(wh.catalog_path))
    con.execute("DROP VIEW token_metrics")
    con.close()

    found = _doctor(str(path))
    assert found.exit_code == 1
    lines = [line for line in found.output.splitlines() if line.startswith("problem ")]
    for damaged in (missing, truncated, traces, raw_part, leftover, temporary, stray, record):
        assert any(line.startswith(f"problem {damaged}: ") for line in lines), (damaged, found.output)
    assert any("view 'token_metrics' is missing" in line for line in lines), found.output
    assert all("; fix: `ldw " in line for line in lines), found.output

    repaired = _doctor(str(path), "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert f"{path.resolve()}: sound" in repaired.output
    status = {(r, s): st for r, s, st in wh.checkpoints().select("run_id", "step", "status").iter_rows()}
    assert status[("seed0", 8)] == status[("seed1", 16)] == "pending"
    assert traces.is_file() and not leftover.exists() and not temporary.exists() and not stray.exists()
    assert not wh.has_table("token_curves_raw") and wh.has_table("token_metrics")
    _sweep_and_measure(path)  # what the fixes name: the sweep and the metrics again
    assert_same_warehouse(path, measured)


def test_a_lost_evaluation_set_file_is_written_again_by_the_command_doctor_names(
    measured: Path, tmp_path: Path
) -> None:
    path = copy_warehouse(measured, tmp_path / "warehouse")
    lost = next((path / "parquet" / "eval").glob("*/eval_tokens.parquet"))
    lost.unlink()
    found = _doctor(str(path))
    assert found.exit_code == 1
    [line] = [line for line in found.output.splitlines() if line.startswith(f"problem {lost}: file is missing")]
    command = shlex.split(re.search(r"`(ldw evalset [^`]+)`", line).group(1))
    rerun = CliRunner().invoke(app, command[1:])
    assert rerun.exit_code == 0 and "already present" in rerun.output, rerun.output
    assert_same_warehouse(path, measured)


@pytest.mark.parametrize("damage", ["header", "blocks"])
def test_a_damaged_catalog_is_one_line_and_rebuilt_from_the_parquet_files(
    damage: str, measured: Path, tmp_path: Path
) -> None:
    path = copy_warehouse(measured, tmp_path / "warehouse")
    catalog = path / "catalog.duckdb"
    with catalog.open("r+b") as handle:
        start = 0 if damage == "header" else 3 * 4096  # past DuckDB's file and database headers
        handle.seek(start)
        handle.write(os.urandom(catalog.stat().st_size - start))
    for args in (["status", "-w", str(path)], ["doctor", str(path)], ["metrics", "-w", str(path)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, result.output
        message = str(result.exception) if not isinstance(result.exception, SystemExit) else result.output
        assert "the catalog is damaged" in message and f"`ldw doctor {path.resolve()} --rebuild`" in message
        assert "\n" not in message.strip()
    rebuilt = _doctor(str(path), "--rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "catalog rebuilt: 2 runs, 14 checkpoints done, 0 pending" in rebuilt.output
    assert len(_set_aside_catalogs(path)) == 1
    assert_same_warehouse(path, measured)


def test_a_dropped_catalog_table_is_never_recreated_empty_and_repair_rebuilds_it(
    measured: Path, tmp_path: Path
) -> None:
    path = copy_warehouse(measured, tmp_path / "warehouse")
    con = duckdb.connect(str(path / "catalog.duckdb"))
    con.execute("DROP TABLE checkpoints")
    con.close()
    for read_only in (False, True):
        with pytest.raises(WarehouseError, match="catalog table checkpoints is missing; `ldw doctor .* --rebuild`"):
            Warehouse.open(path, read_only=read_only)
    repaired = _doctor(str(path), "--repair")
    assert repaired.exit_code == 0 and "rebuilt from the Parquet files" in repaired.output, repaired.output
    _set_aside_catalogs(path)
    assert_same_warehouse(path, measured)
