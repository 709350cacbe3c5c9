"""Errors raised by the storage layer."""


class WarehouseError(Exception):
    """A warehouse operation failed; the message names the file and the problem."""


class CatalogDamaged(WarehouseError):
    """``catalog.duckdb`` cannot be read, or tables are missing from it: rebuild it from the Parquet files."""
