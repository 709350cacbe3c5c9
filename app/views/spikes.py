"""Spikes: pick a detected spike (loss or gradient norm), see the traces around it beside the tokens that got
worse across it, and jump to one of those tokens in the explorer (the spike stays highlighted there)."""

from __future__ import annotations

import polars as pl
import streamlit as st

from ldw.app import analysis_queries as aq
from ldw.app import queries as q
from ldw.app import token_queries as tq
from ldw.app.analysis_figures import spike_tokens_figure, spike_window_figure
from ldw.app.context import SPIKE_KEY, PageContext, empty_state, select_token
from ldw.app.figures import plot_config
from ldw.app.search_queries import with_snippets
from ldw.app.state import spike_key
from ldw.dynamics.spike_tokens import bracketing_checkpoints
from ldw.warehouse import Warehouse

SPIKE_WIDGET = "spike_select"
PLOT_CONFIG = plot_config("ldw-spike")
TOP = 50


def render(ctx: PageContext) -> None:
    """Draw the spikes page."""
    st.header("Spikes")
    if not ctx.has("spikes"):
        empty_state("spike detection", "ldw spikes", "which also lists the tokens that moved across each spike")
        return
    spikes = ctx.source.get(q.spikes, ctx.runs)
    if spikes.height == 0:
        st.success("No spikes were detected in the selected runs' traces.")
        return
    spikes = spikes.sort(pl.col("trace") != "loss", "run_id", "trace", "spike_id")
    keys = [spike_key(r, t, i) for r, t, i in spikes.select("run_id", "trace", "spike_id").iter_rows()]
    if st.session_state.get(SPIKE_KEY) not in keys:
        st.session_state[SPIKE_KEY] = keys[0]
    st.session_state[SPIKE_WIDGET] = st.session_state[SPIKE_KEY]
    labels = {k: _label(row) for k, row in zip(keys, spikes.iter_rows(named=True), strict=True)}
    chosen = st.selectbox("spike", keys, format_func=labels.get, key=SPIKE_WIDGET, on_change=_on_spike)
    with st.expander(f"all {spikes.height} spikes of the selected runs"):
        st.dataframe(spikes, hide_index=True, width="stretch", height=min(38 + 35 * spikes.height, 300))
    spike = spikes.row(keys.index(chosen), named=True)
    rows = _risers(ctx, spike)
    bracket = _bracket(ctx, spike, rows)
    left, right = st.columns([3, 2], gap="large")
    with left:
        _window(ctx, spike, bracket)
    with right:
        _token_table(ctx, spike, rows, bracket)
    if rows is not None and rows.height:
        _risers_chart(ctx, spike, rows)


def _on_spike() -> None:
    st.session_state[SPIKE_KEY] = st.session_state[SPIKE_WIDGET]


def _label(row: dict) -> str:
    end = f"{row['step_end']:,}" if row["step_end"] is not None else "end of log"
    return (
        f"{row['run_id']} · {row['trace']} #{row['spike_id']}: steps {row['step_start']:,}–{end}, "
        f"peak {row['peak_value']:.3g} at {row['step_peak']:,} ({row['magnitude_mads']:.1f} MADs)"
    )


def _risers(ctx: PageContext, spike: dict) -> pl.DataFrame | None:
    """The spike's top risers (None before `ldw spikes` wrote spike_tokens, or for a trace it did not cover)."""
    if not ctx.has("spike_tokens"):
        return None
    if "trace" in ctx.tables["spike_tokens"]:
        return ctx.source.get(aq.spike_tokens, spike["run_id"], spike["trace"], spike["spike_id"], TOP)
    legacy = ctx.source.get(Warehouse.derived_params, "spike_tokens").get("trace", "loss")
    if spike["trace"] != legacy:
        return None
    return ctx.source.get(aq.spike_tokens, spike["run_id"], None, spike["spike_id"], TOP)


def _bracket(ctx: PageContext, spike: dict, rows: pl.DataFrame | None) -> tuple[int, int] | None:
    """The checkpoints before and after the spike (from spike_tokens, else from the swept checkpoints)."""
    if rows is not None and rows.height:
        return int(rows["step_before"][0]), int(rows["step_after"][0])
    if spike["step_end"] is None:
        return None
    checkpoints = ctx.source.get(q.checkpoint_table, [spike["run_id"]])
    done = checkpoints.filter(pl.col("status") == "done")["step"].to_numpy()
    return bracketing_checkpoints(done, spike["step_start"], spike["step_end"])


