"""Where a warehouse's Parquet files live: its own ``parquet/`` folder or an fsspec URL.

The catalog (``catalog.duckdb``) always stays in the local warehouse folder:
DuckDB needs a local file for it. The bulk Parquet tables may live on object
storage (``s3://bucket/prefix``, ``gs://...``, any fsspec URL); DuckDB reads
them directly through the fsspec filesystem registered on every connection.
Credentials and endpoints come from the filesystem's usual environment
(for S3: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import os
import posixpath
import shutil
from pathlib import Path

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from ldw.errors import first_line
from ldw.warehouse.disk_errors import disk_reason
from ldw.warehouse.errors import WarehouseError
from ldw.warehouse.parquet_io import (
    with_schema_version,
    write_options,
    write_parquet_atomic,
    write_text_atomic,
)

LOCAL_PROTOCOLS = {"file", "local"}


def damaged_file(path: str, exc: BaseException) -> WarehouseError:
    """The error for a cataloged Parquet file that cannot be read."""
    return WarehouseError(f"{path}: damaged Parquet file ({first_line(exc)}); `ldw doctor` lists every problem")


class ParquetStore:
    """The root of a warehouse's Parquet tree; paths handed out are absolute paths or full URLs."""

    def __init__(self, url: str) -> None:
        try:
            self.fs, base = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise WarehouseError(f"{url}: cannot open Parquet storage ({exc})") from exc
        protocols = {self.fs.protocol} if isinstance(self.fs.protocol, str) else set(self.fs.protocol)
        self.remote = not protocols & LOCAL_PROTOCOLS
        self.url = url.rstrip("/") if self.remote else str(Path(base).resolve())

    def path(self, *parts: str) -> str:
        """Absolute path (or URL) of ``parts`` under the store root."""
        return posixpath.join(self.url, *parts) if self.remote else str(Path(self.url, *parts))

    def relative(self, path: str) -> str:
        """``path`` (as handed out by this store) relative to the store root, with ``/`` separators."""
        if self.remote:
            return path.removeprefix(self.url + "/")
        return Path(path).relative_to(self.url).as_posix()

    def glob(self, pattern: str) -> list[str]:
        """Files matching ``pattern`` (relative to the root), sorted, as absolute paths or URLs."""
        found = self.fs.glob(self.path(pattern))
        return sorted(self._qualify(p) for p in found)

    def exists(self, path: str) -> bool:
        """Whether a file exists at ``path``."""
        return bool(self.fs.isfile(path))

    def children(self, relative: str) -> list[str]:
        """Names of the folders directly under ``relative`` (empty when it does not exist)."""
        folder = self.path(relative)
        if not self.fs.exists(folder):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(folder, detail=False) if self.fs.isdir(p))

    def write(self, table: pa.Table, path: str, version: int, identity: dict | None = None) -> None:
        """Write ``table`` so it appears complete or not at all, with ``identity`` in its metadata.

        Locally: temporary file, fsync, rename. On object storage a PUT is
        already all-or-nothing: the object exists only once fully uploaded.
        """
        if not self.remote:
            write_parquet_atomic(table, Path(path), version, identity)
            return
        try:
            table = with_schema_version(table, version, identity)
            pq.write_table(table, path, filesystem=self.fs, **write_options(table.schema))
        except OSError as exc:
            raise WarehouseError(f"{path}: could not write Parquet file ({exc})") from exc

    def write_text(self, text: str, path: str) -> None:
        """Write a small text file (a JSON record beside the tables) whole or not at all."""
        if not self.remote:
            write_text_atomic(text, Path(path))
            return
        try:
            self.fs.pipe_file(path, text.encode())
        except OSError as exc:
            raise WarehouseError(f"{path}: could not write file ({exc})") from exc

    def read_text(self, path: str) -> str | None:
        """A small text file's content, or None when it does not exist."""
        try:
            return self.fs.cat_file(path).decode()
        except FileNotFoundError:
            return None

    def copy(self, source: str, target: str) -> None:
        """Copy one file to ``target`` (its folder is created); locally the copy is fsynced.

        Used to carry parts into a derived table's new, not yet cataloged
        version folder, so a partial copy is never visible to readers.
        """
        try:
            if self.remote:
                self.fs.copy(source, target)
                return
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            with open(target, "rb+") as handle:
                os.fsync(handle.fileno())
        except OSError as exc:
            reason = disk_reason(exc) or f"could not copy {source} ({exc.strerror or exc})"
            raise WarehouseError(f"{target}: {reason}") from exc

    def parquet_file(self, path: str) -> pq.ParquetFile:
        """Open a Parquet file for reading its metadata or row groups; a missing or damaged file is a
        one-line WarehouseError naming it."""
        try:
            return pq.ParquetFile(path, filesystem=None if not self.remote else self.fs)
        except FileNotFoundError as exc:
            raise WarehouseError(f"{path}: cataloged file is missing; `ldw doctor` lists every problem") from exc
        except (pa.ArrowException, OSError) as exc:
            raise damaged_file(path, exc) from exc

    def remove(self, path: str) -> None:
        """Delete a file or a folder with everything in it; nothing when absent."""
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)
        self.fs.invalidate_cache()

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let ``con`` read this store's files (registers the fsspec filesystem when remote)."""
        if self.remote:
            self.fs.invalidate_cache()
            con.register_filesystem(self.fs)

    def _qualify(self, found: str) -> str:
        if not self.remote:
            return str(Path(found))
        protocol = self.url.split("://", 1)[0]
        return found if "://" in found else f"{protocol}://{found}"
