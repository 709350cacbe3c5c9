"""Fixtures shared by the tests that run real ldw processes against a warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ldw.sweep.config import SweepConfig
from ldw.sweep.run import run_sweep
from tests.pipelines.warehouse_compare import Background, copy_warehouse


@pytest.fixture()
def started() -> Iterator[list[Background]]:
    """Processes a test starts; any still running at its end (a failed test) is killed."""
    procs: list[Background] = []
    yield procs
    for background in procs:
        if background.proc.poll() is None:
            background.proc.kill()
            background.proc.wait()


@pytest.fixture(scope="module")
def swept(_ingested: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny warehouse, swept (a test module may define its own ``swept``)."""
    path = copy_warehouse(_ingested, tmp_path_factory.mktemp("swept") / "warehouse")
    run_sweep(path, SweepConfig(device="cpu", batch_size=4), progress=False)
    return path
