"""Keep the scorer busy: fetch and load ahead on one thread, write results behind on another.

A sweep runs three threads. The *prefetch* thread fetches (downloads, for hub checkpoints) and
loads the next checkpoints while the current one is scored, at most ``ahead`` of it, so at most
``ahead + 1`` checkpoints are on disk and in memory at once; it alone touches the Hugging Face
cache, and removes each checkpoint's downloads once the scorer gives it back. The *scoring*
thread (the caller) only scores. The *writer* thread writes each outcome (Parquet file, fsynced
and renamed, then cataloged) and is the only thread that opens the warehouse while the sweep
runs, so DuckDB keeps one writer and a kill at any point resumes as before.

transformers switches torch's default dtype, a process-wide setting, while it builds a model
in a dtype other than it (bf16 or fp16 weights). :func:`model_build_lock` then makes a build wait for
the scorer to finish its checkpoint, so no forward pass ever runs under the switched default;
the weights are read from disk before the wait, so what waits is a load from the page cache.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType

import torch

from ldw.probe.loading import resolve_device
from ldw.probe.precision import get_precision
from ldw.probe.scoring import EvalBatchPlan
from ldw.sweep.hub_cache import DownloadLedger
from ldw.sweep.jobs import (
    CheckpointJob,
    FetchSettings,
    Outcome,
    Prepared,
    Scored,
    Scoring,
    prepare_job,
    score_prepared,
    scoring_settings,
)

POLL_S = 0.1
STOP_WAIT_S = 10.0
WRITE_QUEUE = 2
_DONE = object()


def model_build_lock(dtype: torch.dtype) -> AbstractContextManager | None:
    """A lock for model builds and scoring where a build in ``dtype`` switches torch's default dtype, else None."""
    return threading.Lock() if dtype != torch.get_default_dtype() else None


class _Failure:
    """An exception raised on a background thread, carried to the thread that waits for its result."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Prefetcher:
    """Prepares jobs in order on a background thread, at most ``ahead`` beyond the one given out.

    Iterate to get each :class:`Prepared` in job order; hand every one back with :meth:`give_back`
    once scored (its files are then removed on the prefetch thread). Use as a context manager.
    """

    def __init__(self, jobs: Iterable[CheckpointJob], prepare: Callable[[CheckpointJob], Prepared], ahead: int) -> None:
        self._ready: queue.Queue = queue.Queue()
        self._returned: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._limit = ahead + 1
        self._thread = threading.Thread(target=self._run, args=(jobs, prepare), name="ldw-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[Prepared]:
        while (item := self._ready.get()) is not _DONE:
            if isinstance(item, _Failure):
                raise item.exc
            yield item

    def give_back(self, item: Prepared) -> None:
        """Hand a scored checkpoint back: its model is dropped here, its files removed on the prefetch thread."""
        item.model = None
        self._returned.put(item)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        """Wait for the prefetch thread to release everything; on an error stop it first."""
        if kind is not None:
            self._stop.set()
        self._thread.join(None if kind is None else STOP_WAIT_S)  # a download under way may outlast it

    def _run(self, jobs: Iterable[CheckpointJob], prepare: Callable[[CheckpointJob], Prepared]) -> None:
        held = 0
        try:
            for job in jobs:
                while held >= self._limit:
                    if not self._take_back():
                        return
                    held -= 1
                if self._stop.is_set():
                    return
                self._ready.put(prepare(job))
                held += 1
        except BaseException as exc:
            self._ready.put(_Failure(exc))
        finally:
            self._ready.put(_DONE)
            while held and self._take_back():
                held -= 1
            if self._stop.is_set():
                self._release_all()

    def _take_back(self) -> bool:
        """Wait for a checkpoint to come back and release it; False once stopped."""
        while not self._stop.is_set():
            try:
                item = self._returned.get(timeout=POLL_S)
            except queue.Empty:
                continue
            item.release()
            return True
        return False

    def _release_all(self) -> None:
        """On a stop: release whatever is still queued either way."""
        for pending in (self._ready, self._returned):
            while True:
                try:
                    item = pending.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, Prepared):
                    item.release()


class BackgroundWriter:
    """Writes outcomes on one background thread, in the order submitted (at most ``WRITE_QUEUE`` waiting).

    An error while writing stops the writer; it is raised in the submitting thread by the next
    :meth:`submit` or on leaving the ``with`` block. Leaving normally waits for every write;
    leaving on an error waits only for the write under way.
    """

    def __init__(self, write: Callable[[CheckpointJob, Outcome], None]) -> None:
        self._write = write
        self._queue: queue.Queue = queue.Queue(WRITE_QUEUE)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ldw-writer", daemon=True)
        self._thread.start()

    def submit(self, job: CheckpointJob, outcome: Outcome) -> None:
        """Queue one outcome for writing (waits while the queue is full)."""
        self._raise()
        self._queue.put((job, outcome))

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is not None:
            self._stop.set()
        self._queue.put(_DONE)
        self._thread.join()
        if kind is None:
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not _DONE:
            if self._error is not None or self._stop.is_set():
                continue  # keep taking items so a submitter never blocks on a dead writer
            try:
                self._write(*item)
            except BaseException as exc:
                self._error = exc


class LocalExecutor:
    """Scores checkpoints one after another in this process while the next ``prefetch`` are fetched and loaded.

    The first checkpoint scored and the last one also measure the precision's error; each checkpoint
    starts at the batch size that worked for the one before.
    """

    def __init__(
        self,
        device: str,
        scoring: Scoring = Scoring(),
        prefetch: int = 1,
        fetch: FetchSettings = FetchSettings(),
        ledger: DownloadLedger | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.scoring = scoring
        self.dtype = get_precision(scoring.precision).weights
        self.prefetch = prefetch
        self.fetch = fetch
        self.ledger = ledger
        self.build_lock = model_build_lock(self.dtype)

    def settings(self, config: dict) -> dict:
        """Scoring settings of this machine's device."""
        return scoring_settings(self.device, self.scoring, config, "local")

    def prepare(self, job: CheckpointJob) -> Prepared:
        """Fetch and load one checkpoint (on the prefetch thread)."""
        return prepare_job(job, self.device, self.fetch, self.build_lock, self.ledger, self.dtype)

    def score_one(self, prepared: Prepared, plan: EvalBatchPlan, check: bool) -> Outcome:
        """Score one prepared checkpoint (on the scoring thread); ``check`` measures the precision's error too."""
        with self.build_lock or nullcontext():
            return score_prepared(prepared, plan, self.scoring, check)

    def score(self, jobs: list[CheckpointJob], plan: EvalBatchPlan) -> Iterator[tuple[CheckpointJob, Outcome]]:
        """Score each job in turn while the prefetch thread prepares the next ones.

        Hub downloads a killed sweep left in the cache are removed first (when a ledger is given).
        """
        if self.ledger is not None:
            self.ledger.remove_leftovers()
        checked = False
        with Prefetcher(jobs, self.prepare, self.prefetch) as ahead:
            for prepared in ahead:
                try:
                    outcome = self.score_one(prepared, plan, check=not checked or prepared.job == jobs[-1])
                finally:
                    ahead.give_back(prepared)
                if isinstance(outcome, Scored):
                    checked = True
                    self.scoring = self.scoring.with_batch(outcome.notes["batch_size"])
                yield prepared.job, outcome
