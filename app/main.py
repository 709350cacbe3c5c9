"""Streamlit entry script of the ldw explorer.

    streamlit run app/main.py -- --warehouse DIR      (what `ldw app DIR` runs)

The warehouse is ``--warehouse``, else ``$LDW_WAREHOUSE``, else
``./ldw-warehouse``. The sidebar picks the view, the runs and the step axis;
the view, runs, token, spike and axis are mirrored into the URL query string
so a link reopens the same view.
"""

from __future__ import annotations

import argparse
import html
import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import streamlit as st

from ldw.app import queries as q
from ldw.app.context import PAGE_KEY, SPIKE_KEY, TOKEN_INPUT_KEY, TOKEN_KEY, PageContext, select_token
from ldw.app.figures import run_colors
from ldw.app.source import Source
from ldw.app.state import PAGES, XSCALES, AppState, read_state, write_state
from ldw.warehouse import Warehouse, WarehouseError

RUNS_KEY, XSCALE_KEY, LOADED_KEY = "nav_runs", "nav_xscale", "url_loaded"


def warehouse_path(argv: list[str]) -> Path:
    """``--warehouse`` from the script arguments, else $LDW_WAREHOUSE, else ./ldw-warehouse."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--warehouse")
    known, _ = parser.parse_known_args(argv)
    return Path(known.warehouse or os.environ.get("LDW_WAREHOUSE") or "ldw-warehouse")


def _load_url_state(url: AppState, all_runs: list[str]) -> None:
    """Seed the session from the URL once per session (widgets own the values afterwards)."""
    if st.session_state.get(LOADED_KEY):
        return
    st.session_state[LOADED_KEY] = True
    st.session_state[PAGE_KEY] = url.page
    runs = [r for r in url.runs if r in all_runs] if url.runs is not None else all_runs
    st.session_state[RUNS_KEY] = runs
    st.session_state[XSCALE_KEY] = url.xscale
    st.session_state[TOKEN_KEY] = url.token
    st.session_state[TOKEN_INPUT_KEY] = url.token
    st.session_state[SPIKE_KEY] = url.spike


def _sidebar(source: Source, all_runs: list[str], colors: dict[str, str]) -> None:
    with st.sidebar:
        st.title("ldw explorer")
        st.caption(f"warehouse `{source.root}`")
        st.radio("View", list(PAGES), format_func=PAGES.get, key=PAGE_KEY)
        if all_runs:
            st.multiselect("Runs", all_runs, key=RUNS_KEY)
            legend = " ".join(
                f'<span style="color:{colors[r]};font-size:1.2em">●</span>&nbsp;{html.escape(r)}'
                for r in st.session_state[RUNS_KEY]
            )
            st.markdown(legend, unsafe_allow_html=True)
        st.radio("Step axis", XSCALES, horizontal=True, key=XSCALE_KEY)
        token = st.session_state.get(TOKEN_KEY)
        if token is not None:
            st.caption(f"selected token: **{token:,}**")
            left, right = st.columns(2)
            left.button("Show", key="sidebar_show_token", on_click=select_token, args=(token, "tokens"))
            right.button("Clear", key="sidebar_clear_token", on_click=select_token, args=(None,))
        st.caption("The address bar holds a link to this view. Data are cached until the warehouse changes.")


def main() -> None:
    """Render one run of the app."""
    st.set_page_config(page_title="ldw explorer", page_icon="📈", layout="wide")
    root = warehouse_path(sys.argv[1:])
    try:
        source = Source.at(root)
    except WarehouseError as exc:
        st.error(f"{exc}")
        st.info("Point the app at a warehouse: `ldw app DIR`, or create one with `ldw demo`.")
        return
    summary = source.get(Warehouse.run_summary)
    all_runs = summary["run_id"].to_list()
    colors = run_colors(all_runs)
    url = read_state(st.query_params)
    _load_url_state(url, all_runs)
    _sidebar(source, all_runs, colors)
    runs = [r for r in st.session_state.get(RUNS_KEY, all_runs) if r in all_runs]
    state = session_state(all_runs)
    ctx = PageContext(
        source=source, state=state, tables=source.get(q.table_columns), all_runs=all_runs, runs=runs, colors=colors
    )
    view(state.page).render(ctx)
    write_state(st.query_params, session_state(all_runs))


def view(page: str) -> ModuleType:
    """The module that draws ``page`` (``ldw.app.views.PAGE``), imported on first use: a session's first page
    does not wait for the others' imports."""
    return importlib.import_module(f"ldw.app.views.{page}")


def session_state(all_runs: list[str]) -> AppState:
    """The shareable state as the session holds it now."""
    runs = [r for r in st.session_state.get(RUNS_KEY, all_runs) if r in all_runs]
    return AppState(
        page=st.session_state[PAGE_KEY],
        runs=None if set(runs) == set(all_runs) else tuple(runs),
        token=st.session_state.get(TOKEN_KEY),
        spike=st.session_state.get(SPIKE_KEY),
        xscale=st.session_state[XSCALE_KEY],
    )


main()
