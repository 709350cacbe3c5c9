"""Views never read outside their warehouse: a copy reads its own files; a view that cannot be made is an error."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from ldw.cli.main import app
from ldw.warehouse import CheckpointRecord, RunRecord, Warehouse, WarehouseError

N = 12


def _build(root: Path) -> Warehouse:
    """One run, two swept checkpoints (surprisal 1.0 and 2.0 everywhere) and a derived table."""
    wh = Warehouse.create(root)
    wh.upsert_run(RunRecord("a", "a", 0, "/runs/a", "step_folders", "gpt_neox", {}, "/tok", "fp", None, {}))
    wh.upsert_checkpoints("a", [CheckpointRecord(s, None, f"/runs/a/step{s}", f"h{s}", None) for s in (1, 2)])
    ids = np.arange(15, dtype=np.int32).reshape(3, 5)
    seq, pos = np.repeat(np.arange(3), 4), np.tile(np.arange(1, 5), 3)
    tokens = pa.table(
        {
            "token_idx": np.arange(N),
            "seq_id": seq,
            "position": pos.astype(np.int32),
            "token_id": ids[seq, pos],
            "token_text": [str(t) for t in ids[seq, pos]],
            "context_len": pos.astype(np.int32),
        }
    )
    wh.write_eval_set(pa.table({"seq_id": np.arange(3), "input_ids": list(ids)}), tokens, {"k": 1}, "fp", 50)
    for step in (1, 2):
        wh.write_surprisal("a", step, np.full(N, float(step), dtype=np.float32), "sw")
    wh.write_derived("spikes", _spikes(1.0), {"v": 1})
    return wh


def _spikes(magnitude: float) -> pa.Table:
    columns = ("spike_id", "step_start", "step_peak", "step_end")
    data = {"run_id": ["a"], "trace": ["loss"], **{c: pa.array([1], pa.int64()) for c in columns}}
    floats = ("baseline", "peak_value", "magnitude", "magnitude_mads")
    return pa.table({**data, **{c: pa.array([magnitude], pa.float64()) for c in floats}})


def _total(root: Path) -> float:
    return Warehouse.open(root, read_only=True).query("SELECT sum(surprisal_bits) AS s FROM surprisal")["s"][0]


def test_a_copied_warehouse_reads_its_own_files_even_read_only(tmp_path: Path) -> None:
    original = _build(tmp_path / "original")
    shutil.copytree(original.root, tmp_path / "copy")
    original.write_surprisal("a", 2, np.full(N, 100.0, dtype=np.float32), "sw")  # the original moves on
    assert _total(tmp_path / "original") == N * 101.0
    assert _total(tmp_path / "copy") == N * 3.0  # its own files, opened read-only (no view re-created)
    copy = Warehouse.open(tmp_path / "copy", read_only=True)
    assert copy.query("SELECT magnitude FROM spikes")["magnitude"].to_list() == [1.0]
    shutil.rmtree(tmp_path / "original")
    assert _total(tmp_path / "copy") == N * 3.0


def test_a_view_that_cannot_be_made_is_an_error_naming_the_file_never_the_old_view(tmp_path: Path) -> None:
    original = _build(tmp_path / "original")
    shutil.copytree(original.root, tmp_path / "copy")
    original.write_surprisal("a", 1, np.full(N, 100.0, dtype=np.float32), "sw")
    copy = Warehouse.open(tmp_path / "copy")
    damaged = copy.surprisal_path("a", 1)  # the first file of the surprisal view
    Path(damaged).write_bytes(Path(damaged).read_bytes()[:100])
    with pytest.raises(WarehouseError) as refused:
        copy.write_derived("spikes", _spikes(2.0), {"v": 2})  # re-creates every view
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{damaged}: view 'surprisal' cannot be created")
    assert copy.derived_params("spikes") == {"v": 1}  # the switch was rolled back with the view
    for reader in (Warehouse.open(tmp_path / "copy", read_only=True), copy):
        with pytest.raises(duckdb.Error, match=Path(damaged).name):  # never the original's 100.0
            reader.query("SELECT sum(surprisal_bits) AS s FROM surprisal")


def test_a_view_reading_another_folder_is_refused_and_repaired(tmp_path: Path) -> None:
    original = _build(tmp_path / "original")
    shutil.copytree(original.root, tmp_path / "copy")
    con = duckdb.connect(str(tmp_path / "copy" / "catalog.duckdb"))  # as an old ldw made them: absolute paths
    glob = original.root / "parquet" / "surprisal" / "**" / "*.parquet"
    con.execute(f"CREATE OR REPLACE VIEW surprisal AS SELECT * FROM read_parquet('{glob}')")
    con.close()
    with pytest.raises(WarehouseError, match=re.escape(f"view 'surprisal' reads {glob}, outside this warehouse; `ldw")):
        Warehouse.open(tmp_path / "copy", read_only=True)
    found = CliRunner().invoke(app, ["doctor", str(tmp_path / "copy")])
    assert found.exit_code == 1 and "outside this warehouse" in found.output
    repaired = CliRunner().invoke(app, ["doctor", str(tmp_path / "copy"), "--repair"])
    assert repaired.exit_code == 0 and "views re-created" in repaired.output, repaired.output
    assert _total(tmp_path / "copy") == N * 3.0
