"""Runs overview: what is in the warehouse, and each run's loss / grad-norm / lr with spikes and checkpoints."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from ldw.app import queries as q
from ldw.app.context import PageContext, empty_state
from ldw.app.figures import plot_config, traces_figure
from ldw.warehouse import Warehouse
from ldw.warehouse.runs import describe_sweep

PLOT_CONFIG = plot_config("ldw-traces")


def render(ctx: PageContext) -> None:
    """Draw the overview page."""
    st.header("Runs overview")
    summary = ctx.source.get(Warehouse.run_summary)
    if summary.height == 0:
        empty_state("runs", "ldw ingest RUN_DIR ...", "or `ldw demo` for a complete offline example")
        return
    evalset = ctx.source.get(q.eval_summary)
    cols = st.columns(5)
    cols[0].metric("runs", f"{summary.height}")
    cols[1].metric("checkpoints done", f"{int(summary['done'].sum()):,} / {int(summary['checkpoints'].sum()):,}")
    cols[2].metric("pending / failed", f"{int(summary['pending'].sum()):,} / {int(summary['failed'].sum()):,}")
    cols[3].metric("evaluation tokens", f"{evalset.get('n_tokens', 0):,}" if evalset else "—")
    cols[4].metric("surprisal values", f"{int(summary['tokens_scored'].sum()):,}")
    st.table(run_table(summary))
    if int(summary["duplicates"].sum()):
        st.caption("duplicate weights: checkpoints whose weights hash equal to an earlier step's (flagged by ingest).")
    sweeps = ctx.source.get(Warehouse.sweeps)
    if sweeps.height:
        lines = [f"sweep {row['sweep_id']}: {describe_sweep(row)}" for row in sweeps.iter_rows(named=True)]
        st.caption("Precision of the surprisal values — " + "; ".join(lines))
    if not evalset:
        empty_state("evaluation set", "ldw evalset", "then `ldw sweep`")
    elif int(summary["done"].sum()) == 0:
        empty_state("surprisal", "ldw sweep")
    failed = ctx.source.get(q.failed_checkpoints)
    if failed.height:
        with st.expander(f"{failed.height} failed checkpoint(s)"):
            st.dataframe(failed, hide_index=True)
    _traces(ctx)


def run_table(summary: pl.DataFrame) -> pl.DataFrame:
    """The run summary as display text (a static table: the first page loads no data-grid code)."""
    counts = ("checkpoints", "done", "pending", "failed", "duplicates", "first_step", "last_step", "tokens_scored")
    return summary.select(
        "run_id",
        "name",
        pl.col("seed").cast(pl.String).fill_null("—"),
        pl.col("arch").fill_null("—"),
        pl.col("source_kind").alias("source"),
        *(pl.col(c).cast(pl.Int64).map_elements(lambda v: f"{v:,}", return_dtype=pl.String) for c in counts),
    ).rename(
        {
            "duplicates": "duplicate weights",
            "first_step": "first step",
            "last_step": "last step",
            "tokens_scored": "tokens scored",
        }
    )


def _traces(ctx: PageContext) -> None:
    st.subheader("Training traces")
    names = ctx.source.get(q.trace_names)
    if not names:
        empty_state("training log", "ldw ingest", "on runs that have a training log (trainer_state.json, CSV, JSONL)")
        return
    default = [n for n in names if n in q.TRACE_ORDER] or names[:3]
    shown = st.multiselect("traces", names, default=default, key="overview_traces")
    if not shown or not ctx.runs:
        st.caption("Pick at least one trace and one run.")
        return
    fig, notes = traces_view(ctx, shown)
    st.plotly_chart(fig, key="traces_chart", config=PLOT_CONFIG)
    st.caption("; ".join(notes) + ".")
    if not ctx.has("spikes"):
        empty_state("spike detection", "ldw spikes")


def traces_view(ctx: PageContext, names: list[str]) -> tuple[go.Figure, list[str]]:
    """The traces figure of the selected runs and its caption notes."""
    traces = ctx.source.get(q.traces_downsampled, ctx.runs, names, ctx.log_x)
    spikes = ctx.source.get(q.spikes, ctx.runs) if ctx.has("spikes") else pl.DataFrame()
    checkpoints = ctx.source.get(q.checkpoint_table, ctx.runs)
    fig = traces_figure(traces, spikes, checkpoints, ctx.colors, names, ctx.log_x)
    notes = ["ticks on the bottom row: checkpoints (| swept, × pending or failed)"]
    if traces.height and int(traces["points"].max()) > 1:
        notes.append("long traces are averaged into ~1,500 step buckets")
    if ctx.log_x:
        notes.append("step 0 is not drawn on the log axis")
    if spikes.height:
        notes.append("▼ and shaded bands: detected spikes")
    return fig, notes
