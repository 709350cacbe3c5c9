"""Weight probes over a run's saved checkpoints, written to the warehouse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from ldw.dynamics.weight_probes import probe_weights_in_warehouse
from ldw.errors import LdwError
from ldw.probe.loading import load_causal_lm
from ldw.probe.weights import probe_checkpoint
from ldw.warehouse import CheckpointRecord, RunRecord, Warehouse

V, SEQ, N_SEQ = 50, 10, 5


def _save_checkpoint(folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        vocab_size=V,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=SEQ,
    )
    GPTNeoXForCausalLM(config).save_pretrained(folder)


def _warehouse(root: Path, runs: Path) -> Warehouse:
    wh = Warehouse.create(root / "wh")
    ids = np.random.default_rng(0).integers(0, V, size=(N_SEQ, SEQ)).astype(np.int32)
    sequences = pa.table({"seq_id": np.arange(N_SEQ), "input_ids": [row.tolist() for row in ids]})
    seq_id = np.repeat(np.arange(N_SEQ), SEQ - 1)
    position = np.tile(np.arange(1, SEQ), N_SEQ).astype(np.int32)
    tokens = pa.table(
        {
            "token_idx": np.arange(len(seq_id)),
            "seq_id": seq_id,
            "position": position,
            "token_id": ids[seq_id, position],
            "token_text": ["x"] * len(seq_id),
            "context_len": position,
        }
    )
    wh.write_eval_set(sequences, tokens, {"n": N_SEQ}, "fp", V)
    for run, seeds in (("run-a", (0, 1)), ("run-b", (2,))):
        wh.upsert_run(RunRecord(run, run, 0, str(runs / run), "step_folders", "gpt_neox", {}, None, "fp", None, {}))
        records = []
        for step, seed in zip((0, 10)[: len(seeds)], seeds, strict=True):
            _save_checkpoint(runs / run / f"step{step}", seed)
            records.append(CheckpointRecord(step, None, str(runs / run / f"step{step}"), f"h{seed}", None))
        wh.upsert_checkpoints(run, records)
    return wh


def test_probe_weights_in_warehouse(tmp_path: Path) -> None:
    wh = _warehouse(tmp_path, tmp_path / "runs")
    wh.upsert_checkpoints("run-b", [CheckpointRecord(20, None, str(tmp_path / "runs" / "missing"), "hx", None)])
    summary = probe_weights_in_warehouse(tmp_path / "wh", n_sequences=3, progress=False, device="cpu")
    assert summary.checkpoints == 3
    assert [(run, step) for run, step, _ in summary.failures] == [("run-b", 20)]
    assert "missing" in summary.failures[0][2]
    table = wh.query("SELECT * FROM weight_probes ORDER BY run_id, step, layer, head, name")
    assert table.height == summary.rows
    assert table.select("run_id", "step").unique().sort("run_id", "step").rows() == [
        ("run-a", 0),
        ("run-a", 10),
        ("run-b", 0),
    ]
    model = load_causal_lm(tmp_path / "runs" / "run-a" / "step10", torch.device("cpu"), torch.float32)
    ids = torch.from_numpy(wh.eval_arrays()[0][:3])
    expected = {(layer, head, name): value for layer, head, name, value in probe_checkpoint(model, ids)}
    got = table.filter((pl.col("run_id") == "run-a") & (pl.col("step") == 10))
    assert got.height == len(expected)
    for layer, head, name, value in got.select("layer", "head", "name", "value").iter_rows():
        assert value == pytest.approx(expected[(layer, head, name)], rel=1e-6)
    assert wh.derived_params("weight_probes")["n_sequences"] == 3


def test_probe_one_run_keeps_the_others(tmp_path: Path) -> None:
    wh = _warehouse(tmp_path, tmp_path / "runs")
    probe_weights_in_warehouse(tmp_path / "wh", progress=False, device="cpu")
    before = wh.query("SELECT count(*) AS n FROM weight_probes WHERE run_id = 'run-a'")["n"][0]
    probe_weights_in_warehouse(tmp_path / "wh", run_ids=["run-b"], n_sequences=2, progress=False, device="cpu")
    assert wh.query("SELECT count(*) AS n FROM weight_probes WHERE run_id = 'run-a'")["n"][0] == before
    with pytest.raises(LdwError, match="unknown run"):
        probe_weights_in_warehouse(tmp_path / "wh", run_ids=["nope"], progress=False)
