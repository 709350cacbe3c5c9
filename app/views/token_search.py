"""The token explorer's search panel: find tokens in context and pick one.

Results are a small table (at most ``LIMIT`` rows) with the text before each
target; choosing a row (click it, or use the picker) selects that token.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from ldw.app import search_queries as sq
from ldw.app import token_queries as tq
from ldw.app.context import HITS_KEY, TOKEN_INPUT_KEY, TOKEN_KEY, PageContext, select_token

LIMIT = 200
MODES = ("token text", "context text", "token id", "metric ranking")
MEAN_OVER_RUNS = "mean over runs"
SCORE_LABELS = {
    "aoa_log10_step": "AoA (log10 step)",
    "forgettability": "forgetting (bits)",
    "crossrun_var": "cross-run var (bits²)",
    "within_run_var": "late var (bits)",
    "final_surprisal": "final (bits)",
}


def _hits(ctx: PageContext) -> pl.DataFrame | None:
    """Run the search the widgets describe; None when there is nothing to search for."""
    mode = st.radio("Find tokens by", MODES, horizontal=True, key="find_mode")
    if mode == "token text":
        left, right = st.columns([3, 2])
        text = left.text_input("token text", key="q_text", placeholder="e.g.  the   (leading space counts)")
        how = right.selectbox("match", list(sq.TEXT_MODES), index=1, key="q_text_mode")
        return ctx.source.get(sq.search_token_text, text, how, LIMIT) if text else None
    if mode == "context text":
        left, right = st.columns([3, 2])
        text = left.text_input("text in context (any case)", key="q_context", placeholder="e.g. of the")
        target = right.selectbox("show", sq.CONTEXT_TARGETS, key="q_context_target")
        if not text:
            return None
        with st.spinner("searching the evaluation text (indexed once per warehouse version)…"):
            texts = ctx.source.get_resource(sq.sequence_texts)
            seqs, positions = sq.context_matches(texts, text, target)
        return ctx.source.get(sq.hits_at, tuple(seqs), tuple(positions), LIMIT)
    if mode == "token id":
        token_id = st.number_input("token id", min_value=0, step=1, value=None, key="q_token_id")
        return ctx.source.get(sq.search_token_id, int(token_id), LIMIT) if token_id is not None else None
    return _ranking(ctx)


def _ranking(ctx: PageContext) -> pl.DataFrame | None:
    rankings = sq.available_rankings(ctx.tables)
    if not rankings:
        st.info(
            "**No learning-curve metrics yet.** Run `ldw metrics` to rank tokens by age of acquisition, "
            "forgettability and variability."
        )
        return None
    left, right = st.columns([3, 2])
    key = left.selectbox("rank by", list(rankings), format_func=lambda k: sq.RANKINGS[k].label, key="q_rank")
    per_run, across = rankings[key]
    scopes = ([MEAN_OVER_RUNS] if across else []) + (ctx.runs if per_run else [])
    if not scopes:
        st.caption("Select a run in the sidebar.")
        return None
    scope = right.selectbox("over", scopes, key="q_rank_scope")
    has_acquired = "acquired" in ctx.tables.get("token_metrics", ())
    return ctx.source.get(sq.rank_tokens, key, None if scope == MEAN_OVER_RUNS else scope, LIMIT, has_acquired)


def _score_label() -> str:
    """Header of the ranking's value column: the metric ranked by (short enough not to be clipped)."""
    if st.session_state.get("find_mode") != MODES[-1] or st.session_state.get("q_rank") not in sq.RANKINGS:
        return "metric"
    return SCORE_LABELS.get(sq.RANKINGS[st.session_state["q_rank"]].run_column or "crossrun_var", "metric")


def _on_table_select() -> None:
    rows = st.session_state["hits_table"].selection.rows
    hits = st.session_state.get(HITS_KEY)
    if rows and hits is not None and rows[0] < hits.height:
        select_token(int(hits["token_idx"][rows[0]]))


def _on_pick() -> None:
    select_token(st.session_state["hit_pick"])


def _on_index() -> None:
    value = st.session_state[TOKEN_INPUT_KEY]
    select_token(int(value) if value is not None else None)


def render_search(ctx: PageContext) -> None:
    """Draw the search panel; selecting a result sets the selected token."""
    hits = _hits(ctx)
    if hits is not None:
        total = hits["total"][0] if hits.height else 0
        total = hits.height if total is None else int(total)
        if total == 0:
            st.caption("No match.")
        else:
            vocab = ctx.source.get_resource(tq.vocab_texts)
            sequences = ctx.source.get(tq.sequence_ids, tuple(sorted(set(hits["seq_id"].to_list()))))
            hits = sq.with_snippets(hits.drop("total"), sequences, vocab)
            st.session_state[HITS_KEY] = hits
            shown = "" if total <= hits.height else f" (showing the first {hits.height:,})"
            st.caption(f"{total:,} match(es){shown}. Click a row, or pick it below, to see its curves.")
            columns = ["token_idx", "context", "token_text", "score"]
            if hits["score"].null_count() == hits.height:
                columns.remove("score")
            st.dataframe(
                hits.select(columns),
                hide_index=True,
                key="hits_table",
                on_select=_on_table_select,
                selection_mode="single-row",
                height=min(38 + 35 * hits.height, 320),
                width="stretch",
                column_config={
                    "token_idx": st.column_config.NumberColumn("token_idx", width="small", format="%d"),
                    "context": st.column_config.TextColumn("text before the token", width="medium"),
                    "token_text": st.column_config.TextColumn("token", width="small"),
                    "score": st.column_config.NumberColumn(_score_label(), format="%.3f", width="small"),
                },
            )
            labels = {
                i: f"{i}: …{c[-40:]}⟦{t}⟧" for i, c, t in hits.select("token_idx", "context", "token_text").iter_rows()
            }
            st.selectbox(
                "open a result",
                list(labels),
                format_func=labels.get,
                index=None,
                key="hit_pick",
                on_change=_on_pick,
                placeholder="choose a token…",
            )
    if TOKEN_INPUT_KEY not in st.session_state:
        st.session_state[TOKEN_INPUT_KEY] = st.session_state.get(TOKEN_KEY)
    st.number_input(
        "or go to token index (token_idx)", min_value=0, step=1, key=TOKEN_INPUT_KEY, on_change=_on_index, value=None
    )
