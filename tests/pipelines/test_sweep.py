"""The sweep end to end on real reference-trainer checkpoints."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from transformers import AutoModelForCausalLM

from ldw.errors import LdwError
from ldw.sweep.config import SweepConfig
from ldw.sweep.run import run_sweep
from ldw.warehouse import Warehouse


def test_sweep_equals_independent_float64_computation(ingested_warehouse: Path) -> None:
    summary = run_sweep(ingested_warehouse, SweepConfig(device="cpu", batch_size=7), progress=False)
    wh = Warehouse.open(ingested_warehouse)
    n_ckpt = wh.checkpoints().height
    assert summary.scored == n_ckpt and not summary.failed
    ids, seq_ids, positions = wh.eval_arrays()
    assert positions.min() == 1  # the first scored position of each window
    for row in wh.checkpoints().filter(pl.col("step").is_in([0, 24])).iter_rows(named=True):
        model = AutoModelForCausalLM.from_pretrained(row["path"], dtype=torch.float32).eval()
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor(ids)).logits.double(), dim=-1)
        want = -logp[seq_ids, positions - 1, ids[seq_ids, positions]].numpy() / math.log(2)
        got = wh.query(
            "SELECT surprisal_bits FROM surprisal WHERE run_id = ? AND step = ? ORDER BY token_idx",
            [row["run_id"], row["step"]],
        )["surprisal_bits"].to_numpy()
        assert np.max(np.abs(got - want)) < 1e-4
    settings = wh.query("SELECT settings FROM sweeps")["settings"][0]
    assert '"units": "bits"' in settings and '"first_token_scored": false' in settings


def test_rerun_skips_finished_checkpoints(ingested_warehouse: Path) -> None:
    run_sweep(ingested_warehouse, SweepConfig(device="cpu"), progress=False)
    again = run_sweep(ingested_warehouse, SweepConfig(device="cpu"), progress=False)
    assert again.scored == 0 and again.skipped == Warehouse.open(ingested_warehouse).checkpoints().height


def test_unknown_run_is_a_clear_error(ingested_warehouse: Path) -> None:
    with pytest.raises(LdwError, match="unknown run"):
        run_sweep(ingested_warehouse, SweepConfig(runs=("nope",), device="cpu"), progress=False)


def _all_surprisal(path: Path) -> pl.DataFrame:
    return Warehouse.open(path).query("SELECT * FROM surprisal ORDER BY run_id, step, token_idx")


def test_killed_sweep_resumes_to_exactly_the_uninterrupted_rows(ingested_warehouse: Path, tmp_path: Path) -> None:
    import shutil

    reference = tmp_path / "reference"
    shutil.copytree(ingested_warehouse, reference)
    run_sweep(reference, SweepConfig(device="cpu", batch_size=4), progress=False)

    command = [
        sys.executable,
        "-m",
        "ldw",
        "sweep",
        "-w",
        str(ingested_warehouse),
        "--device",
        "cpu",
        "--batch-size",
        "4",
        "--quiet",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    surprisal_dir = ingested_warehouse / "parquet" / "surprisal"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(surprisal_dir.glob("*/*/*.parquet"))) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wh = Warehouse.open(ingested_warehouse)
    done = wh.checkpoints().filter(status="done").height
    total = wh.checkpoints().height
    assert 0 < done < total, "the kill should land mid-sweep"

    resumed = run_sweep(ingested_warehouse, SweepConfig(device="cpu", batch_size=4), progress=False)
    assert resumed.skipped == done
    got, want = _all_surprisal(ingested_warehouse), _all_surprisal(reference)
    assert got.height == want.height == total * wh.token_count()
    assert got.select("run_id", "step", "token_idx").is_duplicated().sum() == 0
    assert got.equals(want)


def test_shards_split_the_sweep_without_overlap(ingested_warehouse: Path) -> None:
    first = run_sweep(ingested_warehouse, SweepConfig(device="cpu", shard=(0, 2)), progress=False)
    wh = Warehouse.open(ingested_warehouse)
    total = wh.checkpoints().height
    assert first.scored == (total + 1) // 2
    second = run_sweep(ingested_warehouse, SweepConfig(device="cpu", shard=(1, 2)), progress=False)
    assert first.scored + second.scored == total and second.skipped == 0
    assert wh.checkpoints().filter(status="done").height == total
    with pytest.raises(LdwError, match="shard"):
        run_sweep(ingested_warehouse, SweepConfig(device="cpu", shard=(2, 2)), progress=False)


def test_doctor_finds_missing_truncated_and_stray_files(ingested_warehouse: Path) -> None:
    from typer.testing import CliRunner

    from ldw.cli.main import app

    run_sweep(ingested_warehouse, SweepConfig(device="cpu"), progress=False)
    runner = CliRunner()
    assert runner.invoke(app, ["doctor", str(ingested_warehouse)]).exit_code == 0
    wh = Warehouse.open(ingested_warehouse)
    files = [wh.store.path(f) for f in wh.checkpoints()["surprisal_file"]]
    Path(files[0]).unlink()
    Path(files[1]).write_bytes(Path(files[1]).read_bytes()[:100])
    stray = Path(files[2]).with_name("step-999999999999.parquet")
    stray.write_bytes(Path(files[2]).read_bytes())
    result = runner.invoke(app, ["doctor", str(ingested_warehouse)])
    assert result.exit_code == 1
    text = result.output.replace("\n", " ")
    assert "missing" in text and "unreadable Parquet" in text and "not cataloged" in text
