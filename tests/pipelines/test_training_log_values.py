"""Training-log values and steps: nothing dropped silently, bad steps refused with file and line (issue 17, point 9)."""

from __future__ import annotations

import io
import json
import re
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import polars as pl
import pytest

from ldw.cli.main import run
from ldw.errors import LdwError
from ldw.ingest.training_logs import TrainingLogWarning, load_training_log, read_training_log
from ldw.warehouse import Warehouse


def ldw(*args: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def test_numbers_written_as_text_are_read_and_other_text_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    rows = [
        {"step": 1, "loss": "3.0", "lr": 0.1, "phase": "warmup"},
        {"step": "2", "loss": " 2.5 ", "lr": "1e-2", "phase": "train", "note": None},
        {"step": 3, "loss": 2.0, "lr": [0.1], "flag": True},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    log = load_training_log(path)
    loss = log.frame.filter(pl.col("name") == "loss").sort("step")
    assert loss["value"].to_list() == [3.0, 2.5, 2.0]
    assert log.frame.filter(pl.col("name") == "lr")["value"].to_list() == [0.1, 0.01]
    assert log.non_numeric == {"phase": 2, "lr": 1, "flag": 1}
    with pytest.warns(TrainingLogWarning, match=r"left out 4 values that are not numbers \(flag: 1, lr: 1, phase: 2\)"):
        read_training_log(path)


def test_csv_text_cells_are_counted_not_dropped_silently(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss,stage\n1,3.5,warm\n2,n/a,main\n3,2.5,\n")
    log = load_training_log(path)
    assert log.frame.filter(pl.col("name") == "loss")["value"].to_list() == [3.5, 2.5]
    assert log.non_numeric == {"loss": 1, "stage": 2}


@pytest.mark.parametrize(
    ("step", "problem"),
    [
        ("-3", "step -3 is negative"),
        ("1e30", "is beyond 1,000,000,000,000, not an optimizer step"),
        ("1" + "0" * 400, "is beyond 1,000,000,000,000"),
        ("1e400", "is beyond"),
        ("-1e400", "is negative"),
    ],
)
def test_negative_and_absurd_steps_name_the_file_and_line(tmp_path: Path, step: str, problem: str) -> None:
    jsonl = tmp_path / "log.jsonl"
    jsonl.write_text(f'{{"step": 1, "loss": 2.0}}\n{{"step": {step}, "loss": 1.0}}\n')
    with pytest.raises(LdwError, match=re.escape(f"{jsonl}: line 2: ") + ".*" + re.escape(problem)):
        load_training_log(jsonl)
    csv = tmp_path / "log.csv"
    csv.write_text(f"step,loss\n1,2.0\n5,1.5\n{step},1.0\n")
    with pytest.raises(LdwError, match=re.escape(f"{csv}: line 4: ") + ".*" + re.escape(problem)):
        load_training_log(csv)


def test_a_negative_step_in_trainer_state_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"log_history": [{"step": 1, "loss": 2.0}, {"step": -1, "loss": 1.0}]}))
    with pytest.raises(LdwError, match=re.escape(f"{path}: log_history[1]: step -1 is negative")):
        load_training_log(path)


@pytest.fixture()
def run_with_two_logs(tiny_runs: list[Path], tmp_path: Path) -> Path:
    """A copy of a tiny run whose training log is two CSV files, one with a NaN and a text value."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_runs[0], run_dir)
    (run_dir / "train_log.jsonl").unlink()
    (run_dir / "loss_log.csv").write_text("step,loss\n1,3.0\n2,nan\n3,two\n4,2.0\n")
    (run_dir / "train_history.csv").write_text("step,loss\n1,9.0\n")
    return run_dir


def test_several_logs_name_the_option_that_exists_and_it_works(run_with_two_logs: Path, tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    code, _, err = ldw("ingest", run_with_two_logs, "-w", wh, "-q")
    assert code == 1 and "several possible training logs" in err and "`ldw ingest --log FILE`" in err
    code, _, err = ldw("ingest", run_with_two_logs, "-w", wh, "-q", "--log", run_with_two_logs / "loss_log.csv")
    assert code == 0, err
    traces = Warehouse.open(wh, read_only=True).traces("run")
    assert traces.filter(pl.col("name") == "loss")["value"].to_list() == [3.0, 2.0]
    warnings = err.splitlines()
    assert any("left out 1 NaN/inf values (loss: 1)" in line for line in warnings)
    assert any("left out 1 values that are not numbers (loss: 1)" in line for line in warnings)
    for line in warnings:  # printed as one line each, without Python's file:line prefix
        assert line.startswith("warning ") and ".py:" not in line and "TrainingLogWarning" not in line


def test_log_with_several_runs_is_a_setting_error(tiny_runs: list[Path], tmp_path: Path) -> None:
    code, _, err = ldw("ingest", *tiny_runs, "-w", tmp_path / "wh", "--log", tmp_path / "x.csv")
    assert code == 2 and "--log given but 2 runs were found" in err
    assert not (tmp_path / "wh").exists()
