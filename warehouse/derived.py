"""Derived tables (metrics, n-gram stats, spikes, ...): Parquet parts plus recorded parameters."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import polars as pl
import pyarrow as pa

from warehouse.errors import WarehouseError
from warehouse.parquet_io import write_parquet_atomic

DERIVED_VERSION = 1


class DerivedMixin:
    """Analysis results written by pipelines and read back through views."""

    def write_derived(
        self, table: str, data: pa.Table | pl.DataFrame, params: dict[str, Any], part: str = "all"
    ) -> None:
        """Write one part of a derived table atomically and record its parameters.

        Parts let a table be written in pieces (e.g. one per run); a view named
        ``table`` unions them.
        """
        _check_name(table)
        if isinstance(data, pl.DataFrame):
            data = data.to_arrow()
        path = self.parquet_dir / "derived" / table / f"{part}.parquet"
        write_parquet_atomic(data, path, DERIVED_VERSION)
        self.record_derived(table, params, DERIVED_VERSION)

    @contextmanager
    def replace_derived(self, table: str, params: dict[str, Any]) -> Iterator[Callable[[str, pa.Table], None]]:
        """Rewrite a derived table part by part, swapping it in only when every part is written.

        Yields ``write(part, data)``. Readers see the old table until the new
        one is complete; a crash leaves the old table and a hidden staging
        folder that the next rewrite removes.
        """
        _check_name(table)
        root = self.parquet_dir / "derived"
        for stale in root.glob(f".staging-{table}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = root / f".staging-{table}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)

        def write(part: str, data: pa.Table | pl.DataFrame) -> None:
            if isinstance(data, pl.DataFrame):
                data = data.to_arrow()
            write_parquet_atomic(data, staging / f"{part}.parquet", DERIVED_VERSION)

        try:
            yield write
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        final, old = root / table, root / f".old-{table}-{staging.name[-8:]}"
        if final.exists():
            os.replace(final, old)
        os.replace(staging, final)
        self.record_derived(table, params, DERIVED_VERSION)
        shutil.rmtree(old, ignore_errors=True)

    def clear_derived(self, table: str) -> None:
        """Drop every part of a derived table (before it is rewritten in parts)."""
        shutil.rmtree(self.parquet_dir / "derived" / table, ignore_errors=True)
        self.execute("DELETE FROM derived_tables WHERE table_name = ?", [table])
        self.refresh_views()

    def derived_params(self, table: str) -> dict[str, Any] | None:
        """Parameters a derived table was computed with (None if absent)."""
        rows = self.query("SELECT params FROM derived_tables WHERE table_name = ?", [table])
        return json.loads(rows["params"][0]) if rows.height else None

    def has_table(self, table: str) -> bool:
        """Whether a derived table has been written."""
        return self.query("SELECT 1 FROM derived_tables WHERE table_name = ?", [table]).height > 0


def _check_name(table: str) -> None:
    if not table.replace("_", "").isalnum():
        raise WarehouseError(f"derived table name '{table}' must be letters, digits and _")
