"""Schemas of every warehouse table, with their versions and column docs.

Bulk tables are Parquet files read through DuckDB views; small catalog tables
live inside ``catalog.duckdb``. Every table carries a schema version, stored
in the catalog table ``schema_versions`` and in each Parquet file's metadata.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION_KEY = b"ldw_schema_version"

SURPRISAL = pa.schema(
    [
        pa.field("run_id", pa.string()),
        pa.field("step", pa.int64()),
        pa.field("token_idx", pa.int64()),
        pa.field("surprisal_bits", pa.float32()),
    ]
)

EVAL_SEQUENCES = pa.schema(
    [
        pa.field("seq_id", pa.int64()),
        pa.field("input_ids", pa.list_(pa.int32())),
    ]
)

EVAL_TOKENS = pa.schema(
    [
        pa.field("token_idx", pa.int64()),
        pa.field("seq_id", pa.int64()),
        pa.field("position", pa.int32()),
        pa.field("token_id", pa.int32()),
        pa.field("token_text", pa.string()),
        pa.field("context_len", pa.int32()),
    ]
)

TRACES = pa.schema(
    [
        pa.field("run_id", pa.string()),
        pa.field("step", pa.int64()),
        pa.field("name", pa.string()),
        pa.field("value", pa.float64()),
    ]
)

# Parquet-backed tables: name -> (schema or None for derived tables, version).
PARQUET_TABLES: dict[str, tuple[pa.Schema | None, int]] = {
    "surprisal": (SURPRISAL, 1),
    "eval_sequences": (EVAL_SEQUENCES, 1),
    "eval_tokens": (EVAL_TOKENS, 1),
    "traces": (TRACES, 1),
}

CATALOG_DDL: dict[str, tuple[str, int]] = {
    "meta": (
        "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
        1,
    ),
    "schema_versions": (
        "CREATE TABLE IF NOT EXISTS schema_versions (table_name VARCHAR PRIMARY KEY, version INTEGER)",
        1,
    ),
    "runs": (
        "CREATE TABLE IF NOT EXISTS runs ("
        "run_id VARCHAR PRIMARY KEY, name VARCHAR, seed BIGINT, source VARCHAR,"
        " source_kind VARCHAR, arch VARCHAR, model_config VARCHAR,"
        " tokenizer_path VARCHAR, tokenizer_fingerprint VARCHAR,"
        " tokens_per_step BIGINT, metadata VARCHAR, ingested_at TIMESTAMP)",
        1,
    ),
    "checkpoints": (
        "CREATE TABLE IF NOT EXISTS checkpoints ("
        "run_id VARCHAR, step BIGINT, tokens_seen BIGINT, path VARCHAR,"
        " content_hash VARCHAR, duplicate_of BIGINT, status VARCHAR,"
        " error VARCHAR, probed_at TIMESTAMP, surprisal_file VARCHAR,"
        " n_tokens BIGINT, sweep_id VARCHAR, PRIMARY KEY (run_id, step))",
        1,
    ),
    "sweeps": (
        "CREATE TABLE IF NOT EXISTS sweeps (sweep_id VARCHAR PRIMARY KEY, started_at TIMESTAMP, settings VARCHAR)",
        1,
    ),
    "eval_sets": (
        "CREATE TABLE IF NOT EXISTS eval_sets ("
        "eval_id VARCHAR PRIMARY KEY, config VARCHAR, tokenizer_fingerprint VARCHAR,"
        " vocab_size BIGINT, n_sequences BIGINT, n_tokens BIGINT, created_at TIMESTAMP)",
        1,
    ),
    "derived_tables": (
        "CREATE TABLE IF NOT EXISTS derived_tables ("
        "table_name VARCHAR PRIMARY KEY, params VARCHAR, computed_at TIMESTAMP,"
        " schema_version INTEGER, location VARCHAR)",
        2,
    ),
}

COLUMN_DOCS: dict[str, dict[str, str]] = {
    "runs": {
        "run_id": "stable id of the run (a slug of its name)",
        "name": "display name",
        "seed": "training seed when known",
        "source": "absolute path the run was ingested from",
        "source_kind": "ldw_trainer | hf_trainer | step_folders",
        "arch": "transformers model_type of the checkpoints",
        "model_config": "JSON of the checkpoint's config.json",
        "tokenizer_path": "folder the tokenizer was loaded from",
        "tokenizer_fingerprint": "sha256 over vocabulary, merges and specials",
        "tokens_per_step": "training tokens per optimizer step when known",
        "metadata": "JSON: run.json of the reference trainer or trainer_state facts",
        "ingested_at": "UTC time of the last ingest",
    },
    "checkpoints": {
        "run_id": "run the checkpoint belongs to",
        "step": "optimizer step",
        "tokens_seen": "training tokens seen at this step when known",
        "path": "absolute folder of the checkpoint",
        "content_hash": "sha256 over the weight files",
        "duplicate_of": "an earlier step with identical weights, else NULL",
        "status": "pending | done | failed (of the surprisal sweep)",
        "error": "one-line error of a failed sweep",
        "probed_at": "UTC time the surprisal file was cataloged",
        "surprisal_file": "Parquet file of this checkpoint's surprisal, relative to the Parquet root",
        "n_tokens": "rows in the surprisal file",
        "sweep_id": "sweeps row holding the scoring settings",
    },
    "eval_tokens": {
        "token_idx": "dense index 0..N-1 of the token in context",
        "seq_id": "evaluation sequence",
        "position": "position of the target inside the sequence (0-based)",
        "token_id": "target token id",
        "token_text": "decoded target token",
        "context_len": "tokens the model sees before the target (prefix included)",
    },
    "eval_sequences": {
        "seq_id": "evaluation sequence",
        "input_ids": "token ids of the sequence (no prefix token)",
    },
    "surprisal": {
        "run_id": "run",
        "step": "checkpoint step",
        "token_idx": "evaluation token",
        "surprisal_bits": "-log2 p(token | prefix)",
    },
    "traces": {
        "run_id": "run",
        "step": "optimizer step",
        "name": "trace name: loss, grad_norm, lr, eval_loss, ... (unknown columns kept)",
        "value": "value at that step",
    },
}


def with_version(schema: pa.Schema, version: int) -> pa.Schema:
    """Return ``schema`` with the ldw schema version in its metadata."""
    return schema.with_metadata({SCHEMA_VERSION_KEY: str(version).encode()})
