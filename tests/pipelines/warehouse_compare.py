"""Helpers of the fault tests: run the real ``ldw`` CLI, copy warehouses, compare one with a reference."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from ldw.cli.main import app
from ldw.warehouse import Warehouse
from ldw.warehouse.failpoints import FAILPOINT_ENV, PAUSE_DIR_ENV, PAUSE_ENV, TRACE_ENV

SWEEP_ARGS = ["--device", "cpu", "--batch-size", "4"]
VERSION_FOLDER = re.compile(r"^(parquet/derived/[^/]+)/v-[0-9a-f]+")
SWEEP_RECORD = re.compile(r"^parquet/sweeps/[0-9a-f]+\.json$")
LOCK_FILES = ("writer.lock",)  # the writer lock and its holders' records: not data


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in (FAILPOINT_ENV, TRACE_ENV, PAUSE_ENV, PAUSE_DIR_ENV)}


def run_ldw(args: list[str], failpoint: str | None = None, quiet: bool = True) -> subprocess.CompletedProcess:
    """Run ``ldw ARGS [--quiet]`` in a fresh Python process (with ``LDW_FAILPOINT`` when given)."""
    env = _clean_env()
    if failpoint is not None:
        env[FAILPOINT_ENV] = failpoint
    return subprocess.run(
        [sys.executable, "-m", "ldw", *args, *(["--quiet"] if quiet else [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def traced(work: Callable[[], object], trace: Path) -> list[str]:
    """Run ``work`` in this process with the failpoint trace on; the points it reached, in order."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TRACE_ENV, str(trace))
        patch.delenv(FAILPOINT_ENV, raising=False)
        work()
    return trace.read_text().split()


def nth(trace: list[str], name: str, where: float | int) -> int:
    """Which occurrence of ``name`` to kill at: a fraction of them, or an index (negative: from the end)."""
    count = trace.count(name)
    assert count, f"the uninterrupted run never reached failpoint {name}"
    if isinstance(where, float):
        return max(1, math.ceil(where * count))
    return where if where > 0 else count + 1 + where


def kill_at(args: list[str], point: str, quiet: bool = True) -> None:
    """Run ``ldw ARGS`` until the failpoint kills it; fail if it finishes or dies otherwise."""
    proc = run_ldw(args, failpoint=point, quiet=quiet)
    assert proc.returncode == -signal.SIGKILL, (
        f"ldw {args[0]} with {FAILPOINT_ENV}={point} was not killed there (exit {proc.returncode}): "
        f"{proc.stderr[-2000:]}"
    )


def copy_warehouse(source: Path, target: Path) -> Path:
    """A plain copy of a warehouse folder (the catalog stores paths relative to it, so the copy reads its own files)."""
    shutil.copytree(source, target)
    return target


def warehouse_files(root: Path) -> list[str]:
    """Every file and folder under ``root`` but the writer lock's; random version and sweep ids as ``*``."""
    names = (str(p.relative_to(root)) for p in root.rglob("*"))
    return sorted(
        SWEEP_RECORD.sub("parquet/sweeps/*.json", VERSION_FOLDER.sub(r"\1/v-*", name))
        for name in names
        if not name.startswith(LOCK_FILES)
    )


def _key_columns(frame: pl.DataFrame) -> list[str]:
    keys = ("run_id", "trace", "spike_id", "schedule", "kind", "token_idx", "step", "name", "layer", "head", "rank")
    return [c for c in keys if c in frame.columns]


def warehouse_state(root: Path) -> dict[str, pl.DataFrame]:
    """Everything a run decides: catalog rows (no timestamps, sweep ids or locations) and every table's rows."""
    wh = Warehouse.open(root)
    state = {
        "runs": wh.query("SELECT * EXCLUDE (ingested_at) FROM runs ORDER BY run_id"),
        "checkpoints": wh.query("SELECT * EXCLUDE (probed_at, sweep_id) FROM checkpoints ORDER BY run_id, step"),
        "derived_tables": wh.query("SELECT table_name, params, schema_version FROM derived_tables ORDER BY 1"),
        "traces": wh.query("SELECT * FROM traces ORDER BY run_id, name, step"),
        "surprisal": wh.query("SELECT * FROM surprisal ORDER BY run_id, step, token_idx"),
    }
    for table in state["derived_tables"]["table_name"]:
        frame = wh.query(f'SELECT * FROM "{table}"')
        state[table] = frame.sort(_key_columns(frame), maintain_order=True)
    return state


def assert_same_warehouse(got: Path, want: Path) -> None:
    """Same files, catalog rows and table contents (surprisal bitwise) as ``want``, and ``ldw doctor`` passes."""
    got_files, want_files = set(warehouse_files(got)), set(warehouse_files(want))
    extra, missing = sorted(got_files - want_files), sorted(want_files - got_files)
    assert not extra and not missing, f"files differ from the uninterrupted run: stray {extra}, missing {missing}"
    got_state, want_state = warehouse_state(got), warehouse_state(want)
    assert list(got_state) == list(want_state)
    for name, frame in want_state.items():
        assert got_state[name].equals(frame), f"{name} differs from the uninterrupted run"
    bits = [s["surprisal"]["surprisal_bits"].to_numpy().view(np.uint32) for s in (got_state, want_state)]
    assert np.array_equal(*bits)
    assert_doctor_sound(got)


def assert_doctor_sound(root: Path) -> None:
    """``ldw doctor ROOT`` exits 0."""
    result = CliRunner().invoke(app, ["doctor", str(root)])
    assert result.exit_code == 0, result.output


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 300.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds (a loaded machine is slow)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Background:
    """``ldw ARGS`` running in its own process, its output going to files (read while it runs)."""

    def __init__(self, args: list[str], folder: Path, env: dict[str, str] | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.out, self.err = folder / "stdout", folder / "stderr"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ldw", *args], env={**_clean_env(), **(env or {})}, stdout=out, stderr=err
            )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    def stderr(self) -> str:
        """What it wrote to stderr so far."""
        return self.err.read_text()

    def finish(self, timeout: float = 300.0) -> int:
        """Wait for it to end; its exit code."""
        return self.proc.wait(timeout=timeout)


class Paused(Background):
    """``ldw ARGS`` paused at failpoint ``point`` (``NAME:N``) until :meth:`release` (see ``LDW_PAUSEPOINT``)."""

    def __init__(self, args: list[str], point: str, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        super().__init__(args, folder, {PAUSE_ENV: point, PAUSE_DIR_ENV: str(folder)})
        wait_for(lambda: (folder / "reached").exists() or self.proc.poll() is not None, f"ldw {args[0]} at {point}")
        assert self.proc.poll() is None, f"ldw {args[0]} ended before {point}: {self.stderr()[-2000:]}"

    def release(self, timeout: float = 300.0) -> int:
        """Let it go on; its exit code once it ends."""
        (self.folder / "release").touch()
        return self.finish(timeout)
