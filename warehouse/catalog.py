"""The warehouse: one folder with ``catalog.duckdb`` and, by default, ``parquet/``.

The Parquet tables may instead live on object storage (see
``ldw.warehouse.storage``), chosen once when the warehouse is created.
Connections are short-lived: every operation opens the catalog, does its work
and closes it, so a sweep writing and an app reading can take turns on the
DuckDB file lock (one command writes at a time: see ``ldw.warehouse.lock``).
Parquet tables are exposed as views whose paths are relative to the warehouse
folder (every connection sets DuckDB's ``file_search_path`` to it), so a view
never reads outside its warehouse, however the folder is copied or moved.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from ldw.warehouse.clock import utcnow
from ldw.warehouse.derived import DerivedMixin
from ldw.warehouse.errors import CatalogDamaged, WarehouseError
from ldw.warehouse.evalset import EvalSetMixin
from ldw.warehouse.failpoints import failpoint
from ldw.warehouse.lock import notify_stderr
from ldw.warehouse.runs import RunsMixin
from ldw.warehouse.storage import ParquetStore
from ldw.warehouse.surprisal import SurprisalMixin
from ldw.warehouse.tables import CATALOG_TABLES, TABLES
from ldw.warehouse.traces import TracesMixin

CATALOG_FILE = "catalog.duckdb"
FORMAT_VERSION = "3"
LOCK_WAIT_S = 60.0
NOTICE_AFTER_S = 2.0
CORRUPT = re.compile(r"not a valid DuckDB database|Corrupt database|Could not read enough bytes|checksum", re.I)
LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+?) \(PID (\d+)\)")
VIEW_PATH = re.compile(r"read_parquet\('((?:[^']|'')*)'")

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
    def open(cls, root: Path, read_only: bool = False, check_views: bool = True) -> Warehouse:
        """Open an existing warehouse; a clear error when ``root`` is not one.

        Read-only, a view reading outside the warehouse is an error (``ldw
        doctor --repair`` re-creates it); for writing, such views are re-created.
        ``check_views=False`` skips both (for ``ldw doctor``, which reports them).
        """
        wh = cls(root, read_only=read_only)
        if not wh.catalog_path.is_file():
            raise WarehouseError(
                f"{wh.root}: not a warehouse (no {CATALOG_FILE}); run `ldw ingest` or `ldw demo` first"
            )
        if read_only:
            with wh.connect() as con:
                present = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
                if missing := [name for name in CATALOG_TABLES if name not in present]:
                    raise wh.missing_tables_error(missing)
                wh._check_format(con)
                foreign = wh.foreign_views(con) if check_views else []
            if foreign:
                name, path = foreign[0]
                raise WarehouseError(
                    f"{wh.catalog_path}: view '{name}' reads {path}, outside this warehouse; "
                    f"`ldw doctor {wh.root} --repair` re-creates the views"
                )
        else:
            wh._init_catalog(views=check_views)
        return wh

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the catalog, waiting (and saying so) while another process has it open for writing."""
        started = time.monotonic()
        delay, noticed = 0.02, False
        while True:
            try:
                con = duckdb.connect(str(self.catalog_path), read_only=self.read_only)
                break
            except duckdb.Error as exc:
                if CORRUPT.search(str(exc)):
                    raise self.corrupt_error(exc) from exc
                waited = time.monotonic() - started
                if "lock" not in str(exc).lower() or waited > LOCK_WAIT_S:
                    raise WarehouseError(f"{self.catalog_path}: cannot open catalog ({_one_line(exc)})") from exc
                if waited > NOTICE_AFTER_S and not noticed:
                    holder = LOCK_HOLDER.search(str(exc))
                    who = f"{holder.group(1)} (pid {holder.group(2)})" if holder else "another process"
                    notify_stderr(
                        f"waiting: {self.catalog_path} is open for writing in {who}; waiting up to {LOCK_WAIT_S:.0f} s"
                    )
                    noticed = True
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        failpoint("catalog-open")
        try:
            con.execute(f"SET file_search_path = '{_quoted(str(self.root))}'")
            self._attach_store(con)
            yield con
        except duckdb.Error as exc:
            if CORRUPT.search(str(exc)) and "parquet" not in str(exc).lower():
                raise self.corrupt_error(exc) from exc
            raise
        finally:
            con.close()

    def corrupt_error(self, exc: BaseException) -> CatalogDamaged:
        """The one-line error of an unreadable catalog, with the way back."""
        return CatalogDamaged(
            f"{self.catalog_path}: the catalog is damaged ({_one_line(exc)}); "
            f"`ldw doctor {self.root} --rebuild` rebuilds it from the Parquet files"
        )

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

    def _init_catalog(self, views: bool = True) -> None:
        """Create the catalog tables of a new warehouse; check an existing one and heal its views.

        A catalog table missing from an existing warehouse (dropped by hand) is
        an error, never silently re-created empty: rebuilding the catalog from
        the Parquet files brings its rows back.
        """
        with self.connect() as con:
            present = {
                row[0]
                for row in con.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
                ).fetchall()
            }
            missing = [name for name in CATALOG_TABLES if name not in present]
            initialized = bool(present - {"meta"}) or (
                "meta" in present
                and con.execute("SELECT count(*) FROM meta WHERE key = 'format_version'").fetchone()[0] > 0
            )
            if initialized and missing:
                raise self.missing_tables_error(missing)
            con.execute("BEGIN")  # a new catalog appears whole: a crash while creating it leaves none
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
            if views and (not initialized or self.foreign_views(con) or self.missing_views(con)):
                self._create_views(con, in_transaction=True)
            con.execute("COMMIT")

    def missing_tables_error(self, missing: list[str]) -> CatalogDamaged:
        """The one-line error of catalog tables dropped from an existing warehouse, with the way back."""
        return CatalogDamaged(
            f"{self.catalog_path}: catalog table {', '.join(missing)} is missing; "
            f"`ldw doctor {self.root} --rebuild` rebuilds the catalog from the Parquet files"
        )

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

    def current_eval_id(self, con: duckdb.DuckDBPyConnection) -> str | None:
        """Identity of the evaluation set the catalog holds (None before one is built)."""
        row = con.execute("SELECT eval_id FROM eval_sets").fetchone()
        return row[0] if row else None

    def expected_views(self, con: duckdb.DuckDBPyConnection) -> dict[str, str | None]:
        """Every view the catalog should have: its file pattern (None: an empty view of the registered schema)."""
        eval_id = self.current_eval_id(con)
        views: dict[str, str | None] = {}
        for name, spec in TABLES.items():
            if spec.kind == "base":
                views[name] = spec.view_glob(eval_id) if eval_id or "{eval_id}" not in spec.path else None
        for name, location in con.execute("SELECT table_name, location FROM derived_tables").fetchall():
            spec = TABLES.get(name)
            if spec is not None and spec.kind == "derived":  # another name: `ldw doctor` names it
                views[name] = spec.part_file(location, "*")
        return views

    def _create_views(self, con: duckdb.DuckDBPyConnection, in_transaction: bool = False) -> None:
        """(Re-)create every view; one that cannot be created is an error naming its first file, never kept old.

        Outside a transaction the failing view is dropped first; inside one the
        caller's transaction is rolled back with it.
        """
        for name, pattern in self.expected_views(con).items():
            sql, first = self._view_sql(name, pattern)
            try:
                con.execute(sql)
            except duckdb.Error as exc:
                if not in_transaction:
                    con.execute(f'DROP VIEW IF EXISTS "{name}"')
                raise WarehouseError(
                    f"{first or pattern}: view '{name}' cannot be created ({_one_line(exc)}); "
                    f"`ldw doctor {self.root}` names the damaged file and `--repair` mends it"
                ) from exc

    def _view_sql(self, name: str, pattern: str | None) -> tuple[str, str | None]:
        """SQL of a view over the files matching ``pattern`` (or an empty view of the schema), and its first file."""
        spec = TABLES[name]
        found = self.store.glob(pattern) if pattern else []
        if found:
            path = _quoted(self.view_path(pattern))
            return f"CREATE OR REPLACE VIEW \"{name}\" AS SELECT * FROM read_parquet('{path}')", found[0]
        if spec.kind == "derived":
            return f'DROP VIEW IF EXISTS "{name}"', None
        cols = ", ".join(f'CAST(NULL AS {DUCKDB_TYPES[str(f.type)]}) AS "{f.name}"' for f in spec.schema)
        return f'CREATE OR REPLACE VIEW "{name}" AS SELECT {cols} WHERE false', None

    def view_path(self, relative: str) -> str:
        """How a view names ``relative`` (under the Parquet root): relative to the warehouse folder when inside it."""
        full = self.store.path(relative)
        if not self.store.remote and Path(self.store.url).is_relative_to(self.root):
            return str(Path(full).relative_to(self.root))
        return full

    def foreign_views(self, con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
        """(view, path) of every view that reads a file outside this warehouse's Parquet root."""
        inside = self.view_path("")
        out = []
        for name, sql in con.execute(
            "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'"
        ).fetchall():
            for path in (p.replace("''", "'") for p in VIEW_PATH.findall(sql or "")):
                if not path.startswith(inside.rstrip("/") + "/") or ".." in Path(path).parts:
                    out.append((name, path))
        return out

    def empty_views(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        """Base views that read no file although their table has files (a view left behind its files)."""
        sql = dict(con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall())
        expected = self.expected_views(con)
        return [
            name
            for name, spec in TABLES.items()
            if spec.kind == "base"
            and name in sql
            and "read_parquet" not in (sql[name] or "")
            and expected.get(name)
            and self.store.glob(expected[name])
        ]

    def missing_views(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        """Views the catalog should have and has not (dropped by hand, or never created)."""
        present = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        return [
            name
            for name, pattern in self.expected_views(con).items()
            if name not in present and (pattern is None or TABLES[name].kind == "base" or self.store.glob(pattern))
        ]

    def meta(self) -> dict[str, str]:
        """Key/value facts about the warehouse (format version, creation time)."""
        return dict(self.query("SELECT key, value FROM meta").iter_rows())


def _quoted(text: str) -> str:
    """``text`` inside a single-quoted SQL string literal."""
    return text.replace("'", "''")


def _one_line(exc: BaseException) -> str:
    """The first line of an error message."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class Warehouse(RunsMixin, EvalSetMixin, SurprisalMixin, TracesMixin, DerivedMixin, CatalogCore):
    """A warehouse folder: catalog tables, Parquet views and the methods that fill them."""
