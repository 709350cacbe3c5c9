"""Tests for evolving subnetwork training (EST): stage plan, FLOPs accounting, sampled masks."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from ldw.train.config import TrainConfig, TrainConfigError, build_model_config, parse_est_stages
from ldw.train.subnetwork import (
    SubnetworkSampler,
    flops_summary,
    full_shape,
    stage_index,
    stage_shape,
    step_flops,
)
from ldw.train.trainer import train_run

TINY_NEOX = build_model_config(
    TrainConfig(seq_len=32), vocab_size=320, eos_token_id=0
)  # d 64, 2 layers, 4 heads, F 256


def _model(arch: str):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(build_model_config(TrainConfig(arch=arch, seq_len=32), 320, 0))


def test_stage_plan_boundaries_and_shapes():
    stages = ((0.3, 0.5, 0.25, 0.5), (0.2, 0.75, 1.0, 1.0))
    assert [stage_index(s, stages, 10) for s in range(1, 11)] == [0, 0, 0, 1, 1, -1, -1, -1, -1, -1]
    shape = stage_shape(TINY_NEOX, stages[0])
    assert (shape.heads, shape.mlp_units, shape.layers) == (2, 64, 1)
    tiny = stage_shape(TINY_NEOX, (1.0, 0.01, 0.001, 0.01))
    assert (tiny.heads, tiny.mlp_units, tiny.layers) == (1, 1, 1)  # never below one unit


def test_parse_est_stages():
    assert parse_est_stages("0.3:0.5:0.5:0.5, 0.3:0.75:0.75:1") == ((0.3, 0.5, 0.5, 0.5), (0.3, 0.75, 0.75, 1.0))
    assert parse_est_stages("") == ()
    with pytest.raises(TrainConfigError, match="STEPS:HEADS:MLP:LAYERS"):
        parse_est_stages("0.5:0.5:0.5")
    with pytest.raises(TrainConfigError, match="not a number"):
        parse_est_stages("0.5:half:0.5:0.5")


def test_flops_saved_equals_a_hand_computation():
    # per token forward, full model (d=64, T=32, H*hd=64, F=256, V=320, 2 layers):
    #   per layer: qkv 2*64*192 = 24576, scores+values 2*2*32*64 = 8192, out 2*64*64 = 8192,
    #              MLP 2*2*64*256 = 65536  -> 106496; 2 layers = 212992; unembedding 2*64*320 = 40960
    #   -> 253952; a step of 4 x 32 tokens, forward + backward: 3 * 253952 * 128 = 97517568
    # half heads (width 32), half MLP (128 units), 1 layer:
    #   12288 + 4096 + 4096 + 32768 = 53248; + 40960 = 94208 -> 3 * 94208 * 128 = 36175872
    assert step_flops(TINY_NEOX, full_shape(TINY_NEOX), 32, 128) == 97_517_568
    assert step_flops(TINY_NEOX, stage_shape(TINY_NEOX, (0.5, 0.5, 0.5, 0.5)), 32, 128) == 36_175_872
    summary = flops_summary(TINY_NEOX, ((0.5, 0.5, 0.5, 0.5),), steps=10, seq_len=32, tokens=128)
    assert summary["flops_full"] == 975_175_680
    assert summary["flops_trained"] == 5 * 36_175_872 + 5 * 97_517_568 == 668_467_200
    assert summary["flops_saved"] == 306_708_480
    assert summary["flops_saved_fraction"] == pytest.approx(306_708_480 / 975_175_680)


def test_training_run_reports_the_flops_in_log_and_run_file(tiny_runs, tmp_path):
    config = TrainConfig(
        steps=10,
        save_every=10,
        batch_size=4,
        seq_len=32,
        vocab_size=320,
        device="cpu",
        est_stages=((0.5, 0.5, 0.5, 0.5),),
        tokenizer=str(tiny_runs[0] / "tokenizer"),
    )
    out = train_run(config, tmp_path / "est", progress=False)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [row["est_stage"] for row in log] == [0] * 5 + [-1] * 5
    assert [row["est_flops"] for row in log] == [36_175_872] * 5 + [97_517_568] * 5
    est = json.loads((out / "run.json").read_text())["stability"]["est"]
    assert (est["flops_saved"], est["stages"], est["stage_last_steps"]) == (306_708_480, [[0.5, 0.5, 0.5, 0.5]], [5])


def _heads_of(mask_rows: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Per head: whether any gradient reached it (rows grouped per head)."""
    return mask_rows.reshape(n_heads, -1).abs().sum(1) > 0


