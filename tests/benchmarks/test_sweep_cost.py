"""The sweep cost benchmark: its FLOP formula and model table, and a tiny run of the script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

from benchmarks.sweep_cost import (
    GPT2_SMALL,
    H100_FLOOR_160M,
    PYTHIA,
    WINDOW,
    flops_per_scored_token,
    measured_gpu,
)
from benchmarks.sweep_throughput import H100_BF16_FLOPS, build_model, flops_per_token

ROOT = Path(__file__).resolve().parents[2]


def test_flop_formula_reproduces_the_reference_floor() -> None:
    floor = H100_BF16_FLOPS / flops_per_scored_token(PYTHIA[1], WINDOW)
    assert floor == pytest.approx(H100_FLOOR_160M, rel=0.02)


def test_flop_formula_matches_a_count_over_a_real_model() -> None:
    """sweep_throughput counts the 2-D weights of an actual Pythia-160m-shaped GPT-NeoX."""
    with torch.device("meta"):
        model = build_model("160m", WINDOW, torch.device("meta"))
    assert flops_per_scored_token(PYTHIA[1], WINDOW) == pytest.approx(flops_per_token(model, WINDOW), rel=1e-3)


def test_fewer_scored_positions_save_only_the_unembedding() -> None:
    all_scored = flops_per_scored_token(GPT2_SMALL, 128)
    tenth = flops_per_scored_token(GPT2_SMALL, 128, processed_per_scored=12.8)
    unembedding = 2 * GPT2_SMALL.d_model * GPT2_SMALL.vocab
    assert tenth == pytest.approx(12.8 * (all_scored - unembedding) + unembedding)


@pytest.mark.parametrize("shape", PYTHIA, ids=lambda m: m.name)
def test_pythia_table_matches_gpt_neox_parameter_counts(shape) -> None:
    with torch.device("meta"):
        model = GPTNeoXForCausalLM(
            GPTNeoXConfig(
                vocab_size=shape.vocab,
                hidden_size=shape.d_model,
                num_hidden_layers=shape.layers,
                num_attention_heads=8,
                intermediate_size=4 * shape.d_model,
            )
        )
    total = sum(p.numel() for p in model.parameters())
    embeddings = model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()
    assert (total, total - embeddings) == (shape.params, shape.non_embedding)


def test_gpt2_small_parameter_counts() -> None:
    with torch.device("meta"):
        model = GPT2LMHeadModel(GPT2Config())
    total = sum(p.numel() for p in model.parameters())
    positions = model.transformer.wpe.weight.numel()
    assert (total, total - model.transformer.wte.weight.numel() - positions) == (
        GPT2_SMALL.params,
        GPT2_SMALL.non_embedding,
    )


def test_sweep_cost_benchmark_tiny(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.sweep_cost",
            "--tokens",
            "10000",
            "--writes",
            "2",
            "--load-shape",
            "tiny",
            "--load-repeats",
            "1",
            "--gpus",
            "1,4",
            "--out",
            str(out),
        ],
        check=True,
        cwd=ROOT,
        env={"PATH": ""},  # nothing from this shell: the installed ldw and the repository root (cwd) only
        capture_output=True,
    )
    result = json.loads(out.read_text())
    assert set(result) >= {"machine", "measured", "flop_check", "assumptions", "workloads", "command"}
    write = result["measured"]["write_surprisal"]
    assert write["tokens"] == 10000 and write["median_s"] > 0 and write["bytes_per_token"] > 0
    assert result["measured"]["load"]["bfloat16"]["file_bytes_per_s"] > 0
    assert result["measured"]["cpu_scoring"]["tokens_per_s"] > 0
    gpu = measured_gpu()
    assert set(result["workloads"]) == set(gpu["efficiency"]) >= {"fp32", "bf16"}
    pythia = result["workloads"]["fp32"]["pythia_suite"]
    assert list(pythia["sizes"]) == [m.name for m in PYTHIA] and pythia["total"]["checkpoints"] == 8 * 154
    for precision, rate in gpu["tokens_per_s_160m"].items():  # the FLOP formula returns the measured rate
        got = result["workloads"][precision]["pythia_suite"]["sizes"]["160m"]["gpu_tokens_per_s"]
        assert got == pytest.approx(rate, rel=0.02)
    assert pythia["sizes"]["12b"]["storage_gb"] == pytest.approx(154 * 10000 * write["bytes_per_token"] / 1e9)
    chang = result["workloads"]["fp32"]["chang_scale"]["total"]
    assert chang["checkpoints"] == 5 * 222
    one, four = chang["wall"]["1"], chang["wall"]["4"]
    assert one["shard_s"] == pytest.approx(chang["gpu_hours"] * 3600)
    assert one["shard_s"] / 4 <= four["shard_s"] < one["shard_s"]
    assert four["ray_s"] >= four["ray_write_floor_s"] == pytest.approx(1110 * 1e6 * write["s_per_token"])
