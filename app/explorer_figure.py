"""The token explorer's figure: a token's curves above the runs' training traces, on one step axis.

Stacked panels share a single x axis (step), so zooming one zooms all, and
hovering a step lists every panel's values there (``hovermode="x unified"``
with ``hoversubplots="axis"``). Top: the token's raw surprisal and smoothed
curve G per run, AoA marks and the chance line; then one panel per training
trace (loss, gradient norm, learning rate) and per chosen weight-probe
series; at the bottom a rug of each run's checkpoints. Spikes are shaded
spans across every panel, labelled with their trace and id; the spike the
user came from is drawn darker with a border.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import plotly.graph_objects as go
import polars as pl

from ldw.app.figures import LOG_TRACES, TRACE_LABELS, base_layout, rgba

CURVE_HEIGHT, TRACE_HEIGHT, RUG_ROW = 330, 140, 22
GAP = 0.025
LABEL_GAP = 0.02  # spike spans closer than this fraction of the step axis share one label
AOA_OUTLINE = {"width": 1.5, "color": "white"}
CURVE_AXIS = {"anchor": "x", "title": {"text": "surprisal (bits)"}, "rangemode": "tozero"}
PROBE_LABELS = {
    "qk_sigma1": "attention σ1 (max over heads)",
    "attn_entropy_bits": "attention entropy (bits, mean over heads)",
    "attn_max_logit": "max attention logit",
    "grad_norm_total": "probe-batch gradient norm",
    "param_norm_total": "parameter norm",
    "embedding_std": "embedding std",
    "probe_loss": "probe-batch loss (nats)",
}


@dataclass(frozen=True)
class TokenPanels:
    """Everything the figure draws; frames may be empty (their panels are then left out)."""

    raw: pl.DataFrame  # run_id, step, bits
    smoothed: pl.DataFrame  # run_id, step, bits
    aoa: pl.DataFrame  # run_id, aoa_step, aoa_threshold_bits[, acquired]
    chance_bits: float | None
    traces: pl.DataFrame  # run_id, name, step, value
    probes: pl.DataFrame  # run_id, name, step, value
    checkpoints: pl.DataFrame  # run_id, step, status
    spikes: pl.DataFrame  # the spikes table's rows
    selected_spike: tuple[str, str, int] | None = None
    trace_names: list[str] = field(default_factory=list)
    probe_names: list[str] = field(default_factory=list)


def _axis_name(row: int, prefix: str = "y") -> str:
    """Layout key of the y axis of panel ``row`` (0-based): yaxis, yaxis2, ..."""
    return f"{prefix}axis" if row == 0 else f"{prefix}axis{row + 1}"


def _ref(row: int) -> str:
    """Trace reference of the y axis of panel ``row``: y, y2, ..."""
    return "y" if row == 0 else f"y{row + 1}"


def _domains(heights: list[float]) -> list[tuple[float, float]]:
    """Vertical [lo, hi] paper domains, top panel first, with a gap between panels."""
    usable = 1.0 - GAP * (len(heights) - 1)
    total = sum(heights)
    top, out = 1.0, []
    for h in heights:
        lo = top - usable * h / total
        out.append((max(lo, 0.0), top))
        top = lo - GAP
    return out


def _positive(frame: pl.DataFrame, log_x: bool) -> pl.DataFrame:
    return frame.filter(pl.col("step") > 0) if log_x and frame.height else frame


def _curve_panel(fig: go.Figure, p: TokenPanels, colors: dict[str, str], log_x: bool) -> None:
    smoothed_runs = set(p.smoothed["run_id"].to_list()) if p.smoothed.height else set()
    for run_id in p.raw["run_id"].unique(maintain_order=True).to_list():
        color = colors.get(run_id)
        run = _positive(p.raw.filter(pl.col("run_id") == run_id), log_x)
        fig.add_trace(
            go.Scatter(
                x=run["step"].to_list(),
                y=run["bits"].to_list(),
                name=run_id,
                legendgroup=run_id,
                mode="markers" if run_id in smoothed_runs else "lines+markers",
                marker={"color": color, "size": 6, "opacity": 0.75},
                line={"color": color, "width": 1},
                hovertemplate=f"{run_id} surprisal %{{y:.3f}} bits<extra></extra>",
            )
        )
        if run_id in smoothed_runs:
            g = p.smoothed.filter(pl.col("run_id") == run_id)
            fig.add_trace(
                go.Scatter(
                    x=g["step"].to_list(),
                    y=g["bits"].to_list(),
                    name=f"{run_id} G",
                    legendgroup=run_id,
                    showlegend=False,
                    mode="lines",
                    line={"color": color, "width": 2.5},
                    hovertemplate=f"{run_id} smoothed G %{{y:.3f}} bits<extra></extra>",
                )
            )
    _aoa_marks(fig, p, colors)
    if p.chance_bits is not None and p.raw.height:
        steps = _positive(p.raw, log_x)["step"]
        fig.add_trace(
            go.Scatter(
                x=[steps.min(), steps.max()],
                y=[p.chance_bits, p.chance_bits],
                mode="lines",
                name=f"chance log2(V) = {p.chance_bits:.2f} bits",
                line={"color": "#666666", "dash": "dot", "width": 1.5},
                hoverinfo="skip",
            )
        )


def _aoa_marks(fig: go.Figure, p: TokenPanels, colors: dict[str, str]) -> None:
    """A dashed line and ◆ at each run's AoA; a 'not acquired' label where the run never learned the token."""
    for row in p.aoa.iter_rows(named=True):
        run_id, step = row["run_id"], row.get("aoa_step")
        if run_id not in colors:
            continue
        if row.get("acquired") is False:
            last = p.raw.filter(pl.col("run_id") == run_id).sort("step").tail(1)
            if last.height:
                fig.add_trace(
                    go.Scatter(
                        x=last["step"].to_list(),
                        y=last["bits"].to_list(),
                        mode="text",
                        text=["not acquired"],
                        textposition="top left",
                        textfont={"color": colors[run_id], "size": 12},
                        name=f"{run_id} not acquired",
                        legendgroup=run_id,
                        showlegend=False,
                        hovertemplate=f"{run_id}: never acquired (no AoA)<extra></extra>",
                    )
                )
            continue
        if step is None or not math.isfinite(step):
            continue
        fig.add_shape(
            type="line",
            x0=step,
            x1=step,
            xref="x",
            yref="y domain",
            y0=0,
            y1=1,
            line={"color": colors[run_id], "dash": "dash", "width": 1.2},
        )
        fig.add_trace(
            go.Scatter(
                x=[step],
                y=[row.get("aoa_threshold_bits")],
                mode="markers",
                name=f"{run_id} AoA",
                legendgroup=run_id,
                showlegend=False,
                marker={
                    "symbol": "diamond",
                    "size": 12,
                    "color": colors[run_id],
                    "line": {"width": 1.5, "color": "white"},
                },
                hovertemplate=f"{run_id} AoA step %{{x:,.0f}}<extra></extra>",
            )
        )


