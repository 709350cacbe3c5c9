"""A warehouse on a disk that fills up or turns read-only: a one-line error, nothing half-written, a clean resume.

The disk is a real tmpfs mounted for the test (we run as root, so file
permissions would not stop a write); the test is skipped where mounting is
not permitted.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ldw.sweep.config import SweepConfig
from ldw.sweep.run import run_sweep
from ldw.warehouse import Warehouse
from tests.pipelines.warehouse_compare import (
    SWEEP_ARGS,
    assert_doctor_sound,
    assert_same_warehouse,
    copy_warehouse,
    run_ldw,
)

# Room beyond the unswept warehouse for the catalog's growth and a couple of 12 KB surprisal files, not 14.
ROOM_FOR_A_FEW_KB = 900
ROOM_FOR_ALL_KB = 8192


class Tmpfs:
    """A tmpfs mounted on a folder for one test."""

    def __init__(self, where: Path) -> None:
        self.path = where
        self.mounted = False

    def mount(self, size_kb: int) -> None:
        """Mount a tmpfs of ``size_kb`` KiB; skip the test when this machine does not allow it."""
        self.path.mkdir(exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root in a privileged container): {done.stderr.strip()}")
        self.mounted = True

    def remount(self, options: str) -> None:
        """Change the mount's options (e.g. ``size=4096k`` or ``ro``)."""
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True)

    def fill(self) -> None:
        """Take every free byte with a filler file."""
        block = b"\0" * 4096
        with open(self.path / "filler", "wb", buffering=0) as handle:
            try:
                while handle.write(block):
                    pass
            except OSError:
                pass

    def unmount(self) -> None:
        """Unmount (lazily, should a file still be open)."""
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=True)
            self.mounted = False


@pytest.fixture()
def disk(tmp_path: Path) -> Iterator[Tmpfs]:
    """An unmounted tmpfs; always unmounted after the test."""
    tmpfs = Tmpfs(tmp_path / "disk")
    try:
        yield tmpfs
    finally:
        tmpfs.unmount()


@pytest.fixture(scope="module")
def reference(_ingested: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny warehouse swept without trouble."""
    path = copy_warehouse(_ingested, tmp_path_factory.mktemp("reference") / "warehouse")
    run_sweep(path, SweepConfig(device="cpu", batch_size=4), progress=False)
    return path


def _size_kb(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) // 1024


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_full_disk_stops_the_sweep_cleanly_and_it_resumes(_ingested: Path, reference: Path, disk: Tmpfs) -> None:
    disk.mount(_size_kb(_ingested) + ROOM_FOR_A_FEW_KB)
    path = copy_warehouse(_ingested, disk.path / "warehouse")
    line = _one_line_error(run_ldw(["sweep", "-w", str(path), *SWEEP_ARGS]))
    assert line.startswith(f"error: {path}/") and "the disk is full (No space left on device)" in line

    wh, want = Warehouse.open(path), Warehouse.open(reference)
    done = wh.checkpoints().filter(status="done")
    assert 0 < done.height < want.checkpoints().height and wh.checkpoints().filter(status="failed").height == 0
    for run_id, step, file in done.select("run_id", "step", "surprisal_file").iter_rows():
        got = pq.read_table(wh.store.path(file))["surprisal_bits"].to_numpy()
        expected = pq.read_table(want.surprisal_path(run_id, step))["surprisal_bits"].to_numpy()
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))
    written = sorted(str(p) for p in (path / "parquet" / "surprisal").rglob("*") if p.is_file())
    assert written == sorted(wh.store.path(f) for f in done["surprisal_file"]), (
        "partial, temporary or uncataloged files left"
    )
    assert_doctor_sound(path)

    disk.remount(f"size={_size_kb(_ingested) + ROOM_FOR_ALL_KB}k")
    run_sweep(path, SweepConfig(device="cpu", batch_size=4), progress=False)
    assert_same_warehouse(path, reference)


def test_a_disk_already_full_fails_at_the_catalog_with_one_line(_ingested: Path, disk: Tmpfs) -> None:
    disk.mount(_size_kb(_ingested) + ROOM_FOR_A_FEW_KB)
    path = copy_warehouse(_ingested, disk.path / "warehouse")
    disk.fill()
    line = _one_line_error(run_ldw(["sweep", "-w", str(path), *SWEEP_ARGS]))
    assert line.startswith(f"error: {path}/") and "the disk is full (No space left on device)" in line
    (disk.path / "filler").unlink()
    assert Warehouse.open(path).checkpoints().filter(status="done").height == 0
    assert not list((path / "parquet").glob("surprisal/*/*/*"))
    assert_doctor_sound(path)


def test_read_only_warehouse_refuses_sweep_and_metrics_and_changes_nothing(_ingested: Path, disk: Tmpfs) -> None:
    disk.mount(_size_kb(_ingested) + ROOM_FOR_ALL_KB)
    path = copy_warehouse(_ingested, disk.path / "warehouse")
    run_sweep(path, SweepConfig(runs=("seed0",), device="cpu", batch_size=4), progress=False)  # seed1 left to sweep
    before = _digests(path)
    disk.remount("ro")
    for command in (["sweep", *SWEEP_ARGS], ["metrics"]):
        line = _one_line_error(run_ldw([command[0], "-w", str(path), *command[1:]]))
        assert line.startswith(f"error: {path}/") and "the warehouse is not writable" in line, line
    assert _digests(path) == before
