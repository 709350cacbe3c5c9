"""Sweep scoring equals an independent float64 computation from plain model(...).logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

from ldw.probe.errors import ProbeError
from ldw.probe.scoring import EvalBatchPlan, score_surprisal

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
