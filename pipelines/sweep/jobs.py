"""What the sweep's executors share: a checkpoint job, its outcome, and scoring one checkpoint.

The local executor (:mod:`ldw.sweep.run`) and the Ray executor
(:mod:`ldw.sweep.ray_executor`) both depend on this module and not on each other.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import transformers
from transformers import PreTrainedModel

from ldw.ingest.hub import HubCheckpoint
from ldw.probe.errors import ProbeError
from ldw.probe.loading import default_dtype, load_causal_lm
from ldw.probe.scoring import EvalBatchPlan, score_surprisal
from ldw.sweep.hub_cache import DownloadLedger
from ldw.sweep.sources import Fetched, fetch_checkpoint

CPU_BATCH = 16
CUDA_BATCH = 64

# What scoring one checkpoint gives back: its surprisal values, or the one-line error why not.
Outcome = np.ndarray | str


@dataclass(frozen=True)
class CheckpointJob:
    """One checkpoint to score: a folder (``path``), or a Hugging Face Hub revision (``hub``)."""

    run_id: str
    step: int
    path: str
    hub: HubCheckpoint | None = None


@dataclass(frozen=True)
class FetchSettings:
    """How hub checkpoints are fetched: keep the downloads in the cache or not, attempts before giving up."""

    keep_weights: bool = False
    attempts: int = 3


@dataclass
class Prepared:
    """A checkpoint fetched and loaded (``model``), or the one-line reason it is not (``error``)."""

    job: CheckpointJob
    model: PreTrainedModel | None = None
    error: str | None = None
    fetched: Fetched | None = None

    def release(self) -> None:
        """Drop the model and remove the files fetched for it (unless they are kept)."""
        self.model = None
        if self.fetched is not None:
            self.fetched.release()


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


def prepare_job(
    job: CheckpointJob,
    device: torch.device,
    fetch: FetchSettings,
    build_lock: AbstractContextManager | None = None,
    ledger: DownloadLedger | None = None,
) -> Prepared:
    """Fetch a checkpoint and load it onto ``device``; a checkpoint that cannot be had gives its one-line error.

    ``build_lock`` is held while the model is built (see :func:`ldw.sweep.streaming.model_build_lock`);
    the weight files are read once before, so that the load under it comes from the page cache.
    ``ledger`` lists hub downloads until they are removed (see :class:`ldw.sweep.hub_cache.DownloadLedger`).
    """
    fetched = fetch_checkpoint(job.path, job.hub, fetch.keep_weights, fetch.attempts, ledger)
    if isinstance(fetched, str):
        return Prepared(job, error=fetched)
    try:
        if build_lock is not None:
            fetched.warm()
        with build_lock or nullcontext():
            return Prepared(job, model=load_causal_lm(fetched.folder, device), fetched=fetched)
    except ProbeError as exc:
        error = str(exc) if job.hub is None else f"{job.path}: {exc}"
        return Prepared(job, error=error, fetched=fetched)


def score_prepared(prepared: Prepared, plan: EvalBatchPlan, batch_size: int) -> Outcome:
    """Score the plan under a prepared checkpoint: surprisal values, or the one-line error why not."""
    if prepared.model is None:
        return prepared.error or f"{prepared.job.path}: not loaded"
    try:
        return score_surprisal(prepared.model, plan, batch_size)
    except ProbeError as exc:
        return str(exc)


def score_job(
    job: CheckpointJob, plan: EvalBatchPlan, device: torch.device, batch_size: int, fetch: FetchSettings
) -> Outcome:
    """Fetch, load and score one checkpoint, then release it (where no prefetching happens, e.g. a Ray task)."""
    prepared = prepare_job(job, device, fetch)
    try:
        return score_prepared(prepared, plan, batch_size)
    finally:
        prepared.release()
