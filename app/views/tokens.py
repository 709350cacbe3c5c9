"""Token explorer: find a token in context, then see its surprisal curve in every run."""

from __future__ import annotations

import html
import math

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from ldw.app import queries as q
from ldw.app import token_queries as tq
from ldw.app.context import PageContext, empty_state
from ldw.app.figures import plot_config, token_curve_figure
from ldw.app.views.token_search import render_search

PLOT_CONFIG = plot_config("ldw-token")
METRIC_COLUMNS = (
    "run_id",
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


def token_figure(ctx: PageContext, row: dict) -> tuple[go.Figure, list[str]] | None:
    """The curves figure of one token for the selected runs and its caption notes (None without surprisal)."""
    token = int(row["token_idx"])
    raw, smoothed, note = _curves(ctx, token)
    if raw.height == 0:
        return None
    metrics = _run_metrics(ctx, token)
    aoa = (
        metrics.select("run_id", "aoa_step", "aoa_threshold_bits")
        if {"aoa_step", "aoa_threshold_bits"} <= set(metrics.columns)
        else pl.DataFrame(schema={"run_id": pl.String, "aoa_step": pl.Float64})
    )
    vocab_size = ctx.source.get(q.eval_summary).get("vocab_size")
    chance = math.log2(vocab_size) if vocab_size else None
    spikes = ctx.source.get(q.spikes, ctx.runs) if ctx.has("spikes") else pl.DataFrame()
    title = f"“{row['token_text']}” (token {token:,}) over training"
    fig = token_curve_figure(raw, smoothed, aoa, chance, spikes, ctx.colors, ctx.log_x, title)
    notes = [note, "points: raw surprisal at each checkpoint"]
    notes.append("lines: smoothed curve G" if smoothed.height else "smoothed G appears after `ldw metrics`")
    if aoa.height:
        notes.append("dashed lines and ◆: age of acquisition")
    if spikes.height:
        notes.append("shaded bands: spikes in the training traces")
    return fig, notes


def render_token(ctx: PageContext, row: dict) -> None:
    """The selected token: context, curves figure and metrics."""
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
    if not ctx.runs:
        st.caption("Select at least one run in the sidebar.")
        return
    figure = token_figure(ctx, row)
    if figure is None:
        empty_state("surprisal for the selected runs", "ldw sweep")
        return
    fig, notes = figure
    st.plotly_chart(fig, key="token_chart", config=PLOT_CONFIG)
    st.caption("; ".join(notes) + ".")
    _metric_tables(ctx, token, _run_metrics(ctx, token))


def _metric_tables(ctx: PageContext, token: int, metrics: pl.DataFrame) -> None:
    if not ctx.has("token_metrics"):
        empty_state("learning-curve metrics", "ldw metrics", "for AoA, forgettability and variability")
        return
    shown = [c for c in METRIC_COLUMNS if c in metrics.columns]
    st.dataframe(
        metrics.select(shown),
        hide_index=True,
        column_config={
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
