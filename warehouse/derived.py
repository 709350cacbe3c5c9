"""Derived tables (metrics, n-gram stats, spikes, ...): Parquet parts plus recorded parameters."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import polars as pl
import pyarrow as pa

from ldw.warehouse.errors import WarehouseError

DERIVED_VERSION = 1


class DerivedMixin:
    """Analysis results written by pipelines and read back through views.

    Each table lives in a version folder ``derived/TABLE/v-<8 hex digits>`` recorded
    in the catalog; replacing a table writes a new version and switches the
    catalog row in one transaction, so readers see the old or the new table,
    never a mix, on a local disk and on object storage alike.
    """

    def write_derived(
        self, table: str, data: pa.Table | pl.DataFrame, params: dict[str, Any], part: str = "all"
    ) -> None:
        """Write one part of a derived table atomically and record its parameters.

        Parts let a table be written in pieces (e.g. one per run); a view named
        ``table`` unions them. A part written again replaces the earlier one.
        """
        _check_name(table)
        location = self._derived_location(table) or _new_location(table)
        self.store.write(_arrow(data), self.store.path(location, f"{part}.parquet"), DERIVED_VERSION)
        self.record_derived(table, params, DERIVED_VERSION, location)

    @contextmanager
    def replace_derived(self, table: str, params: dict[str, Any]) -> Iterator[Callable[[str, pa.Table], None]]:
        """Rewrite a derived table part by part, switching to it only when every part is written.

        Yields ``write(part, data)``. Readers see the old table until the new
        one is complete; a crash leaves the old table and an uncataloged
        version folder that the next rewrite removes.
        """
        _check_name(table)
        location = _new_location(table)

        def write(part: str, data: pa.Table | pl.DataFrame) -> None:
            self.store.write(_arrow(data), self.store.path(location, f"{part}.parquet"), DERIVED_VERSION)

        try:
            yield write
        except BaseException:
            self.store.remove(self.store.path(location))
            raise
        self.record_derived(table, params, DERIVED_VERSION, location)
        self._remove_other_versions(table, keep=location)

    def clear_derived(self, table: str) -> None:
        """Drop a derived table: its catalog row, its view and its files."""
        _check_name(table)
        with self.connect() as con:
            con.execute("DELETE FROM derived_tables WHERE table_name = ?", [table])
            con.execute(f'DROP VIEW IF EXISTS "{table}"')
        self._remove_other_versions(table, keep=None)

    def derived_location(self, table: str) -> str | None:
        """Folder (absolute path or URL) holding a derived table's parts, or None when absent."""
        location = self._derived_location(table)
        return self.store.path(location) if location else None

    def _derived_location(self, table: str) -> str | None:
        rows = self.query("SELECT location FROM derived_tables WHERE table_name = ?", [table])
        return rows["location"][0] if rows.height else None

    def _remove_other_versions(self, table: str, keep: str | None) -> None:
        for name in self.store.children(f"derived/{table}"):
            if keep is None or f"derived/{table}/{name}" != keep:
                self.store.remove(self.store.path("derived", table, name))

    def derived_params(self, table: str) -> dict[str, Any] | None:
        """Parameters a derived table was computed with (None if absent)."""
        rows = self.query("SELECT params FROM derived_tables WHERE table_name = ?", [table])
        return json.loads(rows["params"][0]) if rows.height else None

    def has_table(self, table: str) -> bool:
        """Whether a derived table has been written."""
        return self.query("SELECT 1 FROM derived_tables WHERE table_name = ?", [table]).height > 0


def _new_location(table: str) -> str:
    return f"derived/{table}/v-{uuid.uuid4().hex[:8]}"


def _arrow(data: pa.Table | pl.DataFrame) -> pa.Table:
    return data.to_arrow() if isinstance(data, pl.DataFrame) else data


def _check_name(table: str) -> None:
    if not table.replace("_", "").isalnum():
        raise WarehouseError(f"derived table name '{table}' must be letters, digits and _")
