"""Plotly figures of populations and analyses: histograms, 2-D densities, mean curves, spikes, schedules.

All inputs are already aggregated by DuckDB (bins, means); these functions
only draw them. Run colors come from :func:`ldw.app.figures.run_colors`.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from ldw.app.figures import TRACE_LABELS, base_layout, rgba

# Predicted schedules: colors apart from the run palette's first entries, each with its own dash pattern too.
SCHEDULE_COLORS = ("#882255", "#117733", "#332288", "#AA4499", "#999933", "#44AA99", "#661100", "#6699CC")
SCHEDULE_DASHES = ("dash", "dot", "dashdot", "longdash", "longdashdot")


def histogram_figure(hist: pl.DataFrame, label: str, colors: dict[str, str]) -> go.Figure:
    """Overlaid per-run histograms (bars at bin centers)."""
    fig = go.Figure()
    for run_id in hist["run_id"].unique(maintain_order=True).to_list():
        part = hist.filter(pl.col("run_id") == run_id)
        fig.add_trace(
            go.Bar(
                x=part["x"].to_list(),
                y=part["count"].to_list(),
                width=part["width"].to_list(),
                name=run_id,
                marker={"color": colors.get(run_id, "#555555"), "line": {"width": 0}},
                opacity=0.55,
                hovertemplate=f"{run_id}<br>{label} ≈ %{{x:.3g}}<br>%{{y:,}} tokens<extra></extra>",
            )
        )
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title_text=label)
    fig.update_yaxes(title_text="tokens")
    return base_layout(fig, height=360)


def density_figure(
    dens: pl.DataFrame, trend: pl.DataFrame, x_label: str, y_label: str, colors: dict[str, str]
) -> go.Figure:
    """2-D histogram (log10 counts) of pre-binned cells, with the binned mean (±1 std) of y per run on top."""
    fig = go.Figure()
    if dens.height:
        xs = np.unique(dens["x"].to_numpy())
        ys = np.unique(dens["y"].to_numpy())
        grid = np.full((len(ys), len(xs)), np.nan)
        grid[np.searchsorted(ys, dens["y"].to_numpy()), np.searchsorted(xs, dens["x"].to_numpy())] = np.log10(
            dens["count"].to_numpy()
        )
        fig.add_trace(
            go.Heatmap(
                x=xs,
                y=ys,
                z=grid,
                colorscale="Blues",
                name="tokens",
                showscale=True,
                colorbar={"title": {"text": "log10 tokens"}, "thickness": 12},
                hovertemplate=(
                    f"{x_label} ≈ %{{x:.3g}}<br>{y_label} ≈ %{{y:.3g}}<br>10^%{{z:.2f}} tokens<extra></extra>"
                ),
            )
        )
    for run_id in trend["run_id"].unique(maintain_order=True).to_list():
        part = trend.filter(pl.col("run_id") == run_id)
        color = colors.get(run_id, "#222222")
        fig.add_trace(
            go.Scatter(
                x=part["x"].to_list(),
                y=part["mean"].to_list(),
                mode="lines+markers",
                name=f"{run_id} mean",
                line={"color": color, "width": 2.5},
                marker={"size": 5, "color": color},
                error_y={"type": "data", "color": color, "thickness": 1, "array": part["std"].to_list()},
                customdata=part["n"].to_list(),
                hovertemplate=(
                    f"{run_id}<br>{x_label} ≈ %{{x:.3g}}<br>mean {y_label} %{{y:.3g}}"
                    "<br>%{customdata:,} tokens<extra>bars: ±1 std</extra>"
                ),
            )
        )
    fig.update_xaxes(title_text=x_label)
    fig.update_yaxes(title_text=y_label)
    return base_layout(fig, height=480)


def mean_curves_figure(curves: pl.DataFrame, loss: pl.DataFrame, colors: dict[str, str], log_x: bool) -> go.Figure:
    """Mean surprisal per checkpoint for each frequency bin (color: rare → frequent), one column per run, above
    that run's training loss on the same step axis (``loss``: run_id, step, value; empty leaves the row out)."""
    runs = curves["run_id"].unique(maintain_order=True).to_list()
    with_loss = loss.height > 0
    fig = make_subplots(
        rows=2 if with_loss else 1,
        cols=max(1, len(runs)),
        shared_xaxes=True,
        shared_yaxes=True,
        subplot_titles=runs,
        horizontal_spacing=0.06,
        vertical_spacing=0.05,
        row_heights=[0.68, 0.32] if with_loss else None,
    )
    n_bins = int(curves["bin"].max()) if curves.height else 1
    shades = sample_colorscale("Viridis", [i / max(1, n_bins - 1) for i in range(n_bins)])
    for col, run_id in enumerate(runs, start=1):
        part = curves.filter(pl.col("run_id") == run_id)
        if log_x:
            part = part.filter(pl.col("step") > 0)
        for b in range(1, n_bins + 1):
            series = part.filter(pl.col("bin") == b)
            if series.height == 0:
                continue
            lo, hi, tokens = series["freq_lo"][0], series["freq_hi"][0], series["tokens"][0]
            fig.add_trace(
                go.Scatter(
                    x=series["step"].to_list(),
                    y=series["bits"].to_list(),
                    mode="lines",
                    legendgroup=str(b),
                    name=f"bin {b}: log2 freq {lo:.1f} … {hi:.1f} ({tokens:,} tokens)",
                    showlegend=col == 1,
                    line={"color": shades[b - 1], "width": 2},
                    hovertemplate=f"bin {b} %{{y:.3f}} bits<extra>{run_id}</extra>",
                ),
                row=1,
                col=col,
            )
        if with_loss:
            run_loss = loss.filter(pl.col("run_id") == run_id)
            if log_x:
                run_loss = run_loss.filter(pl.col("step") > 0)
            fig.add_trace(
                go.Scatter(
                    x=run_loss["step"].to_numpy(),
                    y=run_loss["value"].to_numpy(),
                    mode="lines",
                    name=f"{run_id} loss",
                    showlegend=False,
                    line={"color": colors.get(run_id, "#444444"), "width": 1.4},
                    hovertemplate="loss %{y:.4g} nats<extra>" + run_id + "</extra>",
                ),
                row=2,
                col=col,
            )
    rows = 2 if with_loss else 1
    axis_title = "step" + (" (log scale)" if log_x else "")
    for col in range(1, max(1, len(runs)) + 1):
        fig.update_xaxes(type="log" if log_x else "linear", row=1, col=col)
        fig.update_xaxes(type="log" if log_x else "linear", title_text=axis_title, row=rows, col=col)
    fig.update_yaxes(title_text="mean surprisal (bits)", row=1, col=1)
    if with_loss:
        fig.update_yaxes(title_text="training loss (nats)", row=2, col=1)
    fig = base_layout(fig, height=560 if with_loss else 440)
    fig.update_layout(legend={"orientation": "v", "y": 1, "yanchor": "top", "x": 1.01}, hovermode="x unified")
    return fig


