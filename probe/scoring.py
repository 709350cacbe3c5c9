"""Batched surprisal scoring: -log2 p(token | prefix) for chosen tokens in context.

The transformer body runs on whole sequences; only the hidden states of the
positions that predict a scored token go through the unembedding, in chunks,
with the log-softmax in float32 (float64 for a float64 model). Full-vocabulary
logits of every position are never materialized.

The plan goes to the device once per call and the results stay there until the
end (one copy back, through pinned memory on CUDA), so no batch waits for the
host. The batch size is chosen for the device unless given; an out-of-memory
error halves it and the same batch is scored again.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel

from ldw.errors import first_line
from ldw.probe.errors import ProbeError
from ldw.probe.fused_head import FusedHead, pick_fused_head

LN2 = math.log(2.0)
HEAD_CHUNK_ROWS = 2048
CPU_BATCH = 16
CUDA_MAX_BATCH_TOKENS = 65536  # past this a larger batch buys no speed, only memory
CUDA_MEMORY_SHARE = 0.5  # of the free memory, for activations (the next checkpoint may be loading meanwhile)
# Failure injection for tests: every forward of more sequences than this raises OutOfMemoryError.
INJECT_OOM_ENV = "LDW_INJECT_OOM_ABOVE"
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


@dataclass(frozen=True)
class ScoreOptions:
    """How to score: sequences per forward (None: chosen for the device), fused head, ``torch.compile``."""

    batch_size: int | None = None
    fused_head: str = "none"
    compile: bool = False


@dataclass(frozen=True)
class ScoreResult:
    """Surprisal (bits) of every planned token, the batch size that worked, and the head used."""

    values: np.ndarray
    batch_size: int
    head: str


def _uses_plain_head(model: PreTrainedModel) -> bool:
    config = model.config
    return all(getattr(config, key, None) in (None, 1, 1.0) for key in LOGIT_TRANSFORM_KEYS)


def auto_batch(model: PreTrainedModel, length: int, device: torch.device) -> int:
    """Sequences per forward for this model and window length: CPU_BATCH on CPU; on CUDA a power of two
    that fits half the free memory (by a per-token activation estimate) and at most 64k tokens."""
    if device.type != "cuda":
        return CPU_BATCH
    free, _ = torch.cuda.mem_get_info(device)
    config = model.config
    hidden = config.hidden_size
    inner = getattr(config, "intermediate_size", None) or 4 * hidden
    elem = next(model.parameters()).element_size()
    per_sequence = elem * (8 * hidden + 2 * inner) * length
    head = 3 * 4 * HEAD_CHUNK_ROWS * config.vocab_size  # float32 logits, log-softmax, temporaries
    fits = int((CUDA_MEMORY_SHARE * free - head) // per_sequence)
    batch = max(1, min(fits, CUDA_MAX_BATCH_TOKENS // max(length, 1)))
    return 1 << (batch.bit_length() - 1)


def score_surprisal(
    model: PreTrainedModel,
    plan: EvalBatchPlan,
    batch_size: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Surprisal in bits of every planned token, in plan order (float32; float64 for a float64 model).

    ``on_batch`` is called with the number of tokens scored after each batch
    (for progress bars). A batch size below 1, a token id the model's embedding
    does not have, or any planned token left unscored is a ProbeError: the
    result never holds a value that was not computed.
    """
    return score_plan(model, plan, ScoreOptions(batch_size), on_batch).values


