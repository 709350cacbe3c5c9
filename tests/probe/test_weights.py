"""Weight probes checked against independent computations: numpy SVD of hand-sliced heads,
transformers' eager attention weights, a hand-written attention logit and a manual backward."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
)

from ldw.probe.attention_stats import attention_stats, recording
from ldw.probe.weights import (
    grad_norm_rows,
    norm_rows,
    probe_checkpoint,
    qk_singular_values,
    qk_spectra_rows,
    spectral_energy_concentration,
)

V, D, HEADS, LAYERS, SEQ = 61, 32, 4, 2, 12
HD = D // HEADS


def _model(arch: str, attn: str = "sdpa") -> PreTrainedModel:
    torch.manual_seed({"gpt_neox": 0, "llama": 1, "gpt2": 2}[arch])
    if arch == "gpt_neox":
        config = GPTNeoXConfig(
            vocab_size=V,
            hidden_size=D,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            intermediate_size=64,
            max_position_embeddings=SEQ,
            attn_implementation=attn,
        )
        model = GPTNeoXForCausalLM(config)
    elif arch == "llama":
        config = LlamaConfig(
            vocab_size=V,
            hidden_size=D,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            num_key_value_heads=2,
            intermediate_size=64,
            max_position_embeddings=SEQ,
            attn_implementation=attn,
        )
        model = LlamaForCausalLM(config)
    else:
        config = GPT2Config(
            vocab_size=V,
            n_embd=D,
            n_layer=LAYERS,
            n_head=HEADS,
            n_positions=SEQ,
            bos_token_id=0,
            eos_token_id=0,
            attn_implementation=attn,
        )
        model = GPT2LMHeadModel(config)
    with torch.no_grad():  # larger weights than the init, so attention is far from uniform
        for p in model.parameters():
            if p.ndim == 2:
                p.mul_(8.0)
    return model.eval()


def _hand_sliced(model: PreTrainedModel, arch: str, layer: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per head (Wq_h, Wk_h) as [head_dim, d_model] numpy arrays, sliced by hand from the documented layouts."""
    heads = []
    if arch == "gpt_neox":
        w = model.gpt_neox.layers[layer].attention.query_key_value.weight.detach().numpy()
        for h in range(HEADS):
            base = h * 3 * HD
            heads.append((w[base : base + HD], w[base + HD : base + 2 * HD]))
    elif arch == "gpt2":
        w = model.transformer.h[layer].attn.c_attn.weight.detach().numpy()  # [d_in, 3 d]
        for h in range(HEADS):
            heads.append((w[:, h * HD : (h + 1) * HD].T, w[:, D + h * HD : D + (h + 1) * HD].T))
    else:
        attn = model.model.layers[layer].self_attn
        wq, wk = attn.q_proj.weight.detach().numpy(), attn.k_proj.weight.detach().numpy()
        group = HEADS // 2
        for h in range(HEADS):
            kv = h // group
            heads.append((wq[h * HD : (h + 1) * HD], wk[kv * HD : (kv + 1) * HD]))
    return heads


