"""``ldw doctor --rebuild``: a new ``catalog.duckdb`` from the Parquet files and their records.

The way back from a damaged catalog. The old catalog is kept beside the new
one (``catalog.duckdb.damaged-TIMESTAMP``). What comes back:

* the evaluation set: the newest one in ``eval/`` whose files are readable
  and record it (``ldw_identity``);
* runs and checkpoints: from ``runs/RUN_ID.json``; a checkpoint is done when
  its surprisal file of that evaluation set is readable, has one row per
  token and records its run, step and set, else pending (a failed
  checkpoint comes back pending: the next sweep retries it and records why);
* sweeps: from ``sweeps/SWEEP_ID.json``;
* derived tables: the newest complete version of each (its marker, and the
  markers of the tables written with it), computed on that evaluation set.

Files the new catalog does not name are left for ``ldw doctor`` to report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ldw.warehouse.catalog import CATALOG_FILE, Warehouse
from ldw.warehouse.clock import utcnow
from ldw.warehouse.errors import WarehouseError
from ldw.warehouse.parquet_io import file_identity
from ldw.warehouse.records import JSON_COLUMNS, RUN_RECORD, SWEEP_RECORD, VERSION_MARKER
from ldw.warehouse.runs import RUN_COLUMNS
from ldw.warehouse.storage import ParquetStore
from ldw.warehouse.tables import DERIVED_ROOT, TABLES


@dataclass
class RebuildResult:
    """What the rebuilt catalog holds, and where the old one went."""

    kept_as: Path | None
    runs: int = 0
    done: int = 0
    pending: int = 0
    derived: list[str] = field(default_factory=list)
    eval_id: str | None = None


def rebuild_catalog(root: Path, storage: str | None = None) -> RebuildResult:
    """Rebuild ``root``'s catalog from its Parquet files (at ``storage`` when they live elsewhere)."""
    root = Path(root).resolve()
    store = ParquetStore(storage or _stored_url(root / CATALOG_FILE) or str(root / "parquet"))
    if not store.remote and not Path(store.url).is_dir():
        raise WarehouseError(f"{store.url}: no Parquet tables to rebuild from; --storage URL names them if elsewhere")
    eval_set = _eval_set(store)
    eval_id = eval_set["eval_id"] if eval_set else None
    runs = [r for r in (_json(store, p) for p in store.glob(RUN_RECORD.format(run_id="*"))) if r]
    sweeps = [s for s in (_json(store, p) for p in store.glob(SWEEP_RECORD.format(sweep_id="*"))) if s]
    derived = _derived_versions(store, eval_id)
    kept_as = _set_aside(root)
    wh = Warehouse.create(root, storage if storage else (store.url if store.remote else None))
    result = RebuildResult(kept_as, runs=len(runs), derived=sorted(derived), eval_id=eval_id)
    with wh.connect() as con:
        con.execute("BEGIN")
        if eval_set is not None:
            _insert_eval_set(con, eval_set)
        for record in sweeps:
            con.execute(
                "INSERT OR REPLACE INTO sweeps VALUES (?, ?, ?)",
                [record["sweep_id"], record["started_at"], json.dumps(record["settings"], sort_keys=True, default=str)],
            )
        for record in runs:
            _insert_run(con, record)
            for checkpoint in record["checkpoints"]:
                scored = _scored(store, eval_set, record["run"]["run_id"], checkpoint["step"])
                result.done += scored is not None
                result.pending += scored is None
                _insert_checkpoint(con, record["run"]["run_id"], checkpoint, scored)
        for table, marker in derived.items():
            con.execute(
                "INSERT INTO derived_tables VALUES (?, ?, ?, ?, ?)",
                [
                    table,
                    json.dumps(marker["params"], sort_keys=True, default=str),
                    marker["computed_at"],
                    marker["schema_version"],
                    marker["location"],
                ],
            )
        wh._create_views(con, in_transaction=True)
        con.execute("COMMIT")
    return result


def _stored_url(catalog: Path) -> str | None:
    """The Parquet URL recorded in the old catalog, when it can still be read."""
    try:
        con = duckdb.connect(str(catalog), read_only=True)
    except duckdb.Error:
        return None
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'parquet_url'").fetchone()
        return row[0] if row else None
    except duckdb.Error:
        return None
    finally:
        con.close()


def _set_aside(root: Path) -> Path | None:
    """Move the old catalog (and its write-ahead log) out of the way; where it went."""
    catalog = root / CATALOG_FILE
    if not catalog.exists():
        return None
    target = root / f"{CATALOG_FILE}.damaged-{utcnow():%Y%m%dT%H%M%S%f}"
    catalog.replace(target)
    wal = root / f"{CATALOG_FILE}.wal"
    if wal.exists():
        wal.replace(Path(f"{target}.wal"))
    return target


