"""The throughput benchmark keeps working: run it at a tiny size and read its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sweep_throughput_benchmark_tiny(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.sweep_throughput",
            "--shape",
            "tiny",
            "--windows",
            "4",
            "--seq-len",
            "64",
            "--batch",
            "2",
            "--out",
            str(out),
        ],
        check=True,
        cwd=ROOT,
        env={"PATH": ""},  # nothing from this shell: the installed ldw and the repository root (cwd) only
        capture_output=True,
    )
    result = json.loads(out.read_text())
    assert set(result["tokens_per_s"]) == {"per_sentence", "padded", "packed_simple", "ldw"}
    assert all(rate > 0 for rate in result["tokens_per_s"].values())
    assert result["max_abs_err_bits"] < 1e-4  # float32 on CPU
