"""Figure builders: one color per run everywhere, units on the axes, marks where the data say."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from ldw.app.analysis_figures import density_figure, histogram_figure, schedule_figure
from ldw.app.figures import PALETTE, run_colors, token_curve_figure, traces_figure


def test_run_colors_do_not_depend_on_order_or_selection() -> None:
    colors = run_colors(["b", "a", "c"])
    assert colors == {"a": PALETTE[0], "b": PALETTE[1], "c": PALETTE[2]}
    assert run_colors(["c", "a", "b"]) == colors
    many = run_colors([f"r{i:02d}" for i in range(40)])
    assert len(set(many.values())) == len(PALETTE)


def _curves() -> tuple[pl.DataFrame, pl.DataFrame]:
    steps = [0, 1, 10, 100, 1000]
    raw = pl.DataFrame(
        {"run_id": ["a"] * 5 + ["b"] * 5, "step": steps * 2, "bits": [9.0, 8.0, 6.0, 3.0, 2.0, 9.0, 8.5, 7.0, 4.0, 2.5]}
    )
    smooth = raw.filter(pl.col("step") > 0).with_columns(pl.col("bits") + 0.1)
    return raw, smooth


def test_token_curve_figure_marks_chance_aoa_and_spikes() -> None:
    raw, smooth = _curves()
    colors = run_colors(["a", "b"])
    aoa = pl.DataFrame({"run_id": ["a", "b"], "aoa_step": [40.0, float("nan")], "aoa_threshold_bits": [5.5, 6.0]})
    spikes = pl.DataFrame(
        {
            "run_id": ["a"],
            "trace": ["loss"],
            "spike_id": [0],
            "step_start": [200],
            "step_peak": [250],
            "step_end": [300],
            "magnitude_mads": [9.0],
            "peak_value": [4.0],
        }
    )
    fig = token_curve_figure(raw, smooth, aoa, math.log2(512), spikes, colors, True, "t")
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["a"].x) == [1, 10, 100, 1000]  # step 0 left out on the log axis
    assert by_name["a"].marker.color == colors["a"] and by_name["a G"].line.color == colors["a"]
    assert by_name["b"].marker.color == colors["b"]
    assert list(by_name["a AoA"].x) == [40.0] and list(by_name["a AoA"].y) == [5.5]
    assert "b AoA" not in by_name  # a NaN AoA draws nothing
    shapes = fig.layout.shapes
    assert any(s.y0 == 9.0 and s.y1 == 9.0 for s in shapes)  # chance line at log2(512) = 9 bits
    assert any(s.x0 == 200 and s.x1 == 300 for s in shapes)  # spike band
    assert fig.layout.xaxis.type == "log" and "step" in fig.layout.xaxis.title.text
    assert "bits" in fig.layout.yaxis.title.text
    linear = token_curve_figure(
        raw, pl.DataFrame(schema=smooth.schema), aoa.head(0), None, spikes.head(0), colors, False, "t"
    )
    assert list(next(t for t in linear.data if t.name == "a").x) == [0, 1, 10, 100, 1000]
    assert linear.layout.xaxis.type == "linear" and not linear.layout.shapes


def test_traces_figure_has_one_row_per_trace_and_a_checkpoint_rug() -> None:
    traces = pl.DataFrame(
        {
            "run_id": ["a"] * 4 + ["b"] * 4,
            "name": ["loss", "loss", "lr", "lr"] * 2,
            "step": [0, 10, 0, 10] * 2,
            "value": [3.0, 2.0, 0.0, 1e-3] * 2,
        }
    )
    checkpoints = pl.DataFrame({"run_id": ["a", "a", "b"], "step": [0, 10, 10], "status": ["done", "failed", "done"]})
    spikes = pl.DataFrame(
        {
            "run_id": ["b"],
            "trace": ["loss"],
            "spike_id": [0],
            "step_start": [5],
            "step_peak": [6],
            "step_end": [None],
            "magnitude_mads": [7.0],
            "peak_value": [5.0],
        }
    )
    colors = run_colors(["a", "b"])
    fig = traces_figure(traces, spikes, checkpoints, colors, ["loss", "lr"], log_x=True)
    assert [fig.layout[f"xaxis{i}"].type for i in ("", "2", "3")] == ["log"] * 3
    assert fig.layout.yaxis.title.text.startswith("loss") and fig.layout.yaxis2.title.text == "learning rate"
    rug = [t for t in fig.data if t.name.endswith("checkpoints")]
    assert [list(t.x) for t in rug] == [[10], [10]]  # step 0 dropped on the log axis
    assert rug[0].marker.symbol == ("x-thin-open",)  # the failed checkpoint
    spike = next(t for t in fig.data if t.name == "b spikes")
    assert list(spike.x) == [6] and spike.marker.color == colors["b"]
    lines = [t for t in fig.data if t.name in ("a", "b")]
    assert {t.line.color for t in lines if t.name == "a"} == {colors["a"]}
    assert sum(t.showlegend is not False for t in lines) == 2  # one legend entry per run


def test_density_figure_places_log_counts_on_the_grid() -> None:
    dens = pl.DataFrame({"x": [0.5, 0.5, 1.5], "y": [2.0, 3.0, 3.0], "count": [10, 100, 1]})
    trend = pl.DataFrame({"run_id": ["a"], "x": [1.0], "mean": [2.5], "std": [0.5], "n": [111]})
    fig = density_figure(dens, trend, "x label", "y label", run_colors(["a"]))
    heat = fig.data[0]
    z = np.array(heat.z, dtype=float)
    assert list(heat.x) == [0.5, 1.5] and list(heat.y) == [2.0, 3.0]
    assert z[0, 0] == 1.0 and z[1, 0] == 2.0 and z[1, 1] == 0.0 and np.isnan(z[0, 1])
    assert fig.data[1].line.color == run_colors(["a"])["a"]


def test_histogram_and_schedule_colors_follow_runs() -> None:
    colors = run_colors(["seed0", "seed1"])
    hist = pl.DataFrame({"run_id": ["seed1"], "x": [1.0], "count": [3], "width": [0.5]})
    assert histogram_figure(hist, "m (bits)", colors).data[0].marker.color == colors["seed1"]
    curves = pl.DataFrame(
        {
            "schedule": ["seed1", "seed1", "cosine", "cosine"],
            "kind": ["fit", "fit", "predict", "predict"],
            "step": [1, 2, 1, 2],
            "lr": [1.0, 0.5, 1.0, 0.2],
            "predicted_loss": [3.0, 2.0, 3.0, 1.9],
            "observed_loss": [3.1, 2.1, None, None],
        }
    )
    fig = schedule_figure(curves, False, colors)
    fit = next(t for t in fig.data if t.name == "seed1 fit")
    predicted = next(t for t in fig.data if t.name == "cosine predicted")
    assert fit.line.color == colors["seed1"] and predicted.line.dash == "dash"
    assert not any(t.name == "cosine observed" for t in fig.data)
