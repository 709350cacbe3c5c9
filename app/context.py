"""What every page gets: the warehouse source, the tables present, runs, colors and the URL state.

Session keys shared by pages and the sidebar are defined here; callbacks that
change the selected token or page write these keys before the next rerun, and
``main.py`` mirrors them into the URL.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from ldw.app.source import Source
from ldw.app.state import AppState

TOKEN_KEY = "selected_token"
TOKEN_INPUT_KEY = "token_idx_input"
PAGE_KEY = "nav_page"
SPIKE_KEY = "selected_spike"
HITS_KEY = "last_hits"


@dataclass(frozen=True)
class PageContext:
    """Inputs of one page render."""

    source: Source
    state: AppState
    tables: dict[str, tuple[str, ...]]
    all_runs: list[str]
    runs: list[str]
    colors: dict[str, str]

    @property
    def log_x(self) -> bool:
        """Whether step axes are logarithmic."""
        return self.state.xscale == "log"

    def has(self, *tables: str) -> bool:
        """Whether every named table is readable now."""
        return all(t in self.tables for t in tables)


def select_token(token_idx: int | None, page: str | None = None) -> None:
    """Callback body: make ``token_idx`` the selected token (and optionally switch page)."""
    st.session_state[TOKEN_KEY] = token_idx
    st.session_state[TOKEN_INPUT_KEY] = token_idx
    if page is not None:
        st.session_state[PAGE_KEY] = page


def empty_state(what: str, command: str, detail: str = "") -> None:
    """An info box saying which command fills an empty view."""
    st.info(
        f"**No {what} yet.** Run `{command}` to compute it{', ' + detail if detail else ''}; "
        "this view fills in on the next click or reload once it has run."
    )
