"""The throughput and busy-fraction benchmarks keep working: run them at a tiny size and read their JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(module: str, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", module, *args],
        check=True,
        cwd=ROOT,
        env={"PATH": ""},  # nothing from this shell: the installed ldw and the repository root (cwd) only
        capture_output=True,
    )


def test_sweep_throughput_benchmark_tiny(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    _run(
        "benchmarks.sweep_throughput",
        *("--shape", "tiny", "--windows", "4", "--seq-len", "64", "--batch", "2", "--sentence-windows", "1"),
        *("--precisions", "fp32,bf16", "--levers", "cce", "--out", str(out)),
    )
    result = json.loads(out.read_text())
    methods = {"per_sentence", "padded", "packed_simple", "ldw"}
    assert set(result["tokens_per_s"]) == methods and result["precision"] == "fp32"
    assert all(rate > 0 for rate in result["tokens_per_s"].values())
    assert result["max_abs_err_bits"] < 1e-4  # float32 on CPU against float64
    bf16 = result["by_precision"]["bf16"]
    assert set(bf16["tokens_per_s"]) == methods | {"ldw_cce"}
    assert bf16["heads"]["ldw_cce"] == "chunked (cce needs CUDA)"
    assert 1e-4 < bf16["errors_bits"]["ldw"]["max"] < 0.5  # bf16 weights: measurably off, not broken


@pytest.mark.full  # 10 s; `bash benchmarks/gpu_session.sh --dry-run throughput` runs it too
def test_sweep_busy_benchmark_tiny(tmp_path: Path) -> None:
    out = tmp_path / "busy.json"
    _run(
        "benchmarks.sweep_busy",
        *("--shape", "tiny", "--checkpoints", "3", "--windows", "4", "--seq-len", "32", "--out", str(out)),
    )
    result = json.loads(out.read_text())
    assert [row["prefetch"] for row in result["sweeps"]] == [0, 1]
    for row in result["sweeps"]:
        assert 0 < row["score_share"] <= 1 and row["tokens_per_s"] > 0
        assert row["checked_checkpoints"] == 2  # the first and the last measure the precision's error
        assert row["gpu_utilisation_mean"] is None  # CPU: no NVML figure, none made up
