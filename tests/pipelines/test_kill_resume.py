"""A real ``ldw`` process SIGKILLed at exact points of a sweep, metrics and ingest, then resumed.

Each case runs the CLI in a subprocess with ``LDW_FAILPOINT=NAME:N`` (see
:mod:`ldw.warehouse.failpoints`), checks it died by SIGKILL, reruns the same work
without the failpoint and compares the warehouse with an uninterrupted run:
catalog rows, Parquet contents (surprisal bitwise), the files on disk (no
stray temporary or version folders) and ``ldw doctor``. Kill points are picked
from the trace of the uninterrupted run, so they land mid-operation however
many times the code opens the catalog. Two kill points per command run by
default; the third (marked ``full``) with ``--runslow``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ldw.curves.config import MetricsConfig
from ldw.curves.store import compute_metrics
from ldw.ingest.register import ingest_paths
from ldw.sweep.config import SweepConfig
from ldw.sweep.run import run_sweep
from ldw.warehouse import Warehouse
from tests.pipelines.warehouse_compare import SWEEP_ARGS, assert_same_warehouse, copy_warehouse, kill_at, nth, traced

CHUNK_TOKENS = 400  # several metric chunks (parts) on the tiny evaluation set


def _sweep(path: Path) -> None:
    run_sweep(path, SweepConfig(device="cpu", batch_size=4), progress=False)


def _metrics(path: Path) -> None:
    compute_metrics(path, MetricsConfig(chunk_tokens=CHUNK_TOKENS), progress=False)


@pytest.fixture(scope="module")
def swept(_ingested: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The uninterrupted sweep of the tiny warehouse, and the failpoints it passed."""
    root = tmp_path_factory.mktemp("swept")
    path = copy_warehouse(_ingested, root / "warehouse")
    return path, traced(lambda: _sweep(path), root / "trace")


@pytest.fixture(scope="module")
def measured(swept: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """A swept warehouse holding metrics of other parameters, the same after an uninterrupted rerun, its trace."""
    root = tmp_path_factory.mktemp("measured")
    before = copy_warehouse(swept[0], root / "before")
    compute_metrics(before, MetricsConfig(window=0.5, chunk_tokens=CHUNK_TOKENS), progress=False)
    after = copy_warehouse(before, root / "after")
    return before, after, traced(lambda: _metrics(after), root / "trace")


@pytest.fixture(scope="module")
def ingested(tiny_runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """An uninterrupted ingest of both tiny runs into a new warehouse, and its trace."""
    root = tmp_path_factory.mktemp("ingested")
    path = root / "warehouse"
    return path, traced(lambda: ingest_paths(path, tiny_runs, progress=False), root / "trace")


@pytest.mark.parametrize(
    "name, where",
    [("parquet-written", 0.5), pytest.param("parquet-renamed", 0.25, marks=pytest.mark.full), ("catalog-open", 0.75)],
)
def test_killed_sweep_resumes_to_the_uninterrupted_warehouse(
    name: str, where: float, _ingested: Path, swept: tuple[Path, list[str]], tmp_path: Path
) -> None:
    reference, trace = swept
    path = copy_warehouse(_ingested, tmp_path / "warehouse")
    kill_at(["sweep", "-w", str(path), *SWEEP_ARGS], f"{name}:{nth(trace, name, where)}")
    done = Warehouse.open(path).checkpoints().filter(status="done").height
    assert done < Warehouse.open(reference).checkpoints().height
    _sweep(path)
    assert_same_warehouse(path, reference)


@pytest.mark.parametrize(
    "name, where",
    [("parquet-written", 0.5), pytest.param("parquet-renamed", -1, marks=pytest.mark.full), ("catalog-open", -2)],
)
def test_killed_metrics_resume_to_the_uninterrupted_warehouse(
    name: str, where: float | int, measured: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    before, reference, trace = measured
    path = copy_warehouse(before, tmp_path / "warehouse")
    kill_at(["metrics", "-w", str(path), "--chunk-tokens", str(CHUNK_TOKENS)], f"{name}:{nth(trace, name, where)}")
    _metrics(path)
    assert_same_warehouse(path, reference)


@pytest.mark.parametrize(
    "name, where",
    [("catalog-open", 1), pytest.param("catalog-open", 0.5, marks=pytest.mark.full), ("parquet-written", 1)],
)
def test_killed_ingest_resumes_to_the_uninterrupted_warehouse(
    name: str, where: float | int, tiny_runs: list[Path], ingested: tuple[Path, list[str]], tmp_path: Path
) -> None:
    reference, trace = ingested
    path = tmp_path / "warehouse"
    kill_at(["ingest", *map(str, tiny_runs), "-w", str(path)], f"{name}:{nth(trace, name, where)}")
    ingest_paths(path, tiny_runs, progress=False)
    assert_same_warehouse(path, reference)
