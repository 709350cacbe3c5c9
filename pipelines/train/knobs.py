"""The stability knobs of one training run, wired into the reference trainer's loop.

``TrainingKnobs`` sets the knobs of a ``TrainConfig`` up on a freshly built model
(small init, embedding wrapper, attention-logit monitor, EST sampler) and gives the
loop one call per phase of a step. With every knob off (the defaults) it does nothing:
the forward is ``model(input_ids, labels).loss`` and the log rows are unchanged.

Extra training-log keys (only when the knob that makes them is on):
``z_loss`` (the added term; ``loss`` stays the cross-entropy), ``max_attn_logit`` and
``logit_lse_mean`` (``log_signals``), ``step_bound_clipped`` / ``step_bound_min_scale`` /
``step_bound_max_ratio`` (``step_bound_tau``), ``est_stage`` (-1 = full model) and
``est_flops`` (``est_stages``).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from ldw.train.config import TrainConfig
from ldw.train.stability import (
    AttentionLogitMonitor,
    apply_small_init,
    install_stable_embedding,
    log_partition,
    plain_embeddings,
)
from ldw.train.step_bound import StepBound
from ldw.train.subnetwork import SubnetworkSampler, flops_summary, step_flops

EST_SEED_OFFSET = 7919  # EST samples from its own generator: the data order does not change
STEP_BOUND_SEED_OFFSET = 104729

EMBEDDING_NOTE = (
    "trained as {form}; saved checkpoints hold the folded matrix (row v = the training-time embedding of "
    "token v), so a plain AutoModelForCausalLM computes the training forward from input_ids"
)
QK_NOTE = "arch llama with qk_layernorm is built as Qwen3 (Llama + per-head RMSNorm on q and k), model_type qwen3"


class TrainingKnobs:
    """Stability knobs set up on ``model`` for ``config``; ``info`` describes them for run.json."""

    def __init__(self, model: PreTrainedModel, config: TrainConfig) -> None:
        self.model = model
        self.config = config
        self.info: dict[str, Any] = {"knobs": config.stability_knobs}
        if config.small_init:
            self.info["small_init"] = apply_small_init(model)
        if config.scaled_embed or config.embed_layernorm:
            install_stable_embedding(model, config.scaled_embed, config.embed_layernorm)
            form = "sqrt(d) * E[token]" if config.scaled_embed else "E[token]"
            form = f"LayerNorm({form})" if config.embed_layernorm else form
            self.info["embedding"] = EMBEDDING_NOTE.format(form=form)
        if config.qk_layernorm:
            self.info["qk_layernorm"] = QK_NOTE
        self.monitor = AttentionLogitMonitor(model) if config.log_signals else None
        self.sampler = (
            SubnetworkSampler(model, config.est_stages, config.steps, config.seed + EST_SEED_OFFSET)
            if config.est_stages
            else None
        )
        self.step_bound: StepBound | None = None
        self.tokens = config.batch_size * config.seq_len

    def attach_optimizer(self, params: list[torch.nn.Parameter]) -> None:
        """Set up the step bound on the optimizer's parameters (call once, after the optimizer is built)."""
        if self.config.step_bound_tau > 0:
            self.step_bound = StepBound(
                params,
                self.config.step_bound_tau,
                self.config.step_bound_power_iters,
                self.config.seed + STEP_BOUND_SEED_OFFSET,
            )

    def begin_step(self, step: int) -> dict[str, Any]:
        """Sample this step's subnetwork (EST); returns its log fields."""
        if self.sampler is None:
            return {}
        index, shape = self.sampler.begin_step(step)
        return {"est_stage": index, "est_flops": step_flops(self.model.config, shape, self.config.seq_len, self.tokens)}

    def loss(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """(objective to backpropagate, cross-entropy, extra log fields) for one batch."""
        if not (self.config.z_loss > 0 or self.monitor is not None):
            loss = self.model(input_ids=batch, labels=batch).loss
            return loss, loss, {}
        output = self.model(input_ids=batch, labels=batch)
        lse = log_partition(output.logits)
        extra: dict[str, Any] = {}
        objective = output.loss
        if self.config.z_loss > 0:
            z_term = self.config.z_loss * lse.pow(2).mean()
            objective = objective + z_term
            extra["z_loss"] = z_term.item()
        if self.monitor is not None:
            extra["max_attn_logit"] = self.monitor.pop()
            extra["logit_lse_mean"] = lse.mean().item()
        return objective, output.loss, extra

    def after_backward(self) -> None:
        """Switch the subnetwork off again (gradients are computed)."""
        if self.sampler is not None:
            self.sampler.end_step()

    def before_optimizer_step(self) -> None:
        """Remember the weights the step bound compares against."""
        if self.step_bound is not None:
            self.step_bound.snapshot()

    def after_optimizer_step(self) -> dict[str, Any]:
        """Apply the step bound; returns its log fields."""
        if self.step_bound is None:
            return {}
        stats = self.step_bound.apply()
        return {
            "step_bound_clipped": stats.clipped,
            "step_bound_min_scale": stats.min_scale,
            "step_bound_max_ratio": stats.max_ratio,
        }

    def saving(self):
        """Context in which ``model.save_pretrained`` writes a plain transformers checkpoint."""
        return plain_embeddings(self.model)

    def summary(self) -> dict[str, Any]:
        """What the knobs did over the run, for run.json."""
        info = dict(self.info)
        if self.step_bound is not None:
            info["step_bound"] = self.step_bound.summary()
        if self.sampler is not None:
            info["est"] = {
                "stages": [list(stage) for stage in self.config.est_stages],
                **flops_summary(
                    self.model.config, self.config.est_stages, self.config.steps, self.config.seq_len, self.tokens
                ),
            }
        return info

    def close(self) -> None:
        """Remove hooks and the monitor: the model is the plain model again (embedding wrapper aside)."""
        if self.sampler is not None:
            self.sampler.remove()
        if self.monitor is not None:
            self.monitor.remove()
