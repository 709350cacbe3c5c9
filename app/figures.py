"""Plotly figures of runs over training: the palette, the shared look, traces with spikes and checkpoints.

One palette maps run ids to colors (by the run's position among all runs of
the warehouse, so a run keeps its color whatever is selected); every figure
takes that mapping. Axes carry units: steps, bits. Long series (training
traces) are passed as NumPy arrays: Plotly then checks them as one array and
sends them as typed arrays, where a list is checked value by value.
"""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

# Okabe-Ito (colorblind-safe), then Plotly's Dark24 for larger warehouses.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#8C6D1F",
    "#000000",
    "#2E91E5",
    "#E15F99",
    "#1CA71C",
    "#FB0D0D",
    "#DA16FF",
    "#222A2A",
    "#B68100",
    "#750D86",
)
TRACE_LABELS = {"loss": "loss (nats)", "grad_norm": "gradient norm", "lr": "learning rate", "eval_loss": "eval loss"}
# Traces spanning decades on a log y axis: gradient norms, and learning rates (runs compared may differ 100x).
LOG_TRACES = ("grad_norm", "lr")
FONT = {"family": "Inter, Segoe UI, Helvetica, Arial, sans-serif", "size": 13}


def plot_config(filename: str) -> dict:
    """Plotly toolbar settings: no logo; the camera button saves a 2x PNG named ``filename``."""
    return {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2, "filename": filename}}


def run_colors(all_runs: list[str]) -> dict[str, str]:
    """run_id -> color, stable for a warehouse (sorted run ids index the palette)."""
    return {run: PALETTE[i % len(PALETTE)] for i, run in enumerate(sorted(all_runs))}


def rgba(color: str, alpha: float) -> str:
    """``#rrggbb`` as a CSS rgba() color with opacity ``alpha``."""
    color = color.lstrip("#")
    r, g, b = (int(color[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def base_layout(fig: go.Figure, height: int, title: str | None = None) -> go.Figure:
    """The shared look: white template, legend on top, zoom kept across reruns."""
    fig.update_layout(
        template="plotly_white",
        height=height,
        font=FONT,
        margin={"l": 70, "r": 20, "t": 90 if title else 40, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        uirevision="keep",
        title={"text": title, "x": 0.01, "xanchor": "left", "y": 0.97, "yanchor": "top", "font": {"size": 16}}
        if title
        else None,
        hovermode="closest",
    )
    return fig


def _x_axis(fig: go.Figure, log_x: bool, **where: int) -> None:
    """Step axis type on every x axis; the title only where ``where`` says (the bottom row)."""
    fig.update_xaxes(type="log" if log_x else "linear", showgrid=True)
    fig.update_xaxes(title_text="step" + (" (log scale)" if log_x else ""), **where)


def traces_figure(
    traces: pl.DataFrame,
    spikes: pl.DataFrame,
    checkpoints: pl.DataFrame,
    colors: dict[str, str],
    names: list[str],
    log_x: bool,
) -> go.Figure:
    """Loss / grad-norm / lr (one row each, shared step axis) per run, spikes marked, checkpoint rug below."""
    rows = len(names) + 1
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04,
        row_heights=[1.0] * len(names) + [0.22 + 0.05 * checkpoints["run_id"].n_unique()],
    )
    shown: set[str] = set()
    spans: list[dict] = []  # set in one go at the end: adding shapes one by one re-validates the layout each time
    for row, name in enumerate(names, start=1):
        part = traces.filter(pl.col("name") == name)
        for run_id in part["run_id"].unique(maintain_order=True).to_list():
            run = part.filter(pl.col("run_id") == run_id)
            if log_x:
                run = run.filter(pl.col("step") > 0)
            fig.add_trace(
                go.Scatter(
                    x=run["step"].to_numpy(),
                    y=run["value"].to_numpy(),
                    mode="lines",
                    name=run_id,
                    legendgroup=run_id,
                    showlegend=run_id not in shown,
                    line={"color": colors.get(run_id), "width": 1.6},
                    hovertemplate=f"{run_id}<br>step %{{x:,}}<br>{name} %{{y:.4g}}<extra></extra>",
                ),
                row=row,
                col=1,
            )
            shown.add(run_id)
        fig.update_yaxes(
            title_text=TRACE_LABELS.get(name, name), row=row, col=1, type="log" if name in LOG_TRACES else "linear"
        )
        if spikes.height:
            marks = spikes.filter(pl.col("trace") == name)
            for run_id in marks["run_id"].unique(maintain_order=True).to_list():
                m = marks.filter(pl.col("run_id") == run_id)
                fig.add_trace(
                    go.Scatter(
                        x=m["step_peak"].to_list(),
                        y=m["peak_value"].to_list(),
                        mode="markers",
                        legendgroup=run_id,
                        showlegend=False,
                        name=f"{run_id} spikes",
                        marker={
                            "symbol": "triangle-down",
                            "size": 11,
                            "color": colors.get(run_id),
                            "line": {"width": 1, "color": "white"},
                        },
                        customdata=list(
                            zip(
                                m["spike_id"].to_list(),
                                m["step_start"].to_list(),
                                m["step_end"].fill_null(-1).to_list(),
                                m["magnitude_mads"].to_list(),
                                strict=True,
                            )
                        ),
                        hovertemplate=(
                            f"{run_id} {name} spike %{{customdata[0]}}<br>steps %{{customdata[1]:,}}–"
                            "%{customdata[2]:,}<br>peak %{y:.4g} at %{x:,}<br>%{customdata[3]:.1f} MADs"
                            "<extra></extra>"
                        ),
                    ),
                    row=row,
                    col=1,
                )
                for start, end in zip(m["step_start"].to_list(), m["step_end"].to_list(), strict=True):
                    spans.append(
                        {
                            "type": "rect",
                            "xref": "x" if row == 1 else f"x{row}",
                            "yref": ("y" if row == 1 else f"y{row}") + " domain",
                            "x0": start,
                            "x1": end if end is not None else start,
                            "y0": 0,
                            "y1": 1,
                            "line": {"width": 0},
                            "fillcolor": rgba(colors.get(run_id, "#888888"), 0.15),
                        }
                    )
    runs_with_checkpoints = checkpoints["run_id"].unique(maintain_order=True).to_list()
    for run_id in runs_with_checkpoints:
        ck = checkpoints.filter(pl.col("run_id") == run_id)
        if log_x:
            ck = ck.filter(pl.col("step") > 0)
        symbols = ["line-ns-open" if s == "done" else "x-thin-open" for s in ck["status"].to_list()]
        fig.add_trace(
            go.Scatter(
                x=ck["step"].to_list(),
                y=[run_id] * ck.height,
                mode="markers",
                legendgroup=run_id,
                showlegend=False,
                name=f"{run_id} checkpoints",
                marker={
                    "symbol": symbols,
                    "size": 12,
                    "color": colors.get(run_id),
                    "line": {"width": 1.5, "color": colors.get(run_id)},
                },
                customdata=ck["status"].to_list(),
                hovertemplate=f"{run_id} checkpoint<br>step %{{x:,}} (%{{customdata}})<extra></extra>",
            ),
            row=rows,
            col=1,
        )
    fig.update_yaxes(title_text="checkpoints", row=rows, col=1, showgrid=False, categoryorder="category descending")
    fig.update_layout(shapes=spans)
    _x_axis(fig, log_x, row=rows, col=1)
    return base_layout(fig, height=230 * len(names) + 90 + 22 * len(runs_with_checkpoints))
