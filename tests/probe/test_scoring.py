"""Sweep scoring equals an independent float64 computation from plain model(...).logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

from ldw.probe.errors import ProbeError
from ldw.probe.precision import matmul_precision, sample_plan
from ldw.probe.scoring import (
    CPU_BATCH,
    INJECT_OOM_ENV,
    EvalBatchPlan,
    ScoreOptions,
    auto_batch,
    score_plan,
    score_surprisal,
)

VOCAB = 211


def _models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "gpt_neox": GPTNeoXForCausalLM(
            GPTNeoXConfig(
                vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
            )
        ),
        "llama": LlamaForCausalLM(
            LlamaConfig(
                vocab_size=VOCAB,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=64,
            )
        ),
        "gpt2": GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4)),
    }


def _reference(
    model: torch.nn.Module, ids: np.ndarray, seq_ids: np.ndarray, positions: np.ndarray, prefix: int | None
) -> np.ndarray:
    """One sequence at a time, full logits, log-softmax in float64."""
    logps = {}
    with torch.no_grad():
        for s in np.unique(seq_ids):
            row = list(ids[s]) if prefix is None else [prefix, *ids[s]]
            logps[s] = torch.log_softmax(model(torch.tensor([row])).logits[0].double(), dim=-1)
    shift = -1 if prefix is None else 0
    return np.array(
        [-logps[s][p + shift, ids[s, p]].item() / math.log(2) for s, p in zip(seq_ids, positions, strict=True)]
    )


@pytest.mark.parametrize("arch", ["gpt_neox", "llama", "gpt2"])
@pytest.mark.parametrize("prefix", [None, 0])
def test_matches_float64_reference_every_position(arch: str, prefix: int | None) -> None:
    model = _models()[arch].eval()
    ids = np.random.default_rng(1).integers(0, VOCAB, size=(5, 12))
    first = 0 if prefix is not None else 1
    seq_ids = np.repeat(np.arange(5), 12 - first)
    positions = np.tile(np.arange(first, 12), 5)
    got = score_surprisal(model, EvalBatchPlan(ids, seq_ids, positions, prefix), batch_size=2)
    want = _reference(model, ids, seq_ids, positions, prefix)
    assert got.dtype == np.float32
    assert np.max(np.abs(got - want)) < 1e-4
    # the first scored position of every sequence and the batch boundaries are covered
    assert set(positions[seq_ids == 2]) >= {first, 11}


def test_sampled_positions_and_batch_size_do_not_change_values() -> None:
    model = _models()["gpt_neox"].eval()
    ids = np.random.default_rng(2).integers(0, VOCAB, size=(7, 10))
    seq_ids = np.repeat(np.arange(7), 3)
    positions = np.sort(np.random.default_rng(3).choice(np.arange(1, 10), size=(7, 3)), axis=1).reshape(-1)
    plan = EvalBatchPlan(ids, seq_ids, positions)
    a = score_surprisal(model, plan, batch_size=1)
    b = score_surprisal(model, plan, batch_size=7)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, _reference(model, ids, seq_ids, positions, None), atol=1e-4)


def test_position_zero_needs_a_prefix() -> None:
    with pytest.raises(ProbeError, match="prefix"):
        EvalBatchPlan(np.zeros((1, 4), dtype=np.int64), np.array([0]), np.array([0]))


def test_float64_model_scores_in_float64_to_the_reference() -> None:
    model = _models()["llama"].eval().double()
    ids = np.random.default_rng(4).integers(0, VOCAB, size=(3, 9))
    seq_ids, positions = np.repeat(np.arange(3), 8), np.tile(np.arange(1, 9), 3)
    got = score_surprisal(model, EvalBatchPlan(ids, seq_ids, positions), batch_size=2)
    assert got.dtype == np.float64
    assert np.max(np.abs(got - _reference(model, ids, seq_ids, positions, None))) < 1e-10


def test_out_of_memory_halves_the_batch_until_it_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _models()["gpt_neox"].eval()
    ids = np.random.default_rng(5).integers(0, VOCAB, size=(11, 8))
    plan = EvalBatchPlan(ids, np.repeat(np.arange(11), 7), np.tile(np.arange(1, 8), 11))
    whole = score_plan(model, plan, ScoreOptions(batch_size=11))
    monkeypatch.setenv(INJECT_OOM_ENV, "3")
    halved = score_plan(model, plan, ScoreOptions(batch_size=11))
    assert (whole.batch_size, halved.batch_size) == (11, 2)  # 11 -> 5 -> 2
    np.testing.assert_allclose(halved.values, whole.values, atol=1e-5)
    assert np.all(np.isfinite(halved.values))
    monkeypatch.setenv(INJECT_OOM_ENV, "0")
    with pytest.raises(ProbeError, match="out of memory scoring one sequence of 8 tokens on cpu"):
        score_plan(model, plan, ScoreOptions(batch_size=4))


def test_batch_size_is_chosen_for_the_device_and_fused_heads_need_cuda() -> None:
    model = _models()["gpt_neox"].eval()
    ids = np.random.default_rng(6).integers(0, VOCAB, size=(2, 6))
    plan = EvalBatchPlan(ids, np.repeat(np.arange(2), 5), np.tile(np.arange(1, 6), 2))
    assert auto_batch(model, 6, torch.device("cpu")) == CPU_BATCH
    for name in ("liger", "cce"):
        result = score_plan(model, plan, ScoreOptions(fused_head=name))
        assert result.head == f"chunked ({name} needs CUDA)" and result.batch_size == CPU_BATCH
        np.testing.assert_array_equal(result.values, score_surprisal(model, plan))


def test_precision_sample_takes_whole_sequences_spread_over_the_set() -> None:
    ids = np.random.default_rng(7).integers(0, VOCAB, size=(100, 33))
    plan = EvalBatchPlan(ids, np.repeat(np.arange(100), 32), np.tile(np.arange(1, 33), 100))
    sub, index = sample_plan(plan, tokens=200)
    rows = np.unique(plan.seq_ids[index])
    assert len(rows) == 7 and rows[0] == 0 and rows[-1] == 99  # ceil(200 / 32) sequences, first to last
    assert len(index) == 7 * 32
    np.testing.assert_array_equal(
        sub.input_ids[sub.seq_ids, sub.positions], ids[plan.seq_ids[index], plan.positions[index]]
    )
    whole, everything = sample_plan(plan, tokens=10**6)
    assert len(everything) == len(plan.seq_ids) and whole.input_ids.shape == ids.shape


def test_matmul_precision_turns_tf32_off_and_restores_the_setting() -> None:
    before = torch.backends.cuda.matmul.fp32_precision
    with matmul_precision(False):
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    with matmul_precision(True):
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert torch.backends.cuda.matmul.fp32_precision == before
