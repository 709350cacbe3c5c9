"""Population views, aggregated in DuckDB: histograms, 2-D densities, mean curves by frequency bin.

No per-token rows leave DuckDB: histograms and densities are binned with
GROUP BY over a fixed range per field (its 0.1% and 99.9% quantiles, outliers
counted in the edge bins), and mean curves are averaged per (run, checkpoint,
bin). Column names come from the fixed field lists below.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ldw.warehouse import Warehouse

RUN_TABLE, CROSS_TABLE, NGRAM_TABLE = "token_metrics", "crossrun_metrics", "ngram_stats"
VENTILES = 20
ALIASES = {RUN_TABLE: "m", CROSS_TABLE: "c", NGRAM_TABLE: "g"}
SKIPPED = {
    "run_id",
    "token_idx",
    "gam_lambda",
    "aoa_step",
    "sigmoid_aoa_step",
    "aoa_threshold_bits",
    "n_runs",
    "unigram_count",
    "ngram_order",
}
LABELS = {
    "final_surprisal": "final surprisal (bits)",
    "within_run_var": "within-run variability (bits, std)",
    "aoa_log10_step": "age of acquisition (log10 step)",
    "sigmoid_aoa_log10_step": "sigmoid age of acquisition (log10 step)",
    "forgettability": "forgettability (bits)",
    "crossrun_var": "cross-run variability (bits²)",
    "log2_unigram_freq": "log2 unigram frequency",
    "ngram_surprisal": "n-gram surprisal (bits)",
    "ngram_surprisal_resid": "n-gram surprisal, residual on unigram (bits)",
    "context_logprob": "context log2-probability (mean per token)",
    "log2_context_length": "log2 context length (tokens)",
}


@dataclass(frozen=True)
class Field:
    """One numeric column of token_metrics (per run), crossrun_metrics or ngram_stats."""

    table: str
    column: str

    @property
    def label(self) -> str:
        """Axis label with units."""
        if self.column.startswith("mean_") and self.column[5:] in LABELS:
            return f"mean over runs: {LABELS[self.column[5:]]}"
        return LABELS.get(self.column, self.column)

    @property
    def is_aoa(self) -> bool:
        """Whether the field is an age of acquisition of one run (undefined where the run never acquired the token)."""
        return self.table == RUN_TABLE and "aoa" in self.column

    @property
    def sql(self) -> str:
        """The qualified column as it appears in the FROM clause built by :func:`_source`."""
        return f'{ALIASES[self.table]}."{self.column}"::DOUBLE'


def numeric_fields(tables: dict[str, tuple[str, ...]], dtypes: dict[str, dict[str, str]]) -> list[Field]:
    """Plottable fields of the tables present (``dtypes``: table -> column -> DuckDB type)."""
    fields = []
    for table in (RUN_TABLE, CROSS_TABLE, NGRAM_TABLE):
        for column in tables.get(table, ()):
            kind = dtypes.get(table, {}).get(column, "")
            if column not in SKIPPED and kind in ("DOUBLE", "FLOAT", "INTEGER", "BIGINT"):
                fields.append(Field(table, column))
    return fields


def column_types(wh: Warehouse) -> dict[str, dict[str, str]]:
    """DuckDB data type of every column of the population tables present."""
    rows = wh.query(
        "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE list_contains(?, table_name)",
        [[RUN_TABLE, CROSS_TABLE, NGRAM_TABLE]],
    )
    types: dict[str, dict[str, str]] = {}
    for table, column, kind in rows.iter_rows():
        types.setdefault(table, {})[column] = kind
    return types


def _source(fields: list[Field], runs: list[str] | None, has_acquired: bool = False) -> tuple[str, dict[str, object]]:
    """SELECT joining the tables the fields need on token_idx, and its parameters.

    With a per-run field the rows are (run, token) of ``runs`` (None: every
    run, no filter); otherwise one pooled series named 'all runs'. With
    ``has_acquired`` (token_metrics has that column) and an AoA field, the
    (run, token) pairs the run never acquired are left out. ``{cols}`` is left
    for the caller.
    """
    tables = [t for t in (RUN_TABLE, CROSS_TABLE, NGRAM_TABLE) if any(f.table == t for f in fields)]
    head = f"{tables[0]} {ALIASES[tables[0]]}"
    joins = "".join(f" JOIN {t} {ALIASES[t]} USING (token_idx)" for t in tables[1:])
    if tables[0] != RUN_TABLE:
        return f"SELECT 'all runs' AS run_id, {{cols}} FROM {head}{joins}", {}
    conditions = ["m.acquired"] if has_acquired and any(f.is_aoa for f in fields) else []
    if runs is not None:
        conditions.append("m.run_id IN (SELECT unnest($runs::VARCHAR[]))")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT m.run_id, {{cols}} FROM {head}{joins}{where}", {"runs": runs} if runs is not None else {}


def field_range(wh: Warehouse, field: Field, has_acquired: bool = False) -> tuple[float, float]:
    """(0.1%, 99.9%) quantiles of a field over all rows, estimated on a repeatable 100,000-row sample.

    One range per field and warehouse version, so bins stay put when runs are
    toggled. ``has_acquired``: as in :func:`_source`.
    """
    acquired = f" AND {ALIASES[field.table]}.acquired" if has_acquired and field.is_aoa else ""
    row = wh.query(
        f"SELECT quantile_cont(x, [0.001, 0.999]) AS q FROM (SELECT {field.sql} AS x "
        f"FROM {field.table} {ALIASES[field.table]} WHERE isfinite(x){acquired} "
        "USING SAMPLE reservoir(100000 ROWS) REPEATABLE (7))"
    )["q"][0]
    if row is None:
        return 0.0, 1.0
    lo, hi = float(row[0]), float(row[1])
    return lo, max(hi, lo + 1e-12)


def histogram(
    wh: Warehouse,
    field: Field,
    runs: list[str] | None,
    value_range: tuple[float, float],
    bins: int = 60,
    has_acquired: bool = False,
) -> pl.DataFrame:
    """Counts per bin of ``field`` over ``value_range`` per run (one pooled 'all runs' series for token tables).

    ``runs`` None means every run; ``has_acquired``: as in :func:`_source`.

    Columns: run_id, x (bin center), count, width.
    """
    source, params = _source([field], runs, has_acquired)
    source = source.format(cols=f"{field.sql} AS x")
    return wh.query(
        f"""
        WITH d AS (SELECT * FROM ({source}) WHERE isfinite(x)),
        b AS (SELECT run_id, least(greatest(floor((x - $lo) / ($hi - $lo) * $bins), 0), $bins - 1) AS bin FROM d)
        SELECT run_id, $lo + (bin + 0.5) * ($hi - $lo) / $bins AS x, count(*) AS count, ($hi - $lo) / $bins AS width
        FROM b GROUP BY run_id, bin ORDER BY run_id, x
        """,
        {**params, "bins": bins, "lo": value_range[0], "hi": value_range[1]},
    )


def density(
    wh: Warehouse,
    x: Field,
    y: Field,
    runs: list[str] | None,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    bins: int = 80,
    trend_bins: int = 20,
    has_acquired: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """2-D counts of (x, y) over the runs pooled, and the mean and std of y per x bin per run, from one scan.

    DuckDB counts (run, x bin, y bin) cells with the sum and sum of squares of
    y; the pooled grid and the trend (x bins merged ``bins / trend_bins`` at a
    time) are exact sums of those cells. Values outside the ranges fall in the
    edge bins; trend bins with fewer than 0.1% of a run's rows are left out.
    ``runs`` None means every run; ``has_acquired``: as in :func:`_source`.
    Returns (cells: x, y, count; trend: run_id, x, mean, std, n).
    """
    source, params = _source([y, x], runs, has_acquired)
    source = source.format(cols=f"{x.sql} AS x, {y.sql} AS y")
    rows = wh.query(
        f"""
        WITH d AS (SELECT run_id, x, y FROM ({source}) WHERE isfinite(x) AND isfinite(y))
        SELECT run_id,
               least(greatest(floor((x - $xlo) / ($xhi - $xlo) * $bins), 0), $bins - 1)::INTEGER AS bin_x,
               least(greatest(floor((y - $ylo) / ($yhi - $ylo) * $bins), 0), $bins - 1)::INTEGER AS bin_y,
               count(*) AS count, sum(y) AS y_sum, sum(y * y) AS y_sq
        FROM d GROUP BY ALL
        """,
        {**params, "bins": bins, "xlo": x_range[0], "xhi": x_range[1], "ylo": y_range[0], "yhi": y_range[1]},
    )
    x_width, y_width = (x_range[1] - x_range[0]) / bins, (y_range[1] - y_range[0]) / bins
    cells = (
        rows.group_by("bin_x", "bin_y")
        .agg(pl.col("count").sum())
        .select(
            (x_range[0] + (pl.col("bin_x") + 0.5) * x_width).alias("x"),
            (y_range[0] + (pl.col("bin_y") + 0.5) * y_width).alias("y"),
            "count",
        )
        .sort("x", "y")
    )
    merged = (pl.col("bin_x") * trend_bins // bins).alias("bin_t")
    trend = rows.group_by("run_id", merged).agg(
        pl.col("count").sum().alias("n"), pl.col("y_sum").sum(), pl.col("y_sq").sum()
    )
    floor = trend.group_by("run_id").agg((pl.col("n").sum() * 0.001).alias("floor"))
    trend = (
        trend.join(floor, on="run_id")
        .filter(pl.col("n") >= pl.col("floor"))
        .select(
            "run_id",
            (x_range[0] + (pl.col("bin_t") + 0.5) * (x_range[1] - x_range[0]) / trend_bins).alias("x"),
            (pl.col("y_sum") / pl.col("n")).alias("mean"),
            (pl.col("y_sq") / pl.col("n") - (pl.col("y_sum") / pl.col("n")) ** 2).clip(0).sqrt().alias("std"),
            "n",
        )
        .sort("run_id", "x")
    )
    return cells, trend


def mean_curves_by_frequency(wh: Warehouse, run_id: str, sample_tokens: int = 65_536) -> pl.DataFrame:
    """Mean raw surprisal of one run per (checkpoint, frequency ventile) over tokens ``0 .. sample_tokens - 1``.

    Ventiles are 20 equal-count bins of log2 unigram frequency (``ngram_stats``)
    over those tokens, ties broken by token_idx (bin 1 = rarest); merge them
    with :func:`merge_frequency_bins`. Each surprisal file holds its tokens in
    token_idx order (row i is token i, as the warehouse writes them), so the
    scan reads only the ``surprisal_bits`` column of the first row group(s) of
    each file. Columns: run_id, step, bin, bits, tokens, freq_lo, freq_hi.
    """
    done = wh.query("SELECT step, surprisal_file FROM checkpoints WHERE status = 'done' AND run_id = ?", [run_id])
    files = [wh.store.path(f) for f in done["surprisal_file"]]
    if not files:
        return pl.DataFrame()
    return wh.query(
        f"""
        WITH b AS (
            SELECT token_idx, log2_unigram_freq AS f,
                   ntile({VENTILES}) OVER (ORDER BY log2_unigram_freq, token_idx) AS bin
            FROM ngram_stats WHERE token_idx < $sample AND isfinite(log2_unigram_freq)
        ), r AS (SELECT bin, min(f) AS freq_lo, max(f) AS freq_hi, count(*) AS tokens FROM b GROUP BY bin),
        c AS (SELECT unnest($files) AS filename, unnest($steps) AS step),
        x AS (
            SELECT filename, file_row_number AS token_idx, surprisal_bits
            FROM read_parquet($files, filename = true, file_row_number = true) WHERE file_row_number < $sample
        ),
        s AS (SELECT c.step, b.bin, avg(x.surprisal_bits) AS bits
              FROM x JOIN b USING (token_idx) JOIN c USING (filename) GROUP BY ALL)
        SELECT $run AS run_id, s.*, r.tokens, r.freq_lo, r.freq_hi FROM s JOIN r USING (bin) ORDER BY bin, step
        """,
        {"files": files, "steps": done["step"].to_list(), "sample": sample_tokens, "run": run_id},
    )


def not_acquired_count(wh: Warehouse, runs: list[str] | None) -> int:
    """(run, token) pairs of ``runs`` (None: all) that the run never acquired (``token_metrics.acquired`` false)."""
    if runs is None:
        return int(wh.query("SELECT count(*) AS n FROM token_metrics WHERE NOT acquired")["n"][0])
    sql = "SELECT count(*) AS n FROM token_metrics WHERE NOT acquired AND list_contains(?, run_id)"
    return int(wh.query(sql, [runs])["n"][0])


def merge_frequency_bins(ventiles: pl.DataFrame, n_bins: int) -> pl.DataFrame:
    """Merge ventiles into ``n_bins`` (a divisor of 20) equal-count bins: token-weighted mean bits."""
    if VENTILES % n_bins:
        raise ValueError(f"n_bins must divide {VENTILES}, got {n_bins}")
    return (
        ventiles.with_columns(((pl.col("bin") - 1) // (VENTILES // n_bins) + 1).alias("bin"))
        .group_by("run_id", "step", "bin")
        .agg(
            (pl.col("bits") * pl.col("tokens")).sum() / pl.col("tokens").sum(),
            pl.col("tokens").sum(),
            pl.col("freq_lo").min(),
            pl.col("freq_hi").max(),
        )
        .sort("run_id", "bin", "step")
    )
