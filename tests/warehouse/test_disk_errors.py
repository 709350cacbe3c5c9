"""A full or read-only disk is recognised behind OSErrors and DuckDB's text errors, and nothing else is."""

from __future__ import annotations

import errno
import os

import duckdb

from ldw.warehouse.disk_errors import disk_failure, disk_reason
from ldw.warehouse.errors import WarehouseError


def test_oserror_by_errno_with_its_filename() -> None:
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/wh/parquet/x.parquet")
    path, reason = disk_failure(full)
    assert path == "/wh/parquet/x.parquet"
    assert reason.startswith("the disk is full (No space left on device); free some space")
    read_only = OSError(errno.EROFS, os.strerror(errno.EROFS))
    assert disk_failure(read_only) == (None, disk_reason(read_only))
    assert "the warehouse is not writable (Read-only file system)" in disk_reason(read_only)


def test_duckdb_text_and_the_cause_chain() -> None:
    wal = duckdb.TransactionException(
        'TransactionContext Error: Failed to commit: Could not write file "/wh/catalog.duckdb.wal": '
        "No space left on device"
    )
    assert disk_failure(wal)[0] == "/wh/catalog.duckdb.wal"
    try:
        try:
            raise duckdb.IOException('IO Error: Cannot open file "/wh/catalog.duckdb": Read-only file system')
        except duckdb.IOException as exc:
            raise WarehouseError("/wh/catalog.duckdb: cannot open catalog") from exc
    except WarehouseError as wrapped:
        path, reason = disk_failure(wrapped)
    assert path == "/wh/catalog.duckdb" and reason.startswith("the warehouse is not writable")


def test_other_errors_are_not_disk_failures() -> None:
    assert disk_failure(OSError(errno.ENOENT, os.strerror(errno.ENOENT), "/nope")) is None
    assert disk_failure(duckdb.CatalogException("Table with name x does not exist")) is None
    assert disk_reason(ValueError("no space here")) is None
