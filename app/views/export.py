"""Export: the current selection (token curves, metrics, search results), warehouse tables and figures.

Tables download as CSV or Parquet, figures as self-contained HTML and, when
the ``png`` extra (``pip install 'learning-dynamics-workbench[png]'``: kaleido,
which needs a Chrome/Chromium it can start) is installed, as PNG. Large files
are produced only when their button is clicked.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from ldw.app import analysis_queries as aq
from ldw.app import queries as q
from ldw.app import token_queries as tq
from ldw.app.context import HITS_KEY, PageContext
from ldw.app.views.overview import traces_view
from ldw.app.views.tokens import token_figure
from ldw.warehouse import Warehouse

PNG_INSTALL = "pip install 'learning-dynamics-workbench[png]'"
EXPORTABLE = (
    "token_metrics",
    "crossrun_metrics",
    "ngram_stats",
    "spikes",
    "spike_tokens",
    "lr_law_fit",
    "lr_law_curves",
)


def frame_bytes(frame: pl.DataFrame, fmt: str) -> bytes:
    """A frame as CSV or Parquet bytes."""
    if fmt == "csv":
        return frame.write_csv().encode()
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _downloads(label: str, stem: str, make: Callable[[], pl.DataFrame] | pl.DataFrame, key: str) -> None:
    """CSV and Parquet buttons for one table (``make`` runs on click when it is a callable)."""
    cols = st.columns([3, 1, 1])
    cols[0].markdown(label)
    for col, fmt, mime in ((cols[1], "csv", "text/csv"), (cols[2], "parquet", "application/octet-stream")):
        data = (lambda f=fmt: frame_bytes(make(), f)) if callable(make) else frame_bytes(make, fmt)
        col.download_button(
            fmt.upper(),
            data,
            file_name=f"{stem}.{fmt}",
            mime=mime,
            key=f"{key}_{fmt}",
            on_click="ignore",
            width="stretch",
        )


def _figure_downloads(label: str, stem: str, fig: go.Figure, key: str) -> None:
    cols = st.columns([3, 1, 1])
    cols[0].markdown(label)
    cols[1].download_button(
        "HTML",
        lambda: fig.to_html(include_plotlyjs=True, full_html=True).encode(),
        file_name=f"{stem}.html",
        mime="text/html",
        key=f"{key}_html",
        on_click="ignore",
        width="stretch",
    )
    if importlib.util.find_spec("kaleido") is not None:
        cols[2].download_button(
            "PNG",
            lambda: fig.to_image(format="png", scale=2, width=1200),
            file_name=f"{stem}.png",
            mime="image/png",
            key=f"{key}_png",
            on_click="ignore",
            width="stretch",
        )
    else:
        cols[2].caption("PNG: camera icon on the figure")


def render(ctx: PageContext) -> None:
    """Draw the export page."""
    st.header("Export")
    token = ctx.state.token
    st.caption(
        f"Current selection: runs {', '.join(ctx.runs) or 'none'}; token {token if token is not None else 'none'}."
    )
    st.subheader("Selection")
    row = ctx.source.get(tq.token_row, token) if token is not None else None
    if row is not None and ctx.runs:
        chunk = ctx.source.get(tq.raw_table_chunk) if ctx.has("token_curves_raw") else None
        raw = ctx.source.get(tq.raw_curves, token, ctx.runs, chunk).with_columns(pl.lit("raw").alias("curve"))
        if ctx.has("token_curves_smoothed"):
            smooth = ctx.source.get(tq.smoothed_curves, token, ctx.runs)
            raw = pl.concat([raw, smooth.with_columns(pl.lit("smoothed_G").alias("curve"))])
        _downloads(
            f"curves of token {token} (bits; raw and smoothed G)",
            f"ldw-token-{token}-curves",
            raw.with_columns(pl.lit(token).alias("token_idx")),
            "exp_curves",
        )
        if ctx.has("token_metrics"):
            metrics = ctx.source.get(tq.token_metrics, token)
            _downloads(f"metrics of token {token}", f"ldw-token-{token}-metrics", metrics, "exp_metrics")
    else:
        st.caption("Select a token in the token explorer to export its curves and metrics.")
    hits = st.session_state.get(HITS_KEY)
    if hits is not None and hits.height:
        _downloads(f"last search results ({hits.height} tokens)", "ldw-search-results", hits, "exp_hits")
    if ctx.has("token_metrics") and ctx.runs:
        wh, runs = ctx.source.warehouse(), list(ctx.runs)
        _downloads(
            f"token metrics of the selected runs ({len(runs)} run(s), every token)",
            "ldw-token-metrics",
            lambda: wh.query(
                "SELECT * FROM token_metrics WHERE list_contains(?, run_id) ORDER BY run_id, token_idx", [runs]
            ),
            "exp_run_metrics",
        )
    _tables(ctx)
    _figures(ctx, row)


def _tables(ctx: PageContext) -> None:
    st.subheader("Warehouse tables")
    st.caption(
        "Correlations of the metrics with the n-gram predictors are not stored in the warehouse: "
        "`ldw export ngram-correlations` writes them (CSV and Parquet) from `token_metrics` and `ngram_stats`."
    )
    wh = ctx.source.warehouse()
    for table in EXPORTABLE:
        if ctx.has(table):
            params = ctx.source.get(Warehouse.derived_params, table)
            _downloads(
                f"`{table}`" + (" (computed with recorded parameters)" if params else ""),
                f"ldw-{table}",
                lambda t=table: aq.table_rows(wh, t),
                f"exp_table_{table}",
            )


def _figures(ctx: PageContext, row: dict | None) -> None:
    st.subheader("Figures")
    if importlib.util.find_spec("kaleido") is None:
        st.caption(
            f"PNG export needs the `png` extra: `{PNG_INSTALL}` (it installs kaleido, which drives a local "
            "Chrome/Chromium); until then use the camera icon in each figure's toolbar. HTML files are "
            "self-contained and open offline."
        )
    if ctx.runs and ctx.source.get(q.trace_names):
        names = [n for n in ctx.source.get(q.trace_names) if n in q.TRACE_ORDER]
        if names:
            fig, _ = traces_view(ctx, names)
            _figure_downloads("training traces of the selected runs", "ldw-traces", fig, "fig_traces")
    if row is not None and ctx.runs:
        figure = token_figure(ctx, row)
        if figure is not None:
            _figure_downloads(
                f"curves of token {row['token_idx']}", f"ldw-token-{row['token_idx']}", figure[0], "fig_token"
            )
