"""The warehouse: catalog tables, Parquet views readable without our code, atomic surprisal files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ldw.warehouse import CheckpointRecord, RunRecord, Warehouse, WarehouseError
from ldw.warehouse.doctor import check_warehouse
from ldw.warehouse.parquet_io import ROW_GROUP_SIZE, file_schema_version


def _run(run_id: str, source: str = "/runs/a") -> RunRecord:
    return RunRecord(run_id, run_id, 0, source, "step_folders", "gpt_neox", {"n": 1}, "/tok", "fp", None, {})


def _eval_set(wh: Warehouse, n_seq: int, seq_len: int, config: dict | None = None) -> None:
    ids = np.arange(n_seq * seq_len, dtype=np.int32).reshape(n_seq, seq_len) % 50
    seq = np.repeat(np.arange(n_seq), seq_len - 1)
    pos = np.tile(np.arange(1, seq_len), n_seq)
    sequences = pa.table({"seq_id": np.arange(n_seq), "input_ids": list(ids)})
    tokens = pa.table(
        {
            "token_idx": np.arange(len(seq)),
            "seq_id": seq,
            "position": pos.astype(np.int32),
            "token_id": ids[seq, pos],
            "token_text": [str(t) for t in ids[seq, pos]],
            "context_len": pos.astype(np.int32),
        }
    )
    wh.write_eval_set(sequences, tokens, config or {"seq_len": seq_len}, "fp", 50)


@pytest.fixture()
def wh(tmp_path: Path) -> Warehouse:
    warehouse = Warehouse.create(tmp_path / "wh")
    warehouse.upsert_run(_run("a"))
    warehouse.upsert_checkpoints("a", [CheckpointRecord(s, None, f"/runs/a/step{s}", f"h{s}", None) for s in (0, 1, 2)])
    _eval_set(warehouse, 3, 5)
    return warehouse


def test_open_requires_a_warehouse(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="not a warehouse"):
        Warehouse.open(tmp_path)


def test_views_are_queryable_with_plain_duckdb(wh: Warehouse) -> None:
    for step in (0, 1):
        wh.write_surprisal("a", step, np.full(12, step + 0.5, dtype=np.float32), "sw")
    con = duckdb.connect(str(wh.catalog_path), read_only=True)
    con.execute(f"SET file_search_path = '{wh.root}'")  # the views' paths are relative to the warehouse folder
    names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"runs", "checkpoints", "eval_tokens", "eval_sequences", "surprisal", "traces"} <= names
    rows = con.execute(
        "SELECT step, count(*), avg(surprisal_bits) FROM surprisal GROUP BY step ORDER BY step"
    ).fetchall()
    assert rows == [(0, 12, 0.5), (1, 12, 1.5)]
    assert con.execute("SELECT count(*) FROM eval_tokens").fetchone()[0] == 12
    con.close()


def test_surprisal_file_carries_schema_version_and_status(wh: Warehouse) -> None:
    path = wh.write_surprisal("a", 2, np.arange(12, dtype=np.float32), "sw")
    assert file_schema_version(pq.read_schema(path)) == 1
    row = wh.checkpoints("a").filter(step=2).row(0, named=True)
    assert row["status"] == "done" and row["n_tokens"] == 12 and wh.store.path(row["surprisal_file"]) == path
    assert wh.checkpoints("a").filter(step=0)["status"][0] == "pending"


def test_wrong_length_is_refused_without_writing(wh: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="11 surprisal values for 12 tokens"):
        wh.write_surprisal("a", 0, np.zeros(11, dtype=np.float32), "sw")
    assert not wh.store.exists(wh.surprisal_path("a", 0))


def test_surprisal_matrix_reads_token_ranges_across_row_groups(tmp_path: Path) -> None:
    warehouse = Warehouse.create(tmp_path / "big")
    warehouse.upsert_run(_run("a"))
    warehouse.upsert_checkpoints("a", [CheckpointRecord(s, None, "/p", f"h{s}", None) for s in (3, 1)])
    n_seq, seq_len = ROW_GROUP_SIZE // 100 + 10, 101
    _eval_set(warehouse, n_seq, seq_len)
    n = warehouse.token_count()
    assert n > ROW_GROUP_SIZE
    values = {s: np.random.default_rng(s).random(n).astype(np.float32) for s in (1, 3)}
    for step, v in values.items():
        warehouse.write_surprisal("a", step, v, "sw")
    assert pq.ParquetFile(warehouse.surprisal_path("a", 1)).metadata.num_row_groups > 1
    steps, idx, matrix = warehouse.surprisal_matrix("a", ROW_GROUP_SIZE - 5, ROW_GROUP_SIZE + 7)
    assert steps.tolist() == [1, 3]
    assert idx.tolist() == list(range(ROW_GROUP_SIZE - 5, ROW_GROUP_SIZE + 7))
    np.testing.assert_array_equal(matrix[:, 0], values[1][ROW_GROUP_SIZE - 5 : ROW_GROUP_SIZE + 7])
    np.testing.assert_array_equal(matrix[:, 1], values[3][ROW_GROUP_SIZE - 5 : ROW_GROUP_SIZE + 7])


def test_run_id_taken_by_another_source_is_refused(wh: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="already used by /runs/a"):
        wh.upsert_run(_run("a", source="/elsewhere/a"))


def test_reingest_keeps_done_checkpoints_and_resets_changed_ones(wh: Warehouse) -> None:
    for step in (0, 1):
        wh.write_surprisal("a", step, np.zeros(12, dtype=np.float32), "sw")
    changed = wh.upsert_checkpoints(
        "a", [CheckpointRecord(0, None, "/p0", "h0", None), CheckpointRecord(1, None, "/p1", "NEW", None)]
    )
    assert changed == 1
    status = dict(wh.checkpoints("a").select("step", "status").iter_rows())
    assert status == {0: "done", 1: "pending", 2: "pending"}
    assert not wh.store.exists(wh.surprisal_path("a", 1))
    assert wh.query("SELECT DISTINCT step FROM surprisal")["step"].to_list() == [0]


def test_a_different_eval_set_needs_replace(wh: Warehouse) -> None:
    wh.write_surprisal("a", 0, np.zeros(12, dtype=np.float32), "sw")
    _eval_set(wh, 3, 5)  # identical: a no-op
    with pytest.raises(WarehouseError, match="different evaluation set"):
        _eval_set(wh, 2, 5, {"seq_len": 5, "other": 1})
    assert wh.token_count() == 12
    assert wh.query("SELECT count(*) AS n FROM surprisal")["n"][0] == 12


def test_reader_in_another_process_while_catalog_is_written(wh: Warehouse) -> None:
    wh.write_surprisal("a", 0, np.ones(12, dtype=np.float32), "sw")
    code = (
        "import sys; from ldw.warehouse import Warehouse\n"
        "w = Warehouse.open(sys.argv[1], read_only=True)\n"
        "for _ in range(20): n = w.query('SELECT count(*) AS n FROM surprisal')['n'][0]; assert n % 12 == 0\n"
        "print(n)"
    )
    reader = subprocess.Popen([sys.executable, "-c", code, str(wh.root)], stdout=subprocess.PIPE, text=True)
    for step in (1, 2):
        wh.write_surprisal("a", step, np.ones(12, dtype=np.float32), "sw")
    out, _ = reader.communicate(timeout=120)
    assert reader.returncode == 0
    assert int(out) in (12, 24, 36)


def _probes(run_id: str, *values: float) -> pa.Table:
    """Rows of the registered ``weight_probes`` table (a small derived table to test the derived-table API)."""
    n = len(values)
    return pa.table(
        {
            "run_id": [run_id] * n,
            "step": pa.array(range(n), pa.int64()),
            "layer": pa.array([0] * n, pa.int64()),
            "head": pa.array([0] * n, pa.int64()),
            "name": ["sigma1"] * n,
            "value": pa.array(values, pa.float64()),
        }
    )


def _total(wh: Warehouse) -> float:
    return wh.query("SELECT sum(value) AS s FROM weight_probes")["s"][0]


def test_replace_derived_swaps_in_only_complete_tables(wh: Warehouse) -> None:
    with wh.replace_derived("weight_probes", {"v": 1}) as write:
        write("a", _probes("a", 1, 2))
        write("b", _probes("b", 3))
    assert _total(wh) == 6
    with pytest.raises(RuntimeError), wh.replace_derived("weight_probes", {"v": 2}) as write:
        write("a", _probes("a", 100))
        assert _total(wh) == 6  # readers still see the old table
        raise RuntimeError("killed mid-way")
    assert _total(wh) == 6
    assert wh.derived_params("weight_probes") == {"v": 1}
    assert wh.store.children("derived/weight_probes") == [wh.derived_location("weight_probes").rsplit("/", 1)[1]]
    with wh.replace_derived("weight_probes", {"v": 3}) as write:
        write("only", _probes("a", 7))
    assert _total(wh) == 7 and wh.derived_params("weight_probes") == {"v": 3}
    assert wh.derived_params("spikes") == {} and not wh.has_table("spikes")


def test_write_derived_part_replaces_one_part_and_keeps_the_others(wh: Warehouse) -> None:
    wh.write_derived_part("weight_probes", "a", _probes("a", 1, 2), {"v": 1})
    wh.write_derived_part("weight_probes", "b", _probes("b", 10), {"v": 2})
    first = wh.derived_location("weight_probes")
    wh.write_derived_part("weight_probes", "a", _probes("a", 5), {"v": 3})
    rows = wh.query("SELECT run_id, sum(value) AS s FROM weight_probes GROUP BY run_id ORDER BY run_id").rows()
    assert rows == [("a", 5.0), ("b", 10.0)]
    assert wh.derived_location("weight_probes") != first and not Path(first).exists()
    assert wh.derived_params("weight_probes") == {"v": 3}


def test_tables_switch_together_and_drop_in_the_same_transaction(wh: Warehouse) -> None:
    wh.write_derived("weight_probes", _probes("a", 1), {})
    fit = pa.table({"schedule": ["s"], "kind": ["fit"], "step": [1], "lr": [0.1], "predicted_loss": [2.0]})
    with wh.replace_derived_tables({"lr_law_curves": {"k": 1}}, drop=["weight_probes"]) as write:
        write["lr_law_curves"]("all", fit.append_column("observed_loss", pa.array([None], pa.float64())))
        assert wh.has_table("weight_probes") and not wh.has_table("lr_law_curves")
    assert wh.has_table("lr_law_curves") and not wh.has_table("weight_probes")
    assert not wh.store.children("derived/weight_probes")
    assert "weight_probes" not in wh.query("SELECT table_name FROM information_schema.tables")["table_name"].to_list()


def test_writers_refuse_data_that_does_not_match_the_registered_schema(wh: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="table 'weight_probes': column 'value' is int64, the registered"):
        wh.write_derived("weight_probes", _probes("a", 1).set_column(5, "value", pa.array([1], pa.int64())), {})
    with pytest.raises(WarehouseError, match="table 'weight_probes': missing column 'head'"):
        wh.write_derived("weight_probes", _probes("a", 1).drop_columns(["head"]), {})
    with pytest.raises(WarehouseError, match="unexpected column 'extra'"):
        wh.write_derived("weight_probes", _probes("a", 1).append_column("extra", pa.array([1])), {})
    with pytest.raises(WarehouseError, match="'scores' is not a registered derived table"):
        wh.write_derived("scores", pa.table({"x": [1]}), {})
    wh.write_surprisal("a", 0, np.zeros(12, dtype=np.float32), "sw")
    sequences = pa.table({"seq_id": [0], "input_ids": [[1, 2]]})
    tokens = pa.table({"token_idx": [0], "seq_id": [0], "position": [2**40], "token_id": [2], "token_text": ["x"]})
    with pytest.raises(WarehouseError, match="table 'eval_tokens': missing column 'context_len'"):
        wh.write_eval_set(sequences, tokens, {"other": 1}, "fp", 50, replace=True)
    tokens = tokens.append_column("context_len", pa.array([1], pa.int32()))
    with pytest.raises(WarehouseError, match=r"table 'eval_tokens': column 'position' \(int64\) does not fit int32"):
        wh.write_eval_set(sequences, tokens, {"other": 1}, "fp", 50, replace=True)
    assert wh.token_count() == 12 and wh.checkpoints("a")["status"][0] == "done"  # nothing dropped
    assert not wh.has_table("weight_probes") and not wh.store.children("derived/weight_probes")


def test_doctor_checks_derived_files_against_their_schema(wh: Warehouse) -> None:
    wh.write_derived("weight_probes", _probes("a", 1), {})
    assert check_warehouse(wh) == []
    location = wh.derived_location("weight_probes")
    bad_part = pa.table({"run_id": ["a"]}).replace_schema_metadata({b"ldw_schema_version": b"1"})
    pq.write_table(bad_part, f"{location}/extra.parquet")
    leftover = Path(location).parent / "v-00000000"
    leftover.mkdir()
    problems = "\n".join(check_warehouse(wh))
    assert f"{location}/extra.parquet: missing column 'step' (table 'weight_probes')" in problems
    assert f"{leftover}: version folder not in the catalog" in problems
