"""Read one completed checkpoint's surprisal vector (for comparisons between two checkpoints)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ldw.warehouse.catalog import Warehouse
from ldw.warehouse.errors import WarehouseError
from ldw.warehouse.storage import damaged_file


def checkpoint_surprisal(wh: Warehouse, run_id: str, step: int) -> np.ndarray:
    """Surprisal bits of every evaluation token at one completed checkpoint, in token_idx order (float32)."""
    rows = wh.query(
        "SELECT surprisal_file FROM checkpoints WHERE run_id = ? AND step = ? AND status = 'done'", [run_id, step]
    )
    if rows.height == 0:
        raise WarehouseError(f"{wh.root}: run '{run_id}' has no completed surprisal file at step {step}")
    path = wh.store.path(rows["surprisal_file"][0])
    try:
        table = wh.store.parquet_file(path).read(columns=["token_idx", "surprisal_bits"])
    except (pa.ArrowException, OSError) as exc:
        raise damaged_file(path, exc) from exc
    values = table.column("surprisal_bits").to_numpy()
    order = table.column("token_idx").to_numpy()
    if not np.array_equal(order, np.arange(len(order))):
        raise WarehouseError(f"{path}: token_idx is not 0..N-1 in order")
    return values.astype(np.float32, copy=False)
