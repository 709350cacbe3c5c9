"""The sweep's prefetch thread and background writer: order, bounds, errors, and one catalog writer."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from ldw.sweep.config import SweepConfig
from ldw.sweep.jobs import CheckpointJob, Prepared
from ldw.sweep.run import run_sweep
from ldw.sweep.sources import Fetched
from ldw.sweep.streaming import BackgroundWriter, Prefetcher
from tests.pipelines.warehouse_compare import assert_same_warehouse

JOBS = [CheckpointJob("run", step, f"/ckpt/{step}") for step in range(8)]


def _downloading(folder: Path):
    """A prepare function that 'downloads' one real file per job into ``folder`` (removed on release)."""

    def prepare(job: CheckpointJob) -> Prepared:
        file = folder / f"step{job.step}" / "weights.bin"
        file.parent.mkdir(parents=True)
        file.write_bytes(b"w")
        return Prepared(job, error=f"job {job.step}", fetched=Fetched(file.parent, [file], keep=False))

    return prepare


@pytest.mark.parametrize("ahead", [0, 1, 2])
def test_prefetch_keeps_order_and_at_most_ahead_plus_one_on_disk(ahead: int, tmp_path: Path) -> None:
    seen, most = [], 0
    with Prefetcher(JOBS, _downloading(tmp_path), ahead) as prefetched:
        for item in prefetched:
            threading.Event().wait(0.02)  # scoring; the prefetch thread runs ahead meanwhile
            most = max(most, len(list(tmp_path.glob("*/weights.bin"))))
            seen.append(item.error)
            prefetched.give_back(item)
    assert seen == [f"job {job.step}" for job in JOBS]
    assert most == ahead + 1
    assert list(tmp_path.iterdir()) == []  # every download removed once given back


def test_a_prefetch_error_reaches_the_scorer_and_a_stopped_scorer_releases_everything(tmp_path: Path) -> None:
    prepare = _downloading(tmp_path)

    def failing(job: CheckpointJob) -> Prepared:
        if job.step == 3:
            raise RuntimeError("bug in prepare")
        return prepare(job)

    with pytest.raises(RuntimeError, match="bug in prepare"), Prefetcher(JOBS, failing, 1) as prefetched:
        for item in prefetched:
            prefetched.give_back(item)
    assert list(tmp_path.glob("*/weights.bin")) == []

    with pytest.raises(KeyboardInterrupt), Prefetcher(JOBS, prepare, 2) as prefetched:
        for item in prefetched:
            prefetched.give_back(item)
            raise KeyboardInterrupt
    assert list(tmp_path.glob("*/weights.bin")) == []


def test_writer_keeps_order_and_raises_its_error_in_the_submitter() -> None:
    written: list[int] = []

    def write(job: CheckpointJob, outcome: str) -> None:
        if job.step == 5:
            raise OSError(28, "No space left on device")
        written.append(job.step)

    with pytest.raises(OSError, match="No space left"), BackgroundWriter(write) as writer:
        for job in JOBS:
            writer.submit(job, "x")
    assert written == [0, 1, 2, 3, 4]
    with BackgroundWriter(lambda job, outcome: written.append(job.step)) as writer:
        for job in JOBS:
            writer.submit(job, "x")
    assert written[5:] == [job.step for job in JOBS]


def test_prefetching_changes_no_number_and_only_the_writer_opens_the_catalog(
    ingested_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ldw.warehouse.catalog as catalog

    sequential = shutil.copytree(ingested_warehouse, tmp_path / "sequential")
    run_sweep(sequential, SweepConfig(device="cpu", batch_size=4, prefetch=0), progress=False)
    opened: list[str] = []
    monkeypatch.setattr(
        catalog,
        "failpoint",
        lambda name: opened.append(threading.current_thread().name) if name == "catalog-open" else None,
    )
    run_sweep(ingested_warehouse, SweepConfig(device="cpu", batch_size=4, prefetch=2), progress=False)
    monkeypatch.undo()
    first = opened.index("ldw-writer")
    assert set(opened[:first]) == {"MainThread"} and set(opened[first:]) == {"ldw-writer"}
    assert_same_warehouse(ingested_warehouse, sequential)
