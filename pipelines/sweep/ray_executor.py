"""``ldw sweep --executor ray``: one Ray task per checkpoint on a Ray cluster.

A task only loads its checkpoint and scores the evaluation plan (shipped once
with ``ray.put``); the float32 surprisal array (4 bytes per evaluation token)
or the one-line error comes back through Ray's object store, and the driver
writes the warehouse exactly as a local sweep does: DuckDB allows one writer
process, and files, resume, shards and failed checkpoints stay the same.
Every node needs ldw installed and must read the checkpoint paths as
cataloged (a shared filesystem); a checkpoint of a Hugging Face Hub run is
downloaded by the task that scores it, into that node's Hugging Face cache.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import torch

from ldw.errors import LdwError, first_line
from ldw.probe.loading import resolve_device
from ldw.probe.scoring import EvalBatchPlan
from ldw.sweep.jobs import CheckpointJob, FetchSettings, Outcome, Scored, Scoring, score_job, scoring_settings

RAY_MISSING = "`--executor ray` needs ray: pip install 'learning-dynamics-workbench[cluster]' (or 'ray>=2.9')"
IN_FLIGHT_PER_SLOT = 2  # queued tasks per GPU (or CPU): workers never wait, loads are not all queued at once


def import_ray() -> ModuleType:
    """The ``ray`` module, or a clear LdwError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise LdwError(RAY_MISSING) from None
    return ray


@contextmanager
def ray_executor(
    address: str | None, device: str, scoring: Scoring = Scoring(), fetch: FetchSettings = FetchSettings()
) -> Iterator[RayExecutor]:
    """Connect to Ray and yield the executor; a cluster started here is shut down on exit.

    ``address`` (``host:port``, ``auto`` or ``ray://...``) defaults to
    ``$RAY_ADDRESS``, else the cluster last started on this machine with
    ``ray start``, else a new local one. A Ray session this process already
    holds (``ray.init`` done by the caller) is used as it is.
    """
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise LdwError(f"--ray-address {address}: cannot connect to Ray ({first_line(exc)})") from exc
    try:
        yield RayExecutor(ray, device, scoring, fetch)
    finally:
        if started:
            ray.shutdown()


class RayExecutor:
    """Scores each checkpoint as one Ray task: one GPU each on CUDA, else one CPU each.

    The first task (the next one submitted, if it fails) and the last also measure the precision's error.
    """

    def __init__(self, ray: ModuleType, device: str, scoring: Scoring, fetch: FetchSettings) -> None:
        self.ray = ray
        self.fetch = fetch
        self.scoring = scoring
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        self.device = _cluster_device(device, gpus)
        if self.device == "cuda":
            self.resources, slots = {"num_gpus": 1}, gpus
        else:
            self.resources, slots = {"num_cpus": 1}, int(resources.get("CPU", 1))
        self.max_in_flight = max(1, IN_FLIGHT_PER_SLOT * slots)

    def settings(self, config: dict) -> dict:
        """Scoring settings as a worker sees them (its device, library versions), plus the cluster's."""
        task = self.ray.remote(_worker_settings).options(**self.resources)
        settings = self.ray.get(task.remote(self.device, self.scoring, config))
        nodes = sum(1 for node in self.ray.nodes() if node["Alive"])
        return {**settings, "ray_version": self.ray.__version__, "ray_nodes": nodes}

    def score(self, jobs: list[CheckpointJob], plan: EvalBatchPlan) -> Iterator[tuple[CheckpointJob, Outcome]]:
        """Submit at most ``max_in_flight`` tasks at a time; yield each outcome as its task completes.

        Closing the iterator early (an error, Ctrl-C) cancels the tasks still queued or running.
        """
        ray = self.ray
        task = ray.remote(_score_task).options(**self.resources)
        plan_ref = ray.put(plan)
        todo = iter(jobs)
        in_flight: dict = {}
        want_check = True
        try:
            while True:
                for job in itertools.islice(todo, self.max_in_flight - len(in_flight)):
                    check = want_check or job == jobs[-1]
                    ref = task.remote(job, plan_ref, self.device, self.scoring, self.fetch, check)
                    in_flight[ref] = (job, want_check)
                    want_check = False
                if not in_flight:
                    return
                (ref,), _ = ray.wait(list(in_flight), num_returns=1)
                job, checked = in_flight.pop(ref)
                outcome = self._outcome(ref, job)
                if isinstance(outcome, Scored):
                    self.scoring = self.scoring.with_batch(outcome.notes["batch_size"])
                elif checked:
                    want_check = True
                yield job, outcome
        finally:
            for ref in in_flight:
                ray.cancel(ref)

    def _outcome(self, ref: object, job: CheckpointJob) -> Outcome:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            raise LdwError(f"{job.path}: Ray task failed ({first_line(cause)})") from exc


def _cluster_device(device: str, gpus: int) -> str:
    """'cuda' or 'cpu' for the tasks: 'auto' takes GPUs when the cluster has any."""
    if device == "auto":
        return "cuda" if gpus else "cpu"
    if device == "cuda" and not gpus:
        raise LdwError("--device cuda: the Ray cluster has no GPUs")
    if device not in ("cuda", "cpu"):
        raise LdwError(f"--device {device} with --executor ray: use auto, cpu or cuda (Ray gives each task a GPU)")
    return device


def _score_task(
    job: CheckpointJob, plan: EvalBatchPlan, device: str, scoring: Scoring, fetch: FetchSettings, check: bool
) -> Outcome:
    """On a worker: fetch and score one checkpoint with as many torch threads as the task has CPUs."""
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    # the plan arrives as read-only views of the object store; torch wants writable arrays
    own = EvalBatchPlan(plan.input_ids.copy(), plan.seq_ids.copy(), plan.positions.copy(), plan.prefix_token_id)
    return score_job(job, own, resolve_device(device), scoring, fetch, check)


def _worker_settings(device: str, scoring: Scoring, config: dict) -> dict:
    """On a worker: the scoring settings of its device and libraries."""
    return scoring_settings(resolve_device(device), scoring, config, "ray")
