"""Every page's logic through Streamlit's AppTest, on the synthetic warehouse and on an empty one."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ldw.app.population_queries import Field
from ldw.app.views.tokens import context_html
from ldw.testing import SyntheticInfo
from tests.app.conftest import app_at


def charts(at) -> list[dict]:
    """The Plotly figures the run drew, as JSON."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def values(series: list | dict) -> list:
    """A figure's data array as a list: Plotly sends NumPy arrays as typed arrays ({"dtype", "bdata"})."""
    if isinstance(series, dict):
        return np.frombuffer(base64.b64decode(series["bdata"]), dtype=series["dtype"]).tolist()
    return list(series)


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


def _axis_titles(fig: dict) -> dict[str, str]:
    """y axis reference (y, y2, ...) -> title text."""
    layout = fig["layout"]
    return {("y" + key[5:]): layout[key].get("title", {}).get("text", "") for key in layout if key.startswith("yaxis")}


def test_token_from_url_draws_curves_beside_the_traces(
    synthetic: SyntheticInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app_at(synthetic.root, monkeypatch, page="tokens", token="40", runs="seed0,seed2")
    assert not at.exception
    [fig] = charts(at)
    raw = [t for t in fig["data"] if t["name"] in ("seed0", "seed2")]
    assert len(raw) == 2 and all(len(t["x"]) == len(synthetic.steps) - 1 for t in raw)  # step 0 off the log axis
    names = {t["name"] for t in fig["data"]}
    assert names >= {"seed0 G", "seed0 AoA", "seed2 AoA", "seed0 loss", "seed2 grad_norm", "seed0 lr"}
    assert names >= {"seed0 checkpoints", "seed2 checkpoints"}
    # one step axis for every panel: linked zoom, and hovering a step reads every panel
    assert {t.get("xaxis", "x") for t in fig["data"]} == {"x"}
    assert fig["layout"]["hovermode"] == "x unified" and fig["layout"]["hoversubplots"] == "axis"
    titles = _axis_titles(fig)
    by_name = {t["name"]: t for t in fig["data"]}
    assert titles[by_name["seed0 loss"]["yaxis"]].startswith("loss")
    assert titles[by_name["seed0 lr"]["yaxis"]] == "learning rate"
    assert titles[by_name["seed0 checkpoints"]["yaxis"]] == "checkpoints"
    assert titles[by_name["seed0"].get("yaxis", "y")] == "surprisal (bits)"
    assert by_name["seed0 loss"]["line"]["color"] == by_name["seed0"]["marker"]["color"]  # one color per run
    # the chance line is a legend entry at log2(V), not a label on the data
    chance = next(t for t in fig["data"] if t["name"].startswith("chance log2(V)"))
    assert chance["y"] == [pytest.approx(math.log2(400))] * 2 and chance.get("showlegend") is not False
    assert not fig["layout"].get("annotations")
    # spikes: spans across every panel, none selected; spikes at about the same step share one label
    spans = [s for s in fig["layout"]["shapes"] if s["type"] == "rect"]
    assert len(spans) == 2 * 2 * 2  # 2 runs x 2 spikes x (loss, grad_norm)
    assert all(s["yref"] == "paper" and s["y0"] == 0 and s["y1"] == 1 for s in spans)
    assert {s["name"] for s in spans} == {
        f"{r} {t} spike {i}" for r in ("seed0", "seed2") for t in ("loss", "grad_norm") for i in (0, 1)
    }
    labels = sorted(s["label"]["text"] for s in spans if s.get("label", {}).get("text"))
    assert labels == ["grad_norm #0 · loss #0", "grad_norm #1 · loss #1"]  # in the order the spans start
    assert "<mark" in " ".join(m.value for m in at.markdown)
    table = at.dataframe[0].value
    assert list(table["run_id"]) == ["seed0", "seed2"]
    assert at.query_params["token"] == "40"


def test_trace_and_weight_probe_panels_are_chosen(synthetic: SyntheticInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_at(synthetic.root, monkeypatch, page="tokens", token="40", runs="seed1")
    at.multiselect(key="tok_trace_panels").set_value(["loss"]).run()
    at.multiselect(key="tok_probe_panels").set_value(["qk_sigma1", "attn_entropy_bits"]).run()
    assert not at.exception
    [fig] = charts(at)
    by_name = {t["name"]: t for t in fig["data"]}
    assert "seed1 grad_norm" not in by_name and "seed1 loss" in by_name
    titles = _axis_titles(fig)
    sigma = by_name["seed1 qk_sigma1"]
    assert titles[sigma["yaxis"]] == "attention σ1 (max over heads)"
    assert titles[by_name["seed1 attn_entropy_bits"]["yaxis"]].startswith("attention entropy")
    steps = [int(s) for s in synthetic.steps if s > 0]
    assert values(sigma["x"]) == steps
    # the max over 2 layers x 4 heads of the synthetic sigma1 = 1 + log10(step+1) * (layer+1) + 0.1 head + 0.01 run
    expected = [1 + math.log10(s + 1) * 2 + 0.3 + 0.01 for s in steps]
    assert values(sigma["y"]) == pytest.approx(expected)


def test_the_spike_from_the_url_is_highlighted(synthetic: SyntheticInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_at(synthetic.root, monkeypatch, page="tokens", token="5", spike="seed1~grad_norm~0")
    spans = [s for s in charts(at)[0]["layout"]["shapes"] if s["type"] == "rect"]
    [chosen] = [s for s in spans if s["name"].endswith("(selected)")]
    assert chosen["name"] == "seed1 grad_norm spike 0 (selected)" and chosen["label"]["text"].startswith(
        "▶ grad_norm #0"
    )
    start = next(s for r, i, s, _ in synthetic.spikes if r == "seed1" and i == 0)
    assert chosen["x0"] == start and chosen["line"]["width"] > 0
    assert all(s["line"]["width"] == 0 for s in spans if s is not chosen)


def test_tokens_a_run_never_acquired_have_no_aoa(with_acquired: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_at(with_acquired, monkeypatch, page="tokens", token="42")  # 42 = 6 x 7: seed2 never acquired it
    assert not at.exception
    names = {t["name"] for t in charts(at)[0]["data"]}
    assert {"seed0 AoA", "seed1 AoA", "seed2 not acquired"} <= names and "seed2 AoA" not in names
    assert "never learned" in " ".join(c.value for c in at.caption)
    assert list(at.dataframe[0].value["acquired"]) == [True, True, False]
    pop = app_at(with_acquired, monkeypatch, page="population", runs="seed2")
    pop.selectbox(key="pop_hist_field").set_value(Field("token_metrics", "aoa_log10_step")).run()
    hist = charts(pop)[0]
    left_out = len(range(0, 600, 7))
    assert sum(sum(t["y"]) for t in hist["data"]) == 600 - left_out
    assert f"{left_out} (run, token) pairs the run never acquired" in " ".join(c.value for c in pop.caption)


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
    bins = [t for t in curves["data"] if t["name"].startswith("bin ")]
    assert len(bins) == 2 * 5  # two runs x five frequency bins
    loss = [t for t in curves["data"] if t["name"].endswith(" loss")]
    assert [t["name"] for t in loss] == ["seed0 loss", "seed1 loss"]
    # each run's loss below its curves on the same step axis: the column's x axes are matched (linked zoom)
    layout = curves["layout"]
    for run_id, below in zip(("seed0", "seed1"), loss, strict=True):
        [top] = {t.get("xaxis", "x") for t in bins if t["hovertemplate"].endswith(f"<extra>{run_id}</extra>")}
        linked = {layout["xaxis" + top[1:]].get("matches"), layout["xaxis" + below["xaxis"][1:]].get("matches")}
        assert top in linked or below["xaxis"] in linked
    at.select_slider(key="pop_freq_bins").set_value(10).run()
    assert len([t for t in charts(at)[2]["data"] if t["name"].startswith("bin ")]) == 2 * 10


def test_spikes_page_shows_the_window_beside_the_tokens_and_jumps(
    synthetic: SyntheticInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app_at(synthetic.root, monkeypatch, page="spikes", spike="seed1~loss~1")
    assert not at.exception
    assert at.selectbox(key="spike_select").value == "seed1~loss~1"
    window, risers = charts(at)
    _, spike_id, start, end = next(s for s in synthetic.spikes if s[0] == "seed1" and s[1] == 1)
    before = int(synthetic.steps[synthetic.steps <= start][-1])
    after = int(synthetic.steps[synthetic.steps >= end][0])
    lines = {s["label"]["text"] for s in window["layout"]["shapes"] if s["type"] == "line"}
    assert lines == {f"checkpoint {before:,} (before)", f"checkpoint {after:,} (after)"}
    [span] = [s for s in window["layout"]["shapes"] if s["type"] == "rect"]
    assert (span["x0"], span["x1"]) == (start, end)
    shown = {t["name"] for t in window["data"]}
    assert shown == {"loss", "grad_norm", "lr"}
    steps = [x for t in window["data"] for x in values(t["x"])]
    assert min(steps) <= before and max(steps) >= after  # the window reaches both checkpoints
    assert {t["name"] for t in risers["data"] if t.get("showlegend") is not False} == {"before", "after"}
    table = at.dataframe[1].value
    assert set(synthetic.spike_risers[("seed1", 1)]) <= set(table["token_idx"])  # the planted risers lead
    pick = at.selectbox(key="spike_pick").value
    at.button(key="spike_open").click().run()
    assert at.query_params["page"] == "tokens" and at.query_params["token"] == str(pick)
    assert at.query_params["spike"] == "seed1~loss~1"  # the explorer highlights the spike the user came from
    chosen = [s for s in charts(at)[0]["layout"]["shapes"] if s.get("name", "").endswith("(selected)")]
    assert [s["name"] for s in chosen] == ["seed1 loss spike 1 (selected)"]


def test_gradient_norm_spikes_have_their_tokens_too(synthetic: SyntheticInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_at(synthetic.root, monkeypatch, page="spikes", spike="seed0~grad_norm~0")
    assert not at.exception
    window, risers = charts(at)
    assert [t["name"] for t in window["data"]][0] == "grad_norm"  # the spike's own trace on top
    table = at.dataframe[1].value
    assert set(synthetic.spike_risers[("seed0", 0)]) <= set(table["token_idx"])


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
