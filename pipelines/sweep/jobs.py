"""What the sweep's executors share: a checkpoint job, its outcome, and scoring one checkpoint.

The local executor (:mod:`ldw.sweep.run`) and the Ray executor
(:mod:`ldw.sweep.ray_executor`) both depend on this module and not on each other.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import transformers

from ldw.probe.errors import ProbeError
from ldw.probe.loading import SINGLE_THREAD_MAX_HIDDEN, cpu_threads, default_dtype, load_causal_lm
from ldw.probe.scoring import EvalBatchPlan, score_surprisal

CPU_BATCH = 16
CUDA_BATCH = 64

# What scoring one checkpoint gives back: its surprisal values, or the one-line error why not.
Outcome = np.ndarray | str


@dataclass(frozen=True)
class CheckpointJob:
    """One checkpoint to score."""

    run_id: str
    step: int
    path: str


class Executor(Protocol):
    """Scores checkpoint jobs somewhere and hands back each outcome as it is ready."""

    def settings(self, config: dict) -> dict:
        """The scoring settings of the device the jobs run on."""

    def score(self, jobs: list[CheckpointJob], plan: EvalBatchPlan) -> Iterator[tuple[CheckpointJob, Outcome]]:
        """Yield (job, outcome) for every job, in any order."""


def default_batch(device: torch.device) -> int:
    """Sequences per forward pass when none is given: larger on CUDA."""
    return CUDA_BATCH if device.type == "cuda" else CPU_BATCH


def scoring_settings(device: torch.device, batch_size: int, config: dict, executor: str = "local") -> dict:
    """Everything that decides the numbers, stored beside the sweep (call it where the scoring runs)."""
    return {
        "units": "bits",
        "executor": executor,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "weights_dtype": str(default_dtype(device)).replace("torch.", ""),
        "log_softmax_dtype": "float32",
        "batch_size": batch_size,
        "prefix_token_id": config.get("prefix_token_id"),
        "first_token_scored": config.get("prefix_token_id") is not None,
        "eos_masking": "none: end-of-text tokens inside windows are scored like any token",
        "seq_len": config.get("seq_len"),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }


def score_checkpoint(path: str, plan: EvalBatchPlan, device: torch.device, batch_size: int) -> Outcome:
    """Load one checkpoint and score the plan; a checkpoint that cannot be used gives its one-line error."""
    try:
        model = load_causal_lm(Path(path), device)
        with cpu_threads(device, getattr(model.config, "hidden_size", SINGLE_THREAD_MAX_HIDDEN + 1)):
            return score_surprisal(model, plan, batch_size)
    except ProbeError as exc:
        return str(exc)
