"""The evaluation set: sequences and the tokens in context that are scored."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from ldw.warehouse.clock import utcnow
from ldw.warehouse.errors import WarehouseError
from ldw.warehouse.tables import DERIVED_ROOT, TABLES


class EvalSetMixin:
    """One evaluation set per warehouse, shared by every run so curves compare."""

    def eval_config(self) -> dict[str, Any] | None:
        """Settings of the evaluation set (None before one is built)."""
        rows = self.query("SELECT config, tokenizer_fingerprint, vocab_size FROM eval_sets")
        if rows.height == 0:
            return None
        config = json.loads(rows["config"][0])
        config["tokenizer_fingerprint"] = rows["tokenizer_fingerprint"][0]
        config["vocab_size"] = int(rows["vocab_size"][0])
        return config

    def write_eval_set(
        self,
        sequences: pa.Table,
        tokens: pa.Table,
        config: dict[str, Any],
        tokenizer_fingerprint: str,
        vocab_size: int,
        replace: bool = False,
    ) -> bool:
        """Store the evaluation set; returns False when an identical one exists.

        A different existing set is kept unless ``replace`` is set, in which
        case every surprisal file and derived table is dropped with it.
        """
        eval_id = hashlib.sha256(json.dumps([config, tokenizer_fingerprint], sort_keys=True).encode()).hexdigest()[:16]
        existing = self.query("SELECT eval_id FROM eval_sets")
        if existing.height and existing["eval_id"][0] == eval_id:
            return False
        if existing.height and not replace:
            raise WarehouseError(
                f"{self.root}: warehouse already has a different evaluation set; "
                "use a new --warehouse, or --replace to drop it and every surprisal computed on it"
            )
        conformed = {
            name: TABLES[name].conform(data) for name, data in (("eval_sequences", sequences), ("eval_tokens", tokens))
        }
        if existing.height:
            self._drop_scored_data()
        for name, data in conformed.items():
            self.store.write(data, self.store.path(TABLES[name].file()), TABLES[name].version)
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute("DELETE FROM eval_sets")
            con.execute(
                "INSERT INTO eval_sets VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    eval_id,
                    json.dumps(config, sort_keys=True),
                    tokenizer_fingerprint,
                    vocab_size,
                    sequences.num_rows,
                    tokens.num_rows,
                    utcnow(),
                ],
            )
            con.execute("COMMIT")
            self._create_views(con)
        return True

    def _drop_scored_data(self) -> None:
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute(
                "UPDATE checkpoints SET status = 'pending', error = NULL, probed_at = NULL, "
                "surprisal_file = NULL, n_tokens = NULL, sweep_id = NULL"
            )
            for (name,) in con.execute("DELETE FROM derived_tables RETURNING table_name").fetchall():
                con.execute(f'DROP VIEW IF EXISTS "{name}"')
            con.execute("COMMIT")
        for folder in (TABLES["surprisal"].folder, DERIVED_ROOT):
            self.store.remove(self.store.path(folder))

    def require_eval_config(self) -> dict[str, Any]:
        """Evaluation-set settings, or a clear error telling how to build one."""
        config = self.eval_config()
        if config is None:
            raise WarehouseError(f"{self.root}: no evaluation set; run `ldw evalset` first")
        return config

    def vocab_size(self) -> int:
        """Vocabulary size of the evaluation tokenizer (chance = log2 of it)."""
        return int(self.require_eval_config()["vocab_size"])

    def token_count(self) -> int:
        """Number of evaluation tokens (token_idx runs 0..N-1)."""
        return int(self.query("SELECT n_tokens FROM eval_sets")["n_tokens"][0])

    def eval_tokens(self) -> pl.DataFrame:
        """The tokens in context, ordered by token_idx."""
        return self.query("SELECT * FROM eval_tokens ORDER BY token_idx")

    def eval_sequences(self) -> pl.DataFrame:
        """The evaluation sequences, ordered by seq_id."""
        return self.query("SELECT * FROM eval_sequences ORDER BY seq_id")

    def eval_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sequences as an int64 matrix [S, L] plus each token's (seq_id, position)."""
        seqs = self.eval_sequences()
        ids = np.array(seqs["input_ids"].to_list(), dtype=np.int64)
        tokens = self.query("SELECT seq_id, position FROM eval_tokens ORDER BY token_idx")
        return ids, tokens["seq_id"].to_numpy().copy(), tokens["position"].to_numpy().copy()
