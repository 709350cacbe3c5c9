"""The offline demo end to end: every stage runs, every app page has content, a second run reuses everything.

The default run drives the demo's code at a reduced size (``SMALL``); ``--runslow`` runs the full ``ldw demo``
as well and checks its story: at least 40 checkpoints per run, a real loss spike in the plain high-LR run with
the tokens that got worse across it, none in its step-bounded twin, and the paper's frequency effects.
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console
from streamlit.testing.v1 import AppTest

from ldw.app.launch import APP_MAIN
from ldw.demo import FIXED_RUN, FULL, PLAIN_RUN, SEEDS, DemoSize, agreement, run_demo
from ldw.ngrams.correlations import summary_table
from ldw.ngrams.export import ngram_correlations
from ldw.warehouse import Warehouse
from ldw.warehouse.doctor import check_warehouse

SMALL = DemoSize(steps=80, save_every=2, seq_len=32, eval_sequences=40, probe_sequences=1)
RUNS = sorted([PLAIN_RUN, FIXED_RUN, *(f"seed{s}" for s in SEEDS)])
EVERY_STAGE = {
    "token_metrics",
    "crossrun_metrics",
    "ngram_stats",
    "spikes",
    "spike_tokens",
    "lr_law_fit",
    "lr_law_curves",
    "weight_probes",
}


def _demo(path: Path, size: DemoSize) -> str:
    out = io.StringIO()
    run_demo(path, Console(file=out, width=160), progress=False, size=size)
    return out.getvalue()


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("demo") / "ldw-demo"
    return path, _demo(path, SMALL)


@pytest.fixture(scope="module")
def full_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("demo-full") / "ldw-demo"
    return path, _demo(path, FULL)


def _every_stage_ran(path: Path, printed: str, positive_checkpoints: int) -> Warehouse:
    wh = Warehouse.open(path)
    checkpoints = wh.checkpoints()
    assert wh.run_ids() == RUNS
    per_run = checkpoints.filter(pl.col("step") > 0).group_by("run_id").len()
    assert per_run["len"].min() >= positive_checkpoints
    assert checkpoints.filter(status="done").height == checkpoints.height
    assert set(wh.query("SELECT table_name FROM derived_tables")["table_name"]) >= EVERY_STAGE
    assert set(wh.query("SELECT DISTINCT run_id FROM weight_probes")["run_id"]) == set(RUNS)
    assert check_warehouse(wh) == []
    assert f"ldw app {path}" in printed and "spearman_rho" in printed
    assert f'ldw sql -w {path} "SELECT' in printed and "  duckdb " not in printed  # nothing a pip install lacks
    return wh


def test_demo_runs_every_stage(small_demo: tuple[Path, str]) -> None:
    path, printed = small_demo
    _every_stage_ran(path, printed, positive_checkpoints=40)
    assert "9/9 weight probes" in printed


def _pages(path: Path, monkeypatch: pytest.MonkeyPatch, token: int) -> dict[str, AppTest]:
    monkeypatch.setenv("LDW_WAREHOUSE", str(path))
    pages = {}
    for page in ("overview", "tokens", "population", "spikes", "schedules", "export"):
        at = AppTest.from_file(str(APP_MAIN), default_timeout=120)
        at.query_params["page"] = page
        at.query_params["token"] = str(token)
        pages[page] = at.run()
        assert not pages[page].exception, page
        assert not pages[page].info, f"{page}: {[i.value for i in pages[page].info]}"  # no "run ldw ..." box
    return pages


def test_every_page_has_content(small_demo: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    pages = _pages(small_demo[0], monkeypatch, token=10)
    for page, count in (("overview", 1), ("tokens", 1), ("population", 3), ("schedules", 1)):
        assert len(pages[page].get("plotly_chart")) >= count, page


def test_second_run_reuses_everything(small_demo: tuple[Path, str]) -> None:
    path, _ = small_demo
    before = Warehouse.open(path).checkpoints().select("run_id", "step", "probed_at")
    printed = _demo(path, SMALL)
    assert "scored 0 checkpoints" in printed and printed.count("already computed") == 5
    assert Warehouse.open(path).checkpoints().select("run_id", "step", "probed_at").equals(before)


def test_agreement_with_the_papers_signs() -> None:
    assert agreement(-0.4, "-") == "yes (-)"
    assert agreement(0.2, "-") == "no (they report -)"
    assert agreement(0.2, None) == ""


@pytest.mark.full
def test_full_demo_tells_the_spike_story(full_demo: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    path, printed = full_demo
    wh = _every_stage_ran(path, printed, positive_checkpoints=40)
    spikes = wh.query("SELECT * FROM spikes WHERE trace = 'loss'")
    plain = spikes.filter(pl.col("run_id") == PLAIN_RUN)
    assert plain.height >= 1 and spikes.filter(pl.col("run_id") == FIXED_RUN).height == 0
    biggest = plain.sort("magnitude", descending=True).row(0, named=True)
    assert biggest["peak_value"] > biggest["baseline"] + 2.0 and biggest["step_end"] is not None  # up, then back
    risers = wh.query(
        "SELECT * FROM spike_tokens WHERE run_id = ? AND trace = 'loss' AND spike_id = ?",
        [PLAIN_RUN, biggest["spike_id"]],
    )
    assert risers.height > 0 and risers["delta_bits"].min() > 0  # tokens that got worse across a real loss spike
    pages = _pages(path, monkeypatch, token=int(risers["token_idx"][0]))
    spike_page = pages["spikes"]
    assert len(spike_page.get("plotly_chart")) == 2  # the trace window and the risers
    summary = summary_table(ngram_correlations(path))
    rho = dict(summary.select("metric", "spearman_rho").iter_rows())
    # Chang et al.: more frequent -> lower final surprisal, earlier AoA (the demo runs clear these margins widely)
    assert rho["final_surprisal"] < -0.1
    assert rho["aoa_log10_step"] < -0.2
