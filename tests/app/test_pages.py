"""Every page's logic through Streamlit's AppTest, on the synthetic warehouse and on an empty one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest

from ldw.app.views.tokens import context_html
from ldw.testing import SyntheticInfo
from tests.app.conftest import app_at


def charts(at) -> list[dict]:
    """The Plotly figures the run drew, as JSON."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def infos(at) -> str:
    """Text of every info box."""
    return " ".join(i.value for i in at.info)


def test_overview_counts_traces_and_log_toggle(synthetic: SyntheticInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_at(synthetic.root, monkeypatch)
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["runs"] == "3"
    assert metrics["checkpoints done"] == "36 / 36"
    assert metrics["evaluation tokens"] == "600"
    [fig] = charts(at)
    names = {t["name"] for t in fig["data"]}
    assert {"seed0", "seed1", "seed2", "seed0 spikes", "seed2 checkpoints"} <= names
    assert fig["layout"]["xaxis"]["type"] == "log"
    at.radio(key="nav_xscale").set_value("linear").run()
    assert charts(at)[0]["layout"]["xaxis"]["type"] == "linear"
    assert at.query_params["x"] == "linear"
    at.multiselect(key="nav_runs").set_value(["seed1"]).run()
    assert {t["name"] for t in charts(at)[0]["data"] if t.get("showlegend") is not False} == {"seed1"}
    assert at.query_params["runs"] == "seed1"


def test_token_from_url_draws_curves_context_and_metrics(
    synthetic: SyntheticInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app_at(synthetic.root, monkeypatch, page="tokens", token="40", runs="seed0,seed2")
    assert not at.exception
    [fig] = charts(at)
    raw = [t for t in fig["data"] if t["name"] in ("seed0", "seed2")]
    assert len(raw) == 2 and all(len(t["x"]) == len(synthetic.steps) - 1 for t in raw)  # step 0 off the log axis
    assert {t["name"] for t in fig["data"]} >= {"seed0 G", "seed0 AoA", "seed2 AoA"}
    chance = [s for s in fig["layout"]["shapes"] if s.get("y0") == s.get("y1") and s.get("y0")]
    assert chance and chance[0]["y0"] == pytest.approx(math.log2(400))
    assert "<mark" in " ".join(m.value for m in at.markdown)
    table = at.dataframe[0].value
    assert list(table["run_id"]) == ["seed0", "seed2"]
    assert at.query_params["token"] == "40"


def test_search_by_text_then_pick_a_result(synthetic: SyntheticInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_at(synthetic.root, monkeypatch, page="tokens")
    assert not charts(at)
    at.text_input(key="q_text").input("the").run()
    hits = at.dataframe[0].value
    assert len(hits) > 0 and set(hits["token_text"]) == {" the"}
    first = int(hits["token_idx"].iloc[0])
    at.selectbox(key="hit_pick").set_value(first).run()
    assert at.session_state["selected_token"] == first
    assert at.query_params["token"] == str(first)
    assert len(charts(at)) == 1


def test_ranking_and_context_search_modes(synthetic: SyntheticInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_at(synthetic.root, monkeypatch, page="tokens")
    at.radio(key="find_mode").set_value("metric ranking").run()
    at.selectbox(key="q_rank").set_value("most_variable_seeds").run()
    scores = list(at.dataframe[0].value["score"])
    assert scores == sorted(scores, reverse=True) and len(scores) == 200
    at.radio(key="find_mode").set_value("context text").run()
    at.text_input(key="q_context").input(" of the").run()
    hits = at.dataframe[0].value
    assert len(hits) > 0 and all(text.startswith(" the") for text in hits["token_text"])  # " their" holds "the" too
    at.number_input(key="token_idx_input").set_value(7).run()
    assert at.session_state["selected_token"] == 7 and len(charts(at)) == 1


def test_population_page(synthetic: SyntheticInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_at(synthetic.root, monkeypatch, page="population", runs="seed0,seed1")
    assert not at.exception
    hist, dens, curves = charts(at)
    assert {t["name"] for t in hist["data"]} == {"seed0", "seed1"}
    assert sum(sum(t["y"]) for t in hist["data"]) == 2 * synthetic.n_tokens
    assert dens["data"][0]["type"] == "heatmap"
    assert {t["name"] for t in dens["data"][1:]} == {"seed0 mean", "seed1 mean"}
    assert len(curves["data"]) == 2 * 5  # two runs x five frequency bins
    at.select_slider(key="pop_freq_bins").set_value(10).run()
    assert len(charts(at)[2]["data"]) == 2 * 10


def test_spikes_page_jumps_to_the_explorer(synthetic: SyntheticInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_at(synthetic.root, monkeypatch, page="spikes", spike="seed1~loss~1")
    assert not at.exception
    assert at.selectbox(key="spike_select").value == "seed1~loss~1"
    [fig] = charts(at)
    assert {t["name"] for t in fig["data"] if t.get("showlegend") is not False} == {"before", "after"}
    pick = at.selectbox(key="spike_pick").value
    at.button(key="spike_open").click().run()
    assert at.query_params["page"] == "tokens" and at.query_params["token"] == str(pick)
    assert len(charts(at)) == 1
    grad = app_at(synthetic.root, monkeypatch, page="spikes", spike="seed0~grad_norm~0")
    assert "computed for `loss` spikes" in " ".join(c.value for c in grad.caption)


def test_schedules_and_export_pages(synthetic: SyntheticInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_at(synthetic.root, monkeypatch, page="schedules")
    assert not at.exception
    [fig] = charts(at)
    assert {"seed0 fit", "seed0 observed", "constant predicted"} <= {t["name"] for t in fig["data"]}
    assert at.dataframe[0].value["schedule"].tolist() == ["seed0"]
    export = app_at(synthetic.root, monkeypatch, page="export", token="3")
    assert not export.exception
    labels = [b.proto.label for b in export.get("download_button")]
    assert labels.count("CSV") == labels.count("PARQUET") >= 10
    assert "HTML" in labels
    assert "`ldw export ngram-correlations` writes them" in " ".join(c.value for c in export.caption)


@pytest.mark.parametrize(
    "page, command",
    [
        ("overview", "ldw sweep"),
        ("tokens", "ldw evalset"),
        ("population", "ldw metrics"),
        ("spikes", "ldw spikes"),
        ("schedules", "ldw fit-schedule"),
    ],
)
def test_empty_states_name_the_command(bare: Path, monkeypatch: pytest.MonkeyPatch, page: str, command: str) -> None:
    at = app_at(bare, monkeypatch, page=page)
    assert not at.exception
    assert command in infos(at)


def test_not_a_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_at(tmp_path, monkeypatch)
    assert "not a warehouse" in at.error[0].value and "ldw demo" in infos(at)


def test_context_html_escapes_text() -> None:
    context = pl.DataFrame(
        {
            "position": [0, 1, 2],
            "token_id": [1, 2, 3],
            "token_text": ["<script>", " x&y", "\n"],
            "is_target": [False, True, False],
        }
    )
    out = context_html(context)
    assert "<script>" not in out and "&lt;script&gt;" in out and "x&amp;y</mark>" in out and "↵<br>" in out
