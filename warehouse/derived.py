"""Derived tables (metrics, n-gram stats, spikes, ...): Parquet parts plus recorded parameters.

Every write makes a new version folder (``derived/TABLE/v-<8 hex digits>``, see
:mod:`ldw.warehouse.tables`; the tables written together share the version id)
and switches the catalog to it in one transaction, so readers see the old table
or the new one, never a mix and never none, on a local disk and on object
storage alike. Once its parts are complete, each version folder gets a marker
(``_ldw_version.json``: parameters and the tables written with it) from which
the catalog can be rebuilt. A crash before the switch leaves the old table and
an uncataloged version folder that the next rewrite removes; the writer lock
(:mod:`ldw.warehouse.lock`) keeps another command from writing meanwhile.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import PurePosixPath
from typing import Any

import polars as pl
import pyarrow as pa

from ldw.warehouse.clock import utcnow
from ldw.warehouse.failpoints import failpoint
from ldw.warehouse.records import VERSION_MARKER, dumps
from ldw.warehouse.tables import table_spec

PartWriter = Callable[[str, pa.Table | pl.DataFrame], None]


class DerivedMixin:
    """Analysis results written by pipelines and read back through views."""

    def write_derived(self, table: str, data: pa.Table | pl.DataFrame, params: dict[str, Any]) -> None:
        """Replace a derived table with ``data`` (one part) and record its parameters, atomically."""
        with self.replace_derived(table, params) as write:
            write("all", data)

    def write_derived_part(self, table: str, part: str, data: pa.Table | pl.DataFrame, params: dict[str, Any]) -> None:
        """Replace one part of a derived table (e.g. one run's rows), keeping its other parts, atomically.

        The new version holds ``data`` as ``part`` plus a copy of every other
        part of the current version; the recorded parameters become ``params``.
        """
        spec = table_spec(table, "derived")
        current = self._derived_location(table)
        kept = self.store.glob(spec.part_file(current, "*")) if current else []
        with self._new_versions([table]) as locations:
            location = locations[table]
            self._write_part(table, location, part, data)
            written = PurePosixPath(spec.part_file(location, part)).name
            for path in kept:
                name = PurePosixPath(path).name
                if name != written:
                    self.store.copy(path, self.store.path(location, name))
        self._switch({table: (params, location)}, drop=())

    @contextmanager
    def replace_derived(self, table: str, params: dict[str, Any]) -> Iterator[PartWriter]:
        """Rewrite a derived table part by part, switching to it only when every part is written.

        Yields ``write(part, data)``. Readers see the old table until the new
        one is complete; an exception inside the block keeps the old table.
        """
        with self.replace_derived_tables({table: params}) as write:
            yield write[table]

    @contextmanager
    def replace_derived_tables(
        self, params: Mapping[str, dict[str, Any]], drop: Sequence[str] = ()
    ) -> Iterator[dict[str, PartWriter]]:
        """Rewrite several derived tables part by part and switch to all of them in one catalog transaction.

        ``params`` maps each table to the parameters to record; yields one
        ``write(part, data)`` per table. The tables in ``drop`` are removed in
        the same transaction (e.g. tables that the new ones make stale).
        """
        for name in drop:
            table_spec(name, "derived")
        with self._new_versions(list(params)) as locations:
            yield {name: partial(self._write_part, name, location) for name, location in locations.items()}
        self._switch({name: (params[name], locations[name]) for name in params}, drop)

    def derived_location(self, table: str) -> str | None:
        """Folder (absolute path or URL) holding a derived table's parts, or None when absent."""
        location = self._derived_location(table)
        return self.store.path(location) if location else None

    def derived_part_path(self, table: str, part: str) -> str | None:
        """Path (or URL) of one part of a derived table, or None when the table is absent."""
        location = self._derived_location(table)
        return self.store.path(table_spec(table, "derived").part_file(location, part)) if location else None

    def derived_params(self, table: str) -> dict[str, Any]:
        """Parameters a derived table was computed with ({} when it is absent; see :meth:`has_table`)."""
        rows = self.query("SELECT params FROM derived_tables WHERE table_name = ?", [table])
        return json.loads(rows["params"][0]) if rows.height else {}

    def has_table(self, table: str) -> bool:
        """Whether a derived table has been written."""
        return self.query("SELECT 1 FROM derived_tables WHERE table_name = ?", [table]).height > 0

    def _derived_location(self, table: str) -> str | None:
        rows = self.query("SELECT location FROM derived_tables WHERE table_name = ?", [table])
        return rows["location"][0] if rows.height else None

    @contextmanager
    def _new_versions(self, names: list[str]) -> Iterator[dict[str, str]]:
        """A new, uncataloged version folder per table (one version id for all); removed again if the block raises."""
        version_id = uuid.uuid4().hex[:8]
        locations = {name: table_spec(name, "derived").location(version_id) for name in names}
        try:
            yield locations
        except BaseException:
            for location in locations.values():
                self.store.remove(self.store.path(location))
            raise

    def _write_part(self, table: str, location: str, part: str, data: pa.Table | pl.DataFrame) -> None:
        spec = table_spec(table, "derived")
        arrow = data.to_arrow() if isinstance(data, pl.DataFrame) else data
        spec.check(arrow)
        self.store.write(arrow, self.store.path(spec.part_file(location, part)), spec.version)

    def _switch(self, written: dict[str, tuple[dict[str, Any], str]], drop: Sequence[str]) -> None:
        """Switch to the new versions: markers, then catalog and views in one transaction (dropping ``drop``).

        Each new version folder first gets its marker (its parts are complete);
        the old versions are removed after the switch.
        """
        computed_at = utcnow()
        eval_id = self.eval_id()
        for name, (params, location) in written.items():
            marker = {
                "table": name,
                "version_id": location.rsplit("/v-", 1)[1],
                "tables": sorted(written),
                "params": params,
                "schema_version": table_spec(name).version,
                "eval_id": eval_id,
                "computed_at": computed_at.isoformat(),
            }
            self.store.write_text(dumps(marker), self.store.path(location, VERSION_MARKER))
        with self.connect() as con:
            con.execute("BEGIN")
            for name in drop:
                con.execute("DELETE FROM derived_tables WHERE table_name = ?", [name])
                con.execute(f'DROP VIEW IF EXISTS "{name}"')
            for name, (params, location) in written.items():
                con.execute(
                    "INSERT OR REPLACE INTO derived_tables VALUES (?, ?, ?, ?, ?)",
                    [
                        name,
                        json.dumps(params, sort_keys=True, default=str),
                        computed_at,
                        table_spec(name).version,
                        location,
                    ],
                )
            self._create_views(con, in_transaction=True)
            con.execute("COMMIT")
        failpoint("derived-switched")
        for name in [*written, *drop]:
            self._remove_other_versions(name, keep=written[name][1] if name in written else None)

    def _remove_other_versions(self, table: str, keep: str | None) -> None:
        folder = table_spec(table, "derived").folder
        for name in self.store.children(folder):
            if f"{folder}/{name}" != keep:
                self.store.remove(self.store.path(folder, name))
