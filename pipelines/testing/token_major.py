"""Writes ``token_curves_raw``, the token-major raw curves ``ldw metrics`` writes, without computing metrics.

Layout (as :func:`ldw.curves.store.compute_metrics` writes it): the rows of
the ``surprisal`` view (run_id, step, token_idx, surprisal_bits) sorted by
token_idx, then run, then step, in parts ``chunk_part(N)`` holding tokens
``N * chunk_tokens`` up to the next chunk. Parameters: ``steps`` = run_id ->
the done steps it was built from (so the app can tell when a later sweep made
it stale) and ``chunk_tokens`` (so the app opens only the part holding a
token).
"""

from __future__ import annotations

from ldw.curves.store import raw_curve_table
from ldw.warehouse import Warehouse
from ldw.warehouse.tables import chunk_part

TABLE = "token_curves_raw"


def write_token_curves_raw(wh: Warehouse, chunk_tokens: int = 16_384) -> int:
    """Rewrite ``token_curves_raw`` from every run's done checkpoints (swapped in whole); returns the part count."""
    run_ids = wh.run_ids()
    steps = {run_id: wh.surprisal_matrix(run_id, 0, 0)[0] for run_id in run_ids}
    params = {
        "steps": {r: s.tolist() for r, s in steps.items()},
        "chunk_tokens": chunk_tokens,
        "order": "token_idx, run_id, step",
    }
    n = wh.token_count()
    parts = 0
    with wh.replace_derived(TABLE, params) as write:
        for index, lo in enumerate(range(0, n, chunk_tokens)):
            hi = min(n, lo + chunk_tokens)
            reads = [wh.surprisal_matrix(run_id, lo, hi) for run_id in run_ids]
            write(
                chunk_part(index),
                raw_curve_table(run_ids, [r[0] for r in reads], reads[0][1], [r[2] for r in reads]),
            )
            parts += 1
    return parts
