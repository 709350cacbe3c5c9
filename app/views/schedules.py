"""Schedules: the fitted LR-annealing loss law over observed loss, and predictions for other schedules."""

from __future__ import annotations

import polars as pl
import streamlit as st

from ldw.app import analysis_queries as aq
from ldw.app.analysis_figures import schedule_figure
from ldw.app.context import PageContext, empty_state
from ldw.app.figures import plot_config

PLOT_CONFIG = plot_config("ldw-schedules")


def render(ctx: PageContext) -> None:
    """Draw the schedules page."""
    st.header("LR schedules")
    st.caption(
        "Loss law of Tissue et al. 2024: L(s) = L0 + A·S1^(−α) − C·S2, with S1 the summed learning rate "
        "(warmup counted at the peak) and S2 the annealing area with momentum 0.999."
    )
    if not ctx.has("lr_law_fit", "lr_law_curves"):
        empty_state(
            "LR-law fit",
            "ldw fit-schedule --run RUN --predict cosine",
            "which fits the law on a run's loss and lr traces and predicts other schedules",
        )
        return
    fit = ctx.source.get(aq.lr_law_fit)
    if fit.height:
        row = fit.row(0, named=True)
        cols = st.columns(6)
        for col, name in zip(cols[:4], ("L0", "A", "alpha", "C"), strict=True):
            if row.get(name) is not None:
                col.metric(name if name != "alpha" else "α", f"{row[name]:.4g}")
        if row.get("rmse") is not None:
            cols[4].metric("RMSE (nats)", f"{row['rmse']:.4f}")
        if row.get("mape_pct") is not None:
            cols[5].metric("MAPE", f"{row['mape_pct']:.2f} %")
        points = f" ({row['n_points']:,} points)" if row.get("n_points") is not None else ""
        st.caption(f"fitted on: {row.get('runs', '?')}{points}")
    curves = ctx.source.get(aq.lr_law_curves)
    if curves.height == 0 or not {"schedule", "step", "lr", "predicted_loss"} <= set(curves.columns):
        st.caption("The fit wrote no curves.")
        return
    if "observed_loss" not in curves.columns:
        curves = curves.with_columns(pl.lit(None, dtype=pl.Float64).alias("observed_loss"))
    names = curves["schedule"].unique(maintain_order=True).to_list()
    shown = st.multiselect("schedules", names, default=names, key="schedules_shown")
    curves = curves.filter(pl.col("schedule").is_in(shown))
    if curves.height:
        st.plotly_chart(schedule_figure(curves, ctx.log_x, ctx.colors), key="schedule_chart", config=PLOT_CONFIG)
        st.caption(
            "Solid: the law fitted on the observed loss (dots); dashed: predicted from the schedule's LR "
            "sequence alone."
        )
    errors = (
        curves.filter(pl.col("observed_loss").is_not_null())
        .group_by("schedule", maintain_order=True)
        .agg(
            ((pl.col("predicted_loss") - pl.col("observed_loss")) ** 2).mean().sqrt().alias("rmse (nats)"),
            ((pl.col("predicted_loss") / pl.col("observed_loss") - 1).abs().mean() * 100).alias("mape (%)"),
            pl.len().alias("points"),
        )
    )
    if errors.height:
        st.dataframe(errors, hide_index=True)