def _window(ctx: PageContext, spike: dict, bracket: tuple[int, int] | None) -> None:
    st.subheader("The traces around the spike")
    end = spike["step_end"] if spike["step_end"] is not None else spike["step_peak"]
    pad = max(25, 3 * (end - spike["step_start"] + 1))
    lo, hi = spike["step_start"] - pad, end + pad
    if bracket is not None:
        lo, hi = min(lo, bracket[0] - 5), max(hi, bracket[1] + 5)
    names = [spike["trace"]] + [n for n in q.TRACE_ORDER if n != spike["trace"]]
    window = ctx.source.get(aq.trace_window, spike["run_id"], names, max(lo, 0), hi)
    if window.height == 0:
        st.caption("The run's log has no points in this window.")
        return
    color = ctx.colors.get(spike["run_id"], "#D55E00")
    fig = spike_window_figure(window, spike, bracket, color, names)
    st.plotly_chart(fig, key="spike_window_chart", config=PLOT_CONFIG)
    where = (
        f"checkpoints {bracket[0]:,} and {bracket[1]:,} bracket it (dashed)"
        if bracket
        else "no pair of swept checkpoints brackets it"
    )
    st.caption(f"Steps {max(lo, 0):,}–{hi:,} of {spike['run_id']}; shaded: the spike; {where}.")


def _token_table(ctx: PageContext, spike: dict, rows: pl.DataFrame | None, bracket: tuple[int, int] | None) -> None:
    st.subheader("Tokens that got worse across it")
    if rows is None:
        empty_state("spike token table", "ldw spikes", "which lists the tokens that moved across every spike")
        return
    if rows.height == 0:
        reason = (
            "the trace ends above the threshold, so no checkpoint follows the spike"
            if spike["step_end"] is None
            else "no pair of swept checkpoints brackets it (one at or before its start and one at or after its end)"
        )
        st.caption(f"No token table for this spike: {reason}.")
        return
    before, after = bracket or (int(rows["step_before"][0]), int(rows["step_after"][0]))
    st.caption(f"Surprisal at checkpoint {before:,} (before) and {after:,} (after); the {rows.height} largest rises.")
    sequences = ctx.source.get(tq.sequence_ids, tuple(sorted(set(rows["seq_id"].drop_nulls().to_list()))))
    table = with_snippets(rows.drop_nulls("seq_id"), sequences, ctx.source.get_resource(tq.vocab_texts))
    st.dataframe(
        table.select("rank", "token_text", "delta_bits", "context", "token_idx"),
        hide_index=True,
        height=300,
        width="stretch",
        column_config={
            "rank": st.column_config.NumberColumn("#", width="small"),
            "context": st.column_config.TextColumn("text before the token", width="medium"),
            "token_text": st.column_config.TextColumn("token", width="small"),
            "delta_bits": st.column_config.NumberColumn("rise (bits)", format="%.3f", width="small"),
        },
    )
    labels = {
        int(i): f"#{r} token {i}: “{t}” (+{d:.2f} bits)"
        for r, i, t, d in rows.select("rank", "token_idx", "token_text", "delta_bits").iter_rows()
    }
    pick = st.selectbox("open in the token explorer", list(labels), format_func=labels.get, key="spike_pick")
    st.button(
        "Open in explorer",
        key="spike_open",
        on_click=select_token,
        args=(pick, "tokens"),
        type="primary",
        width="stretch",
        help="Shows the token's curves beside the traces, with this spike highlighted.",
    )


def _risers_chart(ctx: PageContext, spike: dict, rows: pl.DataFrame) -> None:
    top = (
        st.slider("tokens in the chart", 5, rows.height, min(20, rows.height), key="spike_top")
        if rows.height > 5
        else rows.height
    )
    fig = spike_tokens_figure(rows.head(top), ctx.colors.get(spike["run_id"], "#D55E00"))
    st.plotly_chart(fig, key="spike_tokens_chart", config=PLOT_CONFIG)
