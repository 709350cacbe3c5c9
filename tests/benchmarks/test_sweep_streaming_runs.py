"""The streaming benchmark keeps working: run it at its quick size and read its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sweep_streaming_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    subprocess.run(
        [sys.executable, "-m", "benchmarks.sweep_streaming", "--quick", "--ratios", "1", "--out", str(out)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    result = json.loads(out.read_text())
    assert result["checkpoints"] == 3 and [r["mode"] for r in result["rows"]] == ["in turn", "streaming"]
    for row in result["rows"]:
        stages = row["fetch_s"], row["score_s"], row["write_s"]
        assert row["ratio"] == 1.0 and row["max_s"] == max(stages) and abs(row["sum_s"] - sum(stages)) < 1e-9
        assert row["wall_per_checkpoint_s"] > 0
