"""Small JSON records beside the Parquet tables: what the catalog knows that no Parquet file holds.

With them (and each Parquet file's ``ldw_identity``) the Parquet root alone is
enough to rebuild ``catalog.duckdb`` (``ldw doctor --rebuild``):

* ``runs/RUN_ID.json``: the run's catalog row and its checkpoints (step,
  tokens seen, path, weights hash, duplicate of), rewritten by every ingest;
* ``sweeps/SWEEP_ID.json``: a sweep's start time and scoring settings;
* ``derived/TABLE/v-ID/_ldw_version.json``: a derived table version's
  parameters and the tables written with it, written once its parts are
  complete, just before the catalog switches to it.

The catalog stays the authority: a record that differs from it is rewritten
from it (``ldw doctor --repair``).
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

RUN_RECORD = "runs/{run_id}.json"
SWEEP_RECORD = "sweeps/{sweep_id}.json"
VERSION_MARKER = "_ldw_version.json"
CHECKPOINT_FIELDS = ("step", "tokens_seen", "path", "content_hash", "duplicate_of")
JSON_COLUMNS = ("model_config", "metadata")


def dumps(record: dict[str, Any]) -> str:
    """A record as stored: sorted keys, timestamps as ISO text."""
    return json.dumps(record, sort_keys=True, default=str, indent=1) + "\n"


def run_record(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any] | None:
    """The record of one run as the catalog has it (None when the run is not cataloged)."""
    cursor = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
    columns = [d[0] for d in cursor.description]
    row = cursor.fetchone()
    if row is None:
        return None
    run = dict(zip(columns, row, strict=True))
    for name in JSON_COLUMNS:
        run[name] = json.loads(run[name]) if run[name] is not None else None
    checkpoints = con.execute(
        f"SELECT {', '.join(CHECKPOINT_FIELDS)} FROM checkpoints WHERE run_id = ? ORDER BY step", [run_id]
    ).fetchall()
    return {"run": run, "checkpoints": [dict(zip(CHECKPOINT_FIELDS, ck, strict=True)) for ck in checkpoints]}


def sweep_record(con: duckdb.DuckDBPyConnection, sweep_id: str) -> dict[str, Any] | None:
    """The record of one sweep as the catalog has it (None when it is not cataloged)."""
    row = con.execute("SELECT started_at, settings FROM sweeps WHERE sweep_id = ?", [sweep_id]).fetchone()
    if row is None:
        return None
    return {"sweep_id": sweep_id, "started_at": row[0], "settings": json.loads(row[1])}
