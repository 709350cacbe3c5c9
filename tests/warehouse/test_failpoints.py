"""Crash failpoints: the N-th time a named point is reached the process dies by SIGKILL, otherwise nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ldw.warehouse.errors import WarehouseError
from ldw.warehouse.failpoints import FAILPOINT_ENV, TRACE_ENV, failpoint

SCRIPT = "from ldw.warehouse.failpoints import failpoint\nfor name in 'abab': failpoint(name); print(name, flush=True)"


def _run(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in (FAILPOINT_ENV, TRACE_ENV)}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_nth_hit_of_the_named_point_kills_the_process(tmp_path: Path) -> None:
    killed = _run({FAILPOINT_ENV: "b:2", TRACE_ENV: str(tmp_path / "trace")})
    assert killed.returncode == -signal.SIGKILL
    assert killed.stdout.split() == ["a", "b", "a"]  # died at the second "b", before printing it
    assert (tmp_path / "trace").read_text().split() == ["a", "b", "a", "b"]
    never = _run({FAILPOINT_ENV: "b:3"})
    assert never.returncode == 0 and never.stdout.split() == list("abab")


def test_a_malformed_failpoint_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRACE_ENV, raising=False)
    monkeypatch.setenv(FAILPOINT_ENV, "parquet-renamed")
    with pytest.raises(WarehouseError, match="expected NAME:N"):
        failpoint("parquet-renamed")
    monkeypatch.setenv(FAILPOINT_ENV, "parquet-renamed:0")
    with pytest.raises(WarehouseError, match="N >= 1"):
        failpoint("catalog-open")