def _json(store: ParquetStore, path: str) -> dict[str, Any] | None:
    try:
        return json.loads(store.read_text(path) or "null")
    except json.JSONDecodeError:
        return None


def _identity(store: ParquetStore, path: str) -> tuple[dict[str, Any], int] | None:
    """A readable Parquet file's identity and row count (None when it is missing, unreadable or says nothing)."""
    try:
        handle = store.parquet_file(path)
        identity, rows = file_identity(handle.schema_arrow), handle.metadata.num_rows
    except (OSError, ValueError, pa.ArrowException, WarehouseError):
        return None
    return (identity, rows) if identity else None


def _eval_set(store: ParquetStore) -> dict[str, Any] | None:
    """The newest evaluation set whose two files are readable and record it."""
    found = []
    for eval_id in store.children(TABLES["eval_tokens"].folder):
        records = []
        for name, count in (("eval_sequences", "n_sequences"), ("eval_tokens", "n_tokens")):
            read = _identity(store, store.path(TABLES[name].file(eval_id=eval_id)))
            record = read[0].get("eval_set") if read else None
            if record is None or record.get("eval_id") != eval_id or record.get(count) != read[1]:
                break
            records.append(record)
        if len(records) == 2 and records[0] == records[1]:
            found.append(records[0])
    return max(found, key=lambda r: r["created_at"]) if found else None


def _insert_eval_set(con: duckdb.DuckDBPyConnection, record: dict[str, Any]) -> None:
    con.execute(
        "INSERT INTO eval_sets VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            record["eval_id"],
            json.dumps(record["config"], sort_keys=True),
            record["tokenizer_fingerprint"],
            record["vocab_size"],
            record["n_sequences"],
            record["n_tokens"],
            record["created_at"],
        ],
    )


def _insert_run(con: duckdb.DuckDBPyConnection, record: dict[str, Any]) -> None:
    run = dict(record["run"])
    for name in JSON_COLUMNS:
        run[name] = json.dumps(run[name], sort_keys=True, default=str) if run[name] is not None else None
    columns = [*RUN_COLUMNS, "trace_rows"]
    con.execute(
        f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [run.get(name) for name in columns],
    )


def _scored(store: ParquetStore, eval_set: dict[str, Any] | None, run_id: str, step: int) -> dict[str, Any] | None:
    """The identity of a checkpoint's surprisal file when it is sound (None: the checkpoint is pending)."""
    if eval_set is None:
        return None
    relative = TABLES["surprisal"].file(eval_id=eval_set["eval_id"], run_id=run_id, step=step)
    read = _identity(store, store.path(relative))
    if read is None:
        return None
    identity, rows = read
    said = (identity.get("run_id"), identity.get("step"), identity.get("eval_id"))
    if said != (run_id, step, eval_set["eval_id"]) or rows != eval_set["n_tokens"]:
        return None
    return {**identity, "file": relative, "rows": rows}


def _insert_checkpoint(
    con: duckdb.DuckDBPyConnection, run_id: str, checkpoint: dict[str, Any], scored: dict[str, Any] | None
) -> None:
    values = [run_id, checkpoint["step"], checkpoint["tokens_seen"], checkpoint["path"], checkpoint["content_hash"]]
    values.append(checkpoint["duplicate_of"])
    if scored is None:
        values += ["pending", None, None, None, None, None]
    else:
        values += ["done", None, scored["written_at"], scored["file"], scored["rows"], scored["sweep_id"]]
    con.execute(f"INSERT INTO checkpoints VALUES ({', '.join('?' * len(values))})", values)


def _derived_versions(store: ParquetStore, eval_id: str | None) -> dict[str, dict[str, Any]]:
    """Per derived table, the marker of its newest complete version computed on ``eval_id`` (with its location)."""
    markers: dict[tuple[str, str], dict[str, Any]] = {}
    for table in store.children(DERIVED_ROOT):
        for version in store.children(f"{DERIVED_ROOT}/{table}"):
            location = f"{DERIVED_ROOT}/{table}/{version}"
            marker = _json(store, store.path(location, VERSION_MARKER))
            spec = TABLES.get(table)
            if marker and spec is not None and spec.kind == "derived" and store.glob(spec.part_file(location, "*")):
                markers[(table, marker.get("version_id"))] = {**marker, "location": location}
    newest: dict[str, dict[str, Any]] = {}
    for (table, version_id), marker in markers.items():
        complete = all((other, version_id) in markers for other in marker.get("tables", [table]))
        if not complete or marker.get("eval_id") != eval_id:
            continue
        if table not in newest or marker["computed_at"] > newest[table]["computed_at"]:
            newest[table] = marker
    return newest
