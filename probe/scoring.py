"""Batched surprisal scoring: -log2 p(token | prefix) for chosen tokens in context.

The transformer body runs on whole sequences; only the hidden states of the
positions that predict a scored token go through the unembedding, in chunks,
with the log-softmax in float32. Full-vocabulary logits of every position are
never materialized.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel

from ldw.probe.errors import ProbeError

LN2 = math.log(2.0)
HEAD_CHUNK_ROWS = 2048
# Configs whose head does more than a linear map; they take the full-logits path.
LOGIT_TRANSFORM_KEYS = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")


@dataclass(frozen=True)
class EvalBatchPlan:
    """Which tokens to score: sequences [S, L] and each token's (sequence, position)."""

    input_ids: np.ndarray
    seq_ids: np.ndarray
    positions: np.ndarray
    prefix_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.input_ids.ndim != 2:
            raise ProbeError("evaluation sequences must be a 2-D array [sequences, length]")
        if self.seq_ids.shape != self.positions.shape or self.seq_ids.ndim != 1:
            raise ProbeError("evaluation tokens need one sequence id and one position each")
        if len(self.seq_ids) and np.any(np.diff(self.seq_ids) < 0):
            raise ProbeError("evaluation tokens must be ordered by sequence")
        if len(self.seq_ids) and (self.seq_ids[0] < 0 or self.seq_ids[-1] >= self.input_ids.shape[0]):
            raise ProbeError(f"evaluation tokens name sequences outside 0..{self.input_ids.shape[0] - 1}")
        if len(self.positions) and self.positions.max() >= self.input_ids.shape[1]:
            raise ProbeError(f"evaluation tokens name positions beyond the sequence length {self.input_ids.shape[1]}")
        if self.prefix_token_id is None and len(self.positions) and self.positions.min() < 1:
            raise ProbeError("position 0 can only be scored with a prefix token")
        if self.prefix_token_id is not None and self.prefix_token_id < 0:
            raise ProbeError(f"prefix token id {self.prefix_token_id} is negative")


def _uses_plain_head(model: PreTrainedModel) -> bool:
    config = model.config
    return all(getattr(config, key, None) in (None, 1, 1.0) for key in LOGIT_TRANSFORM_KEYS)


@torch.inference_mode()
def score_surprisal(
    model: PreTrainedModel,
    plan: EvalBatchPlan,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Surprisal in bits of every planned token, in plan order (float32).

    ``on_batch`` is called with the number of tokens scored after each batch
    (for progress bars). A batch size below 1, a token id the model's embedding
    does not have, or any planned token left unscored is a ProbeError: the
    result never holds a value that was not computed.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ProbeError(f"batch size must be a whole number of at least 1, not {batch_size!r}")
    _check_vocabulary(model, plan)
    device = next(model.parameters()).device
    ids = torch.as_tensor(plan.input_ids, dtype=torch.long)
    if plan.prefix_token_id is not None:
        prefix = torch.full((ids.shape[0], 1), plan.prefix_token_id, dtype=torch.long)
        ids = torch.cat([prefix, ids], dim=1)
    shift = 0 if plan.prefix_token_id is not None else -1
    # Sequences are dense 0..S-1 and tokens ordered by sequence: a batch of
    # sequences owns a contiguous slice of tokens.
    bounds = np.searchsorted(plan.seq_ids, np.arange(ids.shape[0] + 1))
    out = np.full(len(plan.seq_ids), np.nan, dtype=np.float32)
    written = 0
    plain = _uses_plain_head(model)
    for start in range(0, ids.shape[0], batch_size):
        stop = min(start + batch_size, ids.shape[0])
        lo, hi = bounds[start], bounds[stop]
        if lo == hi:
            continue
        batch = ids[start:stop].to(device, non_blocking=True)
        rows = torch.as_tensor(plan.seq_ids[lo:hi] - start, device=device)
        pos = torch.as_tensor(plan.positions[lo:hi], dtype=torch.long, device=device)
        targets = torch.as_tensor(plan.input_ids[plan.seq_ids[lo:hi], plan.positions[lo:hi]], device=device)
        if plain:
            hidden = model.base_model(input_ids=batch).last_hidden_state
            picked = hidden[rows, pos + shift]
            values = _head_surprisal(model.get_output_embeddings(), picked, targets)
        else:
            logits = model(input_ids=batch).logits
            values = _surprisal_from_logits(logits[rows, pos + shift].float(), targets)
        out[lo:hi] = values.cpu().numpy()
        written += int(hi - lo)
        if on_batch is not None:
            on_batch(int(hi - lo))
    if written != len(out):
        raise ProbeError(f"scored {written} of {len(out)} planned tokens; no surprisal is returned")
    return out


def _check_vocabulary(model: PreTrainedModel, plan: EvalBatchPlan) -> None:
    """Every input id (and the prefix token) must index the model's input embedding."""
    size = model.get_input_embeddings().num_embeddings
    highest = int(plan.input_ids.max()) if plan.input_ids.size else -1
    if plan.prefix_token_id is not None:
        highest = max(highest, plan.prefix_token_id)
    lowest = int(plan.input_ids.min()) if plan.input_ids.size else 0
    if highest >= size or lowest < 0:
        bad = highest if highest >= size else lowest
        raise ProbeError(f"token id {bad} is outside the model's vocabulary of {size} embeddings")


def _head_surprisal(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    parts = []
    for start in range(0, hidden.shape[0], HEAD_CHUNK_ROWS):
        chunk = hidden[start : start + HEAD_CHUNK_ROWS]
        logits = head(chunk).float()
        parts.append(_surprisal_from_logits(logits, targets[start : start + HEAD_CHUNK_ROWS]))
    return torch.cat(parts)


def _surprisal_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
    return -logp / LN2
