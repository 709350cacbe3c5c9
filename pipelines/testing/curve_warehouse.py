"""A small real warehouse holding given surprisal curves: an evaluation set, runs, checkpoints, surprisal files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ldw.testing.curves import synthetic_curves
from ldw.warehouse import CheckpointRecord, RunRecord, Warehouse

SEQ_LEN = 31


def build_curves_warehouse(
    root: Path, runs: dict[str, np.ndarray], n_tokens: int = 300, vocab_size: int = 320
) -> dict[str, np.ndarray]:
    """Create a warehouse at ``root`` with about ``n_tokens`` evaluation tokens and each run's checkpoint steps.

    ``runs`` maps run_id -> steps; run ``i`` gets :func:`synthetic_curves` with
    seed ``i``, one surprisal file per step. Returns run_id -> the curves
    written, [tokens, steps] in bits. The evaluation set is ``n_tokens //
    30`` windows of 31 token ids counting up modulo ``vocab_size``.
    """
    wh = Warehouse.create(root)
    n_seq = n_tokens // (SEQ_LEN - 1)
    ids = (np.arange(n_seq * SEQ_LEN, dtype=np.int32).reshape(n_seq, SEQ_LEN)) % vocab_size
    seq = np.repeat(np.arange(n_seq), SEQ_LEN - 1)
    pos = np.tile(np.arange(1, SEQ_LEN), n_seq)
    wh.write_eval_set(
        pa.table({"seq_id": np.arange(n_seq), "input_ids": list(ids)}),
        pa.table(
            {
                "token_idx": np.arange(len(seq)),
                "seq_id": seq,
                "position": pos.astype(np.int32),
                "token_id": ids[seq, pos],
                "token_text": [str(t) for t in ids[seq, pos]],
                "context_len": pos.astype(np.int32),
            }
        ),
        {"seq_len": SEQ_LEN},
        "fp",
        vocab_size,
    )
    matrices = {}
    for seed, (run_id, steps) in enumerate(runs.items()):
        wh.upsert_run(
            RunRecord(run_id, run_id, seed, f"/runs/{run_id}", "step_folders", "gpt_neox", {}, None, "fp", None, {})
        )
        wh.upsert_checkpoints(
            run_id, [CheckpointRecord(int(s), None, f"/runs/{run_id}/step{s}", f"h{s}", None) for s in steps]
        )
        matrices[run_id] = synthetic_curves(steps, len(seq), seed=seed)
        for col, step in enumerate(steps):
            wh.write_surprisal(run_id, int(step), matrices[run_id][:, col], "sweep-test")
    return matrices
