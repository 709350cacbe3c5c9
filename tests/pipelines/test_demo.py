"""The offline demo end to end: trains, sweeps, analyses, reuses; the paper's direction holds on its runs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from ldw.demo import SEEDS, run_demo
from ldw.ngrams.correlations import summary_table
from ldw.ngrams.export import ngram_correlations
from ldw.warehouse import Warehouse
from ldw.warehouse.doctor import check_warehouse


@pytest.fixture(scope="module")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("demo") / "ldw-demo"
    out = io.StringIO()
    run_demo(path, Console(file=out, width=120), progress=False)
    return path, out.getvalue()


def test_demo_builds_a_sound_analysed_warehouse(demo_warehouse: tuple[Path, str]) -> None:
    path, printed = demo_warehouse
    wh = Warehouse.open(path)
    checkpoints = wh.checkpoints()
    assert wh.run_ids() == [f"seed{s}" for s in SEEDS]
    assert checkpoints.group_by("run_id").len()["len"].min() >= 18
    assert checkpoints.filter(status="done").height == checkpoints.height
    assert {"token_metrics", "crossrun_metrics", "ngram_stats"} <= set(
        wh.query("SELECT table_name FROM derived_tables")["table_name"]
    )
    assert check_warehouse(wh) == []
    assert f"ldw app {path}" in printed and "spearman_rho" in printed


def test_frequent_tokens_are_learned_earlier_and_better(demo_warehouse: tuple[Path, str]) -> None:
    summary = summary_table(ngram_correlations(demo_warehouse[0]))
    rho = dict(summary.select("metric", "spearman_rho").iter_rows())
    # Chang et al.: more frequent -> lower final surprisal, earlier AoA (demo runs clear these margins widely)
    assert rho["final_surprisal"] < -0.1
    assert rho["aoa_log10_step"] < -0.2


def test_second_run_reuses_everything(demo_warehouse: tuple[Path, str]) -> None:
    path, _ = demo_warehouse
    before = Warehouse.open(path).checkpoints().select("run_id", "step", "probed_at")
    out = io.StringIO()
    run_demo(path, Console(file=out, width=120), progress=False)
    assert "scored 0 checkpoints" in out.getvalue()
    assert Warehouse.open(path).checkpoints().select("run_id", "step", "probed_at").equals(before)
