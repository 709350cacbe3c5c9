"""The spike study runs end to end at its smallest size, and its report says what the warehouse holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import ldw
from benchmarks.spike_study import rose_before, write_section

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.full  # 18 s; `bash benchmarks/gpu_session.sh --dry-run study` runs it too
def test_spike_study_tiny_end_to_end(tmp_path: Path) -> None:
    out, md, export, work = tmp_path / "study.json", tmp_path / "RESULTS.md", tmp_path / "export", tmp_path / "work"
    md.write_text("# Results\n\nkept text\n")
    args = ["--size", "tiny", "--steps", "8", "--save-every", "4", "--eval-sequences", "4", "--probe-sequences", "2"]
    args += ["--variants", "plain,step_bound", "--out", str(out), "--results-md", str(md), "--export", str(export)]
    subprocess.run(
        [sys.executable, "-m", "benchmarks.spike_study", *args, "--workdir", str(work)],
        check=True,
        cwd=ROOT,
        env={"PATH": ""},
        capture_output=True,
    )
    result = json.loads(out.read_text())
    assert set(result["variants"]) == {"plain", "step_bound"}
    assert result["checkpoint_steps"] == [0, 1, 2, 4, 8]
    for name, report in result["variants"].items():
        # independently, from the trainer's own log: the final loss is the mean of the last 10% of steps
        log = [json.loads(line) for line in (work / "runs" / name / "train_log.jsonl").read_text().splitlines()]
        assert report["final_loss"] == round(float(np.mean([row["loss"] for row in log][-1:])), 4)
        assert report["peak_loss"] == round(max(row["loss"] for row in log), 4)
        assert report["loss_spikes"] == len(report["spikes"])
    # the export is a warehouse a user can open: traces, spikes, weight probes, surprisal; no checkpoints
    wb = ldw.open(export, progress=False)
    assert set(wb.runs()["run_id"]) == {"plain", "step_bound"}
    assert wb.sql("SELECT count(DISTINCT step) AS n FROM weight_probes")["n"][0] == 5
    assert wb.traces("plain", ["max_attn_logit"]).height == 8
    assert wb.spikes().height == sum(v["loss_spikes"] + v["grad_norm_spikes"] for v in result["variants"].values())
    assert not [p for p in export.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt")]
    text = md.read_text()
    assert text.startswith("# Results\n\nkept text\n") and text.count("<!-- spike_study:tiny:begin -->") == 1
    assert "| plain | " in text and "| step_bound | " in text


def test_rose_before_compares_the_last_points_with_the_ones_before() -> None:
    rising = pl.DataFrame({"step": range(1, 21), "value": [1.0] * 10 + [2.0] * 10})
    assert rose_before(rising, 21) is True
    assert rose_before(rising, 11, points=5) is False  # flat before step 11
    assert rose_before(rising, 15) is None  # fewer than 20 points before step 15


def test_results_section_is_replaced_not_repeated(tmp_path: Path) -> None:
    md = tmp_path / "R.md"
    write_section(md, "tiny", "first\n")
    write_section(md, "small", "other\n")
    write_section(md, "tiny", "second\n")
    text = md.read_text()
    assert "first" not in text and text.count("second") == 1 and "other" in text
