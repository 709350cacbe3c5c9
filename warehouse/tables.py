"""The registry of warehouse tables: where each one lives, its columns and its schema version.

Catalog tables live inside ``catalog.duckdb`` (:data:`CATALOG_TABLES`). Parquet
tables (:data:`TABLES`) live under the Parquet root: *base* tables are written by
ingest, ``ldw evalset`` and ``ldw sweep``; *derived* tables are analysis results,
one version folder each, recorded in the catalog table ``derived_tables``.
Writers check their data against the registered schema, the catalog builds its
views from the registered paths, and ``ldw doctor`` checks every file against
both. Every table's schema version is stored in the catalog table
``schema_versions`` and in each Parquet file's metadata, beside the file's
identity (``ldw_identity``: its run, step, evaluation set, ...), so ``ldw
doctor`` can check a file against its catalog row and ``ldw doctor --rebuild``
can rebuild the catalog from the files. The evaluation set and the surprisal
scored on it live under a folder of the set's ``eval_id``, so replacing the set
never mixes the two.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Literal

import polars as pl
import pyarrow as pa

from ldw.warehouse.errors import WarehouseError

SCHEMA_VERSION_KEY = b"ldw_schema_version"
IDENTITY_KEY = b"ldw_identity"  # JSON: what a file holds (run, step, evaluation set, ...), for doctor and rebuild
DERIVED_ROOT = "derived"
_PLACEHOLDER = re.compile(r"\{[^}]*\}")


@dataclass(frozen=True)
class TableSpec:
    """One Parquet table: name, kind, file path pattern (relative to the Parquet root), schema and version.

    ``optional`` columns may be left out (an option of the writer adds them);
    the others must all be present, in the registered order.
    """

    name: str
    kind: Literal["base", "derived"]
    path: str
    schema: pa.Schema
    version: int = 1
    optional: tuple[str, ...] = ()

    def file(self, **keys: object) -> str:
        """Path of one file of the table, its placeholders filled (e.g. ``run_id=``, ``step=``)."""
        return self.path.format(**keys)

    @property
    def glob(self) -> str:
        """Glob of every file of the table (for a derived table: in every version folder)."""
        return _PLACEHOLDER.sub("*", self.path)

    def view_glob(self, eval_id: str | None) -> str:
        """Glob of the files a view reads: for a table kept per evaluation set, only those of set ``eval_id``."""
        return _PLACEHOLDER.sub("*", self.path.replace("{eval_id}", eval_id or "*"))

    @property
    def folder(self) -> str:
        """The fixed folder above every file of the table (``surprisal``, ``derived/spikes``, ...)."""
        return posixpath.dirname(self.path.split("{", 1)[0]).rstrip("/")

    def location(self, version_id: str) -> str:
        """A derived table's version folder, as the catalog records it."""
        return posixpath.dirname(self.file(version_id=version_id, part="_"))

    def part_file(self, location: str, part: str) -> str:
        """Path of one part (``part="*"``: a glob of every part) in a derived table's version folder."""
        return posixpath.join(location, posixpath.basename(self.path).format(part=part))

    def problems(self, found: pa.Schema) -> list[str]:
        """How ``found`` differs from the registered schema (empty when it matches).

        Encodings that read back as the same values are equal: large and view
        strings and lists, and dictionary-encoded columns of the registered type.
        """
        expected = {f.name: _logical(f.type) for f in self.schema}
        out = self._column_problems(found)
        for field in found:
            dtype = _logical(field.type)
            if field.name in expected and dtype != expected[field.name]:
                out.append(f"column '{field.name}' is {dtype}, the registered schema says {expected[field.name]}")
        return out

    def check(self, data: pa.Table | pa.Schema) -> None:
        """Raise a WarehouseError naming the table and column when ``data`` does not match the schema."""
        problems = self.problems(data if isinstance(data, pa.Schema) else data.schema)
        if problems:
            raise WarehouseError(f"table '{self.name}': {'; '.join(problems)}")

    def conform(self, data: pa.Table) -> pa.Table:
        """``data`` cast to the registered types (a base table's writer takes e.g. int64 positions).

        The columns must be the registered ones; a value that does not fit its
        registered type is a WarehouseError naming the table and column.
        """
        problems = self._column_problems(data.schema)
        if problems:
            raise WarehouseError(f"table '{self.name}': {'; '.join(problems)}")
        columns = []
        for field in self.schema:
            if field.name in data.column_names:
                try:
                    columns.append(data.column(field.name).cast(field.type))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    found = data.schema.field(field.name).type
                    raise WarehouseError(
                        f"table '{self.name}': column '{field.name}' ({found}) does not fit {field.type} ({exc})"
                    ) from exc
        return pa.table(columns, schema=pa.schema([f for f in self.schema if f.name in data.column_names]))

    def _column_problems(self, found: pa.Schema) -> list[str]:
        expected = [f.name for f in self.schema]
        out = [f"unexpected column '{name}'" for name in found.names if name not in expected]
        out += [f"missing column '{n}'" for n in expected if n not in found.names and n not in self.optional]
        order = [n for n in expected if n in found.names]
        if not out and found.names != order:
            out.append(f"columns {found.names} are not in the registered order {order}")
        return out


