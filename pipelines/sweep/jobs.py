"""What the sweep's executors share: a checkpoint job, its outcome, and scoring one checkpoint.

The local executor (:mod:`ldw.sweep.run`) and the Ray executor
(:mod:`ldw.sweep.ray_executor`) both depend on this module and not on each other.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import transformers
from transformers import PreTrainedModel

from ldw.ingest.hub import HubCheckpoint
from ldw.probe.errors import ProbeError
from ldw.probe.loading import SINGLE_THREAD_MAX_HIDDEN, cpu_threads, load_causal_lm
from ldw.probe.precision import dtype_name, get_precision, matmul_precision, measure_error
from ldw.probe.scoring import EvalBatchPlan, ScoreOptions, score_plan
from ldw.sweep.hub_cache import DownloadLedger
from ldw.sweep.sources import Fetched, fetch_checkpoint


@dataclass(frozen=True)
class Scored:
    """A checkpoint's surprisal values, and what scoring it learned for the sweep's settings.

    ``notes``: the batch size that worked, the head used, and at the sweep's first checkpoint
    the precision's measured error (``precision_error``).
    """

    values: np.ndarray
    notes: dict = field(default_factory=dict)


# What scoring one checkpoint gives back: its surprisal values, or the one-line error why not.
Outcome = Scored | str


@dataclass(frozen=True)
class Scoring:
    """How every checkpoint of a sweep is scored: the precision (fp32 | tf32 | bf16 | fp16) and scorer options."""

    precision: str = "fp32"
    options: ScoreOptions = ScoreOptions()

    def with_batch(self, batch_size: int) -> Scoring:
        """The same scoring starting at ``batch_size`` sequences per forward."""
        return dataclasses.replace(self, options=dataclasses.replace(self.options, batch_size=batch_size))


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


def scoring_settings(device: torch.device, scoring: Scoring, config: dict, executor: str = "local") -> dict:
    """Everything that decides the numbers, stored beside the sweep (call it where the scoring runs).

    ``batch_size`` is the one given, or None until the first checkpoint tells the one chosen for the device.
    """
    precision = get_precision(scoring.precision)
    return {
        "units": "bits",
        "executor": executor,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "precision": precision.name,
        "weights_dtype": dtype_name(precision.weights),
        "float32_matmul": "tf32" if precision.tf32 else "ieee (TF32 off)",
        "log_softmax_dtype": "float32",
        "batch_size": scoring.options.batch_size,
        "batch_size_given": scoring.options.batch_size is not None,
        "fused_head": scoring.options.fused_head,
        "compile": scoring.options.compile,
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
    dtype: torch.dtype = torch.float32,
) -> Prepared:
    """Fetch a checkpoint and load it onto ``device``; a checkpoint that cannot be had gives its one-line error.

    ``build_lock`` is held while the model is built (see :func:`ldw.sweep.streaming.model_build_lock`);
    the weight files are read once before, so that the load under it comes from the page cache.
    ``ledger`` lists hub downloads until they are removed (see :class:`ldw.sweep.hub_cache.DownloadLedger`).
    ``dtype``: the weights' dtype (the precision's).
    """
    fetched = fetch_checkpoint(job.path, job.hub, fetch.keep_weights, fetch.attempts, ledger)
    if isinstance(fetched, str):
        return Prepared(job, error=fetched)
    try:
        if build_lock is not None:
            fetched.warm()
        with build_lock or nullcontext():
            return Prepared(job, model=load_causal_lm(fetched.folder, device, dtype), fetched=fetched)
    except ProbeError as exc:
        error = str(exc) if job.hub is None else f"{job.path}: {exc}"
        return Prepared(job, error=error, fetched=fetched)


def score_prepared(prepared: Prepared, plan: EvalBatchPlan, scoring: Scoring, check: bool = False) -> Outcome:
    """Score the plan under a prepared checkpoint: surprisal values, or the one-line error why not.

    ``check``: then measure the precision's error on a sample of the plan (the model is dropped
    first, to make room for the reference); a check that fails is recorded as such, not the checkpoint.
    """
    if prepared.model is None:
        return prepared.error or f"{prepared.job.path}: not loaded"
    precision = get_precision(scoring.precision)
    device = next(prepared.model.parameters()).device
    try:
        hidden = getattr(prepared.model.config, "hidden_size", SINGLE_THREAD_MAX_HIDDEN + 1)
        with matmul_precision(precision.tf32), cpu_threads(device, hidden):
            result = score_plan(prepared.model, plan, scoring.options)
    except ProbeError as exc:
        return str(exc)
    notes: dict = {"batch_size": result.batch_size, "head": result.head}
    if check and prepared.fetched is not None:
        prepared.model = None
        try:
            error = measure_error(prepared.fetched.folder, device, plan, result.values, precision)
        except ProbeError as exc:
            error = {"error": str(exc)}
        notes["precision_error"] = {"run_id": prepared.job.run_id, "step": prepared.job.step, **error}
    return Scored(result.values, notes)


def score_job(
    job: CheckpointJob, plan: EvalBatchPlan, device: torch.device, scoring: Scoring, fetch: FetchSettings, check: bool
) -> Outcome:
    """Fetch, load and score one checkpoint, then release it (where no prefetching happens, e.g. a Ray task)."""
    prepared = prepare_job(job, device, fetch, dtype=get_precision(scoring.precision).weights)
    try:
        return score_prepared(prepared, plan, scoring, check)
    finally:
        prepared.release()