def _series_panel(
    fig: go.Figure, frame: pl.DataFrame, name: str, row: int, colors: dict[str, str], log_x: bool, unit: str
) -> None:
    part = _positive(frame.filter(pl.col("name") == name), log_x)
    for run_id in part["run_id"].unique(maintain_order=True).to_list():
        run = part.filter(pl.col("run_id") == run_id)
        fig.add_trace(
            go.Scatter(
                x=run["step"].to_numpy(),
                y=run["value"].to_numpy(),
                mode="lines",
                name=f"{run_id} {name}",
                legendgroup=run_id,
                showlegend=False,
                line={"color": colors.get(run_id), "width": 1.4},
                yaxis=_ref(row),
                hovertemplate=f"{run_id} {unit} %{{y:.4g}}<extra></extra>",
            )
        )


def _rug(fig: go.Figure, checkpoints: pl.DataFrame, row: int, colors: dict[str, str], log_x: bool) -> None:
    for run_id in checkpoints["run_id"].unique(maintain_order=True).to_list():
        ck = _positive(checkpoints.filter(pl.col("run_id") == run_id), log_x)
        symbols = ["line-ns-open" if s == "done" else "x-thin-open" for s in ck["status"].to_list()]
        fig.add_trace(
            go.Scatter(
                x=ck["step"].to_list(),
                y=[run_id] * ck.height,
                mode="markers",
                name=f"{run_id} checkpoints",
                legendgroup=run_id,
                showlegend=False,
                marker={"symbol": symbols, "size": 11, "color": colors.get(run_id), "line": {"width": 1.5}},
                yaxis=_ref(row),
                hovertemplate=f"{run_id} checkpoint<extra></extra>",
            )
        )


def _position(step: float, log_x: bool) -> float:
    return math.log10(max(step, 1)) if log_x else float(step)