@pytest.mark.parametrize("arch", ["gpt_neox", "llama"])
def test_masked_units_get_no_gradient(arch):
    model = _model(arch)
    sampler = SubnetworkSampler(model, ((1.0, 0.5, 0.25, 0.5),), steps=4, seed=0)
    index, shape = sampler.begin_step(1)
    assert (index, shape.heads, shape.mlp_units, shape.layers) == (0, 2, 64, 1)
    kept_layer = sampler.kept_layers[0]
    ids = torch.randint(0, 320, (2, 16), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    sampler.end_step()
    layers = model.base_model.layers
    dropped = layers[1 - kept_layer]
    assert all(p.grad is None for p in dropped.parameters())  # skipped layer: no gradient at all
    layer = layers[kept_layer]
    if arch == "gpt_neox":
        heads_in = _heads_of(layer.attention.query_key_value.weight.grad, 4)  # rows: per head [q k v]
        heads_out = _heads_of(layer.attention.dense.weight.grad.T, 4)  # columns: per head
        units_in = layer.mlp.dense_h_to_4h.weight.grad.abs().sum(1) > 0
        units_out = layer.mlp.dense_4h_to_h.weight.grad.abs().sum(0) > 0
    else:
        attn = layer.self_attn
        heads_in = _heads_of(attn.q_proj.weight.grad, 4) & _heads_of(attn.k_proj.weight.grad, 4)
        assert torch.equal(heads_in, _heads_of(attn.v_proj.weight.grad, 4))
        heads_out = _heads_of(attn.o_proj.weight.grad.T, 4)
        units_in = (layer.mlp.gate_proj.weight.grad.abs().sum(1) > 0) & (layer.mlp.up_proj.weight.grad.abs().sum(1) > 0)
        units_out = layer.mlp.down_proj.weight.grad.abs().sum(0) > 0
    assert int(heads_in.sum()) == 2 and torch.equal(heads_in, heads_out)
    assert int(units_in.sum()) == 64 and torch.equal(units_in, units_out)


def test_sampled_network_is_rescaled_and_the_full_model_is_untouched():
    model = _model("gpt_neox").eval()
    ids = torch.randint(0, 320, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        sampler = SubnetworkSampler(model, ((0.5, 0.5, 1.0, 1.0),), steps=2, seed=0)
        dense = model.base_model.layers[0].attention.dense
        seen, captured = [], []
        before = dense.register_forward_pre_hook(lambda m, a: seen.append(a[0]), prepend=True)  # before the mask
        after = dense.register_forward_hook(lambda m, a, o: captured.append(a[0]))  # what dense received
        sampler.begin_step(1)
        sub = model(input_ids=ids).logits
        sampler.end_step()
        before.remove()
        after.remove()
        masked = captured[0].reshape(2, 16, 4, 16)
        kept = masked.abs().sum((0, 1, 3)) > 0
        assert int(kept.sum()) == 2
        unmasked = seen[0].reshape(2, 16, 4, 16)
        assert torch.allclose(masked[:, :, kept], 2.0 * unmasked[:, :, kept])  # EST's 1/p_H scaling
        assert not torch.allclose(sub, plain)
        assert torch.equal(model(input_ids=ids).logits, plain)  # between steps: the full model
        assert sampler.begin_step(2)[0] == -1 and torch.equal(model(input_ids=ids).logits, plain)
        sampler.remove()
        assert torch.equal(model(input_ids=ids).logits, plain)