def spike_tokens_figure(rows: pl.DataFrame, color: str) -> go.Figure:
    """Surprisal before → after a spike for its top risers (dumbbells, largest rise on top)."""
    rows = rows.sort("rank", descending=True)
    labels = [f"#{r} {t!r} (idx {i})" for r, t, i in rows.select("rank", "token_text", "token_idx").iter_rows()]
    fig = go.Figure()
    for label, before, after in zip(
        labels, rows["surprisal_before"].to_list(), rows["surprisal_after"].to_list(), strict=True
    ):
        fig.add_trace(
            go.Scatter(
                x=[before, after],
                y=[label, label],
                mode="lines",
                showlegend=False,
                line={"color": "#bbbbbb", "width": 2},
                hoverinfo="skip",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=rows["surprisal_before"].to_list(),
            y=labels,
            mode="markers",
            name="before",
            marker={"color": "#999999", "size": 9},
            hovertemplate="%{y}<br>before: %{x:.3f} bits<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=rows["surprisal_after"].to_list(),
            y=labels,
            mode="markers",
            name="after",
            marker={"color": color, "size": 10},
            customdata=rows["delta_bits"].to_list(),
            hovertemplate="%{y}<br>after: %{x:.3f} bits (+%{customdata:.3f})<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="surprisal (bits)")
    fig.update_yaxes(automargin=True)
    return base_layout(fig, height=max(320, 22 * rows.height + 120))


def schedule_figure(curves: pl.DataFrame, log_x: bool, colors: dict[str, str]) -> go.Figure:
    """The fitted LR-annealing law over observed loss, and predicted curves of other schedules; LR below.

    A schedule named after a run takes the run's color; the others take grays and purples.
    """
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.05)
    names = curves["schedule"].unique(maintain_order=True).to_list()
    predicted = [n for n in names if n not in colors]
    for name in names:
        index = predicted.index(name) if name in predicted else -1
        color = colors.get(name) or SCHEDULE_COLORS[index % len(SCHEDULE_COLORS)]
        dash = SCHEDULE_DASHES[index % len(SCHEDULE_DASHES)] if index >= 0 else "dash"
        part = curves.filter(pl.col("schedule") == name)
        if log_x:
            part = part.filter(pl.col("step") > 0)
        kind = part["kind"][0] if "kind" in part.columns else "predict"
        observed = part.filter(pl.col("observed_loss").is_not_null())
        if observed.height:
            fig.add_trace(
                go.Scatter(
                    x=observed["step"].to_numpy(),
                    y=observed["observed_loss"].to_numpy(),
                    mode="markers",
                    name=f"{name} observed",
                    legendgroup=name,
                    marker={"color": color, "size": 4, "opacity": 0.45},
                    hovertemplate=f"{name} observed<br>step %{{x:,}}<br>loss %{{y:.4f}}<extra></extra>",
                ),
                row=1,
                col=1,
            )
        fig.add_trace(
            go.Scatter(
                x=part["step"].to_numpy(),
                y=part["predicted_loss"].to_numpy(),
                mode="lines",
                legendgroup=name,
                name=f"{name} {'fit' if kind == 'fit' else 'predicted'}",
                line={"color": color, "width": 2.5, "dash": "solid" if kind == "fit" else dash},
                hovertemplate=f"{name} law<br>step %{{x:,}}<br>loss %{{y:.4f}}<extra></extra>",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=part["step"].to_numpy(),
                y=part["lr"].to_numpy(),
                mode="lines",
                legendgroup=name,
                showlegend=False,
                name=f"{name} lr",
                line={"color": color, "width": 1.5, "dash": "solid" if kind == "fit" else dash},
                hovertemplate=f"{name}<br>step %{{x:,}}<br>lr %{{y:.3g}}<extra></extra>",
            ),
            row=2,
            col=1,
        )
    fig.update_yaxes(title_text="loss (nats)", row=1, col=1)
    fig.update_yaxes(title_text="learning rate", row=2, col=1)
    fig.update_xaxes(type="log" if log_x else "linear", row=1, col=1)
    fig.update_xaxes(
        type="log" if log_x else "linear", title_text="step" + (" (log scale)" if log_x else ""), row=2, col=1
    )
    return base_layout(fig, height=560)


def spike_window_figure(
    window: pl.DataFrame, spike: dict, bracket: tuple[int, int] | None, color: str, names: list[str]
) -> go.Figure:
    """One run's traces around a spike: one row per trace on a shared step axis, the spike shaded,
    and the two checkpoints that bracket it (the surprisal before / after) as labelled vertical lines."""
    names = [n for n in names if n in set(window["name"].to_list())] or names[:1]
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, vertical_spacing=0.06)
    for row, name in enumerate(names, start=1):
        part = window.filter(pl.col("name") == name)
        fig.add_trace(
            go.Scatter(
                x=part["step"].to_numpy(),
                y=part["value"].to_numpy(),
                mode="lines+markers" if part.height <= 200 else "lines",
                name=name,
                showlegend=False,
                line={"color": color if name == spike["trace"] else "#555555", "width": 1.6},
                marker={"size": 4},
                hovertemplate=f"{name} %{{y:.4g}}<extra></extra>",
            ),
            row=row,
            col=1,
        )
        fig.update_yaxes(title_text=TRACE_LABELS.get(name, name), row=row, col=1)
    end = spike["step_end"] if spike["step_end"] is not None else spike["step_peak"]
    fig.add_shape(
        type="rect",
        xref="x",
        yref="paper",
        x0=spike["step_start"],
        x1=max(end, spike["step_start"]),
        y0=0,
        y1=1,
        layer="below",
        line={"width": 0},
        fillcolor=rgba(color, 0.25),
        label={
            "text": f"{spike['trace']} spike #{spike['spike_id']}",
            "textposition": "bottom center",
            "font": {"size": 11},
        },
    )
    for step, which in zip(bracket or (), ("before", "after"), strict=False):
        fig.add_shape(
            type="line",
            xref="x",
            yref="paper",
            x0=step,
            x1=step,
            y0=0,
            y1=1,
            line={"color": "#222222", "dash": "dash", "width": 1.5},
            label={
                "text": f"checkpoint {step:,} ({which})",
                "textposition": "end",
                "textangle": 0,
                "xanchor": "right" if which == "before" else "left",  # outward: the labels never overlap
                "yanchor": "top",
                "padding": 6,
                "font": {"size": 11},
            },
        )
    fig.update_xaxes(title_text="step", row=len(names), col=1)
    fig = base_layout(fig, height=170 * len(names) + 120)
    fig.update_layout(hovermode="x unified")
    return fig