def _logical(dtype: pa.DataType) -> pa.DataType:
    """The type a column reads back as, whatever its Arrow encoding."""
    if pa.types.is_dictionary(dtype):
        return _logical(dtype.value_type)
    if pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return pa.string()
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_list_view(dtype):
        return pa.list_(_logical(dtype.value_type))
    return dtype


def _schema(**columns: pa.DataType) -> pa.Schema:
    return pa.schema([pa.field(name, dtype) for name, dtype in columns.items()])


def _derived(name: str, schema: pa.Schema, optional: tuple[str, ...] = (), version: int = 1) -> TableSpec:
    path = f"{DERIVED_ROOT}/{name}/v-{{version_id}}/{{part}}.parquet"
    return TableSpec(name, "derived", path, schema, version, optional)


STR, I32, I64, F32, F64 = pa.string(), pa.int32(), pa.int64(), pa.float32(), pa.float64()

_SPECS = (
    TableSpec(
        "surprisal",
        "base",
        "surprisal/{eval_id}/{run_id}/step-{step:012d}.parquet",
        _schema(run_id=STR, step=I64, token_idx=I64, surprisal_bits=F32),
    ),
    TableSpec(
        "eval_sequences", "base", "eval/{eval_id}/eval_sequences.parquet", _schema(seq_id=I64, input_ids=pa.list_(I32))
    ),
    TableSpec(
        "eval_tokens",
        "base",
        "eval/{eval_id}/eval_tokens.parquet",
        _schema(token_idx=I64, seq_id=I64, position=I32, token_id=I32, token_text=STR, context_len=I32),
    ),
    TableSpec("traces", "base", "traces/{run_id}.parquet", _schema(run_id=STR, step=I64, name=STR, value=F64)),
    _derived(
        "token_metrics",
        _schema(
            run_id=STR,
            token_idx=I64,
            final_surprisal=F64,
            within_run_var=F64,
            aoa_log10_step=F64,
            aoa_step=F64,
            aoa_threshold_bits=F64,
            acquired=pa.bool_(),
            forgettability=F64,
            gam_lambda=F64,
            sigmoid_aoa_log10_step=F64,
            sigmoid_aoa_step=F64,
        ),
        optional=("sigmoid_aoa_log10_step", "sigmoid_aoa_step"),
        version=2,  # 2: acquired
    ),
    _derived(
        "crossrun_metrics",
        _schema(
            token_idx=I64,
            crossrun_var=F64,
            n_runs=I32,
            n_runs_acquired=I32,
            mean_final_surprisal=F64,
            mean_within_run_var=F64,
            mean_aoa_log10_step=F64,
            mean_forgettability=F64,
            mean_sigmoid_aoa_log10_step=F64,
        ),
        optional=("mean_sigmoid_aoa_log10_step",),
        version=2,  # 2: n_runs_acquired
    ),
    _derived("token_curves_smoothed", _schema(run_id=STR, token_idx=I64, g_bits=pa.list_(F32))),
    _derived("token_curves_raw", _schema(run_id=STR, step=I64, token_idx=I64, surprisal_bits=F32)),
    _derived(
        "ngram_stats",
        _schema(
            token_idx=I64,
            unigram_count=I64,
            ngram_order=pa.int8(),
            ngram_log2prob=F64,
            contextual_div_raw=I64,
            log2_unigram_freq=F64,
            ngram_log2prob_resid=F64,
            log2_context_length=F64,
            context_logprob=F64,
            contextual_diversity=F64,
        ),
        version=2,  # 2: Chang et al.'s released predictors (log-probabilities, contextual diversity, clipped)
    ),
    _derived(
        "spikes",
        _schema(
            run_id=STR,
            trace=STR,
            spike_id=I64,
            step_start=I64,
            step_peak=I64,
            step_end=I64,
            baseline=F64,
            peak_value=F64,
            magnitude=F64,
            magnitude_mads=F64,
        ),
    ),
    _derived(
        "spike_tokens",
        _schema(
            run_id=STR,
            trace=STR,
            spike_id=I64,
            step_before=I64,
            step_after=I64,
            token_idx=I64,
            surprisal_before=F32,
            surprisal_after=F32,
            delta_bits=F32,
            rank=I64,
        ),
        version=2,  # 2: keyed by (run_id, trace, spike_id); version 1 held loss spikes only, without `trace`
    ),
    _derived(
        "lr_law_fit",
        _schema(
            runs=STR,
            L0=F64,
            A=F64,
            alpha=F64,
            C=F64,
            decay=F64,
            huber_delta=F64,
            fit_from_fraction=F64,
            rmse=F64,
            mape_pct=F64,
            n_points=I64,
        ),
    ),
    _derived(
        "lr_law_curves",
        _schema(schedule=STR, kind=STR, step=I64, lr=F64, predicted_loss=F64, observed_loss=F64),
    ),
    _derived("weight_probes", _schema(run_id=STR, step=I64, layer=I64, head=I64, name=STR, value=F64)),
)
TABLES: dict[str, TableSpec] = {spec.name: spec for spec in _SPECS}


