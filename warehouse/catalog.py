"""The warehouse: one folder with ``catalog.duckdb`` and, by default, ``parquet/``.

The Parquet tables may instead live on object storage (see
``ldw.warehouse.storage``), chosen once when the warehouse is created.
Connections are short-lived: every operation opens the catalog, does its work
and closes it, so a sweep writing and an app reading can take turns on the
DuckDB file lock. Parquet tables are exposed as views with absolute paths,
re-created whenever the warehouse is opened for writing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from ldw.warehouse.clock import utcnow
from ldw.warehouse.derived import DerivedMixin
from ldw.warehouse.errors import WarehouseError
from ldw.warehouse.evalset import EvalSetMixin
from ldw.warehouse.failpoints import failpoint
from ldw.warehouse.runs import RunsMixin
from ldw.warehouse.storage import ParquetStore
from ldw.warehouse.surprisal import SurprisalMixin
from ldw.warehouse.tables import CATALOG_TABLES, TABLES
from ldw.warehouse.traces import TracesMixin

CATALOG_FILE = "catalog.duckdb"
FORMAT_VERSION = "2"
LOCK_WAIT_S = 60.0

DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int64": "BIGINT",
    "int32": "INTEGER",
    "float": "FLOAT",
    "double": "DOUBLE",
    "list<item: int32>": "INTEGER[]",
}


class CatalogCore:
    """Folder, connections and views; the table-specific methods are mixins."""

    def __init__(self, root: Path, read_only: bool = False) -> None:
        self.root = Path(root).resolve()
        self.read_only = read_only
        self._store: ParquetStore | None = None

    @property
    def catalog_path(self) -> Path:
        """Path of ``catalog.duckdb``."""
        return self.root / CATALOG_FILE

    @property
    def store(self) -> ParquetStore:
        """Where the bulk Parquet tables live (``parquet/`` beside the catalog unless chosen otherwise)."""
        if self._store is None:
            with self.connect():  # every connection attaches the store, reading its URL on first use
                pass
        assert self._store is not None
        return self._store

    @classmethod
    def create(cls, root: Path, storage: str | None = None) -> Warehouse:
        """Create (or open) a warehouse folder with its catalog tables and views.

        ``storage`` is an fsspec URL for the Parquet tables (e.g.
        ``s3://bucket/prefix``); it can only be chosen when the warehouse is new.
        """
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WarehouseError(f"{root}: cannot create warehouse folder ({exc.strerror})") from exc
        wh = cls(root)
        if storage is not None:
            wh._set_storage(storage)
        wh._init_catalog()
        return wh

    def _set_storage(self, storage: str) -> None:
        url = ParquetStore(storage).url
        with self.connect() as con:
            con.execute(CATALOG_TABLES["meta"].ddl)
            current = con.execute("SELECT value FROM meta WHERE key = 'parquet_url'").fetchone()
            if current is not None and current[0] != url:
                raise WarehouseError(f"{self.catalog_path}: Parquet storage is {current[0]}, not {url}")
            has_data = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'eval_sets'"
            ).fetchone()[0]
            if current is None and has_data:
                raise WarehouseError(f"{self.catalog_path}: storage can only be chosen for a new warehouse")
            con.execute("INSERT OR IGNORE INTO meta VALUES ('parquet_url', ?)", [url])
        self._store = None

    @classmethod
    def open(cls, root: Path, read_only: bool = False) -> Warehouse:
        """Open an existing warehouse; a clear error when ``root`` is not one."""
        wh = cls(root, read_only=read_only)
        if not wh.catalog_path.is_file():
            raise WarehouseError(
                f"{wh.root}: not a warehouse (no {CATALOG_FILE}); run `ldw ingest` or `ldw demo` first"
            )
        if read_only:
            with wh.connect() as con:
                wh._check_format(con)
        else:
            wh._init_catalog()
        return wh

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the catalog, waiting while another process holds its lock."""
        deadline = time.monotonic() + LOCK_WAIT_S
        delay = 0.02
        while True:
            try:
                con = duckdb.connect(str(self.catalog_path), read_only=self.read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise WarehouseError(f"{self.catalog_path}: cannot open catalog ({exc})") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        failpoint("catalog-open")
        try:
            self._attach_store(con)
            yield con
        finally:
            con.close()

    def _attach_store(self, con: duckdb.DuckDBPyConnection) -> None:
        if self._store is None:
            url = None
            if con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'").fetchone()[0]:
                row = con.execute("SELECT value FROM meta WHERE key = 'parquet_url'").fetchone()
                url = row[0] if row else None
            self._store = ParquetStore(url or str(self.root / "parquet"))
        self._store.attach(con)

    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pl.DataFrame:
        """Run a query with bound parameters and return a Polars frame."""
        with self.connect() as con:
            return pl.from_arrow(con.sql(sql, params=params or None).to_arrow_table())

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        """Run one statement with bound parameters in its own transaction."""
        with self.connect() as con:
            con.execute(sql, params or [])

    def _init_catalog(self) -> None:
        with self.connect() as con:
            for catalog_table in CATALOG_TABLES.values():
                con.execute(catalog_table.ddl)
            self._check_format(con)
            con.execute(
                "INSERT OR IGNORE INTO meta VALUES ('format_version', ?), ('created_at', ?)",
                [FORMAT_VERSION, utcnow().isoformat()],
            )
            versions = {name: t.version for name, t in CATALOG_TABLES.items()}
            versions.update({name: spec.version for name, spec in TABLES.items()})
            for name, version in versions.items():
                con.execute("INSERT OR REPLACE INTO schema_versions VALUES (?, ?)", [name, version])
            self._create_views(con)

    def _check_format(self, con: duckdb.DuckDBPyConnection) -> None:
        current = con.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
        if current is not None and current[0] != FORMAT_VERSION:
            raise WarehouseError(
                f"{self.catalog_path}: warehouse format {current[0]}, this ldw reads {FORMAT_VERSION}; "
                "rebuild it in a new folder (ingest, evalset, sweep)"
            )

    def refresh_views(self) -> None:
        """Re-create the views over the Parquet tables (after files appear)."""
        if self.read_only:
            return
        with self.connect() as con:
            self._create_views(con)

    def _create_views(self, con: duckdb.DuckDBPyConnection) -> None:
        views = {
            name: self._view_sql(name, spec.glob, spec.schema) for name, spec in TABLES.items() if spec.kind == "base"
        }
        for name, location in con.execute("SELECT table_name, location FROM derived_tables").fetchall():
            spec = TABLES.get(name)
            if spec is None or spec.kind != "derived":
                continue  # not a table this ldw knows: `ldw doctor` names it
            views[name] = self._view_sql(name, spec.part_file(location, "*"), None)
        for sql in views.values():
            try:
                con.execute(sql)
            except duckdb.Error:
                # A damaged file must not lock users out: keep the previous view; `ldw doctor` names the file.
                continue

    def _view_sql(self, name: str, pattern: str, schema: pa.Schema | None) -> str:
        """A view over the files matching ``pattern``; without files, an empty view of ``schema`` or none."""
        if self.store.glob(pattern):
            path = self.store.path(pattern).replace("'", "''")
            return f"CREATE OR REPLACE VIEW \"{name}\" AS SELECT * FROM read_parquet('{path}')"
        if schema is None:
            return f'DROP VIEW IF EXISTS "{name}"'
        cols = ", ".join(f'CAST(NULL AS {DUCKDB_TYPES[str(f.type)]}) AS "{f.name}"' for f in schema)
        return f'CREATE OR REPLACE VIEW "{name}" AS SELECT {cols} WHERE false'

    def meta(self) -> dict[str, str]:
        """Key/value facts about the warehouse (format version, creation time)."""
        return dict(self.query("SELECT key, value FROM meta").iter_rows())


class Warehouse(RunsMixin, EvalSetMixin, SurprisalMixin, TracesMixin, DerivedMixin, CatalogCore):
    """A warehouse folder: catalog tables, Parquet views and the methods that fill them."""
