"""Finding tokens in context: by token text, token id, context substring or a metric ranking.

Every search returns the same columns (token_idx, seq_id, position, token_id,
token_text, score, total) where ``score`` is the ranking value (NULL for text
searches) and ``total`` the number of matches before the limit. Search text is
always a bound parameter (the context search matches it literally with Polars
over the cached sequence text); ranking columns come from :data:`RANKINGS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ldw.warehouse import Warehouse

TEXT_MODES = {
    "exact": "token_text = $q",
    "ignoring surrounding spaces": "trim(token_text) = trim($q)",
    "contains (any case)": "contains(lower(token_text), lower($q))",
}
CONTEXT_TARGETS = ("token completing the match", "token right after the match")
MAX_CONTEXT_SEQUENCES = 500


@dataclass(frozen=True)
class Ranking:
    """A metric ranking: the per-run column, the cross-run column, and the order."""

    label: str
    run_column: str | None
    crossrun_column: str
    descending: bool
    needs_acquired: bool = False  # an AoA ranking: tokens a run never acquired have no AoA to rank


RANKINGS = {
    "latest_aoa": Ranking("latest age of acquisition", "aoa_log10_step", "mean_aoa_log10_step", True, True),
    "earliest_aoa": Ranking("earliest age of acquisition", "aoa_log10_step", "mean_aoa_log10_step", False, True),
    "most_forgotten": Ranking("most forgotten (forgettability)", "forgettability", "mean_forgettability", True),
    "most_variable_seeds": Ranking("most variable across seeds", None, "crossrun_var", True),
    "most_variable_within": Ranking("most variable late in training", "within_run_var", "mean_within_run_var", True),
    "hardest": Ranking("highest final surprisal", "final_surprisal", "mean_final_surprisal", True),
    "easiest": Ranking("lowest final surprisal", "final_surprisal", "mean_final_surprisal", False),
}

_HITS = """
SELECT e.token_idx, e.seq_id, e.position, e.token_id, e.token_text, {score} AS score, count(*) OVER () AS total
FROM eval_tokens e {join} WHERE {where} ORDER BY {order} LIMIT $limit
"""


def search_token_text(wh: Warehouse, text: str, mode: str, limit: int = 200) -> pl.DataFrame:
    """Tokens whose text matches ``text`` (``mode`` is a key of :data:`TEXT_MODES`), in token order."""
    sql = _HITS.format(score="NULL::DOUBLE", join="", where=TEXT_MODES[mode], order="e.token_idx")
    return wh.query(sql, {"q": text, "limit": limit})


def search_token_id(wh: Warehouse, token_id: int, limit: int = 200) -> pl.DataFrame:
    """Every occurrence of one token id, in token order."""
    sql = _HITS.format(score="NULL::DOUBLE", join="", where="token_id = $q", order="e.token_idx")
    return wh.query(sql, {"q": token_id, "limit": limit})


def available_rankings(tables: dict[str, tuple[str, ...]]) -> dict[str, tuple[bool, bool]]:
    """Rankings whose columns exist: key -> (per run possible, across runs possible)."""
    run_cols, cross_cols = set(tables.get("token_metrics", ())), set(tables.get("crossrun_metrics", ()))
    found = {}
    for key, ranking in RANKINGS.items():
        per_run, across = ranking.run_column in run_cols, ranking.crossrun_column in cross_cols
        if per_run or across:
            found[key] = (per_run, across)
    return found


def rank_tokens(
    wh: Warehouse, key: str, run_id: str | None, limit: int = 200, has_acquired: bool = False
) -> pl.DataFrame:
    """Tokens ranked by a metric: one run's ``token_metrics``, or ``crossrun_metrics`` when ``run_id`` is None.

    The top ``limit`` rows are found first and only they are joined to their
    text; ``total`` is NULL (a ranking has no match count). With
    ``has_acquired`` (token_metrics has the ``acquired`` column) an AoA ranking
    of one run leaves out the tokens it never acquired.
    """
    ranking = RANKINGS[key]
    direction = "DESC" if ranking.descending else "ASC"
    if run_id is None or ranking.run_column is None:
        table, column, where, params = "crossrun_metrics", ranking.crossrun_column, "true", {"limit": limit}
    else:
        where = "run_id = $run AND acquired" if has_acquired and ranking.needs_acquired else "run_id = $run"
        table, column, params = "token_metrics", ranking.run_column, {"limit": limit, "run": run_id}
    return wh.query(
        f"""
        WITH top AS (
            SELECT token_idx, "{column}"::DOUBLE AS score FROM {table}
            WHERE {where} AND isfinite("{column}") ORDER BY "{column}" {direction}, token_idx LIMIT $limit
        )
        SELECT e.token_idx, e.seq_id, e.position, e.token_id, e.token_text, top.score, NULL::BIGINT AS total
        FROM top JOIN eval_tokens e USING (token_idx) ORDER BY top.score {direction}, e.token_idx
        """,
        params,
    )


def sequence_texts(wh: Warehouse) -> pl.DataFrame:
    """Every evaluation sequence as lowercase text plus the end offset of each position's text.

    Columns: seq_id, text, ends (list: character offset where each position's
    token text ends). Token texts come from the scored tokens with the same id.
    """
    return (
        wh.query(
            """
        WITH v AS (SELECT token_id, any_value(token_text) AS txt FROM eval_tokens GROUP BY token_id),
        p AS (
            SELECT seq_id, unnest(input_ids) AS token_id, unnest(range(len(input_ids))) AS position
            FROM eval_sequences
        ),
        pt AS (SELECT p.seq_id, p.position, lower(coalesce(v.txt, '')) AS txt FROM p LEFT JOIN v USING (token_id))
        SELECT seq_id, string_agg(txt, '' ORDER BY position) AS text,
               list(length(txt) ORDER BY position) AS lens
        FROM pt GROUP BY seq_id ORDER BY seq_id
        """
        )
        .with_columns(pl.col("lens").list.eval(pl.element().cum_sum()).alias("ends"))
        .drop("lens")
    )


def context_matches(
    texts: pl.DataFrame, needle: str, target: str, max_sequences: int = MAX_CONTEXT_SEQUENCES
) -> tuple[list[int], list[int]]:
    """(seq_ids, positions) of the target token at every occurrence of ``needle`` (any case).

    ``target`` (one of :data:`CONTEXT_TARGETS`) picks the token whose text
    holds the match's last character, or the token right after the match. The
    needle is matched literally (no pattern syntax); at most ``max_sequences``
    matching sequences are searched.
    """
    needle = needle.lower()
    if not needle:
        return [], []
    after = 1 if target == CONTEXT_TARGETS[1] else 0
    found = texts.filter(pl.col("text").str.contains(needle, literal=True)).head(max_sequences)
    wanted = set()
    for seq_id, text, ends in found.iter_rows():
        start = text.find(needle)
        while start >= 0:
            last = start + len(needle) - 1
            index = next(i for i, end in enumerate(ends) if end > last) + after
            if index < len(ends):
                wanted.add((int(seq_id), index))
            start = text.find(needle, start + 1)
    ordered = sorted(wanted)
    return [s for s, _ in ordered], [p for _, p in ordered]


def hits_at(wh: Warehouse, seq_ids: tuple[int, ...], positions: tuple[int, ...], limit: int = 200) -> pl.DataFrame:
    """The scored tokens at the given (seq_id, position) pairs, in token order."""
    return wh.query(
        """
        WITH w AS (SELECT unnest($seqs) AS seq_id, unnest($positions) AS position)
        SELECT e.token_idx, e.seq_id, e.position, e.token_id, e.token_text, NULL::DOUBLE AS score,
               count(*) OVER () AS total
        FROM eval_tokens e JOIN w USING (seq_id, position) ORDER BY e.token_idx LIMIT $limit
        """,
        {"seqs": list(seq_ids), "positions": list(positions), "limit": limit},
    )


def with_snippets(
    hits: pl.DataFrame, sequences: dict[int, list[int]], vocab: dict[int, str], width: int = 12
) -> pl.DataFrame:
    """``hits`` with a ``context`` column: the text of up to ``width`` tokens before each target."""
    snippets = []
    for seq_id, position in hits.select("seq_id", "position").iter_rows():
        window = sequences.get(seq_id, [])[max(0, position - width) : position]
        text = "".join(vocab.get(int(i), f"<{i}>") for i in window)
        snippets.append(("…" if position > width else "") + text)
    return hits.with_columns(pl.Series("context", snippets, dtype=pl.String))
