"""Verify a warehouse: cataloged files exist, row counts match, every file matches its registered schema."""

from __future__ import annotations

from ldw.errors import first_line
from ldw.warehouse.catalog import Warehouse
from ldw.warehouse.parquet_io import file_schema_version
from ldw.warehouse.storage import ParquetStore
from ldw.warehouse.tables import DERIVED_ROOT, TABLES, TableSpec


def check_warehouse(wh: Warehouse) -> list[str]:
    """Every problem found, one line each naming the file; empty when the warehouse is sound."""
    store = wh.store
    problems: list[str] = []
    n_tokens = wh.token_count() if wh.eval_config() is not None else None
    if n_tokens is not None:
        for name in ("eval_sequences", "eval_tokens"):
            problems += _check_file(store, store.path(TABLES[name].file()), TABLES[name])
        path = store.path(TABLES["eval_tokens"].file())
        if store.exists(path) and (rows := store.parquet_file(path).metadata.num_rows) != n_tokens:
            problems.append(f"{path}: {rows} rows, catalog says {n_tokens}")
    problems += _check_surprisal(wh, n_tokens)
    for path in store.glob("**/.*.tmp"):
        problems.append(f"{path}: temporary file of an interrupted write (rerun the command that wrote it)")
    for path in store.glob(TABLES["traces"].glob):
        problems += _check_file(store, path, TABLES["traces"])
    return problems + _check_derived(wh)


def _check_surprisal(wh: Warehouse, n_tokens: int | None) -> list[str]:
    store, spec = wh.store, TABLES["surprisal"]
    problems = []
    done = wh.query("SELECT run_id, step, surprisal_file, n_tokens FROM checkpoints WHERE status = 'done'")
    cataloged = set()
    for run_id, step, relative, rows in done.iter_rows():
        path = store.path(relative)
        cataloged.add(path)
        found = _check_file(store, path, spec)
        problems += found
        if not found and rows != n_tokens:
            problems.append(f"{path}: cataloged with {rows} rows for {n_tokens} evaluation tokens")
        elif not found and (stored := store.parquet_file(path).metadata.num_rows) != rows:
            problems.append(f"{path}: {stored} rows, catalog says {rows} ({run_id} step {step})")
    for path in store.glob(spec.glob):
        if path not in cataloged:
            problems.append(f"{path}: surprisal file not cataloged as done (an interrupted sweep? rerun `ldw sweep`)")
    return problems


def _check_derived(wh: Warehouse) -> list[str]:
    """Each cataloged derived table: registered, has files, each matching its schema; no leftover version folders."""
    store = wh.store
    problems = []
    locations = dict(wh.query("SELECT table_name, location FROM derived_tables").rows())
    for table, location in locations.items():
        spec = TABLES.get(table)
        if spec is None or spec.kind != "derived":
            problems.append(f"{store.path(location)}: '{table}' is not a derived table this ldw knows")
            continue
        parts = store.glob(spec.part_file(location, "*"))
        if not parts:
            problems.append(f"{store.path(location)}: derived table '{table}' has no files")
        for path in parts:
            problems += _check_file(store, path, spec)
    for table in store.children(DERIVED_ROOT):
        for version in store.children(f"{DERIVED_ROOT}/{table}"):
            if f"{DERIVED_ROOT}/{table}/{version}" != locations.get(table):
                problems.append(
                    f"{store.path(DERIVED_ROOT, table, version)}: version folder not in the catalog, left by an "
                    f"interrupted write (rerun the command that writes '{table}', or delete the folder)"
                )
    return problems


def _check_file(store: ParquetStore, path: str, spec: TableSpec) -> list[str]:
    if not store.exists(path):
        return [f"{path}: cataloged file is missing"]
    try:
        found_schema = store.parquet_file(path).schema_arrow
    except Exception as exc:
        return [f"{path}: unreadable Parquet ({first_line(exc)})"]
    problems = []
    found_version = file_schema_version(found_schema)
    if found_version != spec.version:
        problems.append(f"{path}: schema version {found_version}, expected {spec.version}")
    problems += [f"{path}: {problem} (table '{spec.name}')" for problem in spec.problems(found_schema)]
    return problems
