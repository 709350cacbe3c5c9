"""Storage side: a DuckDB catalog over Parquet tables. Knows nothing of torch."""

from ldw.warehouse.catalog import Warehouse
from ldw.warehouse.errors import WarehouseError
from ldw.warehouse.runs import CheckpointRecord, RunRecord

__all__ = ["Warehouse", "WarehouseError", "RunRecord", "CheckpointRecord"]
