"""Token risers across loss spikes, on a warehouse built in the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from ldw.dynamics.spike_tokens import bracketing_checkpoints, top_risers
from ldw.dynamics.spikes_store import detect_spikes_in_warehouse, spike_tokens_in_warehouse
from ldw.errors import LdwError
from ldw.warehouse import CheckpointRecord, RunRecord, Warehouse

N_SEQ, SEQ_LEN = 4, 16
N_TOKENS = N_SEQ * (SEQ_LEN - 1)
CHECKPOINTS = (0, 100, 200, 300, 400)


def _run(run_id: str) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        name=run_id,
        seed=0,
        source=f"/runs/{run_id}",
        source_kind="ldw_trainer",
        arch="gpt_neox",
        model_config={},
        tokenizer_path=None,
        tokenizer_fingerprint="fp",
        tokens_per_step=64,
        metadata={},
    )


def _build(root: Path) -> tuple[Warehouse, dict[int, np.ndarray]]:
    wh = Warehouse.create(root)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=(N_SEQ, SEQ_LEN)).astype(np.int32)
    sequences = pa.table({"seq_id": np.arange(N_SEQ), "input_ids": [row.tolist() for row in ids]})
    seq_id = np.repeat(np.arange(N_SEQ), SEQ_LEN - 1)
    position = np.tile(np.arange(1, SEQ_LEN), N_SEQ).astype(np.int32)
    tokens = pa.table(
        {
            "token_idx": np.arange(N_TOKENS),
            "seq_id": seq_id,
            "position": position,
            "token_id": ids[seq_id, position],
            "token_text": [f"t{i}" for i in ids[seq_id, position]],
            "context_len": position,
        }
    )
    wh.write_eval_set(sequences, tokens, {"n_sequences": N_SEQ}, "fp", 50)
    wh.upsert_run(_run("run-a"))
    wh.upsert_checkpoints(
        "run-a", [CheckpointRecord(s, 64 * s, f"/runs/run-a/step{s}", f"h{s}", None) for s in CHECKPOINTS]
    )
    values = {}
    for step in CHECKPOINTS:
        values[step] = (8.0 - step / 100 + rng.normal(0, 0.1, N_TOKENS)).astype(np.float32)
    values[300][[5, 17, 42]] += np.float32([3.0, 2.0, 2.5])  # planted risers across the spike at ~250
    for step, vals in values.items():
        wh.write_surprisal("run-a", step, vals, "sweep-1")
    steps = np.arange(1, 451)
    loss = 2.0 + 3.0 * steps**-0.3 + np.random.default_rng(1).normal(0, 0.01, len(steps))
    loss[249:252] += 1.0  # steps 250-252 -> bracketed by 200 and 300
    loss[119] += 1.0  # step 120 -> 100 and 200
    loss[409] += 1.0  # step 410 -> after the last checkpoint: skipped
    wh.write_traces("run-a", pl.DataFrame({"step": steps, "name": "loss", "value": loss}))
    return wh, values


def test_spike_tokens_in_warehouse(tmp_path: Path) -> None:
    wh, values = _build(tmp_path / "wh")
    assert detect_spikes_in_warehouse(tmp_path / "wh", names=("loss",)).found == 3
    assert spike_tokens_in_warehouse(tmp_path / "wh", top_n=10) == 2
    table = wh.query("SELECT * FROM spike_tokens ORDER BY spike_id, rank")
    spikes = wh.query("SELECT spike_id, step_start FROM spikes ORDER BY spike_id")
    assert spikes["step_start"].to_list() == [120, 250, 410]
    assert table.select("spike_id", "step_before", "step_after").unique().sort("spike_id").rows() == [
        (0, 100, 200),
        (1, 200, 300),
    ]
    second = table.filter(pl.col("spike_id") == 1)
    assert second.height == 10 and second["rank"].to_list() == list(range(1, 11))
    assert second["token_idx"].to_list()[:3] == [5, 42, 17]
    expected = values[300].astype(np.float64) - values[200]
    top = np.argsort(-expected, kind="stable")[:10]
    assert second["token_idx"].to_list() == top.tolist()
    assert second["delta_bits"].to_numpy() == pytest.approx(expected[top], abs=1e-5)
    assert second["surprisal_before"].to_numpy() == pytest.approx(values[200][top])
    assert second["surprisal_after"].to_numpy() == pytest.approx(values[300][top])
    assert wh.derived_params("spike_tokens")["top_n"] == 10


def test_gradient_norm_spikes_get_their_risers_too(tmp_path: Path) -> None:
    wh, values = _build(tmp_path / "wh")
    steps = np.arange(1, 451)
    grad = 1.0 + np.random.default_rng(2).normal(0, 0.01, len(steps))
    grad[259:261] += 5.0  # steps 260-261: bracketed by 200 and 300, like loss spike 1
    loss = wh.traces("run-a").select("step", "name", "value")
    wh.write_traces("run-a", pl.concat([loss, pl.DataFrame({"step": steps, "name": "grad_norm", "value": grad})]))
    assert detect_spikes_in_warehouse(tmp_path / "wh").found == 4
    assert spike_tokens_in_warehouse(tmp_path / "wh", top_n=10) == 3
    table = wh.query("SELECT * FROM spike_tokens ORDER BY trace, spike_id, rank")
    keys = table.select("trace", "spike_id", "step_before", "step_after").unique().sort("trace", "spike_id").rows()
    assert keys == [("grad_norm", 0, 200, 300), ("loss", 0, 100, 200), ("loss", 1, 200, 300)]
    grad_rows = table.filter(pl.col("trace") == "grad_norm")
    top = np.argsort(-(values[300].astype(np.float64) - values[200]), kind="stable")[:10]
    assert (
        grad_rows["token_idx"].to_list() == top.tolist()
    )  # the same risers as the loss spike it shares a bracket with
    assert wh.derived_params("spike_tokens")["traces"] == ["grad_norm", "loss"]


def test_top_n_larger_than_token_count_keeps_all(tmp_path: Path) -> None:
    wh, _ = _build(tmp_path / "wh")
    detect_spikes_in_warehouse(tmp_path / "wh", names=("loss",))
    spike_tokens_in_warehouse(tmp_path / "wh")
    counts = wh.query("SELECT spike_id, count(*) AS n FROM spike_tokens GROUP BY spike_id ORDER BY spike_id")
    assert counts["n"].to_list() == [N_TOKENS, N_TOKENS]


def test_needs_spikes_table(tmp_path: Path) -> None:
    _build(tmp_path / "wh")
    with pytest.raises(LdwError, match="run `ldw spikes` first"):
        spike_tokens_in_warehouse(tmp_path / "wh")


def test_bracketing_and_ties() -> None:
    steps = np.array([0, 100, 200])
    assert bracketing_checkpoints(steps, 100, 150) == (100, 200)
    assert bracketing_checkpoints(steps, 50, 200) == (0, 200)
    assert bracketing_checkpoints(steps, 150, 250) is None
    idx, delta = top_risers(np.zeros(5), np.array([1.0, 3.0, 1.0, 3.0, 0.0]), 3)
    assert idx.tolist() == [1, 3, 0] and delta.tolist() == [3.0, 3.0, 1.0]
