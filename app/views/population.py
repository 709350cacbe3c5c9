"""Population views: metric distributions, metric vs n-gram predictors as densities, mean curves by frequency."""

from __future__ import annotations

import polars as pl
import streamlit as st

from ldw.app import population_queries as pq
from ldw.app import queries as q
from ldw.app.analysis_figures import density_figure, histogram_figure, mean_curves_figure
from ldw.app.context import PageContext, empty_state
from ldw.app.figures import plot_config

PLOT_CONFIG = plot_config("ldw-population")
SAMPLES = {
    65_536: "65,536 tokens (first row group: fast)",
    262_144: "262,144 tokens",
    1_048_576: "1,048,576 tokens",
    2**62: "all tokens (reads every surprisal file in full)",
}


def _pick(label: str, fields: list[pq.Field], preferred: tuple[str, ...], key: str) -> pq.Field:
    names = [f.column for f in fields]
    index = next((names.index(p) for p in preferred if p in names), 0)
    return st.selectbox(label, fields, index=index, format_func=lambda f: f"{f.label}  [{f.table}]", key=key)


def _runs(ctx: PageContext) -> list[str] | None:
    """The selected runs, or None when all are selected (no filter to apply)."""
    return None if set(ctx.runs) == set(ctx.all_runs) else ctx.runs


def _has_acquired(ctx: PageContext) -> bool:
    """Whether token_metrics says which tokens each run acquired (column ``acquired``)."""
    return "acquired" in ctx.tables.get(pq.RUN_TABLE, ())


def _not_acquired_note(ctx: PageContext, fields: list[pq.Field]) -> str:
    """A sentence on the tokens left out of an AoA view (empty when nothing is left out)."""
    if not _has_acquired(ctx) or not any(f.is_aoa for f in fields):
        return ""
    left_out = ctx.source.get(pq.not_acquired_count, _runs(ctx))
    return f" {left_out:,} (run, token) pairs the run never acquired have no AoA and are left out." if left_out else ""


def render(ctx: PageContext) -> None:
    """Draw the population page."""
    st.header("Population")
    if not ctx.has("token_metrics") and not ctx.has("ngram_stats"):
        empty_state(
            "learning-curve metrics or n-gram predictors",
            "ldw metrics",
            "and `ldw ngrams` for frequency and n-gram surprisal",
        )
        return
    fields = pq.numeric_fields(ctx.tables, ctx.source.get(pq.column_types))
    metrics = [f for f in fields if f.table != pq.NGRAM_TABLE]
    predictors = [f for f in fields if f.table == pq.NGRAM_TABLE]
    if metrics:
        _distribution(ctx, metrics)
    else:
        empty_state("learning-curve metrics", "ldw metrics")
    if metrics and predictors:
        _density(ctx, metrics, predictors)
    elif not predictors:
        empty_state("n-gram predictors", "ldw ngrams", "to relate the metrics to frequency and n-gram surprisal")
    if predictors:
        _mean_curves(ctx)


def _distribution(ctx: PageContext, metrics: list[pq.Field]) -> None:
    st.subheader("Distribution")
    left, right = st.columns([3, 1])
    with left:
        field = _pick("metric", metrics, ("final_surprisal",), "pop_hist_field")
    bins = right.slider("bins", 10, 200, 60, key="pop_hist_bins")
    acquired = _has_acquired(ctx)
    value_range = ctx.source.get(pq.field_range, field, acquired)
    hist = ctx.source.get(pq.histogram, field, _runs(ctx), value_range, bins, acquired)
    if hist.height == 0:
        st.caption("No finite values for the selected runs.")
        return
    st.plotly_chart(histogram_figure(hist, field.label, ctx.colors), key="hist_chart", config=PLOT_CONFIG)
    st.caption(
        "Bins span the field's 0.1%–99.9% quantiles over all runs; values outside fall in the edge bins. "
        "Token-level tables (cross-run) show one pooled series." + _not_acquired_note(ctx, [field])
    )


def _density(ctx: PageContext, metrics: list[pq.Field], predictors: list[pq.Field]) -> None:
    st.subheader("Metric vs n-gram predictor")
    left, right, third = st.columns([2, 2, 1])
    with left:
        x = _pick("x: predictor", predictors, ("log2_unigram_freq",), "pop_density_x")
    with right:
        y = _pick("y: metric", metrics, ("final_surprisal",), "pop_density_y")
    bins = third.slider("bins", 20, 150, 80, key="pop_density_bins")
    acquired = _has_acquired(ctx)
    x_range, y_range = ctx.source.get(pq.field_range, x, acquired), ctx.source.get(pq.field_range, y, acquired)
    dens, trend = ctx.source.get(pq.density, x, y, _runs(ctx), x_range, y_range, bins, 20, acquired)
    if dens.height == 0:
        st.caption("No token has both values.")
        return
    st.plotly_chart(density_figure(dens, trend, x.label, y.label, ctx.colors), key="density_chart", config=PLOT_CONFIG)
    st.caption(
        f"Counted in DuckDB on a {bins}×{bins} grid over each field's 0.1%–99.9% range (selected runs "
        "pooled; log color scale). Lines: mean of y in 20 bins of x per run, bars ±1 standard deviation."
        + _not_acquired_note(ctx, [x, y])
    )


def _mean_curves(ctx: PageContext) -> None:
    st.subheader("Mean curve by frequency bin")
    if not ctx.runs:
        st.caption("Select at least one run in the sidebar.")
        return
    left, right = st.columns([1, 2])
    n_bins = left.select_slider("frequency bins", [2, 4, 5, 10, 20], value=5, key="pop_freq_bins")
    n_tokens = ctx.source.get(q.eval_summary).get("n_tokens", 0)
    options = [n for n in SAMPLES if n < n_tokens] + [max(SAMPLES)]
    sample = right.selectbox("tokens averaged", options, format_func=SAMPLES.get, key="pop_freq_sample")
    with st.spinner("averaging surprisal per checkpoint and frequency bin (once per run)…"):
        parts = [ctx.source.get(pq.mean_curves_by_frequency, run_id, sample) for run_id in ctx.runs]
    parts = [p for p in parts if p.height]
    if not parts:
        empty_state("surprisal for the selected runs", "ldw sweep")
        return
    curves = pq.merge_frequency_bins(pl.concat(parts), n_bins)
    has_loss = ctx.has("traces") and "loss" in ctx.source.get(q.trace_names)
    loss = ctx.source.get(q.traces_downsampled, ctx.runs, ["loss"], ctx.log_x) if has_loss else pl.DataFrame()
    fig = mean_curves_figure(curves, loss, ctx.colors, ctx.log_x)
    st.plotly_chart(fig, key="freq_curves_chart", config=PLOT_CONFIG)
    below = (
        "Below each run's curves: its training loss on the same step axis (zoom one, the other follows). "
        if has_loss
        else "The runs' training loss appears below the curves when their training logs are ingested. "
    )
    st.caption(
        below + "Equal-count bins of log2 unigram frequency (rarest first) over the tokens averaged; tokens are "
        "taken in token_idx order (the evaluation set's sampled sequences)."
    )