def _projected_heads(
    model: PreTrainedModel, arch: str, layer: int, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head query and key of input rows ``x`` [n, d] through the module's own projections (bias removed)."""
    with torch.no_grad():
        zero = torch.zeros(1, D)
        if arch == "gpt_neox":
            proj = model.gpt_neox.layers[layer].attention.query_key_value
            qkv = (proj(x) - proj(zero)).view(len(x), HEADS, 3 * HD)
            q, k, _ = qkv.chunk(3, dim=-1)
        elif arch == "gpt2":
            proj = model.transformer.h[layer].attn.c_attn
            q, k, _ = (proj(x) - proj(zero)).split(D, dim=-1)
            q, k = q.view(len(x), HEADS, HD), k.view(len(x), HEADS, HD)
        else:
            attn = model.model.layers[layer].self_attn
            q = attn.q_proj(x).view(len(x), HEADS, HD)
            k = attn.k_proj(x).view(len(x), 2, HD).repeat_interleave(HEADS // 2, dim=1)
    return q, k


@pytest.mark.parametrize("arch", ["gpt_neox", "llama", "gpt2"])
def test_sigma1_matches_numpy_svd_of_hand_sliced_heads(arch: str) -> None:
    model = _model(arch)
    rows = {(layer, head, name): value for layer, head, name, value in qk_spectra_rows(model)}
    x = torch.randn(5, D)
    for layer in range(LAYERS):
        q, k = _projected_heads(model, arch, layer, x)
        for head, (wq, wk) in enumerate(_hand_sliced(model, arch, layer)):
            # the hand slices are the module's own per-head projections
            np.testing.assert_allclose(x.numpy() @ wq.T, q[:, head].numpy(), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(x.numpy() @ wk.T, k[:, head].numpy(), rtol=1e-4, atol=1e-5)
            sv = np.linalg.svd(wq.astype(np.float64).T @ wk.astype(np.float64), compute_uv=False)
            assert rows[(layer, head, "qk_sigma1")] == pytest.approx(sv[0], rel=1e-9)
            energy = sv**2
            assert rows[(layer, head, "qk_sec1")] == pytest.approx(energy[0] / energy.sum(), rel=1e-9)
            assert rows[(layer, head, "qk_sec4")] == pytest.approx(energy[:4].sum() / energy.sum(), rel=1e-9)
            assert 0.0 <= rows[(layer, head, "qk_sec1")] <= rows[(layer, head, "qk_sec4")] <= 1.0


def test_sec_is_one_for_a_rank_one_head() -> None:
    model = _model("gpt2")
    w = model.transformer.h[1].attn.c_attn.weight
    with torch.no_grad():
        w[:, 2 * HD : 3 * HD] = torch.outer(torch.randn(D), torch.randn(HD))  # Wq of head 2 has rank 1
    rows = {(layer, head, name): value for layer, head, name, value in qk_spectra_rows(model)}
    assert rows[(1, 2, "qk_sec1")] == pytest.approx(1.0, abs=1e-12)
    assert rows[(1, 1, "qk_sec1")] < 0.99
    sv = qk_singular_values(torch.zeros(1, HD, D), torch.zeros(1, HD, D))
    assert spectral_energy_concentration(sv, 1).tolist() == [0.0]


@pytest.mark.parametrize("arch", ["gpt_neox", "llama", "gpt2"])
def test_attention_entropy_matches_eager_attention_weights(arch: str) -> None:
    model = _model(arch)
    eager = _model(arch, attn="eager")
    ids = torch.randint(0, V, (3, SEQ), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        reference = eager(input_ids=ids, output_attentions=True)
        with recording(model):
            recorded_logits = model(input_ids=ids).logits
    # the recording attention computes the same forward pass
    torch.testing.assert_close(recorded_logits, reference.logits, rtol=1e-4, atol=1e-4)
    rows = {(layer, head, name): value for layer, head, name, value in attention_stats(model, ids, batch_size=2)}
    for layer, probs in enumerate(reference.attentions):
        p = probs.double().numpy()[:, :, 1:, :]  # queries at positions >= 1
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.where(p > 0, p * np.log2(p), 0.0).sum(-1)
        for head in range(HEADS):
            assert rows[(layer, head, "attn_entropy_bits")] == pytest.approx(entropy[:, head].mean(), rel=1e-5)
    assert model.config._attn_implementation == "sdpa"  # restored after recording


def test_max_logit_matches_a_hand_written_gpt2_attention() -> None:
    model = _model("gpt2")
    ids = torch.randint(0, V, (2, SEQ), generator=torch.Generator().manual_seed(6))
    rows = {(layer, head, name): value for layer, head, name, value in attention_stats(model, ids)}
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
        for layer, block in enumerate(model.transformer.h):
            q, k, _ = block.attn.c_attn(block.ln_1(hidden[layer])).split(D, dim=-1)
            q = q.view(2, SEQ, HEADS, HD).transpose(1, 2).double()
            k = k.view(2, SEQ, HEADS, HD).transpose(1, 2).double()
            logits = q @ k.transpose(-1, -2) / math.sqrt(HD)
            causal = torch.ones(SEQ, SEQ, dtype=torch.bool).tril()
            expected = logits.masked_fill(~causal, float("-inf")).amax(dim=(0, 2, 3))
            for head in range(HEADS):
                assert rows[(layer, head, "attn_max_logit")] == pytest.approx(float(expected[head]), rel=1e-4)


@pytest.mark.parametrize("arch", ["gpt_neox", "llama", "gpt2"])
def test_grad_norms_match_a_manual_backward(arch: str) -> None:
    model = _model(arch)
    ids = torch.randint(0, V, (3, SEQ), generator=torch.Generator().manual_seed(7))
    rows = {(layer, name): value for layer, _, name, value in grad_norm_rows(model, ids, batch_size=2)}
    assert all(p.grad is None for p in model.parameters())
    logits = model(input_ids=ids).logits
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    loss.backward()
    prefix = {"gpt_neox": "gpt_neox.layers.", "llama": "model.layers.", "gpt2": "transformer.h."}[arch]
    for layer in range(LAYERS):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(f"{prefix}{layer}.")]
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
        assert rows[(layer, "grad_norm")] == pytest.approx(norm, rel=1e-4)
    total = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters())).item()
    assert rows[(-1, "grad_norm_total")] == pytest.approx(total, rel=1e-4)
    assert rows[(-1, "probe_loss")] == pytest.approx(loss.item(), rel=1e-5)


def test_norms_and_full_probe() -> None:
    model = _model("gpt_neox")
    rows = {(layer, head, name): value for layer, head, name, value in norm_rows(model)}
    emb = model.gpt_neox.embed_in.weight.detach().double()
    assert rows[(-1, -1, "embedding_std")] == pytest.approx(emb.std().item())
    block = torch.sqrt(sum((p.detach().double() ** 2).sum() for p in model.gpt_neox.layers[1].parameters())).item()
    assert rows[(1, -1, "param_norm")] == pytest.approx(block)
    everything = torch.sqrt(sum((p.detach().double() ** 2).sum() for p in model.parameters())).item()
    assert rows[(-1, -1, "param_norm_total")] == pytest.approx(everything)
    ids = torch.randint(0, V, (2, SEQ))
    probed = probe_checkpoint(model, ids)
    names = {name for _, _, name, _ in probed}
    assert names == {
        "qk_sigma1",
        "qk_sec1",
        "qk_sec4",
        "attn_entropy_bits",
        "attn_max_logit",
        "param_norm",
        "grad_norm",
        "embedding_std",
        "embedding_norm",
        "param_norm_total",
        "grad_norm_total",
        "probe_loss",
    }
    assert all(math.isfinite(value) for *_, value in probed)
