"""Surprisal files: one Parquet file per (run, checkpoint), rows in token_idx order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ldw.warehouse.clock import utcnow
from ldw.warehouse.errors import WarehouseError
from ldw.warehouse.parquet_io import read_rows
from ldw.warehouse.storage import damaged_file
from ldw.warehouse.tables import TABLES

SURPRISAL = TABLES["surprisal"]


class SurprisalMixin:
    """Write a checkpoint's surprisal atomically and read curves back as matrices."""

    def surprisal_path(self, run_id: str, step: int) -> str:
        """Where the surprisal file of (run, step) on the current evaluation set lives (a path or URL)."""
        return self.store.path(_relative(self.require_eval_id(), run_id, step))

    def write_surprisal(
        self, run_id: str, step: int, values: np.ndarray, sweep_id: str, eval_id: str | None = None
    ) -> str:
        """Write one checkpoint's surprisal (one value per evaluation token) and catalog it.

        ``eval_id`` is the evaluation set the values were scored on (default:
        the current one); the file records it, and the checkpoint is cataloged
        only while the warehouse still holds that set, checked in the same
        transaction. The file is complete before the catalog row says so; a
        crash in between leaves the checkpoint pending and the next sweep
        rewrites it.
        """
        with self.connect() as con:
            row = con.execute(
                "SELECT eval_id, n_tokens, (SELECT count(*) FROM duckdb_views() "
                "WHERE view_name = 'surprisal' AND sql LIKE '%read_parquet%') FROM eval_sets"
            ).fetchone()
        if row is None:
            raise WarehouseError(f"{self.root}: no evaluation set; run `ldw evalset` first")
        current, n, reads_files = row
        eval_id = eval_id or current
        if eval_id != current:
            raise self.eval_changed_error(run_id, step, eval_id, current)
        if values.shape != (n,):
            raise WarehouseError(f"{run_id} step {step}: {values.shape[0]} surprisal values for {n} tokens")
        table = pa.table(
            {
                "run_id": pa.array([run_id] * n, pa.string()).dictionary_encode().cast(pa.string()),
                "step": pa.array(np.full(n, step, dtype=np.int64)),
                "token_idx": pa.array(np.arange(n, dtype=np.int64)),
                "surprisal_bits": pa.array(values.astype(np.float32)),
            },
            schema=SURPRISAL.schema,
        )
        relative = _relative(eval_id, run_id, step)
        path = self.store.path(relative)
        written = utcnow()
        identity = {
            "table": "surprisal",
            "run_id": run_id,
            "step": step,
            "eval_id": eval_id,
            "sweep_id": sweep_id,
            "written_at": written.isoformat(),
        }
        self.store.write(table, path, SURPRISAL.version, identity)
        try:
            # the view globs the folder: the first file turns it from the empty placeholder, in the same
            # transaction (listing the folder on every write would cost an object-store listing per checkpoint)
            self.mark_checkpoint_done(run_id, step, relative, n, sweep_id, eval_id, written, views=not reads_files)
        except WarehouseError:
            self.store.remove(path)  # scored on a set the warehouse no longer holds: never cataloged
            raise
        return path

    def surprisal_matrix(
        self, run_id: str, token_lo: int | None = None, token_hi: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Curves of one run: (steps [C], token_idx [T], surprisal bits [T, C] float32).

        Only completed checkpoints, ascending by step; reads only the row
        groups that hold tokens ``token_lo:token_hi``.
        """
        n = self.token_count()
        lo = 0 if token_lo is None else max(0, token_lo)
        hi = n if token_hi is None else min(n, token_hi)
        done = self.query(
            "SELECT step, surprisal_file FROM checkpoints WHERE run_id = ? AND status = 'done' ORDER BY step",
            [run_id],
        )
        steps = done["step"].to_numpy().astype(np.int64)
        values = np.empty((max(hi - lo, 0), len(steps)), dtype=np.float32)
        for col, relative in enumerate(done["surprisal_file"].to_list()):
            path = self.store.path(relative)
            try:
                column = read_rows(self.store.parquet_file(path), ["surprisal_bits"], lo, hi).column(0)
            except (pa.ArrowException, OSError) as exc:
                raise damaged_file(path, exc) from exc
            if len(column) != values.shape[0]:
                raise WarehouseError(f"{path}: {len(column)} surprisal values for tokens {lo}..{hi - 1}; damaged file")
            values[:, col] = column.to_numpy()
        return steps, np.arange(lo, hi, dtype=np.int64), values


def _relative(eval_id: str, run_id: str, step: int) -> str:
    """A surprisal file's path under the Parquet root, as the catalog stores it (so a moved warehouse still works)."""
    return SURPRISAL.file(eval_id=eval_id, run_id=run_id, step=step)
