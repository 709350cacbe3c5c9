"""Training-dynamics traces (loss, grad norm, lr, ...) in long format, one file per run."""

from __future__ import annotations

import polars as pl

from ldw.warehouse.tables import TABLES


class TracesMixin:
    """Store and read each run's training log as (run_id, step, name, value) rows."""

    def write_traces(self, run_id: str, frame: pl.DataFrame) -> int:
        """Replace a run's traces with ``frame`` (columns step, name, value); returns rows written.

        The run's catalog row records how many rows its traces file holds (``trace_rows``).
        """
        table = (
            frame.select(
                pl.lit(run_id).alias("run_id"),
                pl.col("step").cast(pl.Int64),
                pl.col("name").cast(pl.String),
                pl.col("value").cast(pl.Float64),
            )
            .sort("name", "step")
            .to_arrow()
        )
        spec = TABLES["traces"]
        identity = {"table": "traces", "run_id": run_id}
        self.store.write(spec.conform(table), self.store.path(spec.file(run_id=run_id)), spec.version, identity)
        with self.connect() as con:  # the count and the view (of the first file) change together
            con.execute("BEGIN")
            con.execute("UPDATE runs SET trace_rows = ? WHERE run_id = ?", [table.num_rows, run_id])
            self._create_views(con, in_transaction=True)
            con.execute("COMMIT")
        self.save_run_record(run_id)
        return table.num_rows

    def traces(self, run_id: str | None = None) -> pl.DataFrame:
        """Traces of one run or all runs."""
        if run_id is None:
            return self.query("SELECT * FROM traces ORDER BY run_id, name, step")
        return self.query("SELECT * FROM traces WHERE run_id = ? ORDER BY name, step", [run_id])
