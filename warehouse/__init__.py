"""Storage side: a DuckDB catalog over Parquet tables. Knows nothing of torch."""

from warehouse.catalog import Warehouse
from warehouse.errors import WarehouseError
from warehouse.runs import CheckpointRecord, RunRecord

__all__ = ["Warehouse", "WarehouseError", "RunRecord", "CheckpointRecord"]
