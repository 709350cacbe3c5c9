"""Verify a warehouse: cataloged files exist, row counts match, schemas match their versions."""

from __future__ import annotations

from ldw.warehouse.catalog import Warehouse
from ldw.warehouse.derived import DERIVED_VERSION
from ldw.warehouse.parquet_io import file_schema_version
from ldw.warehouse.schemas import PARQUET_TABLES
from ldw.warehouse.storage import ParquetStore


def check_warehouse(wh: Warehouse) -> list[str]:
    """Every problem found, one line each naming the file; empty when the warehouse is sound."""
    store = wh.store
    problems: list[str] = []
    n_tokens = wh.token_count() if wh.eval_config() is not None else None
    if n_tokens is not None:
        for name in ("eval_sequences", "eval_tokens"):
            problems += _check_file(store, store.path("eval", f"{name}.parquet"), PARQUET_TABLES[name])
        path = store.path("eval", "eval_tokens.parquet")
        if store.exists(path) and (rows := store.parquet_file(path).metadata.num_rows) != n_tokens:
            problems.append(f"{path}: {rows} rows, catalog says {n_tokens}")
    done = wh.query("SELECT run_id, step, surprisal_file, n_tokens FROM checkpoints WHERE status = 'done'")
    cataloged = set()
    for run_id, step, relative, rows in done.iter_rows():
        path = store.path(relative)
        cataloged.add(path)
        found = _check_file(store, path, PARQUET_TABLES["surprisal"])
        problems += found
        if not found and rows != n_tokens:
            problems.append(f"{path}: cataloged with {rows} rows for {n_tokens} evaluation tokens")
        elif not found and (stored := store.parquet_file(path).metadata.num_rows) != rows:
            problems.append(f"{path}: {stored} rows, catalog says {rows} ({run_id} step {step})")
    for path in store.glob("surprisal/*/*.parquet"):
        if path not in cataloged:
            problems.append(f"{path}: surprisal file not cataloged as done (an interrupted sweep? rerun `ldw sweep`)")
    for path in store.glob("**/.*.tmp"):
        problems.append(f"{path}: temporary file of an interrupted write (rerun the command that wrote it)")
    for path in store.glob("traces/*.parquet"):
        problems += _check_file(store, path, PARQUET_TABLES["traces"])
    for table, location in wh.query("SELECT table_name, location FROM derived_tables").rows():
        parts = store.glob(f"{location}/*.parquet")
        if not parts:
            problems.append(f"{store.path(location)}: derived table '{table}' has no files")
        for path in parts:
            problems += _check_file(store, path, (None, DERIVED_VERSION))
    return problems


def _check_file(store: ParquetStore, path: str, spec: tuple) -> list[str]:
    schema, version = spec
    if not store.exists(path):
        return [f"{path}: cataloged file is missing"]
    try:
        found_schema = store.parquet_file(path).schema_arrow
    except Exception as exc:
        return [f"{path}: unreadable Parquet ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"]
    problems = []
    found_version = file_schema_version(found_schema)
    if found_version != version:
        problems.append(f"{path}: schema version {found_version}, expected {version}")
    if schema is not None and not found_schema.remove_metadata().equals(schema.remove_metadata()):
        problems.append(f"{path}: columns {found_schema.names} do not match the {version} schema {schema.names}")
    return problems
