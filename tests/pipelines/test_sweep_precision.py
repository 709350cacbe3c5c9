"""Sweep precisions: exact fp32 by default, faster ones opt-in, each sweep's measured error stored and shown."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from ldw.cli.main import app
from ldw.errors import LdwError
from ldw.probe import precision as probe_precision
from ldw.probe.scoring import INJECT_OOM_ENV
from ldw.sweep import config as sweep_config
from ldw.sweep.config import SweepConfig
from ldw.sweep.run import run_sweep
from ldw.warehouse import Warehouse


def _settings(root: Path) -> dict:
    rows = Warehouse.open(root, read_only=True).query("SELECT settings FROM sweeps")["settings"]
    assert len(rows) == 1
    return json.loads(rows[0])


def _values(root: Path, run_id: str, step: int) -> np.ndarray:
    return (
        Warehouse.open(root, read_only=True)
        .query("SELECT surprisal_bits FROM surprisal WHERE run_id = ? AND step = ? ORDER BY token_idx", [run_id, step])[
            "surprisal_bits"
        ]
        .to_numpy()
    )


def _sample_mask(root: Path, sequences: list[int]) -> np.ndarray:
    _, seq_ids, _ = Warehouse.open(root, read_only=True).eval_arrays()
    return np.isin(seq_ids, sequences)


def test_config_knows_the_probe_precisions() -> None:
    assert set(sweep_config.PRECISIONS) == set(probe_precision.PRECISIONS)
    with pytest.raises(LdwError, match="--precision must be one of fp32, tf32, bf16, fp16, not 'fp8'"):
        SweepConfig(precision="fp8")
    with pytest.raises(LdwError, match="--fused-head must be one of"):
        SweepConfig(fused_head="flash")


def test_bf16_sweep_stores_the_error_of_its_values_against_the_fp32_sweep(
    ingested_warehouse: Path, tmp_path: Path
) -> None:
    exact = tmp_path / "exact"
    ingested_warehouse.rename(exact)
    fast = tmp_path / "fast"
    import shutil

    shutil.copytree(exact, fast)
    run_sweep(exact, SweepConfig(device="cpu", runs=("seed0",)), progress=False)
    run_sweep(fast, SweepConfig(device="cpu", runs=("seed0",), precision="bf16"), progress=False)
    settings = _settings(fast)
    assert settings["precision"] == "bf16" and settings["weights_dtype"] == "bfloat16"
    error = settings["precision_error"]
    assert error["reference"] == "float32" and error["run_id"] == "seed0" and error["step"] == 0
    mask = _sample_mask(fast, error["sequences"])
    assert error["tokens"] == int(mask.sum()) > 0
    # independently: the two sweeps' stored values on the sample, at the checkpoint the check used
    diff = np.abs(_values(fast, "seed0", 0)[mask].astype(np.float64) - _values(exact, "seed0", 0)[mask])
    assert diff.max() > 1e-4  # bf16 is not exact: the comparison below can fail
    assert error["max_abs_bits"] == pytest.approx(diff.max(), abs=1e-5)
    assert error["mean_abs_bits"] == pytest.approx(diff.mean(), abs=1e-6)
    # the last checkpoint is measured too: trained weights, a larger error than at initialisation
    last = settings["precision_error_last"]
    assert (last["run_id"], last["step"], last["sequences"]) == ("seed0", 24, error["sequences"])
    diff = np.abs(_values(fast, "seed0", 24)[mask].astype(np.float64) - _values(exact, "seed0", 24)[mask])
    assert last["max_abs_bits"] == pytest.approx(diff.max(), abs=1e-5) and diff.max() > error["max_abs_bits"]
    row = Warehouse.open(fast, read_only=True).sweeps().row(0, named=True)
    assert row["max_abs_error_bits"] == last["max_abs_bits"] and row["error_steps"] == "seed0 step 0, seed0 step 24"

    result = CliRunner().invoke(app, ["status", "-w", str(fast)])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert f"bf16 on cpu, batch 16; error vs float32 on {error['tokens']:,} tokens: max " in text


def test_default_fp32_sweep_is_within_the_bar_of_an_independent_float64_pass(ingested_warehouse: Path) -> None:
    run_sweep(ingested_warehouse, SweepConfig(device="cpu", runs=("seed1",)), progress=False)
    settings = _settings(ingested_warehouse)
    assert settings["precision"] == "fp32" and settings["float32_matmul"] == "ieee (TF32 off)"
    error = settings["precision_error"]
    assert error["reference"] == "float64" and error["bar_bits"] == 0.01 and error["within_bar"] is True
    wh = Warehouse.open(ingested_warehouse, read_only=True)
    ids, seq_ids, positions = wh.eval_arrays()
    mask = np.isin(seq_ids, error["sequences"])
    path = wh.checkpoints("seed1").filter(step=error["step"])["path"][0]
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64).eval()
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor(ids)).logits, dim=-1).numpy()
    want = -logp[seq_ids, positions - 1, ids[seq_ids, positions]] / math.log(2)
    diff = np.abs(_values(ingested_warehouse, "seed1", error["step"]) - want)[mask]
    assert diff.max() < 0.01
    assert error["max_abs_bits"] == pytest.approx(diff.max(), abs=2e-6)


def test_out_of_memory_halves_the_batch_and_the_sweep_records_the_one_that_worked(
    ingested_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(ingested_warehouse, plain)
    run_sweep(plain, SweepConfig(device="cpu", runs=("seed0",), batch_size=16), progress=False)
    monkeypatch.setenv(INJECT_OOM_ENV, "5")  # every forward of more than 5 sequences fails
    summary = run_sweep(ingested_warehouse, SweepConfig(device="cpu", runs=("seed0",), batch_size=16), progress=False)
    assert not summary.failed and summary.scored == 7
    settings = _settings(ingested_warehouse)
    assert settings["batch_size"] == 4 and settings["batch_size_given"] is True
    for step in (0, 8, 24):
        np.testing.assert_allclose(_values(ingested_warehouse, "seed0", step), _values(plain, "seed0", step), atol=1e-5)


def test_out_of_memory_at_one_sequence_fails_the_checkpoint_with_one_line(
    ingested_warehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(INJECT_OOM_ENV, "0")
    summary = run_sweep(ingested_warehouse, SweepConfig(device="cpu", runs=("seed0",)), progress=False)
    assert len(summary.failed) == 7
    errors = Warehouse.open(ingested_warehouse, read_only=True).checkpoints("seed0")["error"].to_list()
    assert all(e == "out of memory scoring one sequence of 32 tokens on cpu" for e in errors)
