"""Stability knobs of the reference trainer that act on the model and the loss.

- Takase et al. 2023 ("Spike No More"): ``small_init`` (every weight matrix drawn from
  N(0, sqrt(2/(5d))), the attention and MLP output projections further scaled by
  1/sqrt(2N) for N layers) and the embedding remedies ``scaled_embed`` (emb * sqrt(d))
  and ``embed_layernorm`` (LayerNorm after the embedding).
- Wortsman et al. 2023: ``z_loss`` (coefficient * mean(logsumexp(logits)^2)) and the
  early-warning signals: the largest pre-softmax attention logit of the step and the
  mean output log-partition ``logsumexp(logits)`` (its drift is the output-logit
  divergence).

Checkpoints stay plain transformers models. The embedding knobs train through
``StableEmbedding`` (the original ``nn.Embedding`` plus a scale and an optional
LayerNorm); because that is a function of the token id alone (GPT-NeoX and Llama add
no position embedding at the input), it is folded exactly into the saved embedding
matrix: the checkpoint's row v is ``LayerNorm(sqrt(d) * E[v])``, so
``AutoModelForCausalLM.from_pretrained`` called with ``input_ids`` (as the sweep does)
computes what the training forward computed. Training cannot resume from a folded
checkpoint with the knob on (the raw matrix is not saved); the trainer never resumes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward

OUTPUT_PROJECTIONS = ("attention.dense", "mlp.dense_4h_to_h", "self_attn.o_proj", "mlp.down_proj")
SIGNAL_ATTENTION = "ldw_logit_monitor"
MONITOR_ATTRIBUTE = "_ldw_logit_monitor"


def small_init_std(hidden_size: int) -> float:
    """Takase et al.'s small init standard deviation ``sqrt(2 / (5 d))``."""
    return math.sqrt(2.0 / (5.0 * hidden_size))


def is_output_projection(name: str) -> bool:
    """Whether parameter/module ``name`` is an attention or MLP output projection (GPT-NeoX or Llama names)."""
    return any(name.endswith(suffix) or f".{suffix}." in f".{name}." for suffix in OUTPUT_PROJECTIONS)


@torch.no_grad()
def apply_small_init(model: PreTrainedModel) -> dict[str, float]:
    """Re-draw every Linear and Embedding weight of ``model`` from N(0, sqrt(2/(5d))), output projections
    from N(0, sqrt(2/(5d)) / sqrt(2N)); zero the Linear biases. Norm gains stay 1. Returns the two stds."""
    d, layers = model.config.hidden_size, model.config.num_hidden_layers
    std = small_init_std(d)
    out_std = std / math.sqrt(2.0 * layers)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.normal_(0.0, out_std if is_output_projection(name) else std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.zero_()
    return {"std": std, "output_projection_std": out_std}


class StableEmbedding(nn.Module):
    """An input embedding followed by an optional scale and an optional LayerNorm (Takase et al.)."""

    def __init__(self, embedding: nn.Embedding, scale: float, layernorm: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.embedding = embedding
        self.scale = scale
        dim = embedding.embedding_dim
        self.norm = nn.LayerNorm(dim, eps=eps, device=embedding.weight.device) if layernorm else None

    @property
    def weight(self) -> torch.Tensor:
        """The raw (unscaled, unnormalized) embedding matrix being trained."""
        return self.embedding.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Embed ``input_ids``, multiply by ``scale``, apply the LayerNorm when there is one."""
        hidden = self.embedding(input_ids)
        if self.scale != 1.0:
            hidden = hidden * self.scale
        return self.norm(hidden) if self.norm is not None else hidden

    @torch.no_grad()
    def folded(self) -> nn.Embedding:
        """A plain ``nn.Embedding`` whose row v is this module's output for token v."""
        vocab = torch.arange(self.embedding.num_embeddings, device=self.embedding.weight.device)
        plain = nn.Embedding(
            self.embedding.num_embeddings,
            self.embedding.embedding_dim,
            padding_idx=self.embedding.padding_idx,
            device=self.embedding.weight.device,
            dtype=self.embedding.weight.dtype,
        )
        plain.weight.copy_(self.forward(vocab))
        return plain


def install_stable_embedding(model: PreTrainedModel, scaled: bool, layernorm: bool) -> StableEmbedding:
    """Wrap ``model``'s input embedding in a StableEmbedding (scale sqrt(d) when ``scaled``); return it."""
    if model.config.tie_word_embeddings:
        raise ValueError("embedding knobs need untied input/output embeddings (folding would change the output head)")
    eps = getattr(model.config, "layer_norm_eps", None) or 1e-5
    scale = math.sqrt(model.config.hidden_size) if scaled else 1.0
    wrapper = StableEmbedding(model.get_input_embeddings(), scale, layernorm, eps)
    model.set_input_embeddings(wrapper)
    return wrapper


@contextmanager
def plain_embeddings(model: PreTrainedModel) -> Iterator[PreTrainedModel]:
    """While inside, ``model``'s StableEmbedding (if any) is replaced by its folded plain embedding,
    so ``save_pretrained`` writes a checkpoint any transformers loader reads; restored on exit."""
    wrapper = model.get_input_embeddings()
    if not isinstance(wrapper, StableEmbedding):
        yield model
        return
    model.set_input_embeddings(wrapper.folded())
    try:
        yield model
    finally:
        model.set_input_embeddings(wrapper)


def log_partition(logits: torch.Tensor) -> torch.Tensor:
    """``logsumexp`` over the vocabulary (float32) at every position that predicts a next token."""
    return torch.logsumexp(logits[:, :-1].float(), dim=-1)


def _monitored_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs,
):
    """SDPA attention that first reports its largest causal logit to the module's monitor (if any)."""
    monitor = getattr(module, MONITOR_ATTRIBUTE, None)
    if monitor is not None:
        monitor.observe(query, key, kwargs.get("scaling", query.shape[-1] ** -0.5))
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


class AttentionLogitMonitor:
    """Records the largest pre-softmax attention logit ``max q.k * scaling`` (causal entries) of each forward.

    Installed as a transformers attention implementation that wraps SDPA, so every
    attention layer of the model reports (to this monitor: each attention module is
    tagged with it); the extra q @ k^T is computed without gradient.
    """

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.previous = model.config._attn_implementation
        self.max_logit: torch.Tensor | None = None
        AttentionInterface.register(SIGNAL_ATTENTION, _monitored_attention)
        for module in model.modules():
            setattr(module, MONITOR_ATTRIBUTE, self)
        model.set_attn_implementation(SIGNAL_ATTENTION)

    @torch.no_grad()
    def observe(self, query: torch.Tensor, key: torch.Tensor, scaling: float) -> None:
        """Fold one attention call's largest causal logit into the running maximum."""
        keys = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
        scores = torch.matmul(query.float(), keys.float().transpose(2, 3)) * scaling
        q_len, k_len = scores.shape[-2:]
        future = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).triu(k_len - q_len + 1)
        largest = scores.masked_fill(future, -math.inf).max()
        self.max_logit = largest if self.max_logit is None else torch.maximum(self.max_logit, largest)

    def pop(self) -> float:
        """The largest attention logit since the last call (then reset); -inf when attention did not run."""
        value = -math.inf if self.max_logit is None else float(self.max_logit)
        self.max_logit = None
        return value

    def remove(self) -> None:
        """Untag the modules and give the model its previous attention implementation back."""
        for module in self.model.modules():
            if getattr(module, MONITOR_ATTRIBUTE, None) is self:
                delattr(module, MONITOR_ATTRIBUTE)
        self.model.set_attn_implementation(self.previous)
