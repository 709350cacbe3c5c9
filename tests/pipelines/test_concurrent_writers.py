"""Real concurrent ``ldw`` processes on one warehouse: one writer at a time, named; sharded sweeps side by side.

A writer is held mid-operation at a failpoint (``LDW_PAUSEPOINT``, see
:mod:`ldw.warehouse.failpoints`) while other commands start, so every
interleaving is exact: a second writer is refused naming the holder (pid,
command, since when) or, with ``--wait``, says whom it waits for and runs
afterwards; nothing either of them wrote is lost; readers need no lock; a
killed writer leaves no lock behind.
"""

from __future__ import annotations

import re
from pathlib import Path

from ldw.warehouse import Warehouse
from ldw.warehouse.lock import HOLDERS_DIR, holders_of
from tests.pipelines.warehouse_compare import (
    SWEEP_ARGS,
    Background,
    Paused,
    assert_doctor_sound,
    copy_warehouse,
    kill_at,
    run_ldw,
    wait_for,
)

METRICS = ["--chunk-tokens", "400", "--quiet"]
METRIC_TABLES = {"token_metrics", "crossrun_metrics", "token_curves_smoothed", "token_curves_raw"}


def _one_line_refusal(result, holder: str, pid: int) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    message = result.stderr.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert re.search(rf"is being written by {re.escape(holder)} \(pid {pid} on \S+, since \d{{4}}-", message), message
    return message


def _metric_tables(path: Path) -> set[str]:
    wh = Warehouse.open(path, read_only=True)
    return {t for t in METRIC_TABLES if wh.has_table(t) and wh.query(f"SELECT count(*) AS n FROM {t}")["n"][0]}


def test_a_second_writer_is_refused_naming_the_holder_or_waits(
    swept: Path, tmp_path: Path, started: list[Background]
) -> None:
    path = copy_warehouse(swept, tmp_path / "warehouse")
    first = Paused(["metrics", "-w", str(path), *METRICS], "parquet-renamed:2", tmp_path / "first")
    started.append(first)
    refused = run_ldw(["metrics", "-w", str(path), "--chunk-tokens", "400"])
    message = _one_line_refusal(refused, "ldw metrics", first.pid)
    assert "rerun with --wait" in message
    # readers take no lock: status and doctor run, and doctor does not judge the files being written
    assert run_ldw(["status", "-w", str(path)], quiet=False).returncode == 0
    doctor = run_ldw(["doctor", str(path)], quiet=False)
    assert doctor.returncode == 0 and f"note: ldw metrics (pid {first.pid}" in doctor.stderr, doctor.stderr
    waiting = Background(["metrics", "-w", str(path), *METRICS, "--wait"], tmp_path / "waiting")
    started.append(waiting)
    wait_for(lambda: "waiting:" in waiting.stderr(), "the waiting writer to say why it waits")
    assert f"is being written by ldw metrics (pid {first.pid}" in waiting.stderr()
    assert waiting.proc.poll() is None
    assert first.release() == 0, first.stderr()
    assert waiting.finish() == 0, waiting.stderr()
    assert _metric_tables(path) == METRIC_TABLES
    for table in METRIC_TABLES:  # one version each: nobody removed another's work
        assert len(list((path / "parquet" / "derived" / table).iterdir())) == 1
    assert holders_of(path) == []
    assert_doctor_sound(path)


def test_a_reader_says_why_it_waits_for_the_catalog(swept: Path, tmp_path: Path, started: list[Background]) -> None:
    path = copy_warehouse(swept, tmp_path / "warehouse")
    writer = Paused(["metrics", "-w", str(path), *METRICS], "catalog-open:1", tmp_path / "writer")  # catalog open
    started.append(writer)
    reader = Background(["status", "-w", str(path)], tmp_path / "reader")
    started.append(reader)
    wait_for(lambda: "waiting:" in reader.stderr(), "the reader to say why it waits")
    assert "catalog.duckdb is open for writing in" in reader.stderr() and f"(pid {writer.pid})" in reader.stderr()
    assert writer.release() == 0, writer.stderr()
    assert reader.finish() == 0, reader.stderr()


def test_a_killed_writer_leaves_no_lock_behind(swept: Path, tmp_path: Path) -> None:
    path = copy_warehouse(swept, tmp_path / "warehouse")
    kill_at(["metrics", "-w", str(path), "--chunk-tokens", "400"], "parquet-renamed:1")
    assert len(list((path / HOLDERS_DIR).glob("*.json"))) == 1  # the dead holder's record
    assert holders_of(path) == []  # ...names nobody: the kernel released its lock
    rerun = run_ldw(["metrics", "-w", str(path), "--chunk-tokens", "400"])
    assert rerun.returncode == 0 and "waiting" not in rerun.stderr, rerun.stderr
    assert list((path / HOLDERS_DIR).glob("*.json")) == []
    assert _metric_tables(path) == METRIC_TABLES
    assert_doctor_sound(path)


def test_shards_of_one_split_sweep_side_by_side_and_no_checkpoint_is_scored_twice(
    ingested_warehouse: Path, tmp_path: Path, started: list[Background]
) -> None:
    path = str(ingested_warehouse)
    sweep = ["sweep", "-w", path, *SWEEP_ARGS, "--run", "seed0", "--quiet"]
    first = Paused([*sweep, "--shard", "0/2"], "parquet-written:1", tmp_path / "first")
    started.append(first)
    other = run_ldw([*sweep, "--shard", "1/2"], quiet=False)
    assert other.returncode == 0, other.stderr  # ran to the end while shard 0/2 was mid-write
    holder = "ldw sweep --shard 0/2"
    assert "runs once" in _one_line_refusal(run_ldw([*sweep, "--shard", "0/2"], quiet=False), holder, first.pid)
    assert "same N" in _one_line_refusal(run_ldw([*sweep, "--shard", "0/3"], quiet=False), holder, first.pid)
    _one_line_refusal(run_ldw(sweep, quiet=False), holder, first.pid)  # an unsharded sweep would score them all
    _one_line_refusal(run_ldw(["metrics", "-w", path]), holder, first.pid)
    assert first.release() == 0, first.stderr()
    wh = Warehouse.open(ingested_warehouse, read_only=True)
    checkpoints = wh.checkpoints("seed0")
    assert checkpoints.filter(status="done").height == checkpoints.height
    sweeps = wh.query("SELECT sweep_id, count(*) AS n FROM checkpoints WHERE run_id = 'seed0' GROUP BY ALL")
    assert sorted(sweeps["n"].to_list()) == [checkpoints.height // 2, checkpoints.height - checkpoints.height // 2]
    assert_doctor_sound(ingested_warehouse)
