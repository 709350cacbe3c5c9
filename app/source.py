"""The warehouse the app reads, its version, and query results cached per version.

Every query function in ``app/*_queries.py`` takes a read-only ``Warehouse``
first. :meth:`Source.get` runs it through ``st.cache_data`` keyed on the
warehouse root, the warehouse version and the arguments, so a result is reused
until a sweep, an analysis or an ingest changes the warehouse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from ldw.warehouse import Warehouse
from ldw.warehouse.catalog import CATALOG_FILE

_CACHED: dict[tuple[Callable[..., Any], bool], Callable[..., Any]] = {}


def warehouse_version(root: Path) -> str:
    """A string that changes whenever the warehouse does.

    Built from the catalog file's (and its WAL's) modification time, the
    latest ``derived_tables.computed_at`` and the number of done checkpoints.
    """
    root = Path(root)
    stamps = []
    for name in (CATALOG_FILE, f"{CATALOG_FILE}.wal"):
        path = root / name
        stamps.append(str(path.stat().st_mtime_ns) if path.exists() else "-")
    row = (
        Warehouse.open(root, read_only=True)
        .query(
            "SELECT (SELECT max(computed_at) FROM derived_tables) AS derived, "
            "(SELECT count(*) FROM checkpoints WHERE status = 'done') AS done"
        )
        .row(0)
    )
    return "|".join([*stamps, str(row[0]), str(row[1])])


def _cached(fn: Callable[..., Any], shared: bool) -> Callable[..., Any]:
    """``fn`` wrapped in st.cache_data (a copy per call) or, when ``shared``, st.cache_resource.

    Each wrapper carries ``fn``'s name, so wrappers never share a cache.
    """
    if (fn, shared) not in _CACHED:

        def run(root: str, version: str, args: tuple[Any, ...]) -> Any:
            # Source.at opened (and checked) the warehouse this run: no second connection just to check it again
            return fn(Warehouse(Path(root), read_only=True), *args)

        run.__qualname__ = run.__name__ = f"{fn.__module__}.{fn.__qualname__}"
        run.__module__ = fn.__module__
        cache = (
            st.cache_resource(show_spinner=False, max_entries=4)
            if shared
            else st.cache_data(show_spinner=False, max_entries=256)
        )
        _CACHED[(fn, shared)] = cache(run)
    return _CACHED[(fn, shared)]


@dataclass(frozen=True)
class Source:
    """A warehouse folder at one version."""

    root: str
    version: str

    @classmethod
    def at(cls, root: Path) -> Source:
        """The warehouse at ``root`` as it is now."""
        root = Path(root).resolve()
        return cls(str(root), warehouse_version(root))

    def get(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(warehouse, *args)``, cached for this warehouse version."""
        return _cached(fn, False)(self.root, self.version, args)

    def get_resource(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Like :meth:`get` for large results shared read-only between sessions (never mutate them)."""
        return _cached(fn, True)(self.root, self.version, args)

    def warehouse(self) -> Warehouse:
        """A read-only handle (for uncached calls)."""
        return Warehouse.open(Path(self.root), read_only=True)
