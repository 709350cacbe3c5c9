"""Atomic Parquet writes: a file appears complete or not at all."""

from __future__ import annotations

import glob
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from ldw.warehouse.disk_errors import disk_reason
from ldw.warehouse.errors import WarehouseError
from ldw.warehouse.failpoints import failpoint
from ldw.warehouse.tables import IDENTITY_KEY, SCHEMA_VERSION_KEY

ROW_GROUP_SIZE = 65_536


def write_parquet_atomic(table: pa.Table, path: Path, version: int, identity: dict | None = None) -> None:
    """Write ``table`` to ``path`` via a temporary file, fsync and rename.

    A reader never sees a partial file, and a crash leaves at most a stray
    ``.tmp`` file that the next write of the same path removes (one command
    writes a warehouse at a time: see ``ldw.warehouse.lock``). ``identity``
    goes into the file's metadata (see :func:`with_schema_version`).
    """
    table = with_schema_version(table, version, identity)
    _write_atomic(path, lambda handle: pq.write_table(table, handle, **write_options(table.schema)), "parquet")


def write_text_atomic(text: str, path: Path) -> None:
    """Write a small text file (a JSON record) so it appears complete or not at all."""
    _write_atomic(path, lambda handle: handle.write(text.encode()), "record")


def _write_atomic(path: Path, write: Callable[[BinaryIO], object], kind: str) -> None:
    """Temporary file, fsync, rename; failpoints ``KIND-written`` and ``KIND-renamed`` around the rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)  # left by a writer killed between its write and its rename
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        failpoint(f"{kind}-written")
        os.replace(tmp, path)
        failpoint(f"{kind}-renamed")
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        what = "Parquet file" if kind == "parquet" else "file"
        reason = disk_reason(exc) or f"could not write {what} ({exc.strerror or exc})"
        raise WarehouseError(f"{path}: {reason}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_options(schema: pa.Schema) -> dict:
    """``pq.write_table`` options: zstd, fixed row groups, and per-column encodings chosen by type.

    Strings keep dictionary encoding; integers (token_idx, step: sorted or
    constant) are delta-encoded and floats byte-stream-split before zstd.
    On surprisal files this takes 3.4 instead of 8.4 bytes per token and reads faster.
    """
    encodings = {}
    for field in schema:
        if pa.types.is_integer(field.type):
            encodings[field.name] = "DELTA_BINARY_PACKED"
        elif pa.types.is_floating(field.type):
            encodings[field.name] = "BYTE_STREAM_SPLIT"
    dictionary = [f.name for f in schema if f.name not in encodings]
    return {
        "row_group_size": ROW_GROUP_SIZE,
        "compression": "zstd",
        "use_dictionary": dictionary,
        "column_encoding": encodings,
    }


def with_schema_version(table: pa.Table, version: int, identity: dict | None = None) -> pa.Table:
    """``table`` with its schema version (and ``identity`` as JSON, when given) in the Parquet key-value metadata."""
    metadata = dict(table.schema.metadata or {})
    metadata[SCHEMA_VERSION_KEY] = str(version).encode()
    if identity is not None:
        metadata[IDENTITY_KEY] = json.dumps(identity, sort_keys=True, default=str).encode()
    return table.replace_schema_metadata(metadata)


def file_schema_version(schema: pa.Schema) -> int | None:
    """Schema version stored in a Parquet file's schema metadata, or None."""
    raw = (schema.metadata or {}).get(SCHEMA_VERSION_KEY)
    return int(raw) if raw is not None else None


def file_identity(schema: pa.Schema) -> dict | None:
    """What a Parquet file says it holds (run, step, evaluation set, ...), or None when it says nothing."""
    raw = (schema.metadata or {}).get(IDENTITY_KEY)
    try:
        return json.loads(raw) if raw is not None else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def read_rows(handle: pq.ParquetFile, columns: list[str], lo: int, hi: int) -> pa.Table:
    """Read rows ``lo:hi`` of ``columns`` from an open Parquet file, touching only the row groups needed."""
    meta = handle.metadata
    groups, start, first_start = [], 0, None
    for index in range(meta.num_row_groups):
        n = meta.row_group(index).num_rows
        if start + n > lo and start < hi:
            groups.append(index)
            if first_start is None:
                first_start = start
        start += n
    if not groups:
        return handle.schema_arrow.empty_table().select(columns)
    table = handle.read_row_groups(groups, columns=columns)
    return table.slice(lo - first_start, hi - lo)