def _spike_spans(
    fig: go.Figure, p: TokenPanels, colors: dict[str, str], log_x: bool, extent: tuple[float, float]
) -> None:
    """Shaded spans over every panel; the selected spike darker, with a border.

    Spans closer than ``LABEL_GAP`` of the axis width share one label (``loss #0 · grad_norm #0``), so labels
    of spikes at about the same step (the same event in several runs or traces) do not overprint each other.
    """
    rows = sorted(p.spikes.iter_rows(named=True), key=lambda r: r["step_start"])
    lo, hi = (_position(x, log_x) for x in extent)
    spans, clusters, last = [], [], None
    for row in rows:
        key = (row["run_id"], row["trace"], int(row["spike_id"]))
        chosen = key == p.selected_spike
        color = colors.get(row["run_id"], "#888888")
        end = row["step_end"] if row["step_end"] is not None else row["step_peak"]
        spans.append(
            {
                "type": "rect",
                "xref": "x",
                "yref": "paper",
                "x0": row["step_start"],
                "x1": max(end, row["step_start"]),
                "y0": 0,
                "y1": 1,
                "layer": "below",
                "fillcolor": rgba(color, 0.38 if chosen else 0.13),
                "line": {"width": 2 if chosen else 0, "color": color},
                "name": f"{row['run_id']} {row['trace']} spike {row['spike_id']}" + (" (selected)" if chosen else ""),
            }
        )
        at = _position(row["step_start"], log_x)
        if last is None or at - last > LABEL_GAP * max(hi - lo, 1e-9):
            clusters.append([])
        clusters[-1].append((len(spans) - 1, f"{'▶ ' if chosen else ''}{row['trace']} #{row['spike_id']}", chosen))
        last = at
    for cluster in clusters:
        texts = list(dict.fromkeys(text for _, text, chosen in sorted(cluster, key=lambda c: not c[2])))
        index, _, chosen = max(cluster, key=lambda c: c[2])
        spans[index]["label"] = {
            "text": " · ".join(texts),
            "textposition": "top center",
            "textangle": -90,
            "font": {"size": 12 if chosen else 9, "color": "#222222" if chosen else "#777777"},
        }
    fig.update_layout(shapes=[*fig.layout.shapes, *spans])


def token_traces_figure(p: TokenPanels, colors: dict[str, str], log_x: bool, title: str) -> go.Figure:
    """The stacked, step-linked figure of one token (see the module docstring)."""
    traces = [n for n in p.trace_names if p.traces.height and n in set(p.traces["name"].to_list())]
    probes = [n for n in p.probe_names if p.probes.height and n in set(p.probes["name"].to_list())]
    runs_with_checkpoints = p.checkpoints["run_id"].n_unique() if p.checkpoints.height else 0
    heights = [CURVE_HEIGHT] + [TRACE_HEIGHT] * (len(traces) + len(probes))
    if runs_with_checkpoints:
        heights.append(RUG_ROW * (runs_with_checkpoints + 1))
    domains = _domains(heights)
    fig = go.Figure()
    _curve_panel(fig, p, colors, log_x)
    fig.update_layout(
        {
            _axis_name(0): {
                "domain": domains[0],
                "anchor": "x",
                "title": {"text": "surprisal (bits)"},
                "rangemode": "tozero",
            }
        }
    )
    for row, name in enumerate(traces, start=1):
        _series_panel(fig, p.traces, name, row, colors, log_x, TRACE_LABELS.get(name, name))
        axis = {"domain": domains[row], "anchor": "x", "title": {"text": TRACE_LABELS.get(name, name)}}
        fig.update_layout({_axis_name(row): {**axis, "type": "log" if name in LOG_TRACES else "linear"}})
    for row, name in enumerate(probes, start=1 + len(traces)):
        _series_panel(fig, p.probes, name, row, colors, log_x, PROBE_LABELS.get(name, name))
        fig.update_layout(
            {_axis_name(row): {"domain": domains[row], "anchor": "x", "title": {"text": PROBE_LABELS.get(name, name)}}}
        )
    bottom = len(heights) - 1
    if runs_with_checkpoints:
        _rug(fig, p.checkpoints, bottom, colors, log_x)
        fig.update_layout(
            {
                _axis_name(bottom): {
                    "domain": domains[bottom],
                    "anchor": "x",
                    "title": {"text": "checkpoints"},
                    "showgrid": False,
                    "categoryorder": "category descending",
                }
            }
        )
    steps = [f["step"] for f in (p.raw, p.traces) if f.height]
    extent = (min(int(x.filter(x > 0).min() or 1) for x in steps), max(int(x.max()) for x in steps))
    _spike_spans(fig, p, colors, log_x, extent)
    fig.update_layout(
        xaxis={
            "anchor": _ref(bottom),
            "domain": [0, 1],
            "type": "log" if log_x else "linear",
            "showgrid": True,
            "title": {"text": "step" + (" (log scale)" if log_x else "")},
            "showspikes": True,
            "spikemode": "across",
            "spikethickness": 1,
            "spikecolor": "#999999",
        }
    )
    fig = base_layout(fig, height=sum(heights) + 150, title=title)
    fig.update_layout(hovermode="x unified", hoversubplots="axis")
    return fig
