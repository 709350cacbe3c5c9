"""Deterministic crash points, for crash tests only.

Storage code calls :func:`failpoint` at the moments where a crash matters
(just before and after a Parquet rename, when the catalog is opened, right
after a derived table's catalog switch). Normally
it returns at once. With ``LDW_FAILPOINT=NAME:N`` in the environment, the
process kills itself with SIGKILL the N-th time it reaches the point ``NAME``,
so a test can crash a real ``ldw`` command at an exact place and check that
rerunning it gives the same warehouse as an uninterrupted run. With
``LDW_FAILPOINT_TRACE=FILE`` every point reached is appended to FILE, one name
a line, so a test can pick kill points that land mid-operation.
"""

from __future__ import annotations

import os
import signal

from ldw.warehouse.errors import WarehouseError

FAILPOINT_ENV = "LDW_FAILPOINT"
TRACE_ENV = "LDW_FAILPOINT_TRACE"

_parsed: dict[tuple[str, str], tuple[tuple[str, int] | None, str | None]] = {}
_hits: dict[str, int] = {}


def _settings(spec: str, trace: str) -> tuple[tuple[str, int] | None, str | None]:
    """The kill target and trace file of these environment values, parsed once."""
    if (spec, trace) not in _parsed:
        target = None
        if spec:
            name, _, count = spec.rpartition(":")
            if not name or not count.isdigit() or int(count) < 1:
                raise WarehouseError(f"{FAILPOINT_ENV}='{spec}': expected NAME:N with N >= 1 (e.g. parquet-renamed:3)")
            target = (name, int(count))
        _parsed[(spec, trace)] = (target, trace or None)
    return _parsed[(spec, trace)]


def failpoint(name: str) -> None:
    """Kill this process with SIGKILL when ``name`` is reached for the N-th time (``LDW_FAILPOINT=name:N``)."""
    spec, trace = os.environ.get(FAILPOINT_ENV, ""), os.environ.get(TRACE_ENV, "")
    if not spec and not trace:
        return
    target, trace_file = _settings(spec, trace)
    if trace_file is not None:
        with open(trace_file, "a", encoding="utf-8") as handle:
            handle.write(name + "\n")
    if target is not None and target[0] == name:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] == target[1]:
            os.kill(os.getpid(), signal.SIGKILL)
