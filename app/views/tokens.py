"""Token explorer: find a token in context, then see its surprisal curve in every run beside the training traces."""

from __future__ import annotations

import html
import math

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from ldw.app import queries as q
from ldw.app import token_queries as tq
from ldw.app.context import PageContext, empty_state
from ldw.app.explorer_figure import PROBE_LABELS, TokenPanels, token_traces_figure
from ldw.app.figures import plot_config
from ldw.app.state import parse_spike_key
from ldw.app.views.token_search import render_search

PLOT_CONFIG = plot_config("ldw-token")
TRACE_PANELS_KEY, PROBE_PANELS_KEY = "tok_trace_panels", "tok_probe_panels"
METRIC_COLUMNS = (
    "run_id",
    "acquired",
    "final_surprisal",
    "within_run_var",
    "aoa_step",
    "aoa_log10_step",
    "forgettability",
    "sigmoid_aoa_step",
)


def render(ctx: PageContext) -> None:
    """Draw the token explorer."""
    st.header("Token explorer")
    if not ctx.has("eval_tokens") or not ctx.source.get(q.eval_summary):
        empty_state("evaluation set", "ldw evalset", "then `ldw sweep`")
        return
    search, detail = st.columns([2, 3], gap="large")
    with search:
        render_search(ctx)
    with detail:
        if ctx.state.token is None:
            st.info("Find a token on the left (or type its index) to see its surprisal curve in every run.")
            return
        row = ctx.source.get(tq.token_row, ctx.state.token)
        if row is None:
            st.warning(
                f"token_idx {ctx.state.token} is not in the evaluation set "
                f"(0 … {ctx.source.get(q.eval_summary)['n_tokens'] - 1:,})."
            )
            return
        render_token(ctx, row)
    render_curves(ctx, row)


def context_html(context: pl.DataFrame, after: int = 16) -> str:
    """The sequence up to the target (highlighted) and a few tokens after it (faded), HTML-escaped."""
    parts = []
    target = int(context.filter(pl.col("is_target"))["position"][0])
    for position, text in context.select("position", "token_text").iter_rows():
        if position > target + after:
            parts.append('<span style="opacity:.45">…</span>')
            break
        escaped = html.escape(text).replace("\n", "↵<br>")
        if position == target:
            parts.append(
                f'<mark style="background:#ffd54f;padding:0 2px;border-radius:3px;font-weight:600">{escaped}</mark>'
            )
        elif position > target:
            parts.append(f'<span style="opacity:.45">{escaped}</span>')
        else:
            parts.append(escaped)
    return (
        '<div style="font-family:ui-monospace,monospace;white-space:pre-wrap;line-height:1.6;'
        f'padding:.6rem .8rem;background:#f6f8fa;border-radius:6px">{"".join(parts)}</div>'
    )


def _curves(ctx: PageContext, token: int) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """Raw and smoothed curves of the selected runs, and a note on where the raw values came from."""
    chunk = ctx.source.get(tq.raw_table_chunk) if ctx.has("token_curves_raw") else None
    raw = ctx.source.get(tq.raw_curves, token, ctx.runs, chunk)
    smoothed = (
        ctx.source.get(tq.smoothed_curves, token, ctx.runs)
        if ctx.has("token_curves_smoothed")
        else pl.DataFrame(schema=tq.CURVE_SCHEMA)
    )
    note = "raw values from token_curves_raw" if chunk else "raw values from the surprisal files"
    return raw, smoothed, note


def _run_metrics(ctx: PageContext, token: int) -> pl.DataFrame:
    """The token's ``token_metrics`` rows of the selected runs (empty before `ldw metrics`)."""
    if not ctx.has("token_metrics"):
        return pl.DataFrame()
    metrics = ctx.source.get(tq.token_metrics, token)
    return metrics.filter(pl.col("run_id").is_in(ctx.runs)) if metrics.height else metrics


def panel_choices(ctx: PageContext) -> tuple[list[str], list[str]]:
    """(trace panels, weight-probe panels) the user picked; before any pick: loss, grad-norm, lr and no probes."""
    names = ctx.source.get(q.trace_names) if ctx.has("traces") else []
    traces = st.session_state.get(TRACE_PANELS_KEY)
    if traces is None:
        traces = [n for n in names if n in q.TRACE_ORDER]
    probes = st.session_state.get(PROBE_PANELS_KEY) or []
    return [n for n in traces if n in names], list(probes) if ctx.has("weight_probes") else []


def _panel_pickers(ctx: PageContext) -> None:
    """Multiselects of the trace and weight-probe panels drawn under the token's curves."""
    names = ctx.source.get(q.trace_names) if ctx.has("traces") else []
    left, right = st.columns(2)
    if names:
        if TRACE_PANELS_KEY not in st.session_state:
            st.session_state[TRACE_PANELS_KEY] = [n for n in names if n in q.TRACE_ORDER]
        left.multiselect("training-trace panels", names, key=TRACE_PANELS_KEY)
    if ctx.has("weight_probes"):
        probes = ctx.source.get(q.weight_probe_names)
        shown = [n for n in PROBE_LABELS if n in probes] + [n for n in probes if n not in PROBE_LABELS]
        right.multiselect(
            "weight-probe panels", shown, format_func=lambda n: PROBE_LABELS.get(n, n), key=PROBE_PANELS_KEY
        )
    else:
        right.caption("Weight-probe panels (attention σ1, entropy) appear after `ldw probe-weights`.")


