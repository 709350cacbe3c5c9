"""Deterministic crash points, for crash tests only.

Storage code calls :func:`failpoint` at the moments where a crash matters
(just before and after a Parquet rename, when the catalog is opened, right
after a derived table's catalog switch). Normally
it returns at once. With ``LDW_FAILPOINT=NAME:N`` in the environment, the
process kills itself with SIGKILL the N-th time it reaches the point ``NAME``,
so a test can crash a real ``ldw`` command at an exact place and check that
rerunning it gives the same warehouse as an uninterrupted run. With
``LDW_FAILPOINT_TRACE=FILE`` every point reached is appended to FILE, one name
a line, so a test can pick kill points that land mid-operation. With
``LDW_PAUSEPOINT=NAME:N`` and ``LDW_PAUSEPOINT_DIR=DIR`` the process instead
pauses there: it creates ``DIR/reached`` and waits until ``DIR/release``
exists, so a test can run other commands while this one is mid-operation.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ldw.warehouse.errors import WarehouseError

FAILPOINT_ENV = "LDW_FAILPOINT"
TRACE_ENV = "LDW_FAILPOINT_TRACE"
PAUSE_ENV = "LDW_PAUSEPOINT"
PAUSE_DIR_ENV = "LDW_PAUSEPOINT_DIR"

_parsed: dict[tuple[str, str], tuple[tuple[str, int] | None, str | None]] = {}
_hits: dict[str, int] = {}


def _target(spec: str, env: str) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, count = spec.rpartition(":")
    if not name or not count.isdigit() or int(count) < 1:
        raise WarehouseError(f"{env}='{spec}': expected NAME:N with N >= 1 (e.g. parquet-renamed:3)")
    return name, int(count)


def _settings(spec: str, trace: str) -> tuple[tuple[str, int] | None, str | None]:
    """The kill target and trace file of these environment values, parsed once."""
    if (spec, trace) not in _parsed:
        _parsed[(spec, trace)] = (_target(spec, FAILPOINT_ENV), trace or None)
    return _parsed[(spec, trace)]


def _reached(target: tuple[str, int] | None, name: str, counter: str) -> bool:
    """Whether this is the N-th time ``target``'s point is reached (counted per kind of point)."""
    if target is None or target[0] != name:
        return False
    _hits[counter] = _hits.get(counter, 0) + 1
    return _hits[counter] == target[1]


def failpoint(name: str) -> None:
    """Kill this process with SIGKILL (or pause it) when ``name`` is reached for the N-th time.

    ``LDW_FAILPOINT=name:N`` kills; ``LDW_PAUSEPOINT=name:N`` pauses (see the module docstring).
    """
    spec, trace, pause = (os.environ.get(env, "") for env in (FAILPOINT_ENV, TRACE_ENV, PAUSE_ENV))
    if not spec and not trace and not pause:
        return
    target, trace_file = _settings(spec, trace)
    if trace_file is not None:
        with open(trace_file, "a", encoding="utf-8") as handle:
            handle.write(name + "\n")
    if _reached(target, name, name):
        os.kill(os.getpid(), signal.SIGKILL)
    if _reached(_target(pause, PAUSE_ENV), name, f"pause:{name}"):
        folder = Path(os.environ[PAUSE_DIR_ENV])
        (folder / "reached").touch()
        while not (folder / "release").exists():
            time.sleep(0.05)
