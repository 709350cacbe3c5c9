"""Evolving subnetwork training (Li et al. 2024, EST) for the reference trainer.

A stage plan is a list of ``(fraction_of_steps, head_fraction, mlp_fraction, layer_fraction)``;
stages run one after the other from step 1 and the steps they leave over train the full
model. During a stage every optimizer step samples a subnetwork afresh:

- layers: ``round(layer_fraction * N)`` layers (at least 1) are kept; the others are
  skipped for the step (the residual stream passes them unchanged) and get no gradient;
- heads: in every kept layer ``round(head_fraction * H)`` heads (at least 1) are kept;
  the attention output of the others is zeroed before the output projection and the
  kept heads are scaled by ``H / kept`` (EST's 1/p_H normalisation);
- MLP: ``round(mlp_fraction * F)`` hidden units (at least 1) are kept the same way,
  scaled by ``F / kept`` before the down projection.

Masked heads and units get exactly zero gradient in that step (AdamW still moves them
by its momentum and weight decay, as with dropout). Layers are really skipped, so their
compute is saved; heads and units are masked, not sliced, so the FLOPs saved that this
module reports are those of a sliced implementation (what EST reports), not the time
measured here. Works for GPT-NeoX and for Llama-family models (Llama, Qwen3).

FLOPs (matmuls only; forward per token, training = 3 x forward): per kept layer
``2*d*3*h*hd`` (q, k, v) ``+ 2*2*T*h*hd`` (scores and weighted values over ``T = seq_len``)
``+ 2*h*hd*d`` (output) ``+ 2*m*d*f`` (MLP, m = 2 for GPT-NeoX, 3 for gated Llama MLPs),
plus ``2*d*V`` for the unembedding; h, f are the kept heads and units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

Stage = tuple[float, float, float, float]


@dataclass(frozen=True)
class SubnetworkShape:
    """How much of the model one step trains: kept heads per layer, MLP units per layer, layers."""

    heads: int
    mlp_units: int
    layers: int


def full_shape(config: PretrainedConfig) -> SubnetworkShape:
    """The shape of the whole model."""
    return SubnetworkShape(config.num_attention_heads, config.intermediate_size, config.num_hidden_layers)


def stage_shape(config: PretrainedConfig, stage: Stage) -> SubnetworkShape:
    """The subnetwork shape of ``stage``: each fraction of the full count, rounded, at least 1."""
    full = full_shape(config)
    _, heads, mlp, layers = stage

    def kept(fraction: float, total: int) -> int:
        return min(total, max(1, round(fraction * total)))

    return SubnetworkShape(kept(heads, full.heads), kept(mlp, full.mlp_units), kept(layers, full.layers))


def stage_bounds(stages: tuple[Stage, ...], steps: int) -> list[int]:
    """Last step (1-based, inclusive) of every stage: ``round(cumulative fraction * steps)``."""
    bounds, total = [], 0.0
    for stage in stages:
        total += stage[0]
        bounds.append(round(total * steps))
    return bounds


def stage_index(step: int, stages: tuple[Stage, ...], steps: int) -> int:
    """Index of the stage optimizer step ``step`` belongs to, or -1 for the full model after the stages."""
    for index, bound in enumerate(stage_bounds(stages, steps)):
        if step <= bound:
            return index
    return -1


def forward_flops_per_token(config: PretrainedConfig, shape: SubnetworkShape, seq_len: int) -> int:
    """Matmul FLOPs of one token's forward pass through a model of ``shape`` (see the module docstring)."""
    d = config.hidden_size
    head_dim = d // config.num_attention_heads
    width = shape.heads * head_dim
    mlp_mats = 2 if config.model_type == "gpt_neox" else 3
    per_layer = 2 * d * 3 * width + 2 * 2 * seq_len * width + 2 * width * d + 2 * mlp_mats * d * shape.mlp_units
    return shape.layers * per_layer + 2 * d * config.vocab_size


def step_flops(config: PretrainedConfig, shape: SubnetworkShape, seq_len: int, tokens: int) -> int:
    """Training FLOPs of one optimizer step (forward + backward = 3 x forward) on ``tokens`` tokens."""
    return 3 * forward_flops_per_token(config, shape, seq_len) * tokens


