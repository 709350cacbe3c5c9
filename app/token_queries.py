"""One token in context: its curves in every run, its metrics and its context text.

Raw curves come from the derived table ``token_curves_raw`` when it exists
and covers the done checkpoints: the ``surprisal`` rows (run_id, step,
token_idx, surprisal_bits) re-sorted by token_idx and written in parts of
``chunk_tokens`` tokens, so a lookup opens one part and decodes the one or two
row groups holding the token. Otherwise they come from the ``surprisal`` view,
where DuckDB skips every row group whose token_idx range excludes the token
but still decodes one 65,536-row group in every (run, checkpoint) file. Smoothed curves come from
``token_curves_smoothed`` (``ldw metrics``), whose steps are in its recorded
parameters.
"""

from __future__ import annotations

import polars as pl

from ldw.warehouse import Warehouse
from ldw.warehouse.tables import chunk_part

CURVE_SCHEMA = {"run_id": pl.String, "step": pl.Int64, "bits": pl.Float64}


def vocab_texts(wh: Warehouse) -> dict[int, str]:
    """Text of every token id that is scored somewhere in the evaluation set."""
    rows = wh.query("SELECT token_id, any_value(token_text) AS token_text FROM eval_tokens GROUP BY token_id")
    return dict(rows.iter_rows())


def token_row(wh: Warehouse, token_idx: int) -> dict | None:
    """The eval_tokens row of one token in context (None when out of range)."""
    rows = wh.query("SELECT * FROM eval_tokens WHERE token_idx = ?", [token_idx])
    return rows.row(0, named=True) if rows.height else None


def sequence_ids(wh: Warehouse, seq_ids: tuple[int, ...]) -> dict[int, list[int]]:
    """Token ids of the given evaluation sequences."""
    rows = wh.query("SELECT seq_id, input_ids FROM eval_sequences WHERE list_contains(?, seq_id)", [list(seq_ids)])
    return dict(rows.iter_rows())


def token_context(input_ids: list[int], position: int, vocab: dict[int, str]) -> pl.DataFrame:
    """Every position of a sequence with its text and whether it is the target.

    The evaluation set stores ids; texts come from scored tokens with the
    same id, and an id that is never scored reads ``<id>``.
    """
    return pl.DataFrame(
        {
            "position": list(range(len(input_ids))),
            "token_id": input_ids,
            "token_text": [vocab.get(int(i), f"<{i}>") for i in input_ids],
            "is_target": [p == position for p in range(len(input_ids))],
        }
    )


def raw_table_chunk(wh: Warehouse) -> int | None:
    """``chunk_tokens`` of ``token_curves_raw`` when it exists and covers exactly the done checkpoints, else None.

    The table's parameters must hold ``steps`` (run_id -> the steps it was
    built from) and ``chunk_tokens`` (part ``chunk_part(N)`` holds tokens
    ``N * chunk_tokens`` up to the next chunk).
    """
    params = wh.derived_params("token_curves_raw")
    steps, chunk = params.get("steps"), params.get("chunk_tokens")
    if not isinstance(steps, dict) or not steps or not isinstance(chunk, int) or chunk < 1:
        return None
    done = wh.query(
        "SELECT run_id, list(step ORDER BY step) AS steps FROM checkpoints WHERE status = 'done' GROUP BY run_id"
    )
    current = {run_id: list(s) for run_id, s in done.iter_rows()}
    fresh = all(current.get(run_id) == list(s) for run_id, s in steps.items()) and set(current) <= set(steps)
    return chunk if fresh else None


def raw_curves(wh: Warehouse, token_idx: int, runs: list[str], chunk_tokens: int | None) -> pl.DataFrame:
    """Surprisal (bits) of one token at every swept checkpoint of ``runs``: run_id, step, bits.

    With ``chunk_tokens`` (from :func:`raw_table_chunk`) only the one part of
    ``token_curves_raw`` holding the token is read; otherwise the ``surprisal``
    view (one row group of every surprisal file).
    """
    if chunk_tokens is not None:
        part = wh.derived_part_path("token_curves_raw", chunk_part(token_idx // chunk_tokens))
        if part is not None and wh.store.exists(part):
            return wh.query(
                "SELECT run_id::VARCHAR AS run_id, step, surprisal_bits::DOUBLE AS bits FROM read_parquet(?) "
                f"WHERE token_idx = ? AND run_id IN {_placeholders(runs)} ORDER BY run_id, step",
                [[part], token_idx, *runs],
            )
    return wh.query(
        "SELECT run_id, step, surprisal_bits::DOUBLE AS bits FROM surprisal "
        f"WHERE token_idx = ? AND run_id IN {_placeholders(runs)} ORDER BY run_id, step",
        [token_idx, *runs],
    )


def _placeholders(values: list[str]) -> str:
    """``(?, ?, ...)`` for binding each value: an IN list DuckDB can check against row-group statistics."""
    return "(" + ", ".join("?" * len(values)) + ")" if values else "(NULL)"


def smoothed_curves(wh: Warehouse, token_idx: int, runs: list[str]) -> pl.DataFrame:
    """The GAM curve G (bits) of one token in ``runs`` at each run's steps > 0: run_id, step, bits."""
    return _unnest_curves(wh, "token_curves_smoothed", "g_bits", token_idx, runs)


def _unnest_curves(wh: Warehouse, table: str, column: str, token_idx: int, runs: list[str]) -> pl.DataFrame:
    steps = wh.derived_params(table).get("steps", {})
    rows = wh.query(
        f'SELECT run_id, "{column}" AS bits FROM "{table}" WHERE token_idx = ? AND run_id IN {_placeholders(runs)}',
        [token_idx, *runs],
    )
    frames = []
    for run_id, bits in rows.iter_rows():
        run_steps = steps.get(run_id, [])
        if bits is not None and len(run_steps) == len(bits):
            frames.append(pl.DataFrame({"run_id": run_id, "step": run_steps, "bits": bits}, schema=CURVE_SCHEMA))
    return pl.concat(frames).sort("run_id", "step") if frames else pl.DataFrame(schema=CURVE_SCHEMA)


def token_metrics(wh: Warehouse, token_idx: int) -> pl.DataFrame:
    """The ``token_metrics`` rows of one token (one per run)."""
    return wh.query("SELECT * FROM token_metrics WHERE token_idx = ? ORDER BY run_id", [token_idx])


def crossrun_row(wh: Warehouse, token_idx: int) -> dict | None:
    """The ``crossrun_metrics`` row of one token."""
    rows = wh.query("SELECT * FROM crossrun_metrics WHERE token_idx = ?", [token_idx])
    return rows.row(0, named=True) if rows.height else None


def ngram_row(wh: Warehouse, token_idx: int) -> dict | None:
    """The ``ngram_stats`` row of one token."""
    rows = wh.query("SELECT * FROM ngram_stats WHERE token_idx = ?", [token_idx])
    return rows.row(0, named=True) if rows.height else None