@torch.inference_mode()
def score_plan(
    model: PreTrainedModel,
    plan: EvalBatchPlan,
    options: ScoreOptions = ScoreOptions(),
    on_batch: Callable[[int], None] | None = None,
) -> ScoreResult:
    """Score the plan as ``options`` say; out-of-memory halves the batch and retries it (down to one sequence).

    A batch size below 1, a token id the model's embedding does not have, or any planned token left
    unscored is a ProbeError: the result never holds a value that was not computed.
    """
    size = options.batch_size
    if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1):
        raise ProbeError(f"batch size must be a whole number of at least 1, not {size!r}")
    _check_vocabulary(model, plan)
    device = next(model.parameters()).device
    ids = torch.as_tensor(plan.input_ids, dtype=torch.long)
    if plan.prefix_token_id is not None:
        prefix = torch.full((ids.shape[0], 1), plan.prefix_token_id, dtype=torch.long)
        ids = torch.cat([prefix, ids], dim=1)
    shift = 0 if plan.prefix_token_id is not None else -1
    n_seq = ids.shape[0]
    batch = options.batch_size or auto_batch(model, ids.shape[1], device)
    plain = _uses_plain_head(model)
    if plain:
        fused, head_used = pick_fused_head(options.fused_head, model.get_output_embeddings(), device)
    else:
        fused, head_used = None, "full logits (the head transforms its logits)"
    body = model.base_model
    if options.compile:
        body = torch.compile(body)
    # the whole plan on the device once; the outputs stay there until the end
    dev_ids = _to_device(ids, device)
    dev_rows = _to_device(torch.as_tensor(plan.seq_ids, dtype=torch.long), device)
    dev_pos = _to_device(torch.as_tensor(plan.positions, dtype=torch.long), device) + shift
    dev_targets = _to_device(torch.as_tensor(plan.input_ids[plan.seq_ids, plan.positions], dtype=torch.long), device)
    out_dtype = torch.float64 if next(model.parameters()).dtype == torch.float64 else torch.float32
    out = torch.full((len(plan.seq_ids),), math.nan, dtype=out_dtype, device=device)
    # sequences are dense 0..S-1 and tokens ordered by sequence: a batch of sequences owns a slice of tokens
    bounds = np.searchsorted(plan.seq_ids, np.arange(n_seq + 1))
    start, written = 0, 0
    while start < n_seq:
        stop = min(start + batch, n_seq)
        lo, hi = int(bounds[start]), int(bounds[stop])
        if lo == hi:
            start = stop
            continue
        rows, pos, targets = dev_rows[lo:hi] - start, dev_pos[lo:hi], dev_targets[lo:hi]
        try:
            _inject_oom(stop - start)
            if plain:
                hidden = body(input_ids=dev_ids[start:stop]).last_hidden_state[rows, pos]
                values, fused, head_used = _head(model, fused, head_used, hidden, targets)
            else:
                logits = model(input_ids=dev_ids[start:stop]).logits[rows, pos]
                values = _surprisal_from_logits(_at_least_float32(logits), targets)
        except torch.OutOfMemoryError:
            values = None  # leave the except block first, so its frame frees the batch's tensors
        if values is None:
            batch = _halved(stop - start, ids.shape[1], device)
            continue
        out[lo:hi] = values
        written += hi - lo
        if on_batch is not None:
            on_batch(hi - lo)
        start = stop
    if written != len(plan.seq_ids):
        raise ProbeError(f"scored {written} of {len(plan.seq_ids)} planned tokens; no surprisal is returned")
    return ScoreResult(_to_host(out), batch, head_used)


def _halved(rows: int, length: int, device: torch.device) -> int:
    """The batch size after an out-of-memory error at ``rows`` sequences; none left below one sequence."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if rows <= 1:
        raise ProbeError(f"out of memory scoring one sequence of {length} tokens on {device}")
    return rows // 2


def _inject_oom(rows: int) -> None:
    """Raise OutOfMemoryError for a forward of more than ``$LDW_INJECT_OOM_ABOVE`` sequences (tests only)."""
    limit = os.environ.get(INJECT_OOM_ENV)
    if limit and rows > int(limit):
        raise torch.OutOfMemoryError(f"injected: {rows} sequences > {INJECT_OOM_ENV}={limit}")


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on ``device``: through pinned memory, without waiting, on CUDA."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def _to_host(values: torch.Tensor) -> np.ndarray:
    """One copy back to the host (into pinned memory on CUDA), then a numpy array."""
    if values.device.type != "cuda":
        return values.numpy()
    host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
    host.copy_(values, non_blocking=True)
    torch.cuda.current_stream(values.device).synchronize()
    return host.numpy()


def _head(
    model: PreTrainedModel, fused: FusedHead | None, head_used: str, hidden: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, FusedHead | None, str]:
    """Surprisal of the picked hidden states: the fused kernel if any, else (or when it fails) the chunked head."""
    head = model.get_output_embeddings()
    if fused is not None:
        try:
            return fused(hidden, head.weight, targets) / LN2, fused, head_used
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # a kernel that cannot run this input: the exact head takes over, on record
            head_used = f"chunked ({head_used} failed: {first_line(exc)})"
    return _head_surprisal(head, hidden, targets), None, head_used


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
        logits = _at_least_float32(head(chunk))
        parts.append(_surprisal_from_logits(logits, targets[start : start + HEAD_CHUNK_ROWS]))
    return torch.cat(parts)


def _at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    return logits if logits.dtype == torch.float64 else logits.float()


def _surprisal_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
    return -logp / LN2