def flops_summary(config: PretrainedConfig, stages: tuple[Stage, ...], steps: int, seq_len: int, tokens: int) -> dict:
    """FLOPs of the whole run with the stage plan against full-model training, for run.json."""
    full = step_flops(config, full_shape(config), seq_len, tokens)
    trained = 0
    for step in range(1, steps + 1):
        index = stage_index(step, stages, steps)
        shape = full_shape(config) if index < 0 else stage_shape(config, stages[index])
        trained += step_flops(config, shape, seq_len, tokens)
    return {
        "flops_full": full * steps,
        "flops_trained": trained,
        "flops_saved": full * steps - trained,
        "flops_saved_fraction": (full * steps - trained) / (full * steps),
        "stage_last_steps": stage_bounds(stages, steps),
    }


def _parts(model: PreTrainedModel) -> tuple[nn.Module, str, list[tuple[nn.Module, nn.Module]]]:
    """The module holding ``layers``, the attribute name, and each layer's (attention output, MLP down) projections."""
    base = model.base_model
    parts = []
    for layer in base.layers:
        if hasattr(layer, "attention") and hasattr(layer.attention, "dense"):  # GPT-NeoX
            parts.append((layer.attention.dense, layer.mlp.dense_4h_to_h))
        elif hasattr(layer, "self_attn") and hasattr(layer.self_attn, "o_proj"):  # Llama family
            parts.append((layer.self_attn.o_proj, layer.mlp.down_proj))
        else:
            raise ValueError(f"EST supports GPT-NeoX and Llama-family models, not {model.config.model_type}")
    return base, "layers", parts


class SubnetworkSampler:
    """Samples and applies one subnetwork per step (hooks on the output projections, a layer subset)."""

    def __init__(self, model: PreTrainedModel, stages: tuple[Stage, ...], steps: int, seed: int) -> None:
        self.config = model.config
        self.stages = stages
        self.steps = steps
        self.base, self.attr, self.parts = _parts(model)
        self.full_layers = getattr(self.base, self.attr)
        self.generator = torch.Generator().manual_seed(seed)
        self.head_dim = self.config.hidden_size // self.config.num_attention_heads
        self.masks: dict[int, torch.Tensor] = {}
        self.kept_layers: list[int] = list(range(len(self.parts)))
        self.handles = []
        for attention_out, mlp_down in self.parts:
            self.handles.append(attention_out.register_forward_pre_hook(self._mask_input))
            self.handles.append(mlp_down.register_forward_pre_hook(self._mask_input))

    def _mask_input(self, module: nn.Module, args: tuple) -> tuple | None:
        mask = self.masks.get(id(module))
        if mask is None:
            return None
        return (args[0] * mask.to(args[0].dtype), *args[1:])

    def _unit_mask(self, total: int, kept: int, repeat: int, device: torch.device) -> torch.Tensor:
        chosen = torch.randperm(total, generator=self.generator)[:kept]
        mask = torch.zeros(total)
        mask[chosen] = total / kept
        return mask.repeat_interleave(repeat).to(device)

    def begin_step(self, step: int) -> tuple[int, SubnetworkShape]:
        """Sample the subnetwork of ``step`` and switch it on; returns (stage index or -1, its shape)."""
        index = stage_index(step, self.stages, self.steps)
        if index < 0:
            return index, full_shape(self.config)
        shape = stage_shape(self.config, self.stages[index])
        full = full_shape(self.config)
        device = self.parts[0][0].weight.device
        self.kept_layers = sorted(torch.randperm(full.layers, generator=self.generator)[: shape.layers].tolist())
        for layer in self.kept_layers:
            attention_out, mlp_down = self.parts[layer]
            if shape.heads < full.heads:
                self.masks[id(attention_out)] = self._unit_mask(full.heads, shape.heads, self.head_dim, device)
            if shape.mlp_units < full.mlp_units:
                self.masks[id(mlp_down)] = self._unit_mask(full.mlp_units, shape.mlp_units, 1, device)
        if shape.layers < full.layers:
            setattr(self.base, self.attr, nn.ModuleList([self.full_layers[i] for i in self.kept_layers]))
        return index, shape

    def end_step(self) -> None:
        """Switch the subnetwork off: every layer back, no masks."""
        setattr(self.base, self.attr, self.full_layers)
        self.masks = {}
        self.kept_layers = list(range(len(self.parts)))

    def remove(self) -> None:
        """Remove the hooks (the model is then exactly the plain full model)."""
        self.end_step()
        for handle in self.handles:
            handle.remove()
