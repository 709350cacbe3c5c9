"""Weight probes of one checkpoint: attention spectra, norms and probe-batch gradient norms.

Rows are ``(layer, head, name, value)``; ``head = -1`` for layer-level and
``layer = -1`` for model-level quantities.

Per layer and head (Qi et al. 2025): the singular values of the bilinear map
``Wq_h^T Wk_h`` (``d_model x d_model``; ``Wq_h``, ``Wk_h`` are the head's
``[head_dim, d_model]`` rows of the query/key projections, so the pre-softmax
logit is ``x_i^T Wq_h^T Wk_h x_j`` before rotary embeddings, biases and
scaling): ``qk_sigma1`` (largest), ``qk_sec1`` and ``qk_sec4`` (spectral
energy concentration ``SEC(s) = sum_{i<=s} sigma_i^2 / sum_i sigma_i^2``).
Per-head slices: GPT-NeoX's fused ``query_key_value`` rows are laid out
``[heads, 3, head_dim]``; GPT-2's ``c_attn`` is a Conv1D (``x @ W``) whose
columns are ``[q | k | v]`` each ``[heads, head_dim]``; Llama-style models
have separate ``q_proj``/``k_proj``, with grouped-query attention mapping
query head ``h`` to key head ``h // (heads / kv_heads)``.

Also: ``attn_entropy_bits`` and ``attn_max_logit`` (see
``ldw.probe.attention_stats``); ``param_norm`` and ``grad_norm`` per layer
(Frobenius norm over all of the block's parameters; gradients of the mean LM
cross-entropy on the probe batch); model-level ``embedding_std``,
``embedding_norm``, ``param_norm_total``, ``grad_norm_total`` and
``probe_loss`` (nats per token).
"""

from __future__ import annotations

import re

import torch
from transformers import PreTrainedModel

from ldw.probe.attention_stats import attention_stats
from ldw.probe.errors import ProbeError

ProbeRow = tuple[int, int, str, float]
_LAYER_PARAM = re.compile(r"\.(?:layers|h)\.(\d+)\.")


def _blocks(model: PreTrainedModel) -> torch.nn.ModuleList:
    """The transformer blocks of a causal LM."""
    base = model.base_model
    for name in ("layers", "h"):
        blocks = getattr(base, name, None)
        if isinstance(blocks, torch.nn.ModuleList):
            return blocks
    raise ProbeError(f"{type(model).__name__}: cannot find the transformer blocks (no .layers or .h)")


