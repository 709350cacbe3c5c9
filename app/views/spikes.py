"""Spikes: pick a detected spike, see which tokens got worse across it, jump to one in the explorer."""

from __future__ import annotations

import polars as pl
import streamlit as st

from ldw.app import analysis_queries as aq
from ldw.app import queries as q
from ldw.app import token_queries as tq
from ldw.app.analysis_figures import spike_tokens_figure
from ldw.app.context import SPIKE_KEY, PageContext, empty_state, select_token
from ldw.app.figures import plot_config
from ldw.app.search_queries import with_snippets
from ldw.app.state import parse_spike_key, spike_key
from ldw.warehouse import Warehouse

SPIKE_WIDGET = "spike_select"
PLOT_CONFIG = plot_config("ldw-spike")


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
    measured = None
    if ctx.has("spike_tokens"):
        measured = ctx.source.get(Warehouse.derived_params, "spike_tokens").get("trace", "loss")
    spikes = spikes.sort(pl.col("trace") != measured, "run_id", "trace", "spike_id")
    keys = [spike_key(r, t, i) for r, t, i in spikes.select("run_id", "trace", "spike_id").iter_rows()]
    if st.session_state.get(SPIKE_KEY) not in keys:
        st.session_state[SPIKE_KEY] = keys[0]
    st.session_state[SPIKE_WIDGET] = st.session_state[SPIKE_KEY]
    labels = {k: _label(row) for k, row in zip(keys, spikes.iter_rows(named=True), strict=True)}
    chosen = st.selectbox("spike", keys, format_func=labels.get, key=SPIKE_WIDGET, on_change=_on_spike)
    st.dataframe(spikes, hide_index=True, height=min(38 + 35 * spikes.height, 260))
    run_id, trace, spike_id = parse_spike_key(chosen)
    _spike_tokens(ctx, run_id, trace, spike_id, measured)


def _on_spike() -> None:
    st.session_state[SPIKE_KEY] = st.session_state[SPIKE_WIDGET]


def _label(row: dict) -> str:
    end = f"{row['step_end']:,}" if row["step_end"] is not None else "end of log"
    return (
        f"{row['run_id']} · {row['trace']} #{row['spike_id']}: steps {row['step_start']:,}–{end}, "
        f"peak {row['peak_value']:.3g} at {row['step_peak']:,} ({row['magnitude_mads']:.1f} MADs)"
    )


def _spike_tokens(ctx: PageContext, run_id: str, trace: str, spike_id: int, measured: str | None) -> None:
    st.subheader("Tokens that got worse across the spike")
    if measured is None:
        empty_state("spike token table", "ldw spikes")
        return
    if trace != measured:
        st.caption(f"Token changes were computed for `{measured}` spikes; pick one of those.")
        return
    rows = ctx.source.get(aq.spike_tokens, run_id, spike_id, 50)
    if rows.height == 0:
        st.caption(
            "No pair of swept checkpoints brackets this spike (a checkpoint at or before its start and one "
            "at or after its end are needed)."
        )
        return
    before, after = int(rows["step_before"][0]), int(rows["step_after"][0])
    st.caption(
        f"Surprisal at checkpoint {before:,} (before) and {after:,} (after); the 50 largest rises, largest on top."
    )
    top = (
        st.slider("tokens shown", 5, min(50, rows.height), min(20, rows.height), key="spike_top")
        if rows.height > 5
        else rows.height
    )
    fig = spike_tokens_figure(rows.head(top), ctx.colors.get(run_id, "#D55E00"))
    st.plotly_chart(fig, key="spike_tokens_chart", config=PLOT_CONFIG)
    sequences = ctx.source.get(tq.sequence_ids, tuple(sorted(set(rows["seq_id"].drop_nulls().to_list()))))
    table = with_snippets(rows.drop_nulls("seq_id"), sequences, ctx.source.get_resource(tq.vocab_texts))
    st.dataframe(
        table.select("rank", "token_idx", "context", "token_text", "surprisal_before", "surprisal_after", "delta_bits"),
        hide_index=True,
        height=260,
        column_config={
            "context": st.column_config.TextColumn("text before the token"),
            "delta_bits": st.column_config.NumberColumn("rise (bits)", format="%.3f"),
            "surprisal_before": st.column_config.NumberColumn("before (bits)", format="%.3f"),
            "surprisal_after": st.column_config.NumberColumn("after (bits)", format="%.3f"),
        },
    )
    labels = {
        int(i): f"#{r} token {i}: “{t}” (+{d:.2f} bits)"
        for r, i, t, d in rows.select("rank", "token_idx", "token_text", "delta_bits").iter_rows()
    }
    left, right = st.columns([3, 1])
    pick = left.selectbox("open in the token explorer", list(labels), format_func=labels.get, key="spike_pick")
    right.button(
        "Open in explorer",
        key="spike_open",
        on_click=select_token,
        args=(pick, "tokens"),
        type="primary",
        width="stretch",
    )
