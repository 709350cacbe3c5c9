"""Attention entropy and maximum attention logit per layer and head, on real inputs.

The statistics are taken inside the model's own attention call: an attention
function registered with transformers' ``AttentionInterface`` receives the
query and key states after the model's projections and rotary embeddings and
computes eager attention (``softmax(q k^T * scaling + mask) v``, the same
arithmetic as transformers' eager path, in float32), recording on the way:

- ``attn_max_logit``: the largest pre-softmax logit ``q.k * scaling`` over
  unmasked (query, key) pairs, per head (``scaling`` is the model's, normally
  ``1/sqrt(head_dim)``);
- ``attn_entropy_bits``: the entropy ``-sum_k p log2 p`` of each query's
  attention distribution, averaged per head over all queries at positions
  >= 1 (position 0 can attend only to itself, entropy 0).

Works for every model whose attention dispatches through
``ALL_ATTENTION_FUNCTIONS`` (GPT-NeoX, Llama and its relatives, GPT-2 in
transformers >= 4.48).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

from ldw.probe.errors import ProbeError

ATTENTION_NAME = "ldw_attention_stats"
LN2 = math.log(2.0)


@dataclass
class AttentionTotals:
    """Running per-layer sums: entropy (bits) summed over queries, query count, max logit per head."""

    entropy_sum: dict[int, torch.Tensor] = field(default_factory=dict)
    queries: dict[int, int] = field(default_factory=dict)
    max_logit: dict[int, torch.Tensor] = field(default_factory=dict)

    def add(self, layer: int, entropy_sum: torch.Tensor, queries: int, max_logit: torch.Tensor) -> None:
        """Fold one batch's statistics of one layer into the totals."""
        if layer in self.entropy_sum:
            self.entropy_sum[layer] += entropy_sum
            self.queries[layer] += queries
            self.max_logit[layer] = torch.maximum(self.max_logit[layer], max_logit)
        else:
            self.entropy_sum[layer], self.queries[layer], self.max_logit[layer] = entropy_sum, queries, max_logit


_ACTIVE: ContextVar[AttentionTotals | None] = ContextVar("ldw_attention_totals", default=None)


def _allowed(attention_mask: torch.Tensor | None, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Boolean [B or 1, 1, Q, K] of the (query, key) pairs that take part."""
    if attention_mask is None:
        q, k = shape[-2], shape[-1]
        return torch.ones(q, k, dtype=torch.bool, device=device).tril(k - q)[None, None]
    if attention_mask.dtype == torch.bool:
        return attention_mask
    return attention_mask > torch.finfo(attention_mask.dtype).min / 2


def _stats_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention in float32 that records entropy and max logit into the active totals."""
    heads = query.shape[1]
    if key.shape[1] != heads:
        key = key.repeat_interleave(heads // key.shape[1], dim=1)
        value = value.repeat_interleave(heads // value.shape[1], dim=1)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    logits = torch.matmul(query.float(), key.float().transpose(2, 3)) * scaling
    allowed = _allowed(attention_mask, logits.shape, logits.device).expand_as(logits)
    probs = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
    totals = _ACTIVE.get()
    if totals is not None:
        layer = getattr(module, "layer_idx", None)
        if layer is None:
            raise ProbeError(f"{type(module).__name__} has no layer_idx; cannot attribute attention statistics")
        entropy = torch.special.entr(probs).sum(-1) / LN2  # [B, H, Q]
        start = 1 if entropy.shape[-1] > 1 else 0
        max_logit = logits.masked_fill(~allowed, float("-inf")).amax(dim=(0, 2, 3))
        totals.add(
            int(layer),
            entropy[..., start:].sum(dim=(0, 2)).double().cpu(),
            entropy.shape[0] * (entropy.shape[-1] - start),
            max_logit.double().cpu(),
        )
    output = torch.matmul(probs.to(value.dtype), value).transpose(1, 2).contiguous()
    return output, probs.to(query.dtype)


AttentionInterface.register(ATTENTION_NAME, _stats_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, eager_mask)


@contextmanager
def recording(model: PreTrainedModel) -> Iterator[AttentionTotals]:
    """Within the block, the model's forward passes record attention statistics into the yielded totals."""
    previous = model.config._attn_implementation
    try:
        model.set_attn_implementation(ATTENTION_NAME)
    except (ValueError, KeyError) as exc:
        raise ProbeError(f"{type(model).__name__}: cannot switch attention implementation ({exc})") from exc
    totals = AttentionTotals()
    token = _ACTIVE.set(totals)
    try:
        yield totals
    finally:
        _ACTIVE.reset(token)
        model.set_attn_implementation(previous)


def attention_batch_size(model: PreTrainedModel, seq_len: int, budget_bytes: int = 1 << 30) -> int:
    """Sequences per forward so that one layer's float32 logits, probabilities and entropy fit ``budget_bytes``."""
    heads = model.config.num_attention_heads
    per_sequence = 3 * 4 * heads * seq_len * seq_len
    return max(1, budget_bytes // per_sequence)


@torch.no_grad()
def attention_stats(
    model: PreTrainedModel, input_ids: torch.Tensor, batch_size: int | None = None
) -> list[tuple[int, int, str, float]]:
    """Rows ``(layer, head, name, value)`` of ``attn_entropy_bits`` and ``attn_max_logit`` on ``input_ids`` [S, L]."""
    if input_ids.ndim != 2 or input_ids.shape[1] < 2:
        raise ProbeError("attention statistics need input_ids of shape [sequences, length >= 2]")
    device = next(model.parameters()).device
    batch_size = batch_size or attention_batch_size(model, input_ids.shape[1])
    with recording(model) as totals:
        for lo in range(0, len(input_ids), batch_size):
            model(input_ids=input_ids[lo : lo + batch_size].to(device), use_cache=False)
    rows = []
    for layer in sorted(totals.entropy_sum):
        entropy = totals.entropy_sum[layer] / totals.queries[layer]
        for head, (h, m) in enumerate(zip(entropy.tolist(), totals.max_logit[layer].tolist(), strict=True)):
            rows.append((layer, head, "attn_entropy_bits", h))
            rows.append((layer, head, "attn_max_logit", m))
    return rows
