"""The Python API: the README's "From Python" example runs as written, and the readers return what is stored."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import ldw
from ldw.sweep.config import SweepConfig
from ldw.warehouse import Warehouse
from ldw.warehouse.checkpoint_surprisal import checkpoint_surprisal

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_python_example() -> str:
    """The first ```python block of the README's "From Python" section."""
    text = README.read_text()
    section = text[text.index("## From Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def example_warehouse(tiny_runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README example run in a folder whose runs/seed0 and runs/seed1 are the tiny test runs."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "runs").mkdir()
    for run in tiny_runs:
        (folder / "runs" / run.name).symlink_to(run, target_is_directory=True)
    script = readme_python_example() + "\nprint('EXAMPLE-DONE', curves.height, loss.height, mean_curve.height)\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "EXAMPLE-DONE" in done.stdout
    return folder / "wh"


def test_readme_example_fills_the_warehouse(example_warehouse: Path) -> None:
    wb = ldw.open(example_warehouse, progress=False)
    assert wb.runs()["run_id"].to_list() == ["seed0", "seed1"]
    assert wb.checkpoints().filter(pl.col("status") != "done").height == 0
    assert wb.token_metrics().height == 2 * Warehouse.open(example_warehouse, read_only=True).token_count()
    assert wb.doctor() == []


def test_curves_are_the_stored_surprisal_and_smoothed_curves(example_warehouse: Path) -> None:
    wb = ldw.open(example_warehouse, progress=False)
    wh = Warehouse.open(example_warehouse, read_only=True)
    tokens = [0, 7, 31]
    curves = wb.curves(tokens, runs=["seed1"])
    steps = wh.checkpoints("seed1")["step"].to_list()
    assert curves.columns == ["run_id", "token_idx", "step", "surprisal_bits", "g_bits"]
    assert curves.height == len(tokens) * len(steps)
    for step in steps:  # each value read independently, straight from the checkpoint's Parquet file
        stored = checkpoint_surprisal(wh, "seed1", step)[tokens]
        got = curves.filter(pl.col("step") == step).sort("token_idx")["surprisal_bits"].to_numpy()
        np.testing.assert_array_equal(got, stored.astype(np.float64))
    smoothed = wh.query("SELECT token_idx, g_bits FROM token_curves_smoothed WHERE run_id = 'seed1' ORDER BY 1")
    positive = [s for s in steps if s > 0]
    for token in tokens:
        g = curves.filter((pl.col("token_idx") == token) & (pl.col("step") > 0)).sort("step")["g_bits"]
        expected = smoothed.filter(pl.col("token_idx") == token)["g_bits"][0].to_list()
        np.testing.assert_allclose(g.to_numpy(), expected, rtol=1e-6)
        assert len(expected) == len(positive)
    assert curves.filter(pl.col("step") == 0)["g_bits"].is_null().all()


def test_readers_filter_and_query(example_warehouse: Path) -> None:
    wb = ldw.open(example_warehouse, progress=False)
    traces = wb.traces("seed0", ["loss"])
    assert set(traces["run_id"]) == {"seed0"} and set(traces["name"]) == {"loss"} and traces.height > 0
    counts = wb.sql("SELECT run_id, count(*) AS n FROM token_metrics WHERE run_id = ? GROUP BY ALL", ["seed1"])
    assert counts.rows() == [("seed1", wb.token_metrics().height // 2)]
    assert wb.crossrun_metrics()["n_runs"].unique().to_list() == [2]


def test_sql_is_read_only(example_warehouse: Path) -> None:
    wb = ldw.open(example_warehouse, progress=False)
    with pytest.raises(Exception, match="read-only"):
        wb.sql("DELETE FROM runs")
    assert wb.runs().height == 2


def test_settings_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ldw.LdwError, match="not a warehouse"):
        ldw.open(tmp_path / "nothing")
    wb = ldw.open(tmp_path / "wh", create=True, progress=False)
    with pytest.raises(ldw.LdwError, match="SweepConfig has no option devcie"):
        wb.sweep(devcie="cpu")
    with pytest.raises(ldw.LdwError, match="ScheduleConfig needs runs"):
        wb.fit_schedule()
    with pytest.raises(ldw.LdwError, match="--batch-size must be at least 1"):
        wb.sweep(SweepConfig(device="cpu"), batch_size=0)
    with pytest.raises(ldw.LdwError, match="no token_metrics table yet"):
        wb.token_metrics()


def test_import_ldw_and_the_app_load_no_torch() -> None:
    code = (
        "import sys, ldw, ldw.app.queries, ldw.warehouse; ldw.SweepConfig; ldw.open; "
        "import ldw.app.views.overview, ldw.app.views.tokens, ldw.app.views.population, ldw.app.views.spikes; "
        "import ldw.app.views.schedules, ldw.app.views.export, ldw.app.explorer_figure; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