def qk_head_weights(model: PreTrainedModel) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer: ``(Wq, Wk)`` each ``[heads, head_dim, d_model]`` (key heads repeated for GQA)."""
    config = model.config
    heads, d = config.num_attention_heads, config.hidden_size
    out = []
    for block in _blocks(model):
        if hasattr(block, "attention") and hasattr(block.attention, "query_key_value"):  # GPT-NeoX
            w = block.attention.query_key_value.weight.detach()
            w = w.view(heads, 3, -1, d)
            wq, wk = w[:, 0], w[:, 1]
        elif hasattr(block, "attn") and hasattr(block.attn, "c_attn"):  # GPT-2 Conv1D: y = x @ W
            w = block.attn.c_attn.weight.detach()
            wq = w[:, :d].T.reshape(heads, -1, d)
            wk = w[:, d : 2 * d].T.reshape(heads, -1, d)
        elif hasattr(block, "self_attn") and hasattr(block.self_attn, "q_proj"):  # Llama and relatives
            attn = block.self_attn
            wq = attn.q_proj.weight.detach().reshape(heads, -1, d)
            wk = attn.k_proj.weight.detach().reshape(-1, wq.shape[1], d)
            wk = wk.repeat_interleave(heads // wk.shape[0], dim=0)
        else:
            raise ProbeError(f"{type(model).__name__}: unsupported attention layout for Wq/Wk probes")
        out.append((wq, wk))
    return out


def qk_singular_values(wq: torch.Tensor, wk: torch.Tensor) -> torch.Tensor:
    """Singular values (descending) of ``Wq_h^T Wk_h`` for each head: ``[heads, head_dim]``, float64.

    With ``Wq_h^T = Q1 R1`` and ``Wk_h^T = Q2 R2`` (thin QR), ``Wq_h^T Wk_h =
    Q1 (R1 R2^T) Q2^T`` has the singular values of the small ``R1 R2^T``.
    """
    _, r1 = torch.linalg.qr(wq.double().transpose(1, 2))
    _, r2 = torch.linalg.qr(wk.double().transpose(1, 2))
    return torch.linalg.svdvals(r1 @ r2.transpose(1, 2))


def spectral_energy_concentration(singular_values: torch.Tensor, s: int) -> torch.Tensor:
    """``SEC(s) = sum_{i<=s} sigma_i^2 / sum_i sigma_i^2`` along the last axis (0 for an all-zero spectrum)."""
    energy = singular_values.double() ** 2
    total = energy.sum(-1)
    top = energy[..., :s].sum(-1)
    return torch.where(total > 0, top / total.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(total))


def qk_spectra_rows(model: PreTrainedModel) -> list[ProbeRow]:
    """``qk_sigma1``, ``qk_sec1`` and ``qk_sec4`` per layer and head."""
    rows = []
    for layer, (wq, wk) in enumerate(qk_head_weights(model)):
        sv = qk_singular_values(wq, wk)
        for name, values in (
            ("qk_sigma1", sv[:, 0]),
            ("qk_sec1", spectral_energy_concentration(sv, 1)),
            ("qk_sec4", spectral_energy_concentration(sv, 4)),
        ):
            rows.extend((layer, head, name, float(v)) for head, v in enumerate(values.tolist()))
    return rows


def _layer_of(name: str) -> int:
    """Block index of a parameter name, -1 outside the blocks."""
    match = _LAYER_PARAM.search("." + name)
    return int(match.group(1)) if match else -1


def _norms_by_layer(named: list[tuple[str, torch.Tensor]]) -> dict[int, float]:
    """Frobenius norm over the tensors of each layer (-1 = outside the blocks)."""
    squares: dict[int, float] = {}
    for name, tensor in named:
        layer = _layer_of(name)
        squares[layer] = squares.get(layer, 0.0) + float(tensor.detach().double().pow(2).sum())
    return {layer: sq**0.5 for layer, sq in squares.items()}


def norm_rows(model: PreTrainedModel) -> list[ProbeRow]:
    """``param_norm`` per layer; ``embedding_std``, ``embedding_norm`` and ``param_norm_total`` for the model."""
    named = list(model.named_parameters())
    norms = _norms_by_layer(named)
    embedding = model.get_input_embeddings().weight.detach().double()
    rows = [(layer, -1, "param_norm", value) for layer, value in sorted(norms.items()) if layer >= 0]
    rows.append((-1, -1, "embedding_std", float(embedding.std())))
    rows.append((-1, -1, "embedding_norm", float(embedding.norm())))
    rows.append((-1, -1, "param_norm_total", sum(v**2 for v in norms.values()) ** 0.5))
    return rows


def grad_norm_rows(model: PreTrainedModel, input_ids: torch.Tensor, batch_size: int) -> list[ProbeRow]:
    """``grad_norm`` per layer, ``grad_norm_total`` and ``probe_loss`` for the mean LM loss on ``input_ids``.

    Sequences are processed ``batch_size`` at a time; each chunk's mean loss
    is weighted by its share of the predicted tokens, so the gradients are
    those of the mean over the whole batch.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    total_tokens = input_ids.shape[0] * (input_ids.shape[1] - 1)
    loss_sum = 0.0
    try:
        with torch.enable_grad():
            for lo in range(0, len(input_ids), batch_size):
                chunk = input_ids[lo : lo + batch_size].to(device)
                share = chunk.shape[0] * (chunk.shape[1] - 1) / total_tokens
                loss = model(input_ids=chunk, labels=chunk, use_cache=False).loss.float() * share
                loss.backward()
                loss_sum += float(loss.detach())
        grads = [(name, p.grad) for name, p in model.named_parameters() if p.grad is not None]
        norms = _norms_by_layer(grads)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    rows = [(layer, -1, "grad_norm", value) for layer, value in sorted(norms.items()) if layer >= 0]
    rows.append((-1, -1, "grad_norm_total", sum(v**2 for v in norms.values()) ** 0.5))
    rows.append((-1, -1, "probe_loss", loss_sum))
    return rows


def probe_checkpoint(model: PreTrainedModel, input_ids: torch.Tensor, batch_size: int = 1) -> list[ProbeRow]:
    """All weight probes of one model on a probe batch ``input_ids`` [S, L] (see the module docstring)."""
    if input_ids.ndim != 2 or input_ids.shape[1] < 2 or input_ids.shape[0] < 1:
        raise ProbeError(f"probe batch must be [sequences >= 1, length >= 2], got {tuple(input_ids.shape)}")
    rows = qk_spectra_rows(model) + norm_rows(model)
    rows += attention_stats(model, input_ids, batch_size)
    rows += grad_norm_rows(model, input_ids, batch_size)
    return rows
