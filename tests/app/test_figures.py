"""Figure builders: one color per run everywhere, units on the axes, marks where the data say."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from ldw.app.analysis_figures import (
    density_figure,
    histogram_figure,
    mean_curves_figure,
    schedule_figure,
    spike_window_figure,
)
from ldw.app.explorer_figure import TokenPanels, token_traces_figure
from ldw.app.figures import PALETTE, run_colors, traces_figure


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


def _spikes(run_id: str = "a", trace: str = "loss", start: int = 200, end: int | None = 300) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "run_id": [run_id],
            "trace": [trace],
            "spike_id": [0],
            "step_start": [start],
            "step_peak": [250],
            "step_end": [end],
            "magnitude_mads": [9.0],
            "peak_value": [4.0],
        },
        schema_overrides={"step_end": pl.Int64},
    )


def _panels(**changes: object) -> TokenPanels:
    raw, smooth = _curves()
    traces = pl.DataFrame(
        {
            "run_id": ["a", "a", "b", "b", "a", "a"],
            "name": ["loss", "loss", "loss", "loss", "lr", "lr"],
            "step": [10, 1000, 10, 1000, 10, 1000],
            "value": [5.0, 3.0, 5.5, 3.5, 1e-3, 1e-4],
        }
    )
    checkpoints = raw.select("run_id", "step").with_columns(pl.lit("done").alias("status"))
    aoa = pl.DataFrame({"run_id": ["a", "b"], "aoa_step": [40.0, float("nan")], "aoa_threshold_bits": [5.5, 6.0]})
    fields = dict(
        raw=raw,
        smoothed=smooth,
        aoa=aoa,
        chance_bits=math.log2(512),
        traces=traces,
        probes=pl.DataFrame(),
        checkpoints=checkpoints,
        spikes=_spikes(),
        trace_names=["loss", "lr"],
    )
    return TokenPanels(**{**fields, **changes})


def test_token_traces_figure_stacks_panels_on_one_step_axis() -> None:
    colors = run_colors(["a", "b"])
    fig = token_traces_figure(_panels(), colors, True, "t")
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["a"].x) == [1, 10, 100, 1000]  # step 0 left out on the log axis
    assert by_name["a"].marker.color == colors["a"] == by_name["a loss"].line.color == by_name["a G"].line.color
    assert {t.xaxis for t in fig.data} <= {None, "x"}  # one x axis: zoom and hover are shared by every panel
    assert fig.layout.hovermode == "x unified" and fig.layout.hoversubplots == "axis"
    loss_axis, lr_axis, rug_axis = by_name["a loss"].yaxis, by_name["a lr"].yaxis, by_name["a checkpoints"].yaxis
    domains = [fig.layout["yaxis"].domain, *(fig.layout[f"yaxis{ref[1:]}"].domain for ref in (loss_axis, lr_axis))]
    assert domains[0][0] > domains[1][1] > domains[1][0] > domains[2][1]  # curves on top, then loss, then lr
    assert fig.layout[f"yaxis{rug_axis[1:]}"].title.text == "checkpoints"
    assert fig.layout.xaxis.anchor == rug_axis and "log scale" in fig.layout.xaxis.title.text
    assert list(by_name["a AoA"].x) == [40.0] and "b AoA" not in by_name  # a NaN AoA draws nothing
    chance = next(t for t in fig.data if t.name.startswith("chance log2(V) = 9.00 bits"))
    assert list(chance.y) == [9.0, 9.0] and chance.hoverinfo == "skip"
    [span] = [s for s in fig.layout.shapes if s.type == "rect"]
    assert (span.x0, span.x1, span.yref, span.label.text) == (200, 300, "paper", "loss #0")
    linear = token_traces_figure(_panels(trace_names=[], spikes=_spikes().head(0)), colors, False, "t")
    assert list(next(t for t in linear.data if t.name == "a").x) == [0, 1, 10, 100, 1000]
    assert linear.layout.xaxis.type == "linear" and not [s for s in linear.layout.shapes if s.type == "rect"]
    assert not any(t.name.endswith(" loss") for t in linear.data)


def test_token_traces_figure_marks_the_chosen_spike_and_unacquired_runs() -> None:
    colors = run_colors(["a", "b"])
    spikes = pl.concat([_spikes(), _spikes("b", "grad_norm", 500, None)])
    aoa = pl.DataFrame(
        {"run_id": ["a", "b"], "aoa_step": [40.0, 1000.0], "aoa_threshold_bits": [5.5, 6.0], "acquired": [True, False]}
    )
    fig = token_traces_figure(_panels(spikes=spikes, aoa=aoa, selected_spike=("b", "grad_norm", 0)), colors, True, "t")
    spans = {s.label.text: s for s in fig.layout.shapes if s.type == "rect"}
    assert set(spans) == {"loss #0", "▶ grad_norm #0"}
    chosen = spans["▶ grad_norm #0"]
    assert chosen.line.width > 0 and spans["loss #0"].line.width == 0
    assert (chosen.x0, chosen.x1) == (500, 500)  # no end: drawn up to the peak (before the start here: a line)
    by_name = {t.name: t for t in fig.data}
    assert "b AoA" not in by_name and list(by_name["b not acquired"].text) == ["not acquired"]
    assert list(by_name["b not acquired"].x) == [1000]  # at the run's last checkpoint
    aoa_lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert [s.x0 for s in aoa_lines] == [40.0]


def test_spike_window_figure_marks_the_span_and_the_bracketing_checkpoints() -> None:
    window = pl.DataFrame(
        {"name": ["grad_norm"] * 3 + ["loss"] * 3, "step": [90, 100, 110] * 2, "value": [1.0, 9.0, 1.0, 3, 4, 3]}
    )
    spike = {"trace": "grad_norm", "spike_id": 2, "step_start": 100, "step_peak": 100, "step_end": 105}
    fig = spike_window_figure(window, spike, (90, 110), "#0072B2", ["grad_norm", "loss", "lr"])
    assert [t.name for t in fig.data] == ["grad_norm", "loss"]  # lr is not in the window: no empty row
    assert fig.data[0].line.color == "#0072B2" and fig.data[1].line.color != "#0072B2"
    lines = sorted((s.x0, s.label.text) for s in fig.layout.shapes if s.type == "line")
    assert lines == [(90, "checkpoint 90 (before)"), (110, "checkpoint 110 (after)")]
    [span] = [s for s in fig.layout.shapes if s.type == "rect"]
    assert (span.x0, span.x1, span.label.text) == (100, 105, "grad_norm spike #2")
    unbracketed = spike_window_figure(window, spike, None, "#0072B2", ["grad_norm"])
    assert not [s for s in unbracketed.layout.shapes if s.type == "line"]


def test_mean_curves_sit_above_each_runs_loss() -> None:
    curves = pl.DataFrame(
        {
            "run_id": ["a"] * 4,
            "step": [1, 10, 1, 10],
            "bin": [1, 1, 2, 2],
            "bits": [9.0, 5.0, 8.0, 3.0],
            "tokens": [5, 5, 5, 5],
            "freq_lo": [-9.0, -9.0, -5.0, -5.0],
            "freq_hi": [-6.0, -6.0, -1.0, -1.0],
        }
    )
    loss = pl.DataFrame({"run_id": ["a", "a"], "step": [1, 10], "value": [6.0, 4.0]})
    fig = mean_curves_figure(curves, loss, run_colors(["a"]), True)
    bins = [t for t in fig.data if t.name.startswith("bin ")]
    [below] = [t for t in fig.data if t.name == "a loss"]
    assert len(bins) == 2 and below.line.color == run_colors(["a"])["a"]
    assert fig.layout.xaxis.matches == below.xaxis or fig.layout[f"xaxis{below.xaxis[1:]}"].matches == "x"
    assert fig.layout.yaxis2.title.text == "training loss (nats)"
    alone = mean_curves_figure(curves, pl.DataFrame(), run_colors(["a"]), False)
    assert len(alone.data) == 2 and "log" not in alone.layout.xaxis.title.text


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
    curves = pl.concat(
        [curves]
        + [
            curves.filter(pl.col("schedule") == "cosine").with_columns(pl.lit(name).alias("schedule"))
            for name in ("wsd", "constant", "multistep", "run:other")
        ]
    )
    fig = schedule_figure(curves, True, colors)
    fit = next(t for t in fig.data if t.name == "seed1 fit")
    assert fit.line.color == colors["seed1"] and fit.line.dash == "solid"
    assert not any(t.name == "cosine observed" for t in fig.data)
    predicted = [t for t in fig.data if t.name.endswith(" predicted")]
    assert len(predicted) == 5
    assert len({(t.line.color, t.line.dash) for t in predicted}) == 5  # five lines told apart by color and dash
    assert len({t.line.dash for t in predicted}) == 5
    assert not {t.line.color for t in predicted} & set(colors.values())  # never a run's color
    assert fig.layout.xaxis2.title.text == "step (log scale)"
