"""Sweep precisions and the measurement of their error on a sample of tokens.

``fp32`` (the default) is exact to well within 0.01 bits: float32 weights, float32 matmuls with
TF32 turned off explicitly on CUDA, and a float32 log-softmax. ``tf32``, ``bf16`` and ``fp16``
are faster and opt-in: TF32 matmuls over float32 weights, or bfloat16 / float16 weights (the
log-softmax stays float32 in every precision). Every sweep measures its own error on a sample
of its evaluation tokens at its first checkpoint (:func:`sample_plan`, :func:`error_summary`):
against float32 for the faster precisions, against float64 for ``fp32`` itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ldw.probe.errors import ProbeError
from ldw.probe.loading import load_causal_lm
from ldw.probe.scoring import EvalBatchPlan, score_plan

SAMPLE_TOKENS = 2048
EXACT_BAR_BITS = 0.01  # the default precision's promise: max abs error against float64


@dataclass(frozen=True)
class Precision:
    """How a sweep computes: weight dtype, whether float32 matmuls may use TF32, what its error is measured against."""

    name: str
    weights: torch.dtype
    tf32: bool
    reference: torch.dtype

    @property
    def exact(self) -> bool:
        """Whether this is the default, exact precision (held to :data:`EXACT_BAR_BITS` against float64)."""
        return self.name == "fp32"


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision("fp32", torch.float32, False, torch.float64),
    "tf32": Precision("tf32", torch.float32, True, torch.float32),
    "bf16": Precision("bf16", torch.bfloat16, False, torch.float32),
    "fp16": Precision("fp16", torch.float16, False, torch.float32),
}


def get_precision(name: str) -> Precision:
    """The precision called ``name``; an unknown name is a one-line ProbeError."""
    if name not in PRECISIONS:
        raise ProbeError(f"precision '{name}': expected one of {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32, and so on."""
    return str(dtype).replace("torch.", "")


@contextmanager
def matmul_precision(tf32: bool) -> Iterator[None]:
    """Float32 matmuls on CUDA in TF32 (``tf32``) or full IEEE float32 (TF32 off, set explicitly); restored after.

    The setting is process-wide: the sweep scores on one thread at a time. CPUs here compute
    float32 matmuls in float32 either way.
    """
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9
        before = matmul.fp32_precision
        matmul.fp32_precision = "tf32" if tf32 else "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision = before
    else:
        before_flag = matmul.allow_tf32
        matmul.allow_tf32 = tf32
        try:
            yield
        finally:
            matmul.allow_tf32 = before_flag


def sample_plan(plan: EvalBatchPlan, tokens: int = SAMPLE_TOKENS) -> tuple[EvalBatchPlan, np.ndarray]:
    """About ``tokens`` scored tokens of ``plan`` (all when fewer): whole sequences spread evenly over it.

    Returns the sub-plan and the indices of its tokens in ``plan``. Deterministic: the same evaluation
    set gives the same sample in every sweep.
    """
    n_sequences = plan.input_ids.shape[0]
    counts = np.bincount(plan.seq_ids, minlength=n_sequences)
    per_sequence = max(float(counts.mean()), 1.0) if n_sequences else 1.0
    k = min(n_sequences, int(np.ceil(tokens / per_sequence)))
    rows = np.unique(np.linspace(0, n_sequences - 1, k).round().astype(np.int64))
    index = np.flatnonzero(np.isin(plan.seq_ids, rows))
    renumber = np.full(n_sequences, -1, dtype=np.int64)
    renumber[rows] = np.arange(len(rows))
    sub = EvalBatchPlan(
        plan.input_ids[rows], renumber[plan.seq_ids[index]], plan.positions[index], plan.prefix_token_id
    )
    return sub, index


def error_summary(values: np.ndarray, reference: np.ndarray, precision: Precision) -> dict:
    """Max and mean absolute error (bits) of a sweep's values against the reference, as stored with the sweep."""
    err = np.abs(values.astype(np.float64) - reference.astype(np.float64))
    summary = {
        "reference": dtype_name(precision.reference),
        "tokens": int(len(err)),
        "max_abs_bits": float(err.max()) if len(err) else 0.0,
        "mean_abs_bits": float(err.mean()) if len(err) else 0.0,
    }
    if precision.exact:
        summary["bar_bits"] = EXACT_BAR_BITS
        summary["within_bar"] = summary["max_abs_bits"] <= EXACT_BAR_BITS
    return summary


def measure_error(
    folder: Path, device: torch.device, plan: EvalBatchPlan, values: np.ndarray, precision: Precision
) -> dict:
    """The error of a sweep's ``values`` on a sample of ``plan``, against a reference load of the checkpoint.

    The reference is the checkpoint loaded in float32 (upcast to float64 for ``fp32``: exact for
    weights stored in float32 or less), scored with TF32 off; on CUDA it moves to the CPU if it does
    not fit beside what the sweep holds.
    """
    sub, index = sample_plan(plan)
    try:
        reference = _reference_values(folder, device, sub, precision.reference)
        where = str(device)
    except torch.OutOfMemoryError:
        reference = _reference_values(folder, torch.device("cpu"), sub, precision.reference)
        where = "cpu"
    sequences = np.unique(plan.seq_ids[index]).tolist()
    return {**error_summary(values[index], reference, precision), "sequences": sequences, "reference_device": where}


def _reference_values(folder: Path, device: torch.device, plan: EvalBatchPlan, dtype: torch.dtype) -> np.ndarray:
    model = load_causal_lm(folder, device, torch.float32).to(dtype)
    try:
        with matmul_precision(False):
            return score_plan(model, plan).values
    finally:
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