def token_figure(ctx: PageContext, row: dict) -> tuple[go.Figure, list[str]] | None:
    """The curves-and-traces figure of one token for the selected runs, and its caption notes.

    None when the runs have no surprisal for the token.
    """
    token = int(row["token_idx"])
    raw, smoothed, note = _curves(ctx, token)
    if raw.height == 0:
        return None
    metrics = _run_metrics(ctx, token)
    wanted = [c for c in ("run_id", "aoa_step", "aoa_threshold_bits", "acquired") if c in metrics.columns]
    aoa = metrics.select(wanted) if {"aoa_step", "aoa_threshold_bits"} <= set(wanted) else pl.DataFrame()
    vocab_size = ctx.source.get(q.eval_summary).get("vocab_size")
    trace_names, probe_names = panel_choices(ctx)
    spikes = ctx.source.get(q.spikes, ctx.runs) if ctx.has("spikes") else pl.DataFrame()
    panels = TokenPanels(
        raw=raw,
        smoothed=smoothed,
        aoa=aoa,
        chance_bits=math.log2(vocab_size) if vocab_size else None,
        traces=ctx.source.get(q.traces_downsampled, ctx.runs, trace_names, ctx.log_x)
        if trace_names
        else pl.DataFrame(),
        probes=ctx.source.get(q.weight_probe_series, ctx.runs, probe_names) if probe_names else pl.DataFrame(),
        checkpoints=ctx.source.get(q.checkpoint_table, ctx.runs),
        spikes=spikes,
        selected_spike=parse_spike_key(ctx.state.spike),
        trace_names=trace_names,
        probe_names=probe_names,
    )
    title = f"“{row['token_text']}” (token {token:,}) over training"
    fig = token_traces_figure(panels, ctx.colors, ctx.log_x, title)
    notes = [note, "points: raw surprisal at each checkpoint"]
    notes.append("lines: smoothed curve G" if smoothed.height else "smoothed G appears after `ldw metrics`")
    if aoa.height:
        notes.append("dashed lines and ◆: age of acquisition")
    if "acquired" in aoa.columns and not aoa["acquired"].all():
        notes.append("“not acquired”: the run never learned the token (no AoA)")
    if trace_names:
        notes.append("panels below share the step axis: zoom one to zoom all, hover a step to read every panel")
    if spikes.height:
        notes.append(
            "shaded spans: detected spikes, labelled trace #id" + (" (▶: the selected one)" if ctx.state.spike else "")
        )
    notes.append("bottom row: checkpoints")
    return fig, notes


def render_token(ctx: PageContext, row: dict) -> None:
    """The selected token's context (in the right-hand column)."""
    token = int(row["token_idx"])
    st.subheader(f"Token {token:,}: “{row['token_text']}”")
    st.caption(
        f"sequence {row['seq_id']:,}, position {row['position']}, token id {row['token_id']}, "
        f"{row['context_len']} tokens of context"
    )
    vocab = ctx.source.get_resource(tq.vocab_texts)
    ids = ctx.source.get(tq.sequence_ids, (int(row["seq_id"]),)).get(int(row["seq_id"]), [])
    if ids:
        st.markdown(context_html(tq.token_context(ids, int(row["position"]), vocab)), unsafe_allow_html=True)


def render_curves(ctx: PageContext, row: dict) -> None:
    """The selected token's curves beside the training traces, and its metrics (full width)."""
    if not ctx.runs:
        st.caption("Select at least one run in the sidebar.")
        return
    _panel_pickers(ctx)
    figure = token_figure(ctx, row)
    if figure is None:
        empty_state("surprisal for the selected runs", "ldw sweep")
        return
    fig, notes = figure
    st.plotly_chart(fig, key="token_chart", config=PLOT_CONFIG)
    st.caption("; ".join(notes) + ".")
    token = int(row["token_idx"])
    _metric_tables(ctx, token, _run_metrics(ctx, token))


def _metric_tables(ctx: PageContext, token: int, metrics: pl.DataFrame) -> None:
    if not ctx.has("token_metrics"):
        empty_state("learning-curve metrics", "ldw metrics", "for AoA, forgettability and variability")
        return
    shown = [c for c in METRIC_COLUMNS if c in metrics.columns]
    st.dataframe(
        metrics.select(shown),
        hide_index=True,
        width="stretch",
        column_config={
            "acquired": st.column_config.CheckboxColumn("acquired", help="False: never learned; its AoA is not set"),
            "final_surprisal": st.column_config.NumberColumn("final surprisal (bits)", format="%.3f"),
            "within_run_var": st.column_config.NumberColumn("within-run variability (bits)", format="%.3f"),
            "aoa_step": st.column_config.NumberColumn("AoA (step)", format="%.0f"),
            "aoa_log10_step": st.column_config.NumberColumn("AoA (log10 step)", format="%.3f"),
            "forgettability": st.column_config.NumberColumn("forgettability (bits)", format="%.3f"),
            "sigmoid_aoa_step": st.column_config.NumberColumn("sigmoid AoA (step)", format="%.0f"),
        },
    )
    cols = st.columns(2)
    if ctx.has("crossrun_metrics"):
        cross = ctx.source.get(tq.crossrun_row, token)
        if cross:
            cols[0].metric(
                "cross-run variability",
                f"{cross['crossrun_var']:.3f} bits²",
                help=f"mean over {cross['n_runs']} runs' pairs of the mean squared difference of G",
            )
    if ctx.has("ngram_stats"):
        ngram = ctx.source.get(tq.ngram_row, token)
        if ngram:
            cols[1].metric(
                "log2 unigram frequency",
                f"{ngram['log2_unigram_freq']:.2f}",
                help=f"n-gram surprisal {ngram.get('ngram_surprisal', float('nan')):.2f} bits",
            )
    else:
        st.caption("n-gram predictors appear after `ldw ngrams`.")
