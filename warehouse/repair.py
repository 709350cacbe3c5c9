"""``ldw doctor --repair``: mend what the doctor found, so every command can trust the warehouse again.

Each repair keeps what is sound and turns what is not back into work for the
command that makes it: a damaged or mismatched surprisal file is removed and
its checkpoint set back to pending (``ldw sweep`` scores it again), a damaged
derived table is dropped (its command computes it again), a lost traces file
is read again from the run's training log, leftovers of interrupted commands
are removed, the JSON records are rewritten from the catalog, the views are
re-created, and a catalog with tables missing is rebuilt from the Parquet
files (:mod:`ldw.warehouse.rebuild`). Run it holding the writer lock.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ldw.warehouse.catalog import Warehouse
from ldw.warehouse.doctor import Finding
from ldw.warehouse.errors import WarehouseError
from ldw.warehouse.records import SWEEP_RECORD, VERSION_MARKER, dumps, sweep_record
from ldw.warehouse.tables import TABLES

# Re-reads a run's training log into its traces file; returns the rows written (None: the log is gone).
TraceReader = Callable[[Warehouse, str], int | None]
ORDER = ("rescore", "drop_derived", "traces", "remove", "marker", "run_record", "sweep_record", "views")  # views last


def repair(wh: Warehouse, findings: list[Finding], read_traces: TraceReader | None = None) -> list[str]:
    """Mend every finding that can be mended; one line per action taken (what could not be done says why)."""
    done: list[str] = []
    seen: set[tuple] = set()
    for kind in ORDER[:-1]:
        for finding in findings:
            action = finding.repair
            if action is not None and action[0] == kind and action not in seen:
                seen.add(action)
                done.append(_apply(wh, finding, action, read_traces))
    if seen or any(f.repair == ("views",) for f in findings):  # views follow the files they read
        done.append(_refresh_views(wh))
    return done


def _apply(wh: Warehouse, finding: Finding, action: tuple, read_traces: TraceReader | None) -> str:
    kind = action[0]
    if kind == "rescore":
        return _rescore(wh, action[1], action[2])
    if kind == "drop_derived":
        return _drop_derived(wh, action[1])
    if kind == "traces":
        if read_traces is None or (rows := read_traces(wh, action[1])) is None:
            return f"{finding.where}: not mended: the run's training log is gone; {finding.fix}"
        return f"{finding.where}: read {rows} rows again from run {action[1]}'s training log"
    if kind == "remove":
        wh.store.remove(action[1])
        return f"{action[1]}: removed"
    if kind == "marker":
        return _write_marker(wh, action[1])
    if kind == "run_record":
        wh.save_run_record(action[1])
        return f"{finding.where}: rewritten from the catalog"
    if kind == "sweep_record":
        with wh.connect() as con:
            record = sweep_record(con, action[1])
        wh.store.write_text(dumps(record), wh.store.path(SWEEP_RECORD.format(sweep_id=action[1])))
        return f"{finding.where}: rewritten from the catalog"
    raise ValueError(f"unknown repair {kind}")


def _refresh_views(wh: Warehouse) -> str:
    try:
        wh.refresh_views()
    except WarehouseError as exc:
        return f"views not re-created: {exc}"
    return f"{wh.catalog_path}: views re-created"


def _rescore(wh: Warehouse, run_id: str, step: int) -> str:
    """Set a checkpoint back to pending (its sweep is redone) and remove its file."""
    with wh.connect() as con:
        con.execute("BEGIN")
        row = con.execute("SELECT surprisal_file FROM checkpoints WHERE run_id = ? AND step = ?", [run_id, step])
        old = row.fetchone()
        con.execute(
            "UPDATE checkpoints SET status = 'pending', error = NULL, probed_at = NULL, surprisal_file = NULL, "
            "n_tokens = NULL, sweep_id = NULL WHERE run_id = ? AND step = ?",
            [run_id, step],
        )
        con.execute("COMMIT")
    if old is not None and old[0]:  # removed only once the catalog no longer points at it
        wh.store.remove(wh.store.path(old[0]))
    return f"{run_id} step {step}: back to pending (`ldw sweep -w {wh.root}` scores it again)"


def _drop_derived(wh: Warehouse, table: str) -> str:
    """Drop a damaged derived table (catalog row, view and files); its command computes it again."""
    with wh.connect() as con:
        con.execute("BEGIN")
        row = con.execute("DELETE FROM derived_tables WHERE table_name = ? RETURNING location", [table]).fetchone()
        con.execute(f'DROP VIEW IF EXISTS "{table}"')
        con.execute("COMMIT")
    if row is not None:
        wh.store.remove(wh.store.path(row[0]))
    return f"derived table '{table}': dropped (its command writes it again)"


def _write_marker(wh: Warehouse, table: str) -> str:
    """Write a cataloged version's marker again from its catalog row."""
    rows = wh.query("SELECT params, computed_at, location FROM derived_tables WHERE table_name = ?", [table])
    params, computed_at, location = rows.row(0)
    marker = {
        "table": table,
        "version_id": Path(location).name.removeprefix("v-"),
        "tables": [table],
        "params": json.loads(params),
        "schema_version": TABLES[table].version,
        "eval_id": wh.eval_id(),
        "computed_at": computed_at.isoformat(),
    }
    path = wh.store.path(location, VERSION_MARKER)
    wh.store.write_text(dumps(marker), path)
    return f"{path}: rewritten from the catalog"