def table_spec(name: str, kind: Literal["base", "derived"] | None = None) -> TableSpec:
    """The registered Parquet table ``name`` (of ``kind`` when given); a clear error for any other name."""
    spec = TABLES.get(name)
    if spec is None or (kind is not None and spec.kind != kind):
        known = ", ".join(n for n, s in TABLES.items() if kind is None or s.kind == kind)
        raise WarehouseError(f"'{name}' is not a registered {kind or 'warehouse'} table (registered: {known})")
    return spec


def polars_schema(name: str) -> pl.Schema:
    """The Polars schema of a registered table (what a pipeline builds its frames with)."""
    return pl.from_arrow(table_spec(name).schema.empty_table()).schema


def chunk_part(index: int) -> str:
    """Name of the part holding the ``index``-th chunk of tokens in a table written chunk by chunk."""
    return f"chunk-{index:06d}"


@dataclass(frozen=True)
class CatalogTable:
    """A table inside ``catalog.duckdb``; ``bookkeeping`` tables record the warehouse itself, not data."""

    ddl: str
    version: int
    bookkeeping: bool = False


CATALOG_TABLES: dict[str, CatalogTable] = {
    "meta": CatalogTable("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)", 1, True),
    "schema_versions": CatalogTable(
        "CREATE TABLE IF NOT EXISTS schema_versions (table_name VARCHAR PRIMARY KEY, version INTEGER)", 1, True
    ),
    "runs": CatalogTable(
        "CREATE TABLE IF NOT EXISTS runs ("
        "run_id VARCHAR PRIMARY KEY, name VARCHAR, seed BIGINT, source VARCHAR,"
        " source_kind VARCHAR, arch VARCHAR, model_config VARCHAR,"
        " tokenizer_path VARCHAR, tokenizer_fingerprint VARCHAR,"
        " tokens_per_step BIGINT, metadata VARCHAR, ingested_at TIMESTAMP, trace_rows BIGINT)",
        2,
    ),
    "checkpoints": CatalogTable(
        "CREATE TABLE IF NOT EXISTS checkpoints ("
        "run_id VARCHAR, step BIGINT, tokens_seen BIGINT, path VARCHAR,"
        " content_hash VARCHAR, duplicate_of BIGINT, status VARCHAR,"
        " error VARCHAR, probed_at TIMESTAMP, surprisal_file VARCHAR,"
        " n_tokens BIGINT, sweep_id VARCHAR, PRIMARY KEY (run_id, step))",
        1,
    ),
    "sweeps": CatalogTable(
        "CREATE TABLE IF NOT EXISTS sweeps (sweep_id VARCHAR PRIMARY KEY, started_at TIMESTAMP, settings VARCHAR)", 1
    ),
    "eval_sets": CatalogTable(
        "CREATE TABLE IF NOT EXISTS eval_sets ("
        "eval_id VARCHAR PRIMARY KEY, config VARCHAR, tokenizer_fingerprint VARCHAR,"
        " vocab_size BIGINT, n_sequences BIGINT, n_tokens BIGINT, created_at TIMESTAMP)",
        1,
    ),
    "derived_tables": CatalogTable(
        "CREATE TABLE IF NOT EXISTS derived_tables ("
        "table_name VARCHAR PRIMARY KEY, params VARCHAR, computed_at TIMESTAMP,"
        " schema_version INTEGER, location VARCHAR)",
        2,
        True,
    ),
}


def data_tables() -> set[str]:
    """Tables of data every warehouse has (catalog and base Parquet tables), derived tables aside."""
    catalog = {name for name, t in CATALOG_TABLES.items() if not t.bookkeeping}
    return catalog | {name for name, spec in TABLES.items() if spec.kind == "base"}
